"""Configuration: frozen, keyword-only dataclasses whose field help becomes the CLI's flag help.

The same keys serve the command line (``--hidden-size``), a TOML file (``hidden_size = 512``)
and ``config.json`` in a run directory. Out-of-range values raise ValueError. Two classes here
are shared by every task family (:class:`ModelConfig`, :class:`TrainConfig`); a family's own
keys are a dataclass in its module (:mod:`seqlab.families`), built with the same :func:`opt`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from seqlab.encoders import ENCODERS

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def opt(default, help: str, **extra):
    """A config field with its CLI help and its validation rules: ``choices``, ``minimum``,
    ``maximum``, ``below`` (exclusive maximum), ``positive``; a float field must also be 0 or a
    normal float32 magnitude (the model computes in float32) unless ``float32=False``."""
    return field(default=default, metadata={"help": help, **extra})


# float32's largest finite value and smallest normal magnitude: a float key outside
# [FLOAT32_TINY, FLOAT32_MAX] (other than 0) overflows to inf or flushes to a subnormal or 0
# once it meets the model's tensors
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.1754943508222875e-38


# the model names: the encoder registry itself (every registered cell, then window-mlp and bow),
# read live, so a cell or encoder registered later is a valid model at once
MODEL_NAMES = ENCODERS


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """What to build. ``vocab_size`` comes from the data, not from the user."""

    model: str = opt("lstm", "architecture", choices=MODEL_NAMES)
    embedding_size: int = opt(64, "size E of the token embedding", positive=True)
    hidden_size: int = opt(256, "size H of each recurrent layer's state", positive=True)
    # torch.nn builds a stack in time quadratic in its depth: 20,000 layers take a minute
    num_layers: int = opt(1, "number of stacked recurrent layers", positive=True,
                          maximum=10_000)
    dropout: float = opt(0.0, "dropout on embeddings, between layers and before the head",
                         minimum=0.0, below=1.0)
    tie_weights: bool = opt(False, "share the embedding matrix with the output head (needs E == H)")
    # beyond +-100 sigmoid is 0 or 1 in float32 whatever the bias: larger ones mean nothing more
    forget_bias: float = opt(1.0, "LSTM forget-gate bias at initialisation (b_if + b_hf)",
                             minimum=-100.0, maximum=100.0)
    chrono_steps: int = opt(0, "LSTM: chrono initialisation for dependencies up to STEPS "
                            "steps (Tallec & Ollivier 2018): forget bias log U[1, STEPS-1], "
                            "input bias its negative; replaces --forget-bias (0: off)",
                            minimum=0)
    window: int = opt(2, "window-mlp: tokens n it sees (its parameters grow with n: no sharing "
                      "across positions)", positive=True)
    bow_mode: str = opt("mean", "bow: mean of the history's embeddings, or log(1 + count) of "
                        "each token so far", choices=("mean", "counts"))
    vocab_size: int = field(default=0, metadata={"cli": False})

    def __post_init__(self) -> None:
        validate(self)
        if 0 < self.chrono_steps < 3:
            raise ValueError(f"chrono_steps must be 0 (off) or >= 3, got {self.chrono_steps}")
        if self.tie_weights and self.embedding_size != self.hidden_size:
            raise ValueError(f"tie_weights needs embedding_size == hidden_size, got "
                             f"{self.embedding_size} and {self.hidden_size}")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How to train: data handling, optimisation, truncated BPTT, stopping and logging."""

    tokenizer: str = opt("char", "token level", choices=("char", "word", "bpe"))
    # tokenizers aborts the whole process (a Rust panic) when asked for 1e9 tokens; real
    # vocabularies stay under a million
    bpe_vocab_size: int = opt(1024, "vocabulary size for --tokenizer bpe, at least the 256 "
                              "byte tokens BPE starts from", minimum=256, maximum=2**24)
    val_fraction: float = opt(0.1, "fraction held out for validation: the last block of a "
                              "text; whole tunes drawn by --seed for ABC",
                              minimum=0.0, below=1.0, positive=True)
    batching: str = opt("windows", "windows: random windows, state reset each batch (the "
                        "default: it generalised better on text and tunes, BENCHMARKS.md); "
                        "streams: B contiguous streams with carried state (TBPTT); tunes (ABC "
                        "only): B whole tunes per batch, padding masked, read --seq-len at a time; "
                        "lines: each line one example from an empty state, ending with an "
                        "end-of-line token to predict, split by whole lines drawn by --seed",
                        choices=("streams", "windows", "tunes", "lines"))
    seq_len: int = opt(128, "time steps per chunk (the truncation length of BPTT)", positive=True)
    batch_size: int = opt(32, "sequences per batch", positive=True)
    optimizer: str = opt("adam", "optimiser", choices=("adam", "adamw", "sgd", "rmsprop"))
    lr: float = opt(2e-3, "peak learning rate", positive=True)
    weight_decay: float = opt(0.0, "weight decay (decoupled for adamw)", minimum=0.0)
    momentum: float = opt(0.0, "momentum for sgd and rmsprop", minimum=0.0, below=1.0)
    warmup_steps: int = opt(50, "linear warmup steps from 0 to --lr", minimum=0)
    decay_steps: int = opt(0, "cosine decay horizon in steps (0: --max-steps)", minimum=0)
    min_lr_ratio: float = opt(0.1, "learning rate at the end of the decay, as a fraction of --lr",
                              minimum=0.0, maximum=1.0)
    clip_norm: float = opt(1.0, "clip the global gradient norm to this (0: off)", minimum=0.0)
    clip_value: float = opt(0.0, "clip each gradient element to [-X, X] (0: off)", minimum=0.0)
    max_steps: int = opt(2000, "stop after this many optimiser steps", positive=True)
    time_budget: float = opt(0.0, "stop after this many seconds of training (0: no limit)",
                             minimum=0.0, float32=False)  # compared with a clock, not a tensor
    eval_every: int = opt(200, "evaluate on the validation split every N steps", positive=True)
    eval_batches: int = opt(0, "validation chunks per evaluation (0: the whole split)", minimum=0)
    log_every: int = opt(20, "write a metrics line every N steps", positive=True)
    patience: int = opt(10, "stop after N evaluations without improvement (0: never)", minimum=0)
    record_every: int = opt(0, "recurrent models: record the gradient norm through time (dL/dh_t "
                            "on a fixed probe batch) every N steps into gradients.jsonl, for "
                            "seqlab diagnose (0: never)", minimum=0)
    max_bad_steps: int = opt(10, "stop after N consecutive non-finite steps", positive=True)
    seed: int = opt(0, "random seed: the same seed repeats a run on the same machine", minimum=0,
                    maximum=2**32 - 1)  # batches seed generators with seed * 1_000_003 + step
    device: str = opt("auto", "where to train: auto takes a GPU when there is one",
                      choices=("auto", "cpu", "cuda"))
    precision: str = opt("fp32", "arithmetic of the forward pass and loss: fp32; bf16 "
                         "(autocast to bfloat16, on a GPU or a CPU with bfloat16 instructions); "
                         "fp16 (autocast to float16 with a gradient scaler, CUDA GPUs only). "
                         "Weights, optimiser and checkpoints stay float32",
                         choices=("fp32", "bf16", "fp16"))
    compile: bool = opt(False, "run the per-step function of the explicit recurrent loop "
                        "(a cell without a fused kernel or scan, gradient recording) through "
                        "torch.compile: compiled on first use (seconds to a minute, logged); "
                        "on a CPU it needs a C++ compiler, and at small batches its per-call "
                        "overhead can outweigh what it fuses (BENCHMARKS.md). Fused kernels are "
                        "not affected")

    def __post_init__(self) -> None:
        validate(self)
        if self.clip_norm > 0 and self.clip_value > 0:
            raise ValueError("choose one of clip_norm and clip_value, not both")


def validate(config) -> None:
    """Check every field against its metadata; raise ValueError naming the key."""
    for f in fields(config):
        if f.metadata.get("cli") is not False:
            check_value(f.name, getattr(config, f.name), f.metadata)


def check_value(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    """One key's value against its rules (:func:`opt`'s metadata); ValueError naming the key
    and the allowed range. The one place where every number is checked."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if "choices" in meta and value not in meta["choices"]:
        choices = ", ".join(meta["choices"])
        raise ValueError(f"unknown {name} {value!r}; choose from {choices}")
    if meta.get("positive") and not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if "maximum" in meta and not meta.get("minimum", value) <= value <= meta["maximum"]:
        raise ValueError(f"{name} must be {allowed_range(meta, value)}, got {value}")
    if "minimum" in meta and value < meta["minimum"]:
        raise ValueError(f"{name} must be >= {meta['minimum']}, got {value}")
    if "below" in meta and not value < meta["below"]:
        raise ValueError(f"{name} must be < {meta['below']}, got {value}")
    if isinstance(value, float) and meta.get("float32", True) and value != 0 \
            and not FLOAT32_TINY <= abs(value) <= FLOAT32_MAX:
        raise ValueError(f"{name} must be {allowed_range(meta, value)} (float32: no overflow, no "
                         f"subnormal), got {value}")


def allowed_range(meta: Mapping[str, Any], value: Any = 0.0) -> str:
    """The values a numeric key may take, as a message writes them: ``in [-100, 100]``, ``0 or
    in [1.2e-38, 1]``, ``in [1.2e-38, 3.4e+38]``."""
    top = meta.get("maximum", FLOAT32_MAX)
    high = f"{meta['below']:g})" if "below" in meta else (
        f"{top}]" if isinstance(top, int) else f"{top:.3g}]")
    if isinstance(value, int):
        return f"in [{1 if meta.get('positive') else meta.get('minimum', 0)}, {high}"
    if meta.get("positive"):
        return f"in [{FLOAT32_TINY:.2g}, {high}"
    low = meta.get("minimum", -FLOAT32_MAX)
    if low == 0:
        return f"0 or in [{FLOAT32_TINY:.2g}, {high}"
    return f"in [{low:.3g}, {high}"


def check_key(config_class: type, name: str, value: Any) -> None:
    """One key of ``config_class`` checked alone (a command's override of a run's key)."""
    meta = next(f.metadata for f in fields(config_class) if f.name == name)
    check_value(name, value, meta)


def fields_of(config_class: type) -> list:
    """The user-settable fields of a config class (flags, TOML keys, config.json keys)."""
    return [f for f in fields(config_class) if f.metadata.get("cli", True)]


def check_types(values: dict[str, Any], config_classes) -> None:
    """Raise ValueError for a value of the wrong type (TOML and the Python API are untyped)."""
    types = {f.name: f.type for cls in config_classes for f in fields_of(cls)}
    python = {"int": int, "float": (int, float), "str": str, "bool": bool}
    for key, value in values.items():
        want = python[types[key]]
        if isinstance(value, bool) and types[key] != "bool" or not isinstance(value, want):
            raise ValueError(f"config key {key}: expected {types[key]}, got {value!r}")


def coerce(config_class: type, values: dict[str, Any]) -> dict[str, Any]:
    """The keys of ``values`` that ``config_class`` has, ints widened to float where the field
    is a float (TOML has no 1 vs 1.0 distinction)."""
    own = {}
    for f in fields_of(config_class):
        if f.name in values:
            value = values[f.name]
            widen = f.type == "float" and isinstance(value, int) and not isinstance(value, bool)
            own[f.name] = float(value) if widen else value
    return own


def build(config_class: type, values: dict[str, Any]):
    """An instance of ``config_class`` from the keys of ``values`` it has."""
    return config_class(**coerce(config_class, values))


def read_toml(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid TOML ({err})") from err
    nested = [k for k, v in data.items() if isinstance(v, dict)]
    if nested:
        raise ValueError(f"{path}: expected flat keys, got tables: {', '.join(nested)}")
    return data


def to_dict(config) -> dict[str, Any]:
    return dataclasses.asdict(config)
