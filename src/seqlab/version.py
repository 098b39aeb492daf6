"""The version of seqlab (one place; the package, config.json and --version read it)."""

__version__ = "0.1.0"
