"""A stack of recurrent cells run over a sequence: one set of weights reused at every step.

:class:`Recurrent` owns a torch.nn.RNN / LSTM / GRU (``core``), so its parameters have torch.nn's
names and layout (``core.weight_ih_l0`` ...) and load both ways. It runs them in one of two ways:

- ``fused`` (default): the torch.nn module itself, which uses oneDNN on CPU and cuDNN on GPU;
- ``explicit``: the step functions of :mod:`seqlab.cells` in a Python loop over time, which can
  also return every h_t, c_t and gate activation (:meth:`Recurrent.trace`).

Both take a ``lengths`` tensor for padded batches: nothing past a sequence's end reaches its
output (zeros there) or its final state. Shapes: B batch, T time, I input, H hidden, L layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqlab.cells import (
    gru_step,
    init_chrono,
    init_forget_bias,
    init_identity,
    lstm_step,
    rnn_step,
)

State = Tensor | tuple[Tensor, Tensor]

# name -> (torch.nn class, nonlinearity for Elman cells); a new cell is one entry here plus
# one branch in _step.
CELLS: dict[str, tuple[type[nn.RNNBase], str | None]] = {
    "rnn": (nn.RNN, "tanh"),
    "irnn": (nn.RNN, "relu"),
    "lstm": (nn.LSTM, None),
    "gru": (nn.GRU, None),
}
MODES = ("fused", "explicit")
GATE_NAMES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}


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


class Recurrent(nn.Module):
    """Recurrent stack, batch first: ``forward(x, state=None, lengths=None) -> (output, state)``.

    Args:
        cell: ``rnn`` (tanh), ``irnn`` (ReLU, identity-initialised W_hh, zero biases),
            ``lstm`` or ``gru``.
        input_size, hidden_size, num_layers: sizes I, H and L.
        dropout: dropout on the outputs of every layer but the last, in training mode.
        forget_bias: LSTM only; b_if + b_hf at initialisation (None keeps torch.nn's init).
        chrono: LSTM only; when > 0, chrono initialisation for dependencies up to this many
            steps (:func:`seqlab.cells.init_chrono`), in place of ``forget_bias``.
        mode: ``fused`` or ``explicit`` (see the module docstring); may be changed at any time.

    The state is torch.nn's: h (L, B, H) for rnn, irnn and gru; (h, c) for lstm.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0, forget_bias: float | None = 1.0,
                 mode: str = "fused", chrono: int = 0) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"Recurrent: unknown cell {cell!r}; choose from {', '.join(CELLS)}")
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Recurrent: {name} must be a positive int, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Recurrent: dropout must be in [0, 1), got {dropout}")
        self.cell = cell
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.dropout = dropout
        self.forget_bias = forget_bias
        self.chrono = chrono
        self.mode = mode
        module, nonlinearity = CELLS[cell]
        kwargs = {"nonlinearity": nonlinearity} if nonlinearity else {}
        # torch.nn warns when dropout is set on a single layer; it would be a no-op there anyway
        self.core = module(input_size, hidden_size, num_layers, batch_first=True,
                           dropout=dropout if num_layers > 1 else 0.0, **kwargs)
        self.reset_parameters()

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"Recurrent: mode must be one of {MODES}, got {value!r}")
        self._mode = value

    def reset_parameters(self) -> None:
        self.core.reset_parameters()
        for layer in range(self.num_layers):
            w_hh, b_ih, b_hh = (getattr(self.core, f"{n}_l{layer}")
                                for n in ("weight_hh", "bias_ih", "bias_hh"))
            if self.cell == "irnn":
                init_identity(w_hh, b_ih, b_hh)
            elif self.cell == "lstm" and self.chrono:
                init_chrono(b_ih, b_hh, self.chrono)
            elif self.cell == "lstm" and self.forget_bias is not None:
                init_forget_bias(b_ih, b_hh, self.forget_bias)

    def layer_weights(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(W_ih, W_hh, b_ih, b_hh) of one layer."""
        return tuple(getattr(self.core, f"{n}_l{layer}")
                     for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def initial_state(self, batch_size: int, device=None, dtype=None) -> State:
        ref = self.core.weight_ih_l0
        h = torch.zeros(self.num_layers, batch_size, self.hidden_size,
                        device=device or ref.device, dtype=dtype or ref.dtype)
        return (h, torch.zeros_like(h)) if self.cell == "lstm" else h

    def forward(self, x: Tensor, state: State | None = None, lengths: Tensor | None = None
                ) -> tuple[Tensor, State]:
        """x (B, T, I) -> output (B, T, H) of the top layer, and the final state."""
        self._check(x, state, lengths)
        if self.mode == "fused":
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
            if (self.cell == "lstm") != isinstance(state, tuple):
                raise TypeError(f"Recurrent: a {self.cell} state is "
                                f"{'a tuple (h, c)' if self.cell == 'lstm' else 'one tensor h'}")
            want = (self.num_layers, x.shape[0], self.hidden_size)
            for part in state if isinstance(state, tuple) else (state,):
                if tuple(part.shape) != want:
                    raise ValueError(f"Recurrent: expected a state of shape {want}, "
                                     f"got {tuple(part.shape)}")

    def _fused(self, x: Tensor, state: State | None, lengths: Tensor | None
               ) -> tuple[Tensor, State]:
        if lengths is None:
            return self.core(x, state)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.core(packed, state)
        output, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return output, state

    def _explicit(self, x: Tensor, state: State | None, lengths: Tensor | None, keep: bool
                  ) -> Trace:
        batch, steps = x.shape[:2]
        if state is None:
            state = self.initial_state(batch, x.device, x.dtype)
        h0, c0 = state if self.cell == "lstm" else (state, None)
        # alive[t]: (B, 1) mask of sequences still running at step t
        alive = None if lengths is None else (
            torch.arange(steps, device=x.device)[:, None] < lengths.to(x.device)[None, :]
        ).unsqueeze(-1)
        if alive is not None:  # padding never enters the graph, even NaN (0 * NaN is NaN)
            x = torch.where(alive.transpose(0, 1), x, torch.zeros((), dtype=x.dtype))
        gate_names = GATE_NAMES.get(self.cell, ())
        trace = Trace(output=x, state=state, h=[], c=[] if c0 is not None else None,
                      gates={g: [] for g in gate_names})
        final_h, final_c, layer_input = [], [], x
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                layer_input = nn.functional.dropout(layer_input, self.dropout, training=True)
            weights = self.layer_weights(layer)
            h, c = h0[layer], (c0[layer] if c0 is not None else None)
            hs, cs, gates, outs = [], [], {g: [] for g in gate_names}, []
            for t in range(steps):
                h_new, c_new, step_gates = self._step(layer_input[:, t], h, c, weights)
                if alive is not None:  # past a sequence's end its state is carried unchanged
                    h = torch.where(alive[t], h_new, h)
                    c = None if c is None else torch.where(alive[t], c_new, c)
                    outs.append(torch.where(alive[t], h_new, torch.zeros_like(h_new)))
                else:
                    h, c = h_new, c_new
                    outs.append(h_new)
                if keep:
                    hs.append(h)
                    if c is not None:
                        cs.append(c)
                    for name, value in zip(gate_names, step_gates, strict=True):
                        gates[name].append(value)
            layer_input = torch.stack(outs, dim=1)  # (B, T, H)
            final_h.append(h)
            final_c.append(c)
            if keep:
                trace.h.append(hs)
                if trace.c is not None:
                    trace.c.append(cs)
                for name in gate_names:
                    trace.gates[name].append(gates[name])
        trace.output = layer_input
        h_n = torch.stack(final_h)
        trace.state = (h_n, torch.stack(final_c)) if self.cell == "lstm" else h_n
        return trace

    def _step(self, x_t: Tensor, h: Tensor, c: Tensor | None,
              weights: tuple[Tensor, Tensor, Tensor, Tensor]):
        """(h_t, c_t or None, gates) for one layer and one step."""
        if self.cell == "lstm":
            return lstm_step(x_t, h, c, *weights)
        if self.cell == "gru":
            h_new, gates = gru_step(x_t, h, *weights)
            return h_new, None, gates
        return rnn_step(x_t, h, *weights, nonlinearity=CELLS[self.cell][1]), None, ()

    def extra_repr(self) -> str:
        return (f"cell={self.cell}, {self.input_size}, {self.hidden_size}, "
                f"num_layers={self.num_layers}, mode={self.mode}")


def detach_state(state: State | None) -> State | None:
    """Cut the graph at a chunk boundary (truncated BPTT) while keeping the values."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def map_state(state: State, fn) -> State:
    """Apply fn to every tensor of a state (h, or (h, c))."""
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)
