"""The training loop: backpropagation through time with the guards a long run needs.

One step: a chunk from the task, forward with the carried (detached) state, the loss averaged
over the chunk's tokens, backward through the chunk's time steps, the global gradient norm
measured before clipping, clipping by norm or by value, a non-finite guard, an optimiser step
with warmup + cosine learning rate. Evaluation every ``eval_every`` steps keeps the best weights;
``last/`` holds everything needed to resume exactly where the run stopped.

The trainer knows tasks and run directories only through their methods; it prints nothing and
reports through ``on_event(kind, record)`` with kind ``log``, ``eval`` or ``stop``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from seqlab.checkpoint import RunDir
from seqlab.config import TrainConfig
from seqlab.distributed import SINGLE, Replicas, World
from seqlab.recurrent import State, map_state, set_compiled

log = logging.getLogger(__name__)
Event = Callable[[str, dict[str, Any]], None]


class Task(Protocol):
    """What the trainer trains on; it knows nothing else of the data or the model."""

    def train_batch(self, step: int) -> Any:
        """The batch of a step: a pure function of the step, so a resumed run repeats it. Its
        tensors hold one row per example first, so that many processes split it by rows."""

    def loss(self, model: nn.Module, batch: Any, state: Any) -> tuple[Tensor, Any, int]:
        """(mean loss of the batch, state to carry into the next batch (detached) or None,
        items scored)."""

    def evaluate(self, model: nn.Module, world: World = SINGLE) -> dict[str, float]:
        """Validation figures; ``val_loss`` (lower is better) decides the best weights. Every
        process calls it with ``world``: each evaluates its share (``world.block``,
        :func:`seqlab.distributed.own_rows`) and the figures are made from what the processes
        reduce or gather (``world.sum``, ``world.gather``); all then take rank 0's. A task may
        ignore ``world`` and evaluate everything in every process: right, N times the work."""

    def probe(self, batch: int) -> Any:
        """A fixed batch of validation data for diagnostics (a Probe), or None."""


class TrainingDiverged(RuntimeError):
    """Too many consecutive steps with a non-finite loss or gradient."""


def resolve_device(name: str) -> torch.device:
    if name not in ("auto", "cpu", "cuda") and not (
            isinstance(name, str) and re.fullmatch(r"cuda:\d+", name)):
        raise ValueError(f"unknown device {name!r}; choose from auto, cpu, cuda, cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is available here")
    return torch.device(name)


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX), which bf16 autocast
    needs to be faster than float32 rather than emulated."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def check_precision(precision: str, device: torch.device | str) -> None:
    """A one-line ValueError when ``precision`` cannot run on ``device``."""
    kind = torch.device(device).type
    if precision == "fp16" and kind != "cuda":
        raise ValueError("fp16 needs a CUDA GPU; use bf16 on a CPU")
    if precision == "bf16" and kind == "cpu" and not cpu_has_bf16():
        raise ValueError("bf16 needs a CPU with bfloat16 instructions (AVX512-BF16 or AMX), "
                         "which this one lacks; use fp32")
    if precision == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("bf16 is not supported by this GPU; use fp16 or fp32")


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The context of a forward pass and loss at ``precision`` (nothing for fp32)."""
    return contextlib.nullcontext() if precision == "fp32" else \
        torch.autocast(torch.device(device).type, dtype=AUTOCAST_DTYPES[precision])


OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
              "rmsprop": torch.optim.RMSprop}


def make_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {config.optimizer!r}")
    momentum = {"momentum": config.momentum} if config.optimizer in ("sgd", "rmsprop") else {}
    return OPTIMIZERS[config.optimizer](params, lr=config.lr, weight_decay=config.weight_decay,
                                        **momentum)


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warmup to ``lr``, then cosine decay to ``lr * min_lr_ratio`` at ``decay_steps``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    horizon = (config.decay_steps or config.max_steps) - config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, horizon))
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def clip_gradients(params: list[Tensor], config: TrainConfig) -> float:
    """Clip in place; return the global L2 norm measured *before* clipping."""
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads)
    if config.clip_norm > 0:
        torch.nn.utils.clip_grads_with_norm_(params, config.clip_norm, norm)
    elif config.clip_value > 0:
        torch.nn.utils.clip_grad_value_(params, config.clip_value)
    return float(norm)


@dataclass
class Summary:
    steps: int
    best_val_loss: float
    stop_reason: str  # max_steps | time_budget | early_stop | interrupted
    skipped_steps: int
    elapsed_s: float


def fit_keeping_best(model: nn.Module, task: Task, config: TrainConfig, run: RunDir | None,
                     on_event: Event | None, device: torch.device | str,
                     stop: threading.Event | None = None, resume_state: dict | None = None,
                     before_step: Callable[[int], None] | None = None,
                     world: World = SINGLE) -> Summary:
    """Train ``model`` on ``task`` (resuming from ``resume_state`` when given) and leave it
    holding the best weights of the run, in eval mode. Every task family trains through this.
    With many processes (``world``) only rank 0 has a ``run``, and the others keep the last
    weights."""
    model.to(device)
    trainer = Trainer(model, task, config, run, on_event, device, stop, world)
    trainer.before_step = before_step
    if resume_state is not None:
        trainer.load_state_dict(resume_state)
    else:
        world.seed_apart()
    summary = trainer.fit()
    if run is not None:
        run.load_weights(model)  # the best weights, not the last
    model.eval()
    return summary


class Trainer:
    """Train ``model`` on ``task``, writing to ``run`` (or nowhere when run is None)."""

    def __init__(self, model: nn.Module, task: Task, config: TrainConfig, run: RunDir | None = None,
                 on_event: Event | None = None, device: torch.device | str = "cpu",
                 stop: threading.Event | None = None, world: World = SINGLE) -> None:
        self.model, self.task, self.config, self.run = model, task, config, run
        self.device = torch.device(device)
        self.world = world  # with many processes: each trains on its rows of every batch
        self.replicas = Replicas(model, task.loss, world)
        self.on_event = on_event or (lambda kind, record: None)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.params, config)
        check_precision(config.precision, self.device)
        if config.compile:  # the explicit loop's step, compiled on first use
            set_compiled(model)
        # fp16's narrow range needs the loss scaled up before backward (bf16 has fp32's range)
        self.scaler = (torch.amp.GradScaler(self.device.type) if config.precision == "fp16"
                       else None)
        self.step = 0
        self.state: State | None = None  # carried across chunks (TBPTT)
        self.best_val = math.inf
        self.evals_since_best = 0
        self.bad_in_row = 0
        self.skipped = 0
        self.elapsed = 0.0  # wall seconds in fit() over all sessions of this run
        self.window = {"loss": 0.0, "steps": 0, "tokens": 0, "seconds": 0.0}
        self.stop = stop or threading.Event()  # set it to end after the current step
        self._evaluated_step = self._saved_step = -1  # the steps of the last evaluation, save
        # optional: called with the step number before each step (diagnostics recording)
        self.before_step: Callable[[int], None] | None = None

    # main loop -------------------------------------------------------------------------
    def fit(self) -> Summary:
        config, started = self.config, time.perf_counter()
        session_start_elapsed = self.elapsed
        self.model.train()
        reason = "max_steps"
        while self.step < config.max_steps:
            # any process's Ctrl-C stops all; rank 0's clock keeps the time budget for all
            over = bool(config.time_budget) and time.perf_counter() - started >= config.time_budget
            interrupted, over = self.world.max([self.stop.is_set(), over and self.world.main])
            if interrupted:
                reason = "interrupted"
                break
            if over:
                reason = "time_budget"  # wall time of this session, evaluations included
                break
            if self.before_step is not None:
                self.before_step(self.step)
            t0 = time.perf_counter()
            self._train_step()
            self.window["seconds"] = self.window.get("seconds", 0.0) + time.perf_counter() - t0
            self.elapsed = session_start_elapsed + time.perf_counter() - started
            if self.bad_in_row:  # unchanged weights: nothing new to log, evaluate or save
                continue
            if self.step % config.log_every == 0:
                self._log()
            if self.step % config.eval_every == 0 and self._evaluate_and_save():
                reason = "early_stop"
                break
            if self._saved_step < 0:
                self._save_last()  # the first good step: kill -9 before any evaluation resumes
        if self._evaluated_step != self.step:
            self._evaluate_and_save()
        summary = Summary(self.step, self.best_val, reason, self.skipped,
                          time.perf_counter() - started)
        self.on_event("stop", vars(summary))
        return summary

    def _train_step(self) -> None:
        chunk = self.task.train_batch(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.config.precision, self.device):
            loss, state, mean, tokens = self.replicas(chunk, self.state)
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        grad_norm = clip_gradients(self.params, self.config)
        loss = float(mean)  # of the whole batch, over every process's rows
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            if self.scaler is not None and math.isfinite(loss) and self.scaler.get_scale() > 1:
                # an fp16 gradient overflow, not a bad step: retry this step at half the scale
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                return
            self._skip(loss, grad_norm)
            return
        self.bad_in_row = 0
        lr = learning_rate(self.step, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.state = state
        self.step += 1
        self.window["loss"] += loss
        self.window["steps"] += 1
        self.window["tokens"] += tokens
        self.window["grad_norm"] = grad_norm
        self.window["lr"] = lr

    def _skip(self, loss: float, grad_norm: float) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.state = None  # a non-finite state would poison every later chunk
        self.skipped += 1
        self.bad_in_row += 1
        if self.world.main:
            log.warning("step %d skipped: loss %s, gradient norm %s", self.step, loss, grad_norm)
        if self.bad_in_row >= self.config.max_bad_steps:
            kept = "the last good checkpoint is kept"
            state = self.state_dict()  # every process: it gathers
            if self.run is not None and not self.run.has_weights():
                # no evaluation yet: keep the weights as they were before the bad steps (a
                # skipped step changes nothing), so the run folder is whole and resumable
                self.run.save_weights(self.model)
                self.run.save_last(self.model, state)
                kept = "the weights before the non-finite steps are saved"
            raise TrainingDiverged(
                f"training diverged: {self.bad_in_row} consecutive steps with a non-finite loss "
                f"or gradient at step {self.step}; {kept}. Try a lower --lr or --clip-norm")
        # the data position moves on so the same bad chunk is not retried forever
        self.step += 1

    def _log(self) -> None:
        w = self.window
        if not w["steps"]:
            return
        record = {"step": self.step, "loss": w["loss"] / w["steps"], "lr": w["lr"],
                  "grad_norm": w["grad_norm"],
                  "tokens_per_s": w["tokens"] / max(w.get("seconds", 0.0), 1e-9),
                  "elapsed_s": round(self.elapsed, 3), "skipped": self.skipped}
        self.window = {"loss": 0.0, "steps": 0, "tokens": 0, "seconds": 0.0}
        if self.run is not None:
            self.run.append_metrics(record)
        self.on_event("log", record)

    def _evaluate_and_save(self) -> bool:
        """Evaluate, keep the best weights, save last/; True when early stopping triggers."""
        with autocast(self.config.precision, self.device):
            # each process its share; all follow rank 0's figures, so its verdict
            metrics = self.world.from_main(self.task.evaluate(self.model, self.world))
        self.model.train()
        val = metrics["val_loss"]
        improved = val < self.best_val
        if improved:
            self.best_val, self.evals_since_best = val, 0
        else:
            self.evals_since_best += 1
        record = {"step": self.step, **metrics, "best_val_loss": self.best_val,
                  "elapsed_s": round(self.elapsed, 3)}
        if self.run is not None:
            if improved:
                self.run.save_weights(self.model)
            self.run.append_metrics(record)
        self._evaluated_step = self.step  # before the state records whether it was evaluated
        self._save_last()
        self.on_event("eval", record)
        patience = self.config.patience
        return bool(patience) and self.evals_since_best >= patience

    def _save_last(self) -> None:
        """last/: the weights and the resumable state. With many processes every one builds
        the state (it gathers the carried state of all rows); alone, only for a run folder."""
        state = self.state_dict() if self.run is not None or self.world.many else None
        if self.run is not None:
            self.run.save_last(self.model, state)
        self._saved_step = self.step

    # resumable state -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The resumable state; with many processes every one must call it (it gathers each
        process's carried state and random streams, by rank)."""
        carried = list(self.state) if isinstance(self.state, tuple) else self.state
        scaler = {} if self.scaler is None else {"scaler": self.scaler.state_dict()}
        state = {
            **scaler, "step": self.step, "optimizer": self.optimizer.state_dict(),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "carried": carried, "best_val": self.best_val,
            "evals_since_best": self.evals_since_best, "skipped": self.skipped,
            "elapsed": self.elapsed, "window": dict(self.window),
            "evaluated": self._evaluated_step == self.step}  # not after the first step
        if self.world.many:
            own_cuda = (torch.cuda.get_rng_state(self.device) if self.device.type == "cuda"
                        else torch.empty(0, dtype=torch.uint8))
            ranks = self.world.gather({"carried": to_cpu(carried), "rng": state["rng"],
                                       "cuda_rng": own_cuda})
            state.update(carried=None, world_size=self.world.size, ranks=ranks)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        carried = state["carried"]
        saved_world = int(state.get("world_size", 1))
        if saved_world != self.world.size:  # other rows per process: no carried state fits
            if self.world.main:
                log.warning("this run was trained by %d process(es) and continues with %d: each "
                            "step now reads %d x --batch-size rows, and the carried state "
                            "starts afresh", saved_world, self.world.size, self.world.size)
            carried = None
            self.world.seed_apart()
        elif self.world.many:
            own = state["ranks"][self.world.rank]
            carried = own["carried"]
            torch.set_rng_state(own["rng"])
            if own["cuda_rng"].numel():
                torch.cuda.set_rng_state(own["cuda_rng"], self.device)
        carried = tuple(carried) if isinstance(carried, list) else carried
        self.state = None if carried is None else map_state(carried, lambda c: c.to(self.device))
        self.best_val = float(state["best_val"])
        self.evals_since_best = int(state["evals_since_best"])
        self.skipped = int(state["skipped"])
        self.elapsed = float(state["elapsed"])
        self.window = dict(state["window"])
        self._saved_step = self.step
        self._evaluated_step = self.step if state.get("evaluated", True) else -1


def to_cpu(carried: Any) -> Any:
    """A carried state (None, a tensor or a list of them) on the CPU."""
    return [c.cpu() for c in carried] if isinstance(carried, list) else \
        None if carried is None else carried.cpu()
