"""The Elman cell, h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), with tanh or ReLU, and the
IRNN: ReLU with W_hh = I and zero biases at initialisation (Le, Jaitly and Hinton 2015).

Registered as ``rnn`` (tanh) and ``irnn``. Shapes: B batch, I input size, H hidden size.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from seqlab.cells.base import Cell
from seqlab.cells.registry import CellSpec, InitOptions, LayerWeights


def rnn_step(x: Tensor, h_prev: Tensor, w_ih: Tensor, w_hh: Tensor,
             b_ih: Tensor | None, b_hh: Tensor | None, nonlinearity: str = "tanh") -> Tensor:
    """h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh); returns h_t (B, H)."""
    (h,), _ = elman_recur(nn.functional.linear(x, w_ih, b_ih),
                          nn.functional.linear(h_prev, w_hh, b_hh), (h_prev,), nonlinearity)
    return h


def elman_recur(from_input: Tensor, from_hidden: Tensor, state: tuple[Tensor],
                nonlinearity: str = "tanh") -> tuple[tuple[Tensor], tuple[()]]:
    """h_t = act(from_input + from_hidden), from the projections W_ih x_t + b_ih and
    W_hh h_{t-1} + b_hh (B, H): ((h_t,), no gates)."""
    pre = from_input + from_hidden
    return (torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre),), ()


def elman_step(x: Tensor, state: tuple[Tensor], w_ih: Tensor, w_hh: Tensor,
               b_ih: Tensor | None, b_hh: Tensor | None, nonlinearity: str = "tanh"
               ) -> tuple[tuple[Tensor], tuple[()]]:
    """:func:`rnn_step` in the registry's signature: ((h_t,), no gates)."""
    return (rnn_step(x, state[0], w_ih, w_hh, b_ih, b_hh, nonlinearity),), ()


class RNNCell(Cell):
    r"""Elman cell.

    .. math::
        h_t = \mathrm{act}(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    x_t (B, I), h_{t-1} and h_t (B, H), W_ih (H, I), W_hh (H, H); act is tanh or ReLU.
    With ``identity_init`` (IRNN, Le, Jaitly and Hinton 2015) the cell uses ReLU, W_hh starts as
    the identity and both biases at zero, so at initialisation the state is carried unchanged and
    the gradient through time neither shrinks nor grows through W_hh.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", identity_init: bool = False) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', "
                             f"got {nonlinearity!r}")
        if identity_init and nonlinearity != "relu":
            raise ValueError("RNNCell: identity_init (IRNN) needs nonlinearity='relu'")
        self.nonlinearity = nonlinearity
        self.identity_init = identity_init
        super().__init__(input_size, hidden_size, bias)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.identity_init:
            init_identity(self.weight_hh, self.bias_ih, self.bias_hh)

    def forward(self, x_t: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_input(x_t)
        h_prev = self.initial_state(x_t.shape[0]) if state is None else state
        h = rnn_step(x_t, h_prev, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh,
                     self.nonlinearity)
        return h, h


@torch.no_grad()
def init_identity(weight_hh: Tensor, bias_ih: Tensor | None, bias_hh: Tensor | None) -> None:
    """IRNN initialisation: W_hh = I, zero biases (Le, Jaitly and Hinton 2015)."""
    weight_hh.copy_(torch.eye(*weight_hh.shape, dtype=weight_hh.dtype))
    for b in (bias_ih, bias_hh):
        if b is not None:
            b.zero_()


def reset_identity(weights: LayerWeights, options: InitOptions) -> None:
    """The IRNN's own initialisation of one layer (``options`` concern other cells)."""
    init_identity(weights.w_hh, weights.b_ih, weights.b_hh)


RNN_SPEC = CellSpec(name="rnn", module=partial(RNNCell, nonlinearity="tanh"),
                    step=partial(elman_step, nonlinearity="tanh"),
                    kernel=partial(nn.RNN, nonlinearity="tanh"),
                    torch_cell=partial(nn.RNNCell, nonlinearity="tanh"),
                    recur=partial(elman_recur, nonlinearity="tanh"))
IRNN_SPEC = CellSpec(name="irnn",
                     module=partial(RNNCell, nonlinearity="relu", identity_init=True),
                     step=partial(elman_step, nonlinearity="relu"), reset=reset_identity,
                     kernel=partial(nn.RNN, nonlinearity="relu"),
                     torch_cell=partial(nn.RNNCell, nonlinearity="relu"),
                     recur=partial(elman_recur, nonlinearity="relu"))
