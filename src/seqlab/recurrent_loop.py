"""What makes the explicit loop of :class:`seqlab.recurrent.Recurrent` fast: W_hh's gradient
made once after the backward loop (:class:`RecurrentWeightGrad`), and torch.compile of the
per-step function (:func:`compiled`, :func:`check_compile`).

Shapes: B batch, T time, H hidden.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable

import torch
from torch import Tensor

log = logging.getLogger(__name__)


class RecurrentWeightGrad(torch.autograd.Function):
    """b_hh (or zeros) broadcast to (T, B, blocks H), whose gradient also becomes W_hh's.

    The explicit loop multiplies h_{t-1} by a detached W_hh and adds these biases: the backward
    loop then makes only dL/dh_{t-1} per step, and W_hh's gradient, sum_t dL/dp_t^T h_{t-1}
    (p_t = W_hh h_{t-1} + b_hh), is made here once it is over, in one matrix product with
    K = B T rather than T thin ones with K = B accumulated one by one, which a CPU runs at a
    fraction of the rate of one large product. ``h_prev`` is the list the loop fills with
    h_{t-1}.
    """

    @staticmethod
    def forward(ctx, w_hh: Tensor, b_hh: Tensor | None, shape: tuple[int, int],
                h_prev: list[Tensor]) -> Tensor:
        ctx.h_prev, ctx.has_bias = h_prev, b_hh is not None
        rows = w_hh.shape[0]
        if b_hh is None:
            return w_hh.new_zeros(*shape, rows)
        return b_hh.expand(*shape, rows).clone()

    @staticmethod
    def backward(ctx, grad: Tensor):  # grad (T, B, blocks H)
        grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            h_prev = torch.stack(ctx.h_prev).to(grad.dtype)  # (T, B, H)
            grad_w = grad.flatten(0, 1).t() @ h_prev.flatten(0, 1)  # (blocks H, H)
        if ctx.has_bias and ctx.needs_input_grad[1]:
            grad_b = grad.sum((0, 1))
        return grad_w, grad_b, None, None


_COMPILED: dict[Callable, Callable] = {}


def compiled(fn: Callable, cell: str) -> Callable:
    """``fn`` through torch.compile, once per function; its first call (the compilation of the
    forward pass) is timed and logged."""
    if fn not in _COMPILED:
        _COMPILED[fn] = _FirstCallTimed(torch.compile(fn, dynamic=False), cell)
    return _COMPILED[fn]


class _FirstCallTimed:
    def __init__(self, fn: Callable, cell: str) -> None:
        self.fn, self.cell, self.timed = fn, cell, False

    def __call__(self, *args):
        if self.timed:
            return self.fn(*args)
        start = time.perf_counter()
        out = self.fn(*args)
        self.timed = True
        log.info("torch.compile: the %s step compiled in %.1f s (its backward compiles at the "
                 "first backward pass)", self.cell, time.perf_counter() - start)
        return out


def check_compile(device: torch.device | str) -> None:
    """A one-line ValueError when torch.compile cannot run on ``device`` (on a CPU it builds
    C++ kernels, so it needs a C++ compiler)."""
    if not torch._dynamo.is_dynamo_supported():
        raise ValueError("--compile: torch.compile does not support this Python version; "
                         "train without --compile")
    if torch.device(device).type == "cpu" and cpp_compiler() is None:
        raise ValueError("--compile needs a C++ compiler on a CPU (torch.compile builds C++ "
                         "kernels) and none was found (g++, c++ or $CXX); install one or "
                         "train without --compile")


def cpp_compiler() -> str | None:
    """The C++ compiler torch.compile would use on a CPU, or None."""
    names = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++", "clang++"]
    return next((found for name in names if (found := shutil.which(name))), None)
