"""One time step of a recurrent network, written from its equations.

Each cell has the parameter names and packed layout of its torch.nn twin (``weight_ih``,
``weight_hh``, ``bias_ih``, ``bias_hh``), so a state dict moves between the two unchanged.
The step functions (:func:`rnn_step`, :func:`lstm_step`, :func:`gru_step`) take the weights as
arguments: the cells call them, and so does the explicit path of
:class:`seqlab.recurrent.Recurrent`, so there is one implementation of each equation.

Shapes: B batch, I input size, H hidden size.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

State = Tensor | tuple[Tensor, Tensor]


class LSTMGates(NamedTuple):
    """Gate activations of one LSTM step, each (B, H)."""

    i: Tensor  # input ("store") gate
    f: Tensor  # forget gate
    g: Tensor  # candidate ("update")
    o: Tensor  # output gate


class GRUGates(NamedTuple):
    """Gate activations of one GRU step, each (B, H)."""

    r: Tensor  # reset gate
    z: Tensor  # update gate
    n: Tensor  # candidate


def rnn_step(x: Tensor, h_prev: Tensor, w_ih: Tensor, w_hh: Tensor,
             b_ih: Tensor | None, b_hh: Tensor | None, nonlinearity: str = "tanh") -> Tensor:
    """h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh); returns h_t (B, H)."""
    pre = nn.functional.linear(x, w_ih, b_ih) + nn.functional.linear(h_prev, w_hh, b_hh)
    return torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre)


def lstm_step(x: Tensor, h_prev: Tensor, c_prev: Tensor, w_ih: Tensor, w_hh: Tensor,
              b_ih: Tensor | None, b_hh: Tensor | None) -> tuple[Tensor, Tensor, LSTMGates]:
    """One LSTM step; returns (h_t, c_t, gates). Equations in :class:`LSTMCell`."""
    pre = nn.functional.linear(x, w_ih, b_ih) + nn.functional.linear(h_prev, w_hh, b_hh)
    pre_i, pre_f, pre_g, pre_o = pre.chunk(4, dim=-1)
    i = torch.sigmoid(pre_i)  # (1) input gate
    f = torch.sigmoid(pre_f)  # (2) forget gate
    g = torch.tanh(pre_g)  # (3) candidate
    o = torch.sigmoid(pre_o)  # (4) output gate
    c = f * c_prev + i * g  # (5) cell update
    h = o * torch.tanh(c)  # (6) output
    return h, c, LSTMGates(i, f, g, o)


def gru_step(x: Tensor, h_prev: Tensor, w_ih: Tensor, w_hh: Tensor,
             b_ih: Tensor | None, b_hh: Tensor | None) -> tuple[Tensor, GRUGates]:
    """One GRU step (torch.nn / cuDNN convention); returns (h_t, gates). See :class:`GRUCell`."""
    from_input = nn.functional.linear(x, w_ih, b_ih)
    from_hidden = nn.functional.linear(h_prev, w_hh, b_hh)
    in_r, in_z, in_n = from_input.chunk(3, dim=-1)
    hid_r, hid_z, hid_n = from_hidden.chunk(3, dim=-1)
    r = torch.sigmoid(in_r + hid_r)  # (1) reset gate
    z = torch.sigmoid(in_z + hid_z)  # (2) update gate
    n = torch.tanh(in_n + r * hid_n)  # (3) candidate, reset applied after W_hn
    h = (1 - z) * n + z * h_prev  # (4) interpolation
    return h, GRUGates(r, z, n)


class _Cell(nn.Module):
    """Shared parameter set-up: gate blocks stacked along the first axis as in torch.nn."""

    num_chunks = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive int, "
                                 f"got {value!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        rows = self.num_chunks * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(rows)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(rows)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch.nn's default: every parameter from U(-1/sqrt(H), 1/sqrt(H))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> State:
        device = device or self.weight_ih.device
        dtype = dtype or self.weight_ih.dtype
        return torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__}: expected input of shape (B, {self.input_size}), "
                f"got {tuple(x.shape)}")

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


class RNNCell(_Cell):
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


class LSTMCell(_Cell):
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


class GRUCell(_Cell):
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


@torch.no_grad()
def init_identity(weight_hh: Tensor, bias_ih: Tensor | None, bias_hh: Tensor | None) -> None:
    """IRNN initialisation: W_hh = I, zero biases (Le, Jaitly and Hinton 2015)."""
    weight_hh.copy_(torch.eye(*weight_hh.shape, dtype=weight_hh.dtype))
    for b in (bias_ih, bias_hh):
        if b is not None:
            b.zero_()


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
