r"""The parallel scan of minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?",
arXiv 2410.01201), their candidate activation g and what their one-step modules share.

When a cell's gates read x_t alone, h_t = a_t h_{t-1} + b_t with a_t in (0, 1) and b_t > 0 known
for every t before the recurrence runs. With A_t = a_1 a_2 ... a_t,

.. math::
    h_t = A_t h_0 + \sum_{k \le t} (A_t / A_k) b_k
        = A_t h_0 + \exp(\log A_t + \mathrm{logcumsumexp}_{k \le t}(\log b_k - \log A_k))

where log A_t is a cumulative sum of log a_t: two scans over time instead of T dependent steps,
in log space so that products of many a_t < 1 do not underflow. h_0 enters as the linear term
A_t h_0, which is the paper's "log h_0 as the first element of the scan" for h_0 > 0 and is
right for any sign of h_0 (a carried state, a user's initial state). Shapes: B batch, T time,
H hidden.

The scan pays where many cores run its passes over the whole (B, T, H) sequence at once (a
GPU). One CPU core does them element after element, and there the recurrence itself is
cheaper: :func:`linear_sweep` runs h_t = a_t h_{t-1} + b_t in linear space, one fused
multiply-add over (B, H) a step forward and one a step backward (a hand-written backward, no
autograd graph per step), about 3x faster than the scan on one thread and as exact as the
one-step modules. :func:`recurrence` picks: the sweep on a CPU, the scan elsewhere; each cell
gives it a_t and b_t formed its own way, or their logs for the scan.

ONNX has no logcumsumexp, and a traced Python loop over time would be frozen to the traced
length; so while ``torch.onnx.export`` traces, the recurrence runs as a TorchScript loop over
h_t = a_t h_{t-1} + b_t in linear space (the one-step modules' arithmetic), which the exporter
writes as an ONNX ``Loop`` over a dynamic number of steps.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from seqlab.cells.base import Cell


def g(x: Tensor) -> Tensor:
    """The candidate activation, positive so that log b_t exists: x + 1/2 for x >= 0, else
    sigmoid(x) (continuous at 0, where both are 1/2)."""
    return torch.where(x >= 0, x.clamp_min(0) + 0.5, torch.sigmoid(x))


def log_g(x: Tensor) -> Tensor:
    """log g(x), without forming g: log(x + 1/2) for x >= 0, else log sigmoid(x) = -softplus(-x).
    Both branches stay finite everywhere (clamp), so neither leaks NaN into the gradient."""
    return torch.where(x >= 0, torch.log(x.clamp_min(0) + 0.5), nn.functional.logsigmoid(x))


# steps per scan: |log A_t| grows like t, and a float32 logcumsumexp keeps its terms to about
# |log A_t| * 6e-8, so the scan restarts from the state it reached every CHUNK steps
CHUNK = 512


HOW = ("sweep", "scan")  # recurrence(how=...): None picks by device


Gates = Callable[[bool], tuple[Tensor, Tensor]]  # in_logs -> (a, b) or (log a, log b)


def recurrence(gates: Gates, h0: Tensor, alive: Tensor | None = None, chunk: int = CHUNK,
               how: str | None = None) -> Tensor:
    """h_t = a_t h_{t-1} + b_t for t = 1..T with h_0 (B, H): h_1..h_T (B, T, H). ``gates(in_logs)``
    gives a_t, b_t (B, T, H), or their logs for the scan (each cell forms them its own way).
    Where ``alive`` (B, T, 1) is False (past a sequence's end), a_t = 1 and b_t = 0, so the
    state is carried unchanged to step T. ``how``: "sweep" (:func:`linear_sweep`), "scan"
    (:func:`log_scan`, ``chunk`` steps a scan) or None: the sweep on a CPU, the scan on other
    devices; a scripted loop while ONNX export traces."""
    if how not in (None, *HOW):
        raise ValueError(f"how must be one of {', '.join(HOW)} or None, got {how!r}")
    exporting = torch.onnx.is_in_onnx_export()
    if how == "scan" or (how is None and h0.device.type != "cpu" and not exporting):
        return log_scan(*gates(True), h0, alive, chunk)
    a, b = gates(False)
    if alive is not None:
        a, b = a.masked_fill(~alive, 1.0), b.masked_fill(~alive, 0.0)
    if exporting:
        return scripted_recurrence()(a, b, h0)
    return linear_sweep(a, b, h0)


def log_scan(log_a: Tensor, log_b: Tensor, h0: Tensor, alive: Tensor | None = None,
             chunk: int = CHUNK) -> Tensor:
    """h_t = a_t h_{t-1} + b_t for t = 1..T from log a_t, log b_t (B, T, H) and h_0 (B, H);
    returns h_1..h_T (B, T, H), one scan per ``chunk`` steps, each from the last one's end.
    Where ``alive`` (B, T, 1) is False (past a sequence's end), a_t = 1 and b_t = 0, so the
    state is carried unchanged to step T."""
    if alive is not None:
        log_a = log_a.masked_fill(~alive, 0.0)
        log_b = log_b.masked_fill(~alive, float("-inf"))
    parts = []
    for start in range(0, log_a.shape[1], chunk):
        parts.append(_scan(log_a[:, start:start + chunk], log_b[:, start:start + chunk], h0))
        h0 = parts[-1][:, -1]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def _scan(log_a: Tensor, log_b: Tensor, h0: Tensor) -> Tensor:
    """One scan of the module docstring's formula over all the steps given."""
    log_carry = torch.cumsum(log_a, dim=1)  # log A_t (B, T, H)
    summed = torch.logcumsumexp(log_b - log_carry, dim=1)  # (B, T, H)
    return log_carry.exp() * h0.unsqueeze(1) + torch.exp(log_carry + summed)


def linear_sweep(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """h_t = a_t h_{t-1} + b_t for t = 1..T from a, b (B, T, H) and h_0 (B, H), one step at a
    time in at least float32: h_1..h_T (B, T, H). Differentiable in a, b and h_0 (once)."""
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype),
                                torch.promote_types(h0.dtype, torch.float32))
    return LinearSweep.apply(a.to(dtype), b.to(dtype), h0.to(dtype))


class LinearSweep(torch.autograd.Function):
    """:func:`linear_sweep`'s layer: time-major buffers, one ``addcmul`` a step each way.

    Backward: with g_t the gradient reaching h_t from outside, the gradient of h_t in all is
    d_t = g_t + a_{t+1} d_{t+1} (d_T = g_T), and then dL/db_t = d_t, dL/da_t = d_t h_{t-1},
    dL/dh_0 = a_1 d_1, the last three over all t at once."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
        a = a.transpose(0, 1).contiguous()  # (T, B, H): a step's rows are contiguous
        h = b.clone(memory_format=torch.contiguous_format)  # (B, T, H): b_t, then h_t
        previous = h0
        for t in range(h.shape[1]):
            previous = torch.addcmul(h[:, t], a[t], previous, out=h[:, t])
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        a, h, h0 = ctx.saved_tensors
        d = grad.transpose(0, 1).contiguous()  # (T, B, H): g_t, overwritten by d_t
        for t in range(d.shape[0] - 2, -1, -1):
            torch.addcmul(d[t], a[t + 1], d[t + 1], out=d[t])
        before = torch.cat([h0[None], h.transpose(0, 1)[:-1]])  # h_{t-1}
        return (d * before).transpose(0, 1), d.transpose(0, 1), a[0] * d[0]


def linear_recurrence(a: Tensor, b: Tensor, h: Tensor) -> Tensor:
    """h_t = a_t h_{t-1} + b_t for t = 1..T, one step at a time, from a, b (B, T, H) and h_0
    (B, H): h_1..h_T (B, T, H). Scripted (:func:`scripted_recurrence`) for export."""
    steps = []
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]
        steps.append(h)
    return torch.stack(steps, dim=1)


@functools.cache
def scripted_recurrence():
    """:func:`linear_recurrence` compiled by TorchScript once, on the first export that needs
    it: inside a trace its loop stays a loop (ONNX ``Loop``), with as many steps as the input.
    torch marks TorchScript deprecated, as it does the exporter that needs it: silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(linear_recurrence)


class InputGatedCell(Cell):
    """A one-step module of a cell whose gates read x_t alone: ``weight_ih`` (blocks H, I) and
    ``bias_ih`` (blocks H,) as in torch.nn, and no ``weight_hh`` or ``bias_hh`` (None).
    Subclasses set ``num_chunks`` and ``step`` (the registry's step function)."""

    step = None  # step(x, (h_prev,), w_ih, None, b_ih, None) -> ((h_t,), gates)

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__(input_size, hidden_size, bias)
        self.weight_hh = None  # no recurrent weights: these names leave the state dict
        self.bias_hh = None

    def forward(self, x_t: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h, _ = self.step_with_gates(x_t, state)
        return h, h

    def step_with_gates(self, x_t: Tensor, state: Tensor | None = None) -> tuple[Tensor, tuple]:
        """One step that also returns the gate activations."""
        self._check_input(x_t)
        h_prev = self.initial_state(x_t.shape[0]) if state is None else state
        (h,), gates = type(self).step(x_t, (h_prev,), self.weight_ih, None, self.bias_ih, None)
        return h, gates
