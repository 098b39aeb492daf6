"""Many processes, one model: torchrun's environment, the process group, and what the trainer
shares between its processes.

``torchrun --nproc-per-node N -m seqlab train ...`` starts N copies of seqlab with RANK,
WORLD_SIZE and LOCAL_RANK in their environment. Every process builds the same task with
batches of N x B rows (B is ``--batch-size``, per process); process r trains on rows
r*B:(r+1)*B with its own carried state, and DistributedDataParallel sums the processes'
gradients weighted by each one's share of the items scored, so that a step is exactly the step
one process would take on the whole batch (padding makes the shares unequal). Rank 0 alone
writes. Validation is split the same way: each process evaluates its block of the validation
rows (:meth:`World.block`, :func:`own_rows`) and the figures are made from sums reduced across
the processes (:meth:`World.sum`) or from the pieces gathered in rank order
(:meth:`World.gather`), so that they are one process's figures; all then take rank 0's, so
they keep the same best weights and stop at the same step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

DEFAULT_TIMEOUT = 600.0  # seconds a process waits for the others: longer than a checkpoint


class ProcessLost(RuntimeError):
    """Another training process died, or did not answer within the timeout."""


@dataclass(frozen=True)
class World:
    """This process among the training processes (rank 0 of 1 when started alone)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # the process's place on its machine: its GPU

    @property
    def main(self) -> bool:
        """Whether this process writes (the run folder, metrics, checkpoints, the console)."""
        return self.rank == 0

    @property
    def many(self) -> bool:
        return self.size > 1

    def device(self, device: torch.device) -> torch.device:
        """``device`` as this process uses it: a GPU without a number is the LOCAL_RANK-th."""
        if device.type != "cuda" or device.index is not None:
            return device
        if self.local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={self.local_rank}, but this machine has "
                             f"{torch.cuda.device_count()} GPU(s): start at most that many "
                             "processes per machine (--nproc-per-node)")
        return torch.device("cuda", self.local_rank)

    # what the processes share (no-ops when alone) -------------------------------------
    def sum(self, values: list[float]) -> list[float]:
        return self._reduce(values, dist.ReduceOp.SUM)

    def max(self, values: list[float]) -> list[float]:
        return self._reduce(values, dist.ReduceOp.MAX)

    def _reduce(self, values: list[float], op) -> list[float]:
        if not self.many:
            return list(values)
        shared = torch.tensor(values, dtype=torch.float64)  # on the CPU: gloo, even beside NCCL
        dist.all_reduce(shared, op=op)
        return shared.tolist()

    def block(self, count: int) -> slice:
        """This process's block of ``count`` rows: r*P:(r+1)*P with P = ceil(count / size),
        cut at ``count`` (empty for a process past the end); the blocks in rank order are
        the rows in order."""
        per = -(-count // self.size)
        return slice(min(self.rank * per, count), min((self.rank + 1) * per, count))

    def from_main(self, value: Any) -> Any:
        """Rank 0's ``value`` on every process."""
        if not self.many:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, device=torch.device("cpu"))
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, by rank, on every process."""
        if not self.many:
            return [value]
        values: list[Any] = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def seed_apart(self) -> None:
        """Give each process its own random stream (dropout masks), drawn from the shared one."""
        if self.many:
            base = int(torch.randint(2**62, ()))
            torch.manual_seed(base + self.rank)


SINGLE = World()


def lost(err: BaseException, world: World) -> ProcessLost | None:
    """``err`` as the one-line error of a lost process (another died or did not answer in
    time), or None when it is something else. gloo says so in a plain RuntimeError."""
    text = str(err).strip()
    if not world.many or not (isinstance(err, dist.DistError) or isinstance(err, RuntimeError)
                              and any(mark in text for mark in ("gloo", "NCCL", "c10d"))):
        return None
    first = text.splitlines()[0] if text else type(err).__name__
    first = re.sub(r"\[[^\]\s]*:\d+\]\s*", "", first)  # gloo's source file and line
    first = re.sub(r"^Got the following error when running the callback: (RuntimeError: )?",
                   "", first)  # DDP's wrapping of it
    first = first.split(". This is")[0].rstrip(".")  # the line, without gloo's advice
    return ProcessLost(f"process {world.rank} of {world.size}: lost contact with the other "
                       f"training processes ({first}); continue the run with --resume")


def from_env(environ: Mapping[str, str]) -> World:
    """The world torchrun describes in RANK, WORLD_SIZE and LOCAL_RANK (alone without them)."""
    numbers = {}
    for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
        text = environ.get(name, str(default))
        if not text.isdigit():
            raise ValueError(f"{name}={text!r} in the environment: expected a whole number "
                             "(torchrun sets it)")
        numbers[name] = int(text)
    world = World(numbers["RANK"], numbers["WORLD_SIZE"], numbers["LOCAL_RANK"])
    if world.size < 1 or world.rank >= world.size:
        raise ValueError(f"RANK={world.rank} with WORLD_SIZE={world.size}: a rank must be below "
                         "the world size")
    return world


@contextlib.contextmanager
def session(world: World, timeout: float = DEFAULT_TIMEOUT) -> Iterator[World]:
    """The process group of ``world`` (from :func:`from_env`; nothing when alone) while the
    block runs: NCCL for GPU tensors, gloo for CPU ones; a process that waits ``timeout``
    seconds for another raises."""
    if not world.many:
        yield world
        return
    backend = "gloo"
    if torch.cuda.is_available():
        backend = "cpu:gloo,cuda:nccl"
        if world.local_rank < torch.cuda.device_count():  # else only a CPU run can go on
            torch.cuda.set_device(world.local_rank)
    dist.init_process_group(backend, rank=world.rank, world_size=world.size,
                            timeout=timedelta(seconds=timeout))
    try:
        yield world
    finally:
        dist.destroy_process_group()


# a batch split by rows -------------------------------------------------------------------
def own_rows(batch: Any, world: World) -> tuple[Any, bool]:
    """(this process's rows of ``batch``, whether it has any of its own).

    The rows are the first dimension of the batch's first tensor; every tensor with that
    many rows first is cut (dataclasses, tuples and lists are walked). Process r takes rows
    r*P:(r+1)*P with P = ceil(rows / size); one left without rows (the short last batch of an
    epoch) re-reads row 0, to be weighted zero.
    """
    if not world.many:
        return batch, True
    if (rows := first_rows(batch)) is None:
        raise TypeError(f"cannot split a batch of {type(batch).__name__} by rows: it holds no "
                        "tensor")
    mine = world.block(rows)
    if mine.start == mine.stop:
        return cut(batch, rows, slice(0, 1)), False
    return cut(batch, rows, mine), True


def first_rows(batch: Any) -> int | None:
    if isinstance(batch, Tensor):
        return batch.shape[0] if batch.dim() else None
    return next((n for n in map(first_rows, parts(batch)) if n is not None), None)


def parts(batch: Any) -> list[Any]:
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return [getattr(batch, f.name) for f in dataclasses.fields(batch)]
    if isinstance(batch, tuple | list):
        return list(batch)
    return []


def cut(value: Any, rows: int, keep: slice) -> Any:
    if isinstance(value, Tensor):
        return value[keep] if value.dim() and value.shape[0] == rows else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: cut(getattr(value, f.name), rows, keep)
                                             for f in dataclasses.fields(value) if f.init})
    if isinstance(value, tuple | list):
        return type(value)(cut(v, rows, keep) for v in value)
    return value


# the model as the trainer steps it ------------------------------------------------------
Loss = Callable[[nn.Module, Any, Any], tuple[Tensor, Any, int]]


class Replicas:
    """One training step's loss: alone, the task's loss itself; with many processes, the loss
    of this process's rows under DistributedDataParallel, whose gradients are summed weighted by
    each process's share of the items (DDP's own average is right only for equal shares)."""

    def __init__(self, model: nn.Module, loss: Loss, world: World) -> None:
        self.model, self.loss, self.world = model, loss, world
        self.share = Share()
        self.net: nn.Module | None = None
        if world.many:
            device = next(model.parameters()).device
            self.net = nn.parallel.DistributedDataParallel(
                Step(model, loss), device_ids=[device] if device.type == "cuda" else None)
            self.net.register_comm_hook(self.share, weighted_sum)

    def __call__(self, batch: Any, state: Any) -> tuple[Tensor, Any, Tensor | float, int]:
        """(loss to differentiate, state to carry, mean loss over the whole batch, items of
        the whole batch). Alone, the mean is the loss detached: reading it waits for the
        device, which the caller does only after the backward pass is queued."""
        if self.net is None:
            loss, state, items = self.loss(self.model, batch, state)
            return loss, state, loss.detach(), items
        part, own = own_rows(batch, self.world)
        loss, state, items = self.net(part, state)
        items = items if own else 0
        local = loss.item() * items if items else 0.0  # 0/0 items: a nan that counts nothing
        total, all_items = self.world.sum([local, items])
        self.share.weight = items / all_items if all_items else 0.0
        return loss, state, total / all_items if all_items else float("nan"), int(all_items)


class Step(nn.Module):
    """The task's loss as a module, so that DistributedDataParallel sees the whole forward
    pass however the task calls the model."""

    def __init__(self, model: nn.Module, loss: Loss) -> None:
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, batch: Any, state: Any) -> tuple[Tensor, Any, int]:
        return self.loss(self.model, batch, state)


@dataclass
class Share:
    weight: float = 1.0  # this process's items / the items of all processes, this step


def weighted_sum(share: Share, bucket):  # unannotated: DDP rejects the string annotations
    """DDP communication hook (bucket: a dist.GradBucket; returns a Future of the reduced
    buffer): the sum over processes of weight x gradient."""
    grads = bucket.buffer()
    if share.weight:
        grads.mul_(share.weight)
    else:
        grads.zero_()  # a process that scored nothing may hold nan (0/0): it adds nothing
    return dist.all_reduce(grads, async_op=True).get_future().then(lambda f: f.value()[0])
