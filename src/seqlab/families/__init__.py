"""Task families: one contract (base.py), one runner (runner.py), one registry (registry.py),
and one module per family."""
