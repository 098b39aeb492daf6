"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?", arXiv 2410.01201), registered as
``mingru``: equations (1)-(3) of :class:`MinGRUCell`, one step at a time (:func:`mingru_step`)
or over a whole sequence by the parallel log-space scan (:func:`mingru_scan`).

Shapes: B batch, T time, I input size, H hidden size.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from seqlab.cells.registry import CellSpec
from seqlab.cells.scan import CHUNK, InputGatedCell, g, log_g, recurrence


class MinGRUGates(NamedTuple):
    """Gate activations of one minGRU step, each (B, H)."""

    z: Tensor  # update gate
    h_tilde: Tensor  # candidate, positive


def mingru_step(x: Tensor, state: tuple[Tensor], w_ih: Tensor, w_hh: None, b_ih: Tensor | None,
                b_hh: None) -> tuple[tuple[Tensor], MinGRUGates]:
    """One minGRU step in the registry's signature: ((h_t,), gates). W_hh and b_hh are None."""
    return mingru_recur(nn.functional.linear(x, w_ih, b_ih), None, state)


def mingru_recur(from_input: Tensor, from_hidden: None, state: tuple[Tensor]
                 ) -> tuple[tuple[Tensor], MinGRUGates]:
    """One minGRU step from its projection W_ih x_t + b_ih (B, 2H); there is no W_hh h_prev."""
    to_gate, to_hidden = from_input.chunk(2, dim=-1)
    z = torch.sigmoid(to_gate)  # (1) update gate
    h_tilde = g(to_hidden)  # (2) candidate
    h = (1 - z) * state[0] + z * h_tilde  # (3) interpolation
    return (h,), MinGRUGates(z, h_tilde)


def mingru_scan(x: Tensor, state: tuple[Tensor], w_ih: Tensor, w_hh: None, b_ih: Tensor | None,
                b_hh: None, alive: Tensor | None = None, chunk: int = CHUNK,
                how: str | None = None) -> Tensor:
    """Every h_t (B, T, H) of x (B, T, I) at once: (3) is h_t = a_t h_{t-1} + b_t with
    a_t = 1 - z_t and b_t = z_t h~_t, whose logs come straight from the pre-activations
    (log(1 - sigmoid(k)) = logsigmoid(-k)). See :func:`seqlab.cells.scan.recurrence`."""
    to_gate, to_hidden = nn.functional.linear(x, w_ih, b_ih).chunk(2, dim=-1)  # (B, T, H) each

    def gates(in_logs: bool) -> tuple[Tensor, Tensor]:
        if in_logs:  # log(1 - z_t), log z_t + log h~_t
            return (nn.functional.logsigmoid(-to_gate),
                    nn.functional.logsigmoid(to_gate) + log_g(to_hidden))
        z = torch.sigmoid(to_gate)
        return 1 - z, z * g(to_hidden)
    return recurrence(gates, state[0], alive, chunk, how)


class MinGRUCell(InputGatedCell):
    r"""minGRU: a GRU whose gate and candidate read the input alone (Feng et al. 2024).

    .. math::
        z &= \sigma(W_{iz} x_t + b_{iz}) && \text{(1) update gate}\\
        \tilde h &= g(W_{ih} x_t + b_{ih}) && \text{(2) candidate}\\
        h_t &= (1 - z) \odot h_{prev} + z \odot \tilde h && \text{(3) interpolation}

    with g(v) = v + 1/2 for v >= 0 and sigmoid(v) below: positive, so that the whole sequence
    can also be computed by a parallel scan in log space (the paper's log-space version).
    ``weight_ih`` (2H, I) stacks W_iz, W_ih; there is no ``weight_hh`` nor ``bias_hh``.

    Differences from the GRU (:class:`seqlab.cells.GRUCell`): no reset gate, no h_{prev} inside
    the gates or the candidate, and z weighs the candidate rather than the old state (GRU's
    h_t = (1 - z) n + z h_{prev}). Any nonlinearity between steps must come from the layers
    above: a minGRU layer is linear in its state.
    """

    num_chunks = 2
    step = staticmethod(mingru_step)


MINGRU_SPEC = CellSpec(name="mingru", module=MinGRUCell, step=mingru_step, blocks=2,
                       gates=MinGRUGates._fields, sigmoid_gates=frozenset({"z"}),
                       unbounded_gates=frozenset({"h_tilde"}),
                       input_only=True, scan=mingru_scan, recur=mingru_recur)
