"""Memory limits: what a command will allocate, estimated before it allocates, against what the
machine has.

A size key with no upper bound (``--hidden-size 10000000``, ``--num-pairs 1000000000``) would
otherwise end in an allocator failure after minutes of work, or in a hang. The estimates here
are deliberately simple and on the low side (parameters, gradients and optimiser state, one
batch's activations, generated data, in float32 and int64), and the limit is the machine's
*total* memory: only what can never fit is refused, so a user with 1 TB may train what 1 TB
holds. What slips through and still fails to allocate is turned into the same kind of error
by :func:`allocation_errors`.

Shapes: B batch, T time steps of one example, E embedding, H hidden, V vocabulary, L layers.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqlab.cells import CELLS

FLOAT = 4  # bytes of a float32
INT = 8  # bytes of an int64 id
OBJECT = 56  # bytes of a small Python object (a tuple, an empty list or str)
LAYER_OVERHEAD = 4096  # bytes of Python and tensor bookkeeping per recurrent layer (measured)
# optimiser state per parameter, in copies of the weights; one more copy holds the best weights
OPTIMIZER_SLOTS = {"adam": 2, "adamw": 2, "rmsprop": 1, "sgd": 0}


class TooLarge(ValueError):
    """A size that cannot fit in the machine's memory: the message names the key and both
    sizes. A ValueError, so the command line reports it as a usage error (exit 2)."""


# what the machine has ------------------------------------------------------------------------
@dataclass(frozen=True)
class Memory:
    total: int  # bytes
    available: int  # bytes
    where: str  # "memory" or "GPU memory (cuda:0)"

    def __str__(self) -> str:
        return f"{size(self.total)} of {self.where} ({size(self.available)} available)"


def machine_memory(device: Any = "cpu") -> Memory:
    """Total and available memory of ``device``: a CUDA device's own, else the host's (the
    smaller of physical memory plus swap and a cgroup's limit)."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(device)
        return Memory(int(total), int(free), f"GPU memory ({device})")
    total, available = host_memory()
    return Memory(total, available, "memory")


def host_memory() -> tuple[int, int]:
    """(total, available) bytes of RAM plus swap, bounded by a cgroup limit when there is one."""
    info = meminfo()
    if info:
        total = info.get("MemTotal", 0) + info.get("SwapTotal", 0)
        available = info.get("MemAvailable", info.get("MemFree", 0)) + info.get("SwapFree", 0)
    else:  # no /proc (macOS and others): physical pages
        total = available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    limit = cgroup_limit()
    return (min(total, limit), min(available, limit)) if limit else (total, available)


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes, or {} where there is none."""
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[name] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out


def cgroup_limit() -> int | None:
    """A container's memory limit in bytes (cgroup v2 or v1), or None."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            return int(text)
    return None


def size(n: float) -> str:
    """Bytes as a person reads them: ``1.5 TiB``."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if abs(n) < 1024 or unit == "EiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_fits(need: float, culprit: str, what: str, device: Any = "cpu",
               memory: Memory | None = None) -> None:
    """Raise :class:`TooLarge` when ``need`` bytes exceed the total memory of ``device``:
    ``culprit`` names the key and its value, ``what`` says what would need it."""
    memory = memory or machine_memory(device)
    if need > memory.total:
        raise TooLarge(f"{culprit}: {what} would need {size(need)}; this machine has "
                       f"{memory}")


@contextlib.contextmanager
def allocation_errors(keys: Mapping[str, Any], device: Any = "cpu") -> Iterator[None]:
    """Turn an allocation failure inside the block (MemoryError, torch's "can't allocate
    memory", CUDA out of memory) into :class:`TooLarge` naming the size ``keys`` and what the
    machine has; every other error passes unchanged."""
    try:
        yield
    except (MemoryError, RuntimeError) as err:
        if not is_allocation_failure(err):
            raise
        named = ", ".join(f"{k} {v}" for k, v in keys.items())
        raise TooLarge(f"{named}: out of memory ({allocation_detail(err)}); this machine has "
                       f"{machine_memory(device)}; lower {' or '.join(keys)}") from err


def is_allocation_failure(err: BaseException) -> bool:
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return True
    text = str(err)
    return "can't allocate memory" in text or "out of memory" in text.lower()


def allocation_detail(err: BaseException) -> str:
    """The allocator's request, when its message says it: ``tried to allocate 1.5 TiB``."""
    text = str(err)
    marker = "tried to allocate "
    if marker in text:
        number = text.split(marker, 1)[1].split()[0]
        if number.isdigit():
            return f"tried to allocate {size(int(number))}"
    return type(err).__name__


# what a training step holds --------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    """The sizes a training step allocates, as a family describes its model and batches."""

    model: Any  # a seqlab.config.ModelConfig
    input_size: int  # width the encoder reads: E, V (one-hots) or real channels
    vocab_in: int  # rows of the input embedding tables (0: none)
    outputs: int  # rows of the output head
    steps: int  # time steps of one example in a batch (source and target together)
    batch: int  # examples per batch
    stacks: int = 1  # encoders built (seq2seq: encoder and decoder)
    extra_params: int = 0  # parameters outside embeddings, encoders and head (attention)
    extra_per_step: int = 0  # floats per example and step beyond them (attention weights)


def encoder_parameters(model: Any, input_size: int) -> int:
    """Parameters of the encoder ``model.model`` reading ``input_size`` wide vectors."""
    h, layers = model.hidden_size, model.num_layers
    if model.model == "window-mlp":
        return model.window * input_size * h + h + (layers - 1) * (h * h + h)
    if model.model == "bow":
        return input_size * h + h + (layers - 1) * (h * h + h)
    blocks = CELLS[model.model].blocks if model.model in CELLS else 1
    # W_hh, b_hh per block row, unless the cell's gates read x_t alone (mingru, minlstm)
    recurrent = 0 if model.model in CELLS and CELLS[model.model].input_only else h + 1
    first = blocks * h * (input_size + 1 + recurrent)
    return first + (layers - 1) * blocks * h * (h + 1 + recurrent)


def encoder_activations(model: Any, input_size: int) -> int:
    """Floats one example keeps per step for the backward pass: the gates, states and masks of
    every layer (a feed-forward encoder: its window and hidden layers)."""
    h, layers = model.hidden_size, model.num_layers
    if model.model == "window-mlp":
        return model.window * input_size + 2 * layers * h
    if model.model == "bow":
        return 2 * input_size + 2 * layers * h
    blocks = CELLS[model.model].blocks if model.model in CELLS else 1
    return layers * h * (blocks + 4)


def parameters(shape: Shape) -> int:
    model = shape.model
    return (shape.vocab_in * model.embedding_size
            + shape.stacks * encoder_parameters(model, shape.input_size)
            + shape.outputs * (model.hidden_size + 1) + shape.extra_params)


def training_bytes(shape: Shape, optimizer: str) -> dict[str, int]:
    """Bytes of a training step by part: the weights with their gradients, best copy and
    optimiser state; one batch's activations (embedding, encoder, logits and their gradients);
    the layers' bookkeeping."""
    copies = 3 + OPTIMIZER_SLOTS.get(optimizer, 2)
    per_step = (shape.input_size + shape.stacks * encoder_activations(shape.model,
                                                                      shape.input_size)
                + 3 * shape.outputs + shape.extra_per_step)
    return {"parameters": copies * FLOAT * parameters(shape),
            "activations": FLOAT * shape.batch * shape.steps * per_step,
            "layers": LAYER_OVERHEAD * shape.stacks * shape.model.num_layers}


def describe(parts: Mapping[str, int]) -> str:
    names = {"parameters": "weights, gradients and optimiser state",
             "activations": "one batch's activations", "layers": "layer bookkeeping"}
    total = sum(parts.values())
    shown = {k: v for k, v in parts.items() if v > total / 100}  # under 1% only clutters
    if len(shown) == 1:  # the whole need, which the message gives beside it
        key = next(iter(shown))
        return names.get(key, key)
    return ", ".join(f"{names.get(k, k)} {size(v)}" for k, v in shown.items())


def culprit(need: float, variants: Mapping[str, tuple[Any, float]]) -> str:
    """The key whose own value makes ``need`` large: of ``variants`` (key -> (its value, the
    need with the key at its default)), the one whose default lowers the need most."""
    if not variants:
        return "these sizes"
    key = min(variants, key=lambda k: variants[k][1])
    return f"{key} {variants[key][0]}"
