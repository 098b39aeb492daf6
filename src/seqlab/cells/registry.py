"""The cell registry: a name -> everything about one recurrent cell, in one :class:`CellSpec`.

Shared code (:class:`seqlab.recurrent.Recurrent`, the encoders, diagnostics, the test suites)
reads only the spec, never a cell's name, so a new cell is one file and one registration::

    register_cell(CellSpec(name="mine", module=MyCell, step=my_step, ...))

Every registered cell is also a model name (``--model mine``), through
:data:`seqlab.encoders.ENCODERS`. Shapes: B batch, I input size, H hidden size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from torch import Tensor, nn

from seqlab.arguments import is_count


class LayerWeights(NamedTuple):
    """One layer's parameters in torch.nn's packed layout: gate blocks stacked along the rows."""

    w_ih: Tensor  # (blocks H, I)
    w_hh: Tensor | None  # (blocks H, H); None for a cell whose gates read x_t alone
    b_ih: Tensor | None  # (blocks H,)
    b_hh: Tensor | None  # (blocks H,); None likewise


@dataclass(frozen=True, kw_only=True)
class InitOptions:
    """Initialisation choices a cell may honour (the others ignore them)."""

    forget_bias: float | None = 1.0  # LSTM: b_if + b_hf (None: torch.nn's init unchanged)
    chrono: int = 0  # LSTM: chrono initialisation up to this many steps (0: off)


# step(x (B, I), state, w_ih, w_hh, b_ih, b_hh) -> (new state, gate activations); the state is
# a tuple of (B, H) tensors in the order of CellSpec.state, the gates a tuple in CellSpec.gates
Step = Callable[..., tuple[tuple[Tensor, ...], tuple[Tensor, ...]]]
Reset = Callable[[LayerWeights, InitOptions], None]
# scan(x (B, T, I), state, w_ih, w_hh, b_ih, b_hh, alive) -> every h_t (B, T, H): a whole
# sequence at once; alive (B, T, 1) bool or None marks the steps before each sequence's end, and
# past its end h_t is carried unchanged
Scan = Callable[..., Tensor]
# recur(from_input, from_hidden, state) -> (new state, gate activations): ``step`` from its two
# projections W_ih x_t + b_ih and W_hh h_prev + b_hh (B, blocks H), for cells whose step
# reads x_t and h_prev through them alone (from_hidden is None for an input_only cell)
Recur = Callable[..., tuple[tuple[Tensor, ...], tuple[Tensor, ...]]]
# sweep(x (T, B, I), LayerWeights, state, alive) -> (every h_t (T, B, H), final state): one
# layer over every step as one autograd node with a hand-written backward; alive (T, B, 1) bool
# or None marks the steps before each sequence's end, and past it the state is carried
Sweep = Callable[..., tuple[Tensor, tuple[Tensor, ...]]]
STATE_KINDS = (("h",), ("h", "c"))
WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


@dataclass(frozen=True, kw_only=True)
class CellSpec:
    """Everything shared code needs to know about one cell.

    The explicit path runs a layer as ``sweep`` when there is one, else calls ``recur`` or
    ``step`` once per layer and time step; the fused path runs ``kernel`` when there is one
    (in training on a CPU the sweep instead, for a padded batch or with ``sweep_on_cpu``),
    else ``scan`` when there is one. All
    read the same parameters, named as torch.nn names them (``weight_ih_l0`` ...), ``blocks``
    gate blocks of H rows each; a cell whose gates read x_t alone (``input_only``) has no W_hh
    and no b_hh.
    """

    name: str
    module: Callable[..., nn.Module]  # the one-step module: module(input_size, hidden_size, bias=)
    step: Step  # one step, weights as arguments: the one implementation of the equations
    state: tuple[str, ...] = ("h",)  # the state's tensors: ("h",) or ("h", "c"); h is the output
    blocks: int = 1  # gate blocks packed along the rows of every weight: W_ih is (blocks H, I)
    gates: tuple[str, ...] = ()  # names of the gate activations ``step`` returns, in order
    sigmoid_gates: frozenset[str] = field(default_factory=frozenset)  # in (0, 1); others tanh
    unbounded_gates: frozenset[str] = field(default_factory=frozenset)  # neither: no saturation
    reset: Reset | None = None  # per layer, after torch.nn's uniform init: the cell's own init
    kernel: Callable[..., nn.RNNBase] | None = None  # fused torch.nn stack, called as
    # kernel(input_size, hidden_size, num_layers, batch_first=True, dropout=p); None: none
    torch_cell: Callable[..., nn.Module] | None = None  # torch.nn's one-step twin, for tests
    input_only: bool = False  # gates read x_t alone: weight_ih and bias_ih, no W_hh or b_hh
    scan: Scan | None = None  # the whole sequence at once (h_t linear in h_{t-1}); input_only
    recur: Recur | None = None  # step after its projections: lets the explicit path project
    # every step's input in one matrix product before the loop (``step`` must equal it)
    sweep: Sweep | None = None  # a layer's loop of ``recur`` with its own backward (needs recur)
    sweep_on_cpu: bool = False  # the sweep trains faster than the kernel on a CPU, full batches
    # too (a padded batch trains through any cell's sweep there: see Recurrent)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"CellSpec: name must be a non-empty str, got {self.name!r}")
        if self.state not in STATE_KINDS:
            raise ValueError(f"CellSpec {self.name}: state must be ('h',) or ('h', 'c'), "
                             f"got {self.state!r}")
        if not is_count(self.blocks):
            raise ValueError(f"CellSpec {self.name}: blocks must be a positive int, "
                             f"got {self.blocks!r}")
        if not set(self.sigmoid_gates) <= set(self.gates):
            raise ValueError(f"CellSpec {self.name}: sigmoid_gates {sorted(self.sigmoid_gates)} "
                             f"are not all among its gates {self.gates}")
        if not set(self.unbounded_gates) <= set(self.gates) - set(self.sigmoid_gates):
            raise ValueError(f"CellSpec {self.name}: unbounded_gates "
                             f"{sorted(self.unbounded_gates)} must be gates that are not sigmoid")
        if self.scan is not None and not (self.input_only and self.state == ("h",)):
            raise ValueError(f"CellSpec {self.name}: a scan needs input_only gates and the "
                             f"state ('h',)")
        if self.sweep is not None and (self.recur is None or self.input_only):
            raise ValueError(f"CellSpec {self.name}: a sweep loops recur over h_prev: it needs "
                             f"a recur and W_hh")
        if self.sweep_on_cpu and self.sweep is None:
            raise ValueError(f"CellSpec {self.name}: sweep_on_cpu needs a sweep")
        if self.input_only and self.kernel is not None:
            raise ValueError(f"CellSpec {self.name}: torch.nn's kernels all have W_hh; an "
                             f"input_only cell has none")

    def __deepcopy__(self, memo) -> CellSpec:
        return self  # immutable: a copied model keeps the very spec it was built from

    @property
    def block_names(self) -> tuple[str, ...]:
        """A name per row block of W_hh: its gate when each block is one gate (LSTM i, f, g, o;
        GRU r, z, n), else ``W_hh`` for a single block or ``W_hh[k]``."""
        if self.gates and len(self.gates) == self.blocks:
            return self.gates
        return ("W_hh",) if self.blocks == 1 else tuple(f"W_hh[{k}]" for k in range(self.blocks))

    @property
    def weight_names(self) -> tuple[str, ...]:
        """A layer's parameters: torch.nn's four, or weight_ih and bias_ih if input_only."""
        return ("weight_ih", "bias_ih") if self.input_only else WEIGHT_NAMES

    @property
    def elman(self) -> bool:
        """One W_hh block acting on a lone state h, h_t = act(W_ih x_t + W_hh h_{t-1} + b): the
        recurrence whose spectral radius alone sets how a signal grows or fades through time."""
        return self.blocks == 1 and self.state == ("h",) and not self.input_only


CELLS: dict[str, CellSpec] = {}


def register_cell(spec: CellSpec) -> CellSpec:
    """Add a cell to :data:`CELLS` (and so to the model names); its name must be new."""
    if not isinstance(spec, CellSpec):
        raise TypeError(f"register_cell: expected a CellSpec, got {type(spec).__name__}")
    if spec.name in CELLS:
        raise ValueError(f"register_cell: a cell named {spec.name!r} is already registered")
    CELLS[spec.name] = spec
    return spec


def unregister_cell(name: str) -> CellSpec:
    """Remove a cell from :data:`CELLS`; returns its spec (to register it again)."""
    if name not in CELLS:
        raise ValueError(f"unregister_cell: no cell named {name!r}; registered: "
                         f"{', '.join(CELLS)}")
    return CELLS.pop(name)


@contextmanager
def replaced_cell(name: str, **changes: Any) -> Iterator[CellSpec]:
    """Within the block, the cell ``name`` registered with ``changes`` to its spec (e.g.
    ``sweep=None``), for models built there; the original again afterwards."""
    if name not in CELLS:
        raise ValueError(f"replaced_cell: no cell named {name!r}; registered: "
                         f"{', '.join(CELLS)}")
    original = CELLS[name]
    CELLS[name] = dataclasses.replace(original, **changes)  # in place: the order stays
    try:
        yield CELLS[name]
    finally:
        CELLS[name] = original


class _GateNames(Mapping):
    """Cell name -> its gate names, for the gated cells, read live from :data:`CELLS`."""

    def __getitem__(self, name: str) -> tuple[str, ...]:
        if name not in CELLS or not CELLS[name].gates:
            raise KeyError(name)
        return CELLS[name].gates

    def __iter__(self) -> Iterator[str]:
        return (name for name, spec in CELLS.items() if spec.gates)

    def __len__(self) -> int:
        return sum(1 for _ in self)


GATE_NAMES: Mapping[str, tuple[str, ...]] = _GateNames()
