"""Reused workspace for the cells' hand-written layer loops (:mod:`seqlab.cells.lstm_sweep`,
:mod:`seqlab.cells.gru_sweep`), the size of the rings of steps they keep in cache, and their
input projection into a reused block.

A fresh tensor of a few tens of MB costs a CPU a page fault per 4 KiB page at its first write,
at every training step: the allocator hands blocks that large back to the system when they are
freed, so a layer loop that allocates its (T, B, 4H) buffers anew pays for it each time (about
a tenth of the LSTM sweep's time at the speed benchmark's size). :data:`WORKSPACE` keeps a few
freed blocks (at most ``keep`` blocks and ``limit`` bytes) and hands them out again. A block
comes back only when its holder is done with it: :meth:`Workspace.give` from the code that took
it, or a :class:`Lease` when it is itself freed (a lease kept on an autograd node lives as long
as that graph, through any number of backward passes), so no block is ever held twice.
"""

from __future__ import annotations

import threading

import torch
from torch import Tensor


class Workspace:
    """Free blocks, handed out whole or as a leading slice, newest first."""

    def __init__(self, keep: int = 8, limit: int = 1 << 30) -> None:
        self.keep, self.limit = keep, limit
        self.free: list[Tensor] = []
        self.lock = threading.Lock()

    def take(self, like: Tensor, *shape: int) -> Tensor:
        """An uninitialised tensor of ``shape`` with ``like``'s dtype and device."""
        need = 1
        for size in shape:
            need *= size
        with self.lock:
            for k, block in enumerate(self.free):
                if (block.numel() >= need and block.dtype == like.dtype
                        and block.device == like.device):
                    return self.free.pop(k)[:need].view(shape)
        return like.new_empty(shape)

    def give(self, *tensors: Tensor) -> None:
        """Hand back tensors from :meth:`take`: their storage may be handed out again."""
        with self.lock:
            for tensor in tensors:
                block = (tensor if tensor._base is None else tensor._base).view(-1)
                self.free.insert(0, block)
            total = 0
            for k, block in enumerate(self.free):
                total += block.numel() * block.element_size()
                if k >= self.keep or total > self.limit:
                    del self.free[k:]
                    break

    def lease(self, like: Tensor, *shapes: tuple[int, ...]) -> Lease:
        """Tensors of ``shapes`` that come back to the workspace when the lease is freed."""
        return Lease(self, [self.take(like, *shape) for shape in shapes])

    def clear(self) -> None:
        with self.lock:
            self.free = []


class Lease:
    """Tensors from a :class:`Workspace`, handed back when this object is freed."""

    def __init__(self, workspace: Workspace, tensors: list[Tensor]) -> None:
        self.workspace, self.tensors = workspace, tensors

    def __del__(self) -> None:
        self.workspace.give(*self.tensors)


WORKSPACE = Workspace()
RING_BYTES = 4 << 20
# steps below which a sweep's set-up (rings, a contiguous copy of W_hh^T) costs more than its
# loop saves: a GRU layer of B 32 trained faster by its sweep than by torch.nn.GRU from 8 steps
# at H 64 and from 4 at H 512 (one thread; BENCHMARKS.md)
SHORT = 8


def ring_steps(step_bytes: int, most: int = 16) -> int:
    """How many steps a layer loop keeps in a ring before it makes the backward's factors from
    them in a few whole-ring calls (rather than a few calls per step): as many as fit in
    :data:`RING_BYTES` (cache-sized), at most ``most``, at least one."""
    return max(1, min(most, RING_BYTES // max(1, step_bytes)))


def projected(x: Tensor, w_ih: Tensor, bias: Tensor | None) -> Tensor:
    """Every step's W_ih x_t + bias for x (T, B, I), in one product, into a block of
    :data:`WORKSPACE` (T, B, rows): hand it back with ``WORKSPACE.give`` when done."""
    steps, batch, _ = x.shape
    out = WORKSPACE.take(x, steps, batch, w_ih.shape[0])
    flat, rows = x.reshape(steps * batch, -1), out.view(steps * batch, -1)
    if bias is None:
        torch.mm(flat, w_ih.t(), out=rows)
    else:
        torch.addmm(bias, flat, w_ih.t(), out=rows)
    return out
