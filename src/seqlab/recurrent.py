"""A stack of recurrent cells run over a sequence: one set of weights reused at every step.

:class:`Recurrent` reads everything about its cell from the registry (:data:`CELLS`, a
:class:`~seqlab.cells.CellSpec`), never a cell's name. Its parameters sit in ``core`` with
torch.nn's names and layout (``core.weight_ih_l0`` ...), so they load both ways. It runs them in
one of two ways:

- ``fused`` (default): the cell's torch.nn kernel (nn.RNN / LSTM / GRU), which uses oneDNN on
  CPU and cuDNN on GPU; then ``core`` *is* that torch.nn module. In training on a CPU the
  cell's sweep (below) runs instead where it is the faster: a padded batch, or any batch of a
  cell with ``sweep_on_cpu`` (the GRU). A cell without a kernel has a plain ``core`` holding
  the same parameter names, and ``fused`` runs the cell's parallel scan over time when it has
  one (minGRU, minLSTM), else the explicit loop: fused means the fastest path the cell has
  (:attr:`Recurrent.fused` says which);
- ``explicit``: the cell's step function in a Python loop over time, which can also return
  every h_t, c_t and gate activation (:meth:`Recurrent.trace`).

A cell with a ``sweep`` (the LSTM's and the GRU's, :mod:`seqlab.cells.lstm_sweep`) runs each
layer of the explicit path as one autograd node with a hand-written backward, whenever nothing
per step is to be kept (not :meth:`Recurrent.trace`), nothing is compiled and no autocast is on.
Otherwise a cell with a ``recur`` (its step after the two projections) has every step's input
projection made in one product before the loop and W_hh's gradient in one after the backward
loop (:mod:`seqlab.recurrent_loop`); a cell with only a ``step`` runs it as it is. ``compiled``
(``train --compile``) sends that per-step function through torch.compile.

Both take a ``lengths`` tensor for padded batches: nothing past a sequence's end reaches its
output (zeros there) or its final state. Shapes: B batch, T time, I input, H hidden, L layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqlab.arguments import is_count
from seqlab.cells import CELLS, CellSpec, InitOptions, LayerWeights
from seqlab.cells.base import init_uniform
from seqlab.cells.workspace import SHORT
from seqlab.recurrent_loop import RecurrentWeightGrad, compiled

State = Tensor | tuple[Tensor, Tensor]
MODES = ("fused", "explicit")
WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


@dataclass
class Trace:
    """Everything the explicit path saw, per layer and per step, still in the autograd graph.

    ``h[l][t]`` is the state carried out of step t of layer l (B, H): the very tensor the next
    step reads, so ``torch.autograd.grad(loss, trace.h[l])`` gives dL/dh_t through time.
    ``c`` likewise for the LSTM cell state; ``gates[name][l][t]`` the gate activations.
    """

    output: Tensor  # (B, T, H) top layer, zeros past each length
    state: State  # final state, as from forward
    h: list[list[Tensor]]
    c: list[list[Tensor]] | None = None
    gates: dict[str, list[list[Tensor]]] = field(default_factory=dict)

    @staticmethod
    def stack(steps: list[list[Tensor]]) -> Tensor:
        """[layer][t] of (B, H) -> (L, B, T, H)."""
        return torch.stack([torch.stack(layer, dim=1) for layer in steps])


class StackWeights(nn.Module):
    """The ``core`` of a cell without a fused kernel: torch.nn's parameter names and packed
    layout (``weight_ih_l0`` (blocks H, I) ...) and its uniform init, without its kernel."""

    def __init__(self, spec: CellSpec, input_size: int, hidden_size: int, num_layers: int
                 ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        rows = spec.blocks * hidden_size
        for layer in range(num_layers):
            width = input_size if layer == 0 else hidden_size
            shapes = ((rows, width), (rows, hidden_size), (rows,), (rows,))
            for name, shape in zip(WEIGHT_NAMES, shapes, strict=True):
                self.register_parameter(f"{name}_l{layer}", nn.Parameter(torch.empty(shape))
                                        if name in spec.weight_names else None)

    def reset_parameters(self) -> None:
        init_uniform(self, self.hidden_size)


class Recurrent(nn.Module):
    """Recurrent stack, batch first: ``forward(x, state=None, lengths=None) -> (output, state)``.

    Args:
        cell: a registered cell (:data:`CELLS`): ``rnn`` (tanh), ``irnn`` (ReLU,
            identity-initialised W_hh, zero biases), ``lstm``, ``gru``, or one added later.
        input_size, hidden_size, num_layers: sizes I, H and L.
        dropout: dropout on the outputs of every layer but the last, in training mode.
        forget_bias: LSTM only; b_if + b_hf at initialisation (None keeps torch.nn's init).
        chrono: LSTM only; when > 0, chrono initialisation for dependencies up to this many
            steps (:func:`seqlab.cells.init_chrono`), in place of ``forget_bias``.
        mode: ``fused`` or ``explicit`` (see the module docstring); may be changed at any time.
        compiled: run the explicit loop's per-step function through torch.compile (see the
            module docstring and :mod:`seqlab.recurrent_loop`); may be changed at any time.

    The state is torch.nn's: h (L, B, H) for a cell whose state is h (rnn, irnn, gru); the
    tuple (h, c) for one whose state is (h, c) (lstm).
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0, forget_bias: float | None = 1.0,
                 mode: str = "fused", chrono: int = 0, compiled: bool = False) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"Recurrent: unknown cell {cell!r}; choose from {', '.join(CELLS)}")
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            if not is_count(value):
                raise ValueError(f"Recurrent: {name} must be a positive int, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Recurrent: dropout must be in [0, 1), got {dropout}")
        self.cell, self.spec = cell, CELLS[cell]
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.dropout = dropout
        self.forget_bias = forget_bias
        self.chrono = chrono
        self.mode = mode
        self.compiled = compiled
        if self.spec.kernel is None:
            self.core = StackWeights(self.spec, input_size, hidden_size, num_layers)
        else:  # torch.nn warns when dropout is set on a single layer, a no-op there anyway
            self.core = self.spec.kernel(input_size, hidden_size, num_layers, batch_first=True,
                                         dropout=dropout if num_layers > 1 else 0.0)
        self.reset_parameters()

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"Recurrent: mode must be one of {MODES}, got {value!r}")
        self._mode = value

    @property
    def fused(self) -> bool:
        """Whether forward runs a fused torch.nn kernel or the cell's scan (mode fused and the
        cell has one)."""
        return self.mode == "fused" and (self.spec.kernel is not None
                                         or self.spec.scan is not None)

    @property
    def paired(self) -> bool:
        """Whether the state is the tuple (h, c) rather than one tensor h."""
        return len(self.spec.state) == 2

    def reset_parameters(self) -> None:
        """torch.nn's uniform init, then the cell's own per layer (identity, gate biases)."""
        self.core.reset_parameters()
        if self.spec.reset is None:
            return
        options = InitOptions(forget_bias=self.forget_bias, chrono=self.chrono)
        for layer in range(self.num_layers):
            self.spec.reset(self.layer_weights(layer), options)

    def layer_weights(self, layer: int) -> LayerWeights:
        """(W_ih, W_hh, b_ih, b_hh) of one layer."""
        return LayerWeights(*(getattr(self.core, f"{n}_l{layer}") for n in WEIGHT_NAMES))

    def initial_state(self, batch_size: int, device=None, dtype=None) -> State:
        ref = self.core.weight_ih_l0
        h = torch.zeros(self.num_layers, batch_size, self.hidden_size,
                        device=device or ref.device, dtype=dtype or ref.dtype)
        return (h, torch.zeros_like(h)) if self.paired else h

    def state_step(self, layer: int):
        """f(state (S,), x (I,)) -> next state (S,): one step of one layer on one sequence, the
        state's tensors concatenated (S = H, or 2H for (h, c)). For Jacobians through time."""
        weights = self.layer_weights(layer)
        parts = len(self.spec.state)

        def step(state: Tensor, x: Tensor) -> Tensor:
            new, _ = self.spec.step(x[None], state[None].chunk(parts, dim=-1), *weights)
            return torch.cat(new, dim=-1)[0]

        return step

    def forward(self, x: Tensor, state: State | None = None, lengths: Tensor | None = None
                ) -> tuple[Tensor, State]:
        """x (B, T, I) -> output (B, T, H) of the top layer, and the final state."""
        self._check(x, state, lengths)
        if self.fused:
            return self._fused(x, state, lengths)
        trace = self._explicit(x, state, lengths, keep=False)
        return trace.output, trace.state

    def trace(self, x: Tensor, state: State | None = None, lengths: Tensor | None = None) -> Trace:
        """Run the explicit path and keep every h_t, c_t and gate activation."""
        self._check(x, state, lengths)
        return self._explicit(x, state, lengths, keep=True)

    def _check(self, x: Tensor, state: State | None, lengths: Tensor | None) -> None:
        if x.dim() != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"Recurrent: expected input of shape (B, T, {self.input_size}), "
                             f"got {tuple(x.shape)}")
        if x.shape[1] == 0:
            raise ValueError("Recurrent: the input has no time steps (T = 0)")
        if lengths is not None:
            if lengths.shape != (x.shape[0],):
                raise ValueError(f"Recurrent: expected lengths of shape ({x.shape[0]},), "
                                 f"got {tuple(lengths.shape)}")
            if int(lengths.min()) < 1 or int(lengths.max()) > x.shape[1]:
                raise ValueError(f"Recurrent: lengths must lie in [1, {x.shape[1]}], got "
                                 f"{int(lengths.min())}..{int(lengths.max())}")
        if state is not None:
            if self.paired != isinstance(state, tuple):
                raise TypeError(f"Recurrent: a {self.cell} state is "
                                f"{'a tuple (h, c)' if self.paired else 'one tensor h'}")
            want = (self.num_layers, x.shape[0], self.hidden_size)
            for part in state if isinstance(state, tuple) else (state,):
                if tuple(part.shape) != want:
                    raise ValueError(f"Recurrent: expected a state of shape {want}, "
                                     f"got {tuple(part.shape)}")

    def _fused(self, x: Tensor, state: State | None, lengths: Tensor | None
               ) -> tuple[Tensor, State]:
        if self.spec.scan is not None:
            return self._scanned(x, state, lengths)
        if self._sweep_beats_kernel(x, lengths):
            trace = self._explicit(x, state, lengths, keep=False)
            return trace.output, trace.state
        if lengths is None:
            return self.core(x, state)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.core(packed, state)
        output, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return output, state

    def _scanned(self, x: Tensor, state: Tensor | None, lengths: Tensor | None
                 ) -> tuple[Tensor, Tensor]:
        """The cell's scan, one layer at a time, every step of a layer at once (state h)."""
        if state is None:
            state = self.initial_state(x.shape[0], x.device, x.dtype)
        alive, x = masked(x, lengths)
        alive = None if alive is None else alive.transpose(0, 1)  # (B, T, 1)
        finals, layer_input = [], x
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                layer_input = nn.functional.dropout(layer_input, self.dropout, training=True)
            h = self.spec.scan(layer_input, (state[layer],), *self.layer_weights(layer), alive)
            finals.append(h[:, -1])  # carried unchanged past each end: the state at the end
            layer_input = h if alive is None else torch.where(alive, h, torch.zeros_like(h))
        return layer_input, torch.stack(finals)  # (B, T, H), (L, B, H)

    def _explicit(self, x: Tensor, state: State | None, lengths: Tensor | None, keep: bool
                  ) -> Trace:
        if state is None:
            state = self.initial_state(x.shape[0], x.device, x.dtype)
        parts = state if self.paired else (state,)  # each (L, B, H)
        alive, x = masked(x, lengths)  # alive[t]: (B, 1), sequences still running at step t
        trace = Trace(output=x, state=state, h=[], c=[] if self.paired else None,
                      gates={g: [] for g in self.spec.gates})
        finals, layer_input = [], x
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                layer_input = nn.functional.dropout(layer_input, self.dropout, training=True)
            carried = tuple(p[layer] for p in parts)
            layer_input, carried = self._layer(layer, layer_input, carried, alive, trace, keep)
            finals.append(carried)
        trace.output = layer_input
        final = tuple(torch.stack(p) for p in zip(*finals, strict=True))
        trace.state = final if self.paired else final[0]
        return trace

    def _layer(self, layer: int, x: Tensor, carried: tuple[Tensor, ...], alive: Tensor | None,
               trace: Trace, keep: bool) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One layer over every step: (output (B, T, H), final state); appends to the trace."""
        if not keep and self._sweeps(x):
            return self._swept(layer, x, carried, alive)
        advance = self._advance(layer, x)
        kept, gates, outs = [], {g: [] for g in self.spec.gates}, []
        for t in range(x.shape[1]):
            new, step_gates = advance(t, carried)
            if alive is not None:  # past a sequence's end its state is carried unchanged
                carried = tuple(torch.where(alive[t], n, c)
                                for n, c in zip(new, carried, strict=True))
                # from the carried state, the tensor the trace keeps: dL/dh_t then sees the
                # output's own path, not only the steps after t
                outs.append(torch.where(alive[t], carried[0], torch.zeros_like(new[0])))
            else:
                carried = new
                outs.append(new[0])
            if keep:
                kept.append(carried)
                for name, value in zip(self.spec.gates, step_gates, strict=True):
                    gates[name].append(value)
        if keep:
            trace.h.append([s[0] for s in kept])
            if trace.c is not None:
                trace.c.append([s[1] for s in kept])
            for name, values in gates.items():
                trace.gates[name].append(values)
        return torch.stack(outs, dim=1), carried  # (B, T, H)

    def _sweeps(self, x: Tensor) -> bool:
        """Whether a layer runs as the cell's sweep: one autograd node per layer, when nothing
        per step is kept, nothing is compiled and no autocast is on (the sweep runs in the
        dtype it is given)."""
        return (self.spec.sweep is not None and not self.compiled
                and not torch.is_autocast_enabled(x.device.type))

    def _sweep_beats_kernel(self, x: Tensor, lengths: Tensor | None = None) -> bool:
        """Whether fused mode on a CPU trains through the cell's sweep rather than its torch.nn
        kernel: when a backward pass will follow over at least SHORT steps, and either the
        sweep beats the kernel there (``sweep_on_cpu``: the GRU's) or the batch is padded to
        unequal lengths (the packed kernels train 2-7x slower than the sweeps on a CPU);
        never without a backward (evaluation, generation: the kernels' forward is the
        faster) nor while being traced (an exported graph holds the kernel's one operator).
        BENCHMARKS.md has the measurements."""
        if not (x.device.type == "cpu" and x.shape[1] >= SHORT and self._sweeps(x)
                and torch.is_grad_enabled()
                and not torch.jit.is_tracing()
                and (x.requires_grad or any(p.requires_grad for p in self.core.parameters()))):
            return False
        return self.spec.sweep_on_cpu or (lengths is not None
                                          and int(lengths.min()) < x.shape[1])

    def _swept(self, layer: int, x: Tensor, carried: tuple[Tensor, ...], alive: Tensor | None
               ) -> tuple[Tensor, tuple[Tensor, ...]]:
        hs, final = self.spec.sweep(x.transpose(0, 1), self.layer_weights(layer), carried, alive)
        if alive is not None:  # zeros past each end, as the loop's output
            hs = torch.where(alive, hs, torch.zeros((), dtype=hs.dtype))
        return hs.transpose(0, 1), final  # (B, T, H)

    def _advance(self, layer: int, x: Tensor) -> Callable:
        """advance(t, state) -> (new state, gates): step t of one layer over x (B, T, I)."""
        weights = self.layer_weights(layer)
        step = self.spec.step if self.spec.recur is None else self.spec.recur
        step = compiled(step, self.cell) if self.compiled else step
        if self.spec.recur is None:
            inputs = x.unbind(1)  # one autograd node for all steps, not a zero (B, T, I) each
            return lambda t, state: step(inputs[t], state, *weights)
        recur = step
        # time first: each step's slice, and each step's gradient in the backward, contiguous
        from_input = nn.functional.linear(x.transpose(0, 1), weights.w_ih, weights.b_ih)
        if weights.w_hh is None:  # gates from x_t alone (spec.input_only): nothing from h_prev
            from_input = from_input.unbind(0)
            return lambda t, state: recur(from_input[t], None, state)
        h_prev: list[Tensor] = []  # what W_hh met at each step, for its gradient
        biases = RecurrentWeightGrad.apply(weights.w_hh, weights.b_hh, from_input.shape[:2],
                                           h_prev)  # (T, B, blocks H)
        from_input, biases = from_input.unbind(0), biases.unbind(0)
        to_hidden = weights.w_hh.detach().t()  # (H, blocks H)
        if torch.is_autocast_enabled(x.device.type):  # cast once, not at every step
            to_hidden = to_hidden.to(torch.get_autocast_dtype(x.device.type))
        keep_h = weights.w_hh.requires_grad and torch.is_grad_enabled()

        def advance(t: int, state: tuple[Tensor, ...]):
            if keep_h:
                h_prev.append(state[0].detach())
            return recur(from_input[t], torch.addmm(biases[t], state[0], to_hidden), state)
        return advance

    def extra_repr(self) -> str:
        return (f"cell={self.cell}, {self.input_size}, {self.hidden_size}, "
                f"num_layers={self.num_layers}, mode={self.mode}")


def masked(x: Tensor, lengths: Tensor | None) -> tuple[Tensor | None, Tensor]:
    """(alive (T, B, 1), True before each sequence's end, or None when every step of every
    sequence is; x (B, T, I) with zeros past each end, so that padding never enters the graph,
    even NaN: 0 * NaN is NaN)."""
    steps = x.shape[1]
    if lengths is None or int(lengths.min()) == steps:
        return None, x
    alive = (torch.arange(steps, device=x.device)[:, None]
             < lengths.to(x.device)[None, :]).unsqueeze(-1)
    return alive, torch.where(alive.transpose(0, 1), x, torch.zeros((), dtype=x.dtype))


def set_compiled(model: nn.Module, on: bool = True) -> int:
    """Set ``compiled`` on every :class:`Recurrent` in ``model``; returns how many there are."""
    stacks = [m for m in model.modules() if isinstance(m, Recurrent)]
    for stack in stacks:
        stack.compiled = on
    return len(stacks)


def detach_state(state: State | None) -> State | None:
    """Cut the graph at a chunk boundary (truncated BPTT) while keeping the values."""
    return None if state is None else map_state(state, Tensor.detach)


def map_state(state: State, fn) -> State:
    """Apply fn to every tensor of a state (h, or (h, c))."""
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)
