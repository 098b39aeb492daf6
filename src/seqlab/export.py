"""ONNX export of a run's inference graphs: the plumbing below the families.

A family describes what to export as :class:`Graph` objects (``Family.exporter``): a module,
its named inputs made at any batch size and length (:attr:`Graph.example`), its named outputs
and which axes are dynamic. :func:`export` traces every graph with ``torch.onnx.export``,
checks each file with onnxruntime against PyTorch on inputs of *another* batch size and length
than the traced ones (so an axis that the trace froze fails here, not on a server), and only
then writes the files, each atomically (:mod:`seqlab.io`). Nothing here knows a family.

The exporter is torch.onnx's TorchScript-based one (``dynamo=False``). It writes nn.LSTM,
nn.GRU and nn.RNN (and a packed padded batch) as ONNX's own LSTM / GRU / RNN operators with
dynamic batch and length; torch.export, under the default exporter, cannot trace the
data-dependent ``pack_padded_sequence`` that padded batches run through. torch marks that
exporter deprecated, and says so in a warning on every call, which is silenced here.
A recurrent stack exports its fused path only; a cell with neither a fused torch.nn kernel nor
a scan runs a Python loop over time, which a trace would unroll to the traced length: refused.
The scan cells trace as a scripted loop (:mod:`seqlab.cells.scan`): ONNX has no logcumsumexp.
Any other operator that ONNX lacks is refused with the exporter's own reason, in one line.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from seqlab.io import atomic_write_files
from seqlab.recurrent import Recurrent

OPSET = 17  # has every operator the graphs use (LSTM, GRU, RNN...); onnxruntime >= 1.14 runs it
TRACED = (3, 5)  # (batch, length) of the traced example
CHECKED = (2, 7)  # (batch, length) of the example every written graph is checked on
# |onnxruntime - torch| beyond which a graph is not written: float32 rounding gives ~1e-7, a
# shape or an operator the trace got wrong gives far more
TOLERANCE = 1e-4
EXTRA = "pip install 'seqlab[export]' (onnx and onnxruntime)"

Example = Callable[[int, int], dict[str, Tensor]]  # (batch, length) -> name -> tensor


@dataclass
class Graph:
    """One inference graph: ``module(*example(B, T).values())`` returns the ``outputs`` in
    order. ``axes``: input or output name -> {axis: "batch" | "length" | ...}, the dynamic
    ones; ``suffix`` names the file beside the others (FILE stem + "-" + suffix + ".onnx";
    "" for a family's only graph: FILE itself); ``notes`` go into the file's metadata."""

    module: nn.Module
    example: Example
    outputs: tuple[str, ...]
    axes: dict[str, dict[int, str]]
    suffix: str = ""
    notes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Written:
    """A file written: its path, its inputs' and outputs' shapes (dynamic axes by name) and
    the largest |onnxruntime - torch| on the checked example."""

    path: Path
    inputs: dict[str, list[int | str]]
    outputs: dict[str, list[int | str]]
    difference: float


# state-carrying models ---------------------------------------------------------------------
def state_tensors(state) -> tuple[Tensor, ...]:
    """A state (one tensor or a tuple of them) as a tuple."""
    return state if isinstance(state, tuple) else (state,)


class StepModule(nn.Module):
    """``forward(inputs, *state) -> (outputs, *new state)`` of a model whose contract is
    ``model(inputs, state) -> (outputs, state)`` with a state of one tensor or a tuple of
    them (a recurrent stack's h or (h, c), a baseline encoder's own)."""

    def __init__(self, model: nn.Module, paired: bool) -> None:
        super().__init__()
        self.model, self.paired = model, paired

    def forward(self, inputs: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        outputs, new = self.model(inputs, state if self.paired else state[0])
        return (outputs, *state_tensors(new))


def state_axes(initial_state: Callable[[int], object]) -> list[int]:
    """The batch axis of each tensor of a state, found by making one for 1 and for 2 rows."""
    axes = []
    for one, two in zip(state_tensors(initial_state(1)), state_tensors(initial_state(2)),
                        strict=True):
        axes.append(next(k for k, (a, b) in enumerate(zip(one.shape, two.shape, strict=True))
                         if a != b))
    return axes


def state_names(model: nn.Module, count: int) -> tuple[str, ...]:
    """The names of a state's tensors: its recurrent stack's (h, or h and c), else state0..."""
    names = next((m.spec.state for m in model.modules() if isinstance(m, Recurrent)), ())
    return tuple(names) if len(names) == count else tuple(f"state{k}" for k in range(count))


def step_graph(model: nn.Module, initial_state: Callable[[int], object],
               inputs: Callable[[int, int], Tensor], names: tuple[str, str],
               notes: dict[str, str] | None = None) -> Graph:
    """The graph of one call of a state-carrying model: ``names`` = (its input, its output),
    both (B, T, ...); each state tensor goes in under its name (h, c) and out as NAME_out."""
    carried = state_names(model, len(state_tensors(initial_state(1))))
    outs = [f"{name}_out" for name in carried]
    axes = {names[0]: {0: "batch", 1: "length"}, names[1]: {0: "batch", 1: "length"}}
    for name, out, axis in zip(carried, outs, state_axes(initial_state), strict=True):
        axes[name] = axes[out] = {axis: "batch"}

    def example(batch: int, length: int) -> dict[str, Tensor]:
        draw = generator(batch, length + 1)
        start = tuple(torch.randn(s.shape, generator=draw).to(s.dtype)
                      for s in state_tensors(initial_state(batch)))
        return {names[0]: inputs(batch, length), **dict(zip(carried, start, strict=True))}

    return Graph(StepModule(model, isinstance(initial_state(1), tuple)), example,
                 (names[1], *outs), axes, notes=dict(notes or {}))


# many-to-one models ------------------------------------------------------------------------
class WithProbabilities(nn.Module):
    """``forward(inputs, lengths) -> (logits, probabilities)`` of a model that gives logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.model(inputs, lengths)
        return logits, logits.softmax(-1)


def classifier_graph(model: nn.Module, name: str, inputs: Callable[[int, int], Tensor],
                     notes: dict[str, str] | None = None) -> Graph:
    """The graph of ``model(inputs, lengths) -> logits (B, K)``: inputs (B, T, ...) under
    ``name``, lengths (B,) -> logits and probabilities (B, K)."""

    def example(batch: int, length: int) -> dict[str, Tensor]:
        return {name: inputs(batch, length), "lengths": lengths_of(batch, length)}

    axes = {name: {0: "batch", 1: "length"}, "lengths": {0: "batch"}, "logits": {0: "batch"},
            "probabilities": {0: "batch"}}
    return Graph(WithProbabilities(model), example, ("logits", "probabilities"), axes,
                 notes=dict(notes or {}))


# example inputs, the same for the same sizes ----------------------------------------------
def generator(batch: int, length: int) -> torch.Generator:
    return torch.Generator().manual_seed(1000 * batch + length)


def token_inputs(vocab_size: int, low: int = 0) -> Callable[[int, int], Tensor]:
    """(batch, length) -> ids (B, T) in [low, vocab_size)."""
    return lambda batch, length: torch.randint(low, vocab_size, (batch, length),
                                               generator=generator(batch, length))


def real_inputs(channels: int) -> Callable[[int, int], Tensor]:
    """(batch, length) -> values (B, T, C)."""
    return lambda batch, length: torch.randn(batch, length, channels,
                                             generator=generator(batch, length))


def lengths_of(batch: int, length: int) -> Tensor:
    """(B,) lengths in [1, length], the first one the whole length."""
    lengths = torch.randint(1, length + 1, (batch,), generator=generator(batch, length))
    lengths[0] = length
    return lengths


# checks ------------------------------------------------------------------------------------
def require() -> None:
    """ValueError naming the extra when onnx or onnxruntime is missing."""
    for name in ("onnx", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            raise ValueError(f"seqlab export needs the {name} package: {EXTRA}") from None


def check_fused(model: nn.Module) -> None:
    """Refuse a recurrent stack whose fastest path is a Python loop over time."""
    for module in model.modules():
        if isinstance(module, Recurrent) and not module.fused:
            raise ValueError(f"the {module.cell} cell has no fused torch.nn kernel or scan: its "
                             "Python loop over time would be unrolled to one length, so it "
                             "cannot be exported with a dynamic length")


# export ------------------------------------------------------------------------------------
def onnx_bytes(graph: Graph) -> bytes:
    """The traced graph as an ONNX file's bytes, with ``notes`` in its metadata."""
    import onnx

    example = graph.example(*TRACED)
    buffer = io.BytesIO()
    # the exporter's deprecation, the tracer's notes, the C++ shape inference's log lines:
    # whether the graph is right is checked on other sizes instead
    with warnings.catch_warnings(), native_output_silenced():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(graph.module, tuple(example.values()), buffer, dynamo=False,
                              input_names=list(example), output_names=list(graph.outputs),
                              dynamic_axes=graph.axes, opset_version=OPSET)
        except torch.onnx.errors.OnnxExporterError as err:
            raise ValueError(f"torch.onnx cannot export this model: "
                             f"{str(err).splitlines()[0]}") from err
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in graph.notes.items():
        proto.metadata_props.add(key=f"seqlab.{key}", value=value)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


@contextlib.contextmanager
def native_output_silenced() -> Iterator[None]:
    """File descriptors 1 and 2 pointed at /dev/null for the duration: the exporter's C++
    code logs there (shape inference, the whole graph on a failure)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in (1, 2)]
    try:
        with open(os.devnull, "wb") as null:
            for fd in (1, 2):
                os.dup2(null.fileno(), fd)
            yield
    finally:
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


def run_onnx(data: bytes, inputs: dict[str, Tensor]) -> list[Tensor]:
    """The outputs of an ONNX file's bytes on ``inputs`` with onnxruntime (CPU)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    feed = {name: tensor.numpy() for name, tensor in inputs.items()}
    return [torch.from_numpy(a) for a in session.run(None, feed)]


@torch.no_grad()
def outputs_of(graph: Graph, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """PyTorch's outputs of the graph's module on ``inputs``, by name."""
    outputs = graph.module(*inputs.values())
    outputs = (outputs,) if isinstance(outputs, Tensor) else outputs
    return dict(zip(graph.outputs, outputs, strict=True))


@torch.no_grad()
def difference(graph: Graph, data: bytes, batch: int, length: int
               ) -> tuple[float, dict[str, Tensor], dict[str, Tensor]]:
    """(the largest |onnxruntime - torch| over every output on an example of (batch, length),
    that example, PyTorch's outputs on it); ValueError when a shape or a value differs beyond
    :data:`TOLERANCE`."""
    example = graph.example(batch, length)
    want = outputs_of(graph, example)
    got = run_onnx(data, example)
    worst = 0.0
    for name, a, b in zip(graph.outputs, got, want.values(), strict=True):
        if tuple(a.shape) != tuple(b.shape):
            raise ValueError(f"the exported graph gives {name} of shape {tuple(a.shape)} for "
                             f"batch {batch}, length {length}; PyTorch gives {tuple(b.shape)}")
        if a.numel():
            worst = max(worst, float((a.double() - b.double()).abs().max()))
    if not worst <= TOLERANCE:
        raise ValueError(f"the exported graph differs from PyTorch by {worst:.3g} at batch "
                         f"{batch}, length {length}: not written")
    return worst, example, want


def shapes(graph: Graph, tensors: dict[str, Tensor]) -> dict[str, list[int | str]]:
    return {name: [graph.axes.get(name, {}).get(k, n) for k, n in enumerate(t.shape)]
            for name, t in tensors.items()}


def paths_of(path: Path, graphs: Sequence[Graph]) -> list[Path]:
    """Where each graph goes: FILE for a single graph, FILE stem + "-" + suffix + ".onnx"
    for several."""
    if len(graphs) == 1 and not graphs[0].suffix:
        return [path]
    return [path.with_name(f"{path.stem}-{g.suffix}.onnx") for g in graphs]


def export(graphs: Sequence[Graph], path: str | Path) -> list[Written]:
    """Trace, check and write every graph (see the module docstring); nothing is written
    unless every graph traces and checks."""
    require()
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"{path}: the file to write must end in .onnx")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: no such folder (the folder must exist)")
    targets = paths_of(path, graphs)
    for target in targets:
        if target.is_dir():
            raise IsADirectoryError(f"{target}: a folder is in the way of the file to write")
    for graph in graphs:
        graph.module.eval()
        check_fused(graph.module)
    files = [onnx_bytes(graph) for graph in graphs]
    written = []
    for graph, data, target in zip(graphs, files, targets, strict=True):
        worst, example, want = difference(graph, data, *CHECKED)
        written.append(Written(target, shapes(graph, example), shapes(graph, want), worst))
    atomic_write_files(list(zip(targets, files, strict=True)))  # all or none
    return written
