"""minLSTM (Feng et al. 2024, "Were RNNs All We Needed?", arXiv 2410.01201), registered as
``minlstm``: equations (1)-(5) of :class:`MinLSTMCell`, one step at a time
(:func:`minlstm_step`) or over a whole sequence by the parallel log-space scan
(:func:`minlstm_scan`).

Shapes: B batch, T time, I input size, H hidden size.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from seqlab.cells.registry import CellSpec
from seqlab.cells.scan import CHUNK, InputGatedCell, g, log_g, recurrence


class MinLSTMGates(NamedTuple):
    """Gate activations of one minLSTM step, each (B, H): the normalised gates, the weights
    that h_{t-1} and the candidate actually get (f + i = 1)."""

    f: Tensor  # forget gate f' = f / (f + i)
    i: Tensor  # input gate i' = i / (f + i)
    h_tilde: Tensor  # candidate, positive


def minlstm_step(x: Tensor, state: tuple[Tensor], w_ih: Tensor, w_hh: None,
                 b_ih: Tensor | None, b_hh: None) -> tuple[tuple[Tensor], MinLSTMGates]:
    """One minLSTM step in the registry's signature: ((h_t,), gates). W_hh and b_hh are None."""
    return minlstm_recur(nn.functional.linear(x, w_ih, b_ih), None, state)


def minlstm_recur(from_input: Tensor, from_hidden: None, state: tuple[Tensor]
                  ) -> tuple[tuple[Tensor], MinLSTMGates]:
    """One minLSTM step from its projection W_ih x_t + b_ih (B, 3H); there is no W_hh h_prev."""
    to_forget, to_input, to_hidden = from_input.chunk(3, dim=-1)
    f = torch.sigmoid(to_forget)  # (1) forget gate
    i = torch.sigmoid(to_input)  # (2) input gate
    f, i = f / (f + i), i / (f + i)  # (3) normalised, f' + i' = 1
    h_tilde = g(to_hidden)  # (4) candidate
    h = f * state[0] + i * h_tilde  # (5) update
    return (h,), MinLSTMGates(f, i, h_tilde)


def minlstm_scan(x: Tensor, state: tuple[Tensor], w_ih: Tensor, w_hh: None,
                 b_ih: Tensor | None, b_hh: None, alive: Tensor | None = None,
                 chunk: int = CHUNK, how: str | None = None) -> Tensor:
    """Every h_t (B, T, H) of x (B, T, I) at once: (5) is h_t = a_t h_{t-1} + b_t with
    a_t = f'_t and b_t = i'_t h~_t. With d = log i - log f = softplus(-k_f) - softplus(-k_i),
    log f' = -log(1 + i / f) = -softplus(d) and log i' = -softplus(-d), computed from the
    pre-activations k without forming the gates. See :func:`seqlab.cells.scan.recurrence`."""
    to_forget, to_input, to_hidden = nn.functional.linear(x, w_ih, b_ih).chunk(3, dim=-1)

    def gates(in_logs: bool) -> tuple[Tensor, Tensor]:
        if in_logs:
            d = nn.functional.softplus(-to_forget) - nn.functional.softplus(-to_input)
            # log f'_t, log i'_t + log h~_t
            return -nn.functional.softplus(d), -nn.functional.softplus(-d) + log_g(to_hidden)
        f, i = torch.sigmoid(to_forget), torch.sigmoid(to_input)
        total = f + i  # in (0, 2): f' and i' as (3) forms them
        return f / total, i / total * g(to_hidden)
    return recurrence(gates, state[0], alive, chunk, how)


class MinLSTMCell(InputGatedCell):
    r"""minLSTM: an LSTM whose gates read the input alone, with forget and input gates
    normalised to sum to one and no cell state apart from h (Feng et al. 2024).

    .. math::
        f &= \sigma(W_{if} x_t + b_{if}) && \text{(1) forget gate}\\
        i &= \sigma(W_{ii} x_t + b_{ii}) && \text{(2) input gate}\\
        f' &= f / (f + i), \quad i' = i / (f + i) && \text{(3) normalised}\\
        \tilde h &= g(W_{ih} x_t + b_{ih}) && \text{(4) candidate}\\
        h_t &= f' \odot h_{prev} + i' \odot \tilde h && \text{(5) update}

    with g(v) = v + 1/2 for v >= 0 and sigmoid(v) below, as in :class:`MinGRUCell`.
    ``weight_ih`` (3H, I) stacks W_if, W_ii, W_ih; there is no ``weight_hh`` nor ``bias_hh``.

    Differences from the LSTM (:class:`seqlab.cells.LSTMCell`): no output gate, no tanh and
    no h_{prev} anywhere in the gates; the state is h alone (c_t is h_t). The normalisation (3)
    keeps h_t on the scale of the candidates whatever the sequence length.
    """

    num_chunks = 3
    step = staticmethod(minlstm_step)


MINLSTM_SPEC = CellSpec(name="minlstm", module=MinLSTMCell, step=minlstm_step, blocks=3,
                        gates=MinLSTMGates._fields, sigmoid_gates=frozenset({"f", "i"}),
                        unbounded_gates=frozenset({"h_tilde"}),
                        input_only=True, scan=minlstm_scan, recur=minlstm_recur)
