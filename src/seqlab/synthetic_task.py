"""The synthetic task family: ``seqlab train adding --length 200 --model lstm``.

The family contract of :mod:`seqlab.api` (claims, train, resume, evaluate, load, summarize,
info_lines). A run directory holds config.json with ``"task": "synthetic"``, model.safetensors,
last/, metrics.jsonl and, with ``record_every``, gradients.jsonl (:mod:`seqlab.recording`): the
norm of dL/dh_t for every t on the task's first 16 validation sequences, at initialisation and
every N steps.

Batches are pure functions of (seed, step), so a resumed run sees the batches a run that never
stopped would have seen; validation is a fixed set drawn once from the seed, and ``evaluate``
scores a third, held-out set drawn the same way.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from seqlab import __version__, recording
from seqlab.api import TrainResult
from seqlab.checkpoint import LoadedRun, RunDir
from seqlab.config import ModelConfig, SyntheticConfig, TrainConfig, split_keys, to_dict
from seqlab.data.synthetic import IGNORE, TASKS, SyntheticBatch, TaskData, get_task, parse_length
from seqlab.models.sequence import SequenceModel
from seqlab.tasks import token_nll
from seqlab.training import Event, fit_keeping_best, resolve_device

log = logging.getLogger(__name__)
TRAIN, VALIDATION, TEST = 0, 1, 2  # the streams of TaskData.batch
# training keys that only a text source uses; a synthetic task warns when they are given
TEXT_ONLY = {"tokenizer", "bpe_vocab_size", "val_fraction", "batching", "seq_len",
             "eval_batches"}


def claims(source: str, keys: dict[str, Any]) -> bool:
    return source in TASKS and keys.get("task") in (None, "synthetic") and not Path(source).exists()


# scoring ----------------------------------------------------------------------------------
def batch_loss(model: nn.Module, data: TaskData, batch: SyntheticBatch, device,
               accuracy: bool = True) -> tuple[Tensor, int, int, int]:
    """(summed loss, items scored, correct, items counted for accuracy) of one batch; without
    ``accuracy`` (training steps) the last two are 0 and nothing waits on the device."""
    spec = data.spec
    lengths = batch.lengths
    full = bool((lengths == lengths.max()).all())
    outputs, _ = model(batch.inputs.to(device), None, None if full else lengths)  # (B, T, O)
    targets = batch.targets.to(device)
    if spec.scored == "last":
        rows = torch.arange(len(lengths), device=device)
        last = outputs[rows, lengths.to(device) - 1]  # (B, O)
        if spec.loss == "mse":
            return ((last[:, 0] - targets) ** 2).sum(), len(lengths), 0, 0
        total = nn.functional.cross_entropy(last.float(), targets, reduction="sum")
        if not accuracy:
            return total, len(lengths), 0, 0
        return total, len(lengths), int((last.argmax(-1) == targets).sum()), len(lengths)
    total, count = token_nll(outputs, targets)
    if not accuracy:
        return total, count, 0, 0
    counted = targets != IGNORE
    if spec.blank_target is not None:
        counted = counted & (targets != spec.blank_target)
    correct = int(((outputs.argmax(-1) == targets) & counted).sum())
    return total, count, correct, int(counted.sum())


@torch.no_grad()
def score(model: nn.Module, data: TaskData, stream: int, sequences: int, batch_size: int,
          device) -> dict[str, float]:
    """Mean loss, the memoryless baseline and accuracy on ``sequences`` sequences of a stream."""
    was_training = model.training
    model.eval()
    total, count, correct, counted, lengths = 0.0, 0, 0, 0, []
    for index in range(-(-sequences // batch_size)):
        batch = data.batch(min(batch_size, sequences - index * batch_size), stream, index)
        t, n, c, k = batch_loss(model, data, batch, device)
        total, count, correct, counted = total + float(t), count + n, correct + c, counted + k
        lengths.append(batch.lengths)
    model.train(was_training)
    loss = total / max(count, 1)
    baseline = data.spec.baseline(torch.cat(lengths) - data.spec.extra_steps, data.delay)
    result = {"loss": loss, "baseline": baseline, "ratio": loss / baseline}
    if counted:
        result["accuracy"] = correct / counted
    return result


class SyntheticTask:
    """What the trainer trains on: fresh batches by step, a fixed validation set."""

    def __init__(self, data: TaskData, train: TrainConfig, synthetic: SyntheticConfig,
                 device) -> None:
        self.data, self.train, self.synthetic, self.device = data, train, synthetic, device

    def train_batch(self, step: int) -> SyntheticBatch:
        return self.data.batch(self.train.batch_size, TRAIN, step)

    def loss(self, model: nn.Module, batch: SyntheticBatch, state) -> tuple[Tensor, None, int]:
        total, count, _, _ = batch_loss(model, self.data, batch, self.device, accuracy=False)
        return total / count, None, count

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        result = score(model, self.data, VALIDATION, self.synthetic.val_sequences,
                       self.train.batch_size, self.device)
        return {f"val_{k}": v for k, v in result.items()}

    def probe(self) -> SyntheticBatch:
        """A fixed batch of validation sequences, for diagnostics through training."""
        return self.data.batch(recording.PROBE, VALIDATION, 0)


# family contract ---------------------------------------------------------------------------
def resolve(source: str, keys: dict[str, Any]) -> tuple[ModelConfig, TrainConfig,
                                                         SyntheticConfig, TaskData]:
    spec = get_task(source)
    keys = dict(keys)
    if isinstance(keys.get("length"), int) and not isinstance(keys["length"], bool):
        keys["length"] = str(keys["length"])  # the Python API may say length=200
    length_text = keys.pop("length", "")
    configs = split_keys(keys)
    if unused := sorted(set(keys) & TEXT_ONLY):
        log.warning("synthetic task %s: ignoring %s (they apply to text)", spec.name,
                    ", ".join(unused))
    low, high = parse_length(length_text)
    train = configs[TrainConfig]
    data = TaskData(spec, low, high, configs[SyntheticConfig].delay, train.seed)
    return configs[ModelConfig], train, configs[SyntheticConfig], data


def build(model_config: ModelConfig, data: TaskData, init_radius: float = 0.0
          ) -> SequenceModel:
    """The task's model; ``init_radius`` > 0 rescales each W_hh (rnn, irnn) to that spectral
    radius, the knob that makes an Elman network's gradients explode or vanish."""
    spec = data.spec
    model = SequenceModel(model_config, spec.inputs, spec.input_size, spec.output_size)
    if init_radius > 0:
        recurrent = model.recurrent
        if recurrent is None or recurrent.cell not in ("rnn", "irnn"):
            raise ValueError(f"init_radius applies to rnn and irnn, not {model_config.model}")
        with torch.no_grad():
            for layer in range(recurrent.num_layers):
                w_hh = recurrent.layer_weights(layer)[1]
                w_hh.mul_(init_radius / torch.linalg.eigvals(w_hh.double()).abs().max().item())
    return model


def initial_model(model_config: ModelConfig, train_config: TrainConfig,
                  synthetic: SyntheticConfig, data: TaskData) -> SequenceModel:
    """The model as training starts it: built from the run's seed."""
    torch.manual_seed(train_config.seed)
    return build(model_config, data, synthetic.init_radius)


def train(source: str, out: str | Path | None = None, on_event: Event | None = None,
          stop: threading.Event | None = None, **keys: Any) -> TrainResult:
    model_config, train_config, synthetic, data = resolve(source, keys)
    model = initial_model(model_config, train_config, synthetic, data)
    run = RunDir.create(out) if out is not None else None
    if run is not None:
        run.write_config(run_config(model_config, train_config, synthetic, data))
    return fit(model, data, train_config, synthetic, run, on_event, None, stop)


def run_config(model: ModelConfig, train: TrainConfig, synthetic: SyntheticConfig,
               data: TaskData) -> dict[str, Any]:
    length = str(data.max_length) if data.min_length == data.max_length \
        else f"{data.min_length}-{data.max_length}"
    return {"seqlab_version": __version__, "task": "synthetic", "model": to_dict(model),
            "train": to_dict(train), "synthetic": to_dict(synthetic),
            "data": {"source": data.spec.name, "length": length, "summary": data.spec.summary}}


def fit(model: SequenceModel, data: TaskData, train_config: TrainConfig,
        synthetic: SyntheticConfig, run: RunDir | None, on_event: Event | None,
        resume_state: dict | None, stop: threading.Event | None) -> TrainResult:
    device = resolve_device(train_config.device)
    task = SyntheticTask(data, train_config, synthetic, device)
    record = (recording.recorder(model.to(device), probe_of(data, task.probe(), device),
                                 train_config.record_every, run)
              if train_config.record_every and run is not None else None)
    summary = fit_keeping_best(model, task, train_config, run, on_event, device, stop,
                               resume_state, before_step=record)
    return TrainResult(model, data, summary, run)


def probe_of(data: TaskData, batch: SyntheticBatch, device="cpu"):
    """The diagnostics' view of a batch: inputs, targets and how they are scored."""
    from seqlab.diagnostics import Probe

    lengths = batch.lengths
    full = bool((lengths == lengths.max()).all())
    return Probe(batch.inputs.to(device), batch.targets.to(device), data.spec.loss,
                 data.spec.scored, None if full else lengths.to(device))


def synthetic_config(config: dict[str, Any], path: Path) -> SyntheticConfig:
    """The run's synthetic keys (``record_every``, once one of them, is a training key now)."""
    try:
        keys = {k: v for k, v in config["synthetic"].items() if k != "record_every"}
        return SyntheticConfig(**keys)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{path}: invalid synthetic config ({err})") from err


def restore(run_dir: str | Path) -> tuple[RunDir, ModelConfig, TrainConfig, SyntheticConfig,
                                          TaskData]:
    run = RunDir(run_dir)
    config = run.read_config()
    synthetic = synthetic_config(config, run.path)
    train_config = run.train_config()
    if legacy := config["synthetic"].get("record_every"):  # a synthetic key before 0.1.0
        train_config = dataclasses.replace(train_config, record_every=legacy)
    low, high = parse_length(config["data"]["length"])
    data = TaskData(get_task(config["data"]["source"]), low, high, synthetic.delay,
                    train_config.seed)
    return run, run.model_config(), train_config, synthetic, data


def resume(out: str | Path, on_event: Event | None = None, stop: threading.Event | None = None,
           **overrides: Any) -> TrainResult:
    run, model_config, train_config, synthetic, data = restore(out)
    train_config = dataclasses.replace(train_config, **overrides)
    state = run.load_trainer_state()
    model = build(model_config, data)
    run.load_weights(model, last=True)
    if overrides:
        run.write_config({**run.read_config(), "train": to_dict(train_config)})
    step = int(state["step"])
    run.truncate_metrics(step)
    recording.truncate_gradients(run, step)
    return fit(model, data, train_config, synthetic, run, on_event, state, stop)


def load(run_dir: str | Path, device="cpu") -> LoadedRun:
    run, model_config, _, _, data = restore(run_dir)
    model = build(model_config, data).to(device)
    run.load_weights(model)
    model.eval()
    return LoadedRun(model, data, run.read_config(), run)


def evaluate(run_dir: str | Path, source: str | Path, device: str = "auto") -> dict[str, Any]:
    """Loss, memoryless baseline, their ratio and accuracy on a held-out set of the run's task."""
    loaded = load(run_dir, resolve_device(device))
    data: TaskData = loaded.vocab
    if str(source) != data.spec.name:
        raise ValueError(f"{run_dir} was trained on the synthetic task {data.spec.name!r}; "
                         f"evaluate it on {data.spec.name!r}, not {str(source)!r}")
    synthetic = synthetic_config(loaded.config, loaded.run.path)
    train = loaded.run.train_config()
    result = score(loaded.model, data, TEST, synthetic.val_sequences, train.batch_size,
                   next(loaded.model.parameters()).device)
    return {"run": str(run_dir), "data": data.spec.name, "length": loaded.config["data"]["length"],
            "sequences": synthetic.val_sequences, **result}


# what the command line prints --------------------------------------------------------------
def summarize(result: dict[str, Any]) -> str:
    """The line ``seqlab evaluate`` prints for a result of :func:`evaluate`."""
    accuracy = f"  accuracy {100 * result['accuracy']:.2f}%" if "accuracy" in result else ""
    return (f"loss {result['loss']:.4f}  memoryless baseline {result['baseline']:.4f}  "
            f"ratio {result['ratio']:.4f}{accuracy}  ({result['sequences']:,} sequences)")


def info_lines(info: dict[str, Any]) -> list[str]:
    """The lines ``seqlab info`` prints after the parameter count: data, steps, best loss."""
    data = info["config"]["data"]
    lines = [f"data         {data['source']}, length {data['length']}: {data['summary']}",
             f"steps        {info['steps']}"]
    if info["best_val_loss"] is not None:
        lines.append(f"best val     {info['best_val_loss']:.4f}")
    return lines
