"""The gated recurrent unit in the torch.nn / cuDNN convention, registered as ``gru``:
equations (1)-(4) of :class:`GRUCell`.

Shapes: B batch, I input size, H hidden size.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from seqlab.cells.base import Cell
from seqlab.cells.gru_sweep import gru_sweep
from seqlab.cells.registry import CellSpec


class GRUGates(NamedTuple):
    """Gate activations of one GRU step, each (B, H)."""

    r: Tensor  # reset gate
    z: Tensor  # update gate
    n: Tensor  # candidate


def gru_step(x: Tensor, h_prev: Tensor, w_ih: Tensor, w_hh: Tensor,
             b_ih: Tensor | None, b_hh: Tensor | None) -> tuple[Tensor, GRUGates]:
    """One GRU step (torch.nn / cuDNN convention); returns (h_t, gates). See :class:`GRUCell`."""
    (h,), gates = gru_recur(nn.functional.linear(x, w_ih, b_ih),
                            nn.functional.linear(h_prev, w_hh, b_hh), (h_prev,))
    return h, gates


def gru_recur(from_input: Tensor, from_hidden: Tensor, state: tuple[Tensor]
              ) -> tuple[tuple[Tensor], GRUGates]:
    """One GRU step from its projections W_ih x_t + b_ih and W_hh h_prev + b_hh (B, 3H):
    ((h_t,), gates)."""
    # few, whole-tensor calls: per step on a CPU each call costs more than its arithmetic
    rows = 2 * state[0].shape[-1]
    rz = torch.sigmoid(from_input[..., :rows] + from_hidden[..., :rows])
    r, z = rz.chunk(2, dim=-1)  # (1) reset gate, (2) update gate
    # (3) candidate, reset applied after W_hn: tanh(in_n + r * hid_n)
    n = torch.tanh(torch.addcmul(from_input[..., rows:], r, from_hidden[..., rows:]))
    h = torch.addcmul(n, z, state[0] - n)  # (4) interpolation, (1 - z) * n + z * h_prev
    return (h,), GRUGates(r, z, n)


def gru_state_step(x: Tensor, state: tuple[Tensor], w_ih: Tensor, w_hh: Tensor,
                   b_ih: Tensor | None, b_hh: Tensor | None) -> tuple[tuple[Tensor], GRUGates]:
    """:func:`gru_step` in the registry's signature: ((h_t,), gates)."""
    h, gates = gru_step(x, state[0], w_ih, w_hh, b_ih, b_hh)
    return (h,), gates


class GRUCell(Cell):
    r"""Gated recurrent unit in the torch.nn / cuDNN convention.

    .. math::
        r &= \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{prev} + b_{hr}) && \text{(1) reset gate}\\
        z &= \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{prev} + b_{hz}) && \text{(2) update gate}\\
        n &= \tanh(W_{in} x_t + b_{in} + r \odot (W_{hn} h_{prev} + b_{hn})) && \text{(3)}\\
        h_t &= (1 - z) \odot n + z \odot h_{prev} && \text{(4) interpolation}

    ``weight_ih`` (3H, I) stacks W_ir, W_iz, W_in; ``weight_hh`` (3H, H) stacks W_hr, W_hz,
    W_hn, as in torch.nn.GRUCell.

    Difference from Cho et al. 2014: there the reset gate multiplies the previous state
    *before* the recurrent matrix, n = tanh(W_in x + W_hn (r * h_prev)); here (as in torch.nn
    and cuDNN) it multiplies the product, r * (W_hn h_prev + b_hn), which lets W_hn h_prev be
    computed for all gates in one matrix product. The two are different functions of the
    weights; they model sequences equally well in practice (Chung et al. 2014 use Cho's form).
    """

    num_chunks = 3

    def forward(self, x_t: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h, _ = self.step_with_gates(x_t, state)
        return h, h

    def step_with_gates(self, x_t: Tensor, state: Tensor | None = None) -> tuple[Tensor, GRUGates]:
        """One step that also returns the reset, update and candidate activations."""
        self._check_input(x_t)
        h_prev = self.initial_state(x_t.shape[0]) if state is None else state
        return gru_step(x_t, h_prev, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


GRU_SPEC = CellSpec(name="gru", module=GRUCell, step=gru_state_step, blocks=3,
                    gates=GRUGates._fields, sigmoid_gates=frozenset({"r", "z"}),
                    kernel=nn.GRU, torch_cell=nn.GRUCell, recur=gru_recur,
                    sweep=gru_sweep, sweep_on_cpu=True)
