"""The long short-term memory cell, registered as ``lstm``: equations (1)-(6) of
:class:`LSTMCell`, its forget-bias and chrono initialisations.

Shapes: B batch, I input size, H hidden size.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from seqlab.cells.base import Cell
from seqlab.cells.lstm_sweep import lstm_sweep
from seqlab.cells.registry import CellSpec, InitOptions, LayerWeights


class LSTMGates(NamedTuple):
    """Gate activations of one LSTM step, each (B, H)."""

    i: Tensor  # input ("store") gate
    f: Tensor  # forget gate
    g: Tensor  # candidate ("update")
    o: Tensor  # output gate


def lstm_step(x: Tensor, h_prev: Tensor, c_prev: Tensor, w_ih: Tensor, w_hh: Tensor,
              b_ih: Tensor | None, b_hh: Tensor | None) -> tuple[Tensor, Tensor, LSTMGates]:
    """One LSTM step; returns (h_t, c_t, gates). Equations in :class:`LSTMCell`."""
    (h, c), gates = lstm_recur(nn.functional.linear(x, w_ih, b_ih),
                               nn.functional.linear(h_prev, w_hh, b_hh), (h_prev, c_prev))
    return h, c, gates


def lstm_recur(from_input: Tensor, from_hidden: Tensor, state: tuple[Tensor, Tensor]
               ) -> tuple[tuple[Tensor, Tensor], LSTMGates]:
    """One LSTM step from its projections W_ih x_t + b_ih and W_hh h_prev + b_hh (B, 4H):
    ((h_t, c_t), gates)."""
    pre = from_input + from_hidden
    # few, whole-tensor calls: per step on a CPU each call costs more than its arithmetic, so
    # one sigmoid serves all four blocks (the g block's is not used)
    i, f, _, o = torch.sigmoid(pre).chunk(4, dim=-1)  # (1) input, (2) forget, (4) output gate
    g = torch.tanh(pre.chunk(4, dim=-1)[2])  # (3) candidate
    c = torch.addcmul(f * state[1], i, g)  # (5) cell update, f * c_prev + i * g
    h = o * torch.tanh(c)  # (6) output
    return (h, c), LSTMGates(i, f, g, o)


def lstm_state_step(x: Tensor, state: tuple[Tensor, Tensor], w_ih: Tensor, w_hh: Tensor,
                    b_ih: Tensor | None, b_hh: Tensor | None
                    ) -> tuple[tuple[Tensor, Tensor], LSTMGates]:
    """:func:`lstm_step` in the registry's signature: ((h_t, c_t), gates)."""
    h, c, gates = lstm_step(x, *state, w_ih, w_hh, b_ih, b_hh)
    return (h, c), gates


class LSTMCell(Cell):
    r"""Long short-term memory cell (Hochreiter and Schmidhuber 1997, with a forget gate).

    .. math::
        i &= \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{prev} + b_{hi}) && \text{(1) input}\\
        f &= \sigma(W_{if} x_t + b_{if} + W_{hf} h_{prev} + b_{hf}) && \text{(2) forget}\\
        g &= \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{prev} + b_{hg}) && \text{(3) candidate}\\
        o &= \sigma(W_{io} x_t + b_{io} + W_{ho} h_{prev} + b_{ho}) && \text{(4) output}\\
        c_t &= f \odot c_{prev} + i \odot g && \text{(5) cell update}\\
        h_t &= o \odot \tanh(c_t) && \text{(6) output}

    (1) input gate, what to store; (2) forget gate, what to keep; (3) candidate, the update;
    (4) output gate, what to show. x_t (B, I); h, c (B, H). ``weight_ih`` (4H, I) stacks W_ii,
    W_if, W_ig, W_io in that order (``weight_hh`` (4H, H) and the biases likewise), as in
    torch.nn.LSTMCell. The cell state c
    changes only by element-wise gating, so when f is near 1 the gradient flows back through
    c without repeated multiplication by W_hh.

    Initialisation: torch.nn's uniform, then the forget-gate bias set so that b_if + b_hf =
    ``forget_bias`` (default 1.0, Gers et al. 2000; Jozefowicz et al. 2015): the cell starts
    out remembering. ``forget_bias=None`` keeps torch.nn's initialisation unchanged.
    """

    num_chunks = 4

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 forget_bias: float | None = 1.0) -> None:
        self.forget_bias = forget_bias
        super().__init__(input_size, hidden_size, bias)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.forget_bias is not None and self.bias_ih is not None:
            init_forget_bias(self.bias_ih, self.bias_hh, self.forget_bias)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> tuple[Tensor, Tensor]:
        h = super().initial_state(batch_size, device, dtype)
        return h, torch.zeros_like(h)

    def forward(self, x_t: Tensor, state: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        h, c, _ = self.step_with_gates(x_t, state)
        return h, (h, c)

    def step_with_gates(self, x_t: Tensor, state: tuple[Tensor, Tensor] | None = None
                        ) -> tuple[Tensor, Tensor, LSTMGates]:
        """One step that also returns the four gate activations."""
        self._check_input(x_t)
        h_prev, c_prev = self.initial_state(x_t.shape[0]) if state is None else state
        return lstm_step(x_t, h_prev, c_prev, self.weight_ih, self.weight_hh,
                         self.bias_ih, self.bias_hh)


@torch.no_grad()
def init_forget_bias(bias_ih: Tensor, bias_hh: Tensor, value: float) -> None:
    """Set the LSTM forget-gate bias so that b_if + b_hf = value (gate order i, f, g, o)."""
    hidden = bias_ih.shape[0] // 4
    bias_ih[hidden:2 * hidden] = value
    bias_hh[hidden:2 * hidden] = 0.0


@torch.no_grad()
def init_chrono(bias_ih: Tensor, bias_hh: Tensor, t_max: int) -> None:
    """Chrono initialisation (Tallec & Ollivier 2018) for dependencies up to ``t_max`` steps.

    b_f = log(u), u ~ U[1, t_max - 1] per unit, and b_i = -b_f (gate order i, f, g, o): a unit
    with forget bias log(u) keeps its memory for about u steps at initialisation, so the
    characteristic times of the units spread over the range the task needs. Draws from torch's
    global generator (seed it for repeatable runs).
    """
    if t_max < 3:
        raise ValueError(f"chrono initialisation needs t_max >= 3, got {t_max}")
    hidden = bias_ih.shape[0] // 4
    forget = torch.log(torch.empty(hidden, dtype=bias_ih.dtype).uniform_(1.0, t_max - 1.0))
    bias_ih[:hidden] = -forget.to(bias_ih.device)
    bias_ih[hidden:2 * hidden] = forget.to(bias_ih.device)
    bias_hh[:2 * hidden] = 0.0


def reset_gate_biases(weights: LayerWeights, options: InitOptions) -> None:
    """One layer's gate biases: chrono when asked for, else the forget bias (if not None)."""
    if weights.b_ih is None:
        return
    if options.chrono:
        init_chrono(weights.b_ih, weights.b_hh, options.chrono)
    elif options.forget_bias is not None:
        init_forget_bias(weights.b_ih, weights.b_hh, options.forget_bias)


LSTM_SPEC = CellSpec(name="lstm", module=LSTMCell, step=lstm_state_step, state=("h", "c"),
                     blocks=4, gates=LSTMGates._fields, sigmoid_gates=frozenset({"i", "f", "o"}),
                     reset=reset_gate_biases, kernel=nn.LSTM, torch_cell=nn.LSTMCell,
                     recur=lstm_recur, sweep=lstm_sweep)
