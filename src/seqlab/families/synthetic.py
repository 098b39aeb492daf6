"""The synthetic family: ``seqlab train adding --length 200 --model lstm``.

The long-range tasks of :mod:`seqlab.data.synthetic` (adding, copy, order, delay). A run
directory holds config.json with ``"task": "synthetic"``, model.safetensors, last/,
metrics.jsonl and, with ``record_every``, gradients.jsonl (:mod:`seqlab.recording`): the norm of
dL/dh_t for every t on the task's first 16 validation sequences, at initialisation and every N
steps. Nothing else: the task is a pure function of its keys and the seed.

Batches are pure functions of (seed, step), so a resumed run sees the batches a run that never
stopped would have seen; validation is a fixed set drawn once from the seed, and ``evaluate``
scores a third, held-out set drawn the same way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from seqlab import limits
from seqlab.checkpoint import RunDir
from seqlab.config import ModelConfig, opt, validate
from seqlab.data.synthetic import IGNORE, TASKS, SyntheticBatch, TaskData, get_task, parse_length
from seqlab.diagnostics import Probe
from seqlab.distributed import SINGLE, World, own_rows
from seqlab.export import Graph, real_inputs, step_graph, token_inputs
from seqlab.families import synthetic_report
from seqlab.families.base import Configs, Family, Headline, LoadedRun, Prepared, Report
from seqlab.models.sequence import SequenceModel
from seqlab.recurrent import CELLS
from seqlab.tasks import token_nll

TRAIN, VALIDATION, TEST = 0, 1, 2  # the streams of TaskData.batch


@dataclass(frozen=True, kw_only=True)
class SyntheticConfig:
    """Keys of the synthetic long-range tasks (adding, copy, order, delay)."""

    length: str = opt("", "time steps T of adding, copy, order and delay, N or MIN-MAX (drawn "
                      "per sequence, padded and masked; default 100); reverse and sort: symbols "
                      "per source (default 5-20); addition: digits per operand (default 1-5)")
    delay: int = opt(10, "delay task: the target is the symbol seen this many steps back",
                     positive=True)
    val_sequences: int = opt(1000, "synthetic tasks: validation sequences, drawn once from the "
                             "seed", positive=True)
    init_radius: float = opt(0.0, "synthetic tasks, rnn and irnn: rescale W_hh at "
                             "initialisation to this spectral radius (0: the cell's own init)",
                             minimum=0.0)

    def __post_init__(self) -> None:
        validate(self)
        parse_length(self.length)  # a malformed length fails as the config is made


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
          device, world: World = SINGLE) -> dict[str, float]:
    """Mean loss, the memoryless baseline and accuracy on ``sequences`` sequences of a stream;
    with many processes each scores its block of every batch's rows and the sums are added."""
    was_training = model.training
    model.eval()
    total, count, correct, counted, lengths = 0.0, 0, 0, 0, []
    for index in range(-(-sequences // batch_size)):
        batch = data.batch(min(batch_size, sequences - index * batch_size), stream, index)
        lengths.append(batch.lengths)
        part, own = own_rows(batch, world)
        if own:
            t, n, c, k = batch_loss(model, data, part, device)
            total, count, correct, counted = total + float(t), count + n, correct + c, counted + k
    total, count, correct, counted = world.sum([total, count, correct, counted])
    model.train(was_training)
    loss = total / max(count, 1)
    baseline = data.spec.baseline(torch.cat(lengths) - data.spec.extra_steps, data.delay)
    result = {"loss": loss, "baseline": baseline, "ratio": loss / baseline}
    if counted:
        result["accuracy"] = correct / counted
    return result


def probe_of(data: TaskData, batch: SyntheticBatch, device="cpu") -> Probe:
    """The diagnostics' view of a batch: inputs, targets and how they are scored."""
    lengths = batch.lengths
    full = bool((lengths == lengths.max()).all())
    return Probe(batch.inputs.to(device), batch.targets.to(device), data.spec.loss,
                 data.spec.scored, None if full else lengths.to(device))


class SyntheticTask:
    """What the trainer trains on: fresh batches by step, a fixed validation set."""

    def __init__(self, data: TaskData, configs: Configs, device) -> None:
        self.data, self.train, self.synthetic, self.device = (data, configs.train, configs.own,
                                                              device)

    def train_batch(self, step: int) -> SyntheticBatch:
        return self.data.batch(self.train.batch_size, TRAIN, step)

    def loss(self, model: nn.Module, batch: SyntheticBatch, state) -> tuple[Tensor, None, int]:
        total, count, _, _ = batch_loss(model, self.data, batch, self.device, accuracy=False)
        return total / count, None, count

    def evaluate(self, model: nn.Module, world: World = SINGLE) -> dict[str, float]:
        result = score(model, self.data, VALIDATION, self.synthetic.val_sequences,
                       self.train.batch_size, self.device, world)
        return {f"val_{k}": v for k, v in result.items()}

    def probe(self, batch: int) -> Probe:
        """The first ``batch`` validation sequences, for diagnostics through training."""
        return probe_of(self.data, self.data.batch(batch, VALIDATION, 0), self.device)


def build(model_config: ModelConfig, data: TaskData, init_radius: float = 0.0
          ) -> SequenceModel:
    """The task's model; ``init_radius`` > 0 rescales each W_hh (rnn, irnn) to that spectral
    radius, the knob that makes an Elman network's gradients explode or vanish."""
    spec = data.spec
    model = SequenceModel(model_config, spec.inputs, spec.input_size, spec.output_size)
    if init_radius > 0:
        recurrent = model.recurrent
        if recurrent is None or not recurrent.spec.elman:
            elman = " and ".join(name for name, cell in CELLS.items() if cell.elman)
            raise ValueError(f"init_radius applies to {elman}, not {model_config.model}")
        with torch.no_grad():
            for layer in range(recurrent.num_layers):
                w_hh = recurrent.layer_weights(layer)[1]
                w_hh.mul_(init_radius / torch.linalg.eigvals(w_hh.double()).abs().max().item())
    return model


def task_data(configs: Configs, name: str) -> TaskData:
    low, high = parse_length(configs.own.length)
    return TaskData(get_task(name), low, high, configs.own.delay, configs.train.seed)


class SyntheticFamily(Family):
    name = "synthetic"
    help = "a synthetic long-range task: adding, copy, order or delay"
    config_class = SyntheticConfig
    report_sections = synthetic_report.sections  # the loss beside the baseline
    # text handling, and the output head tied to an embedding, mean nothing here
    ignores = frozenset({"tokenizer", "bpe_vocab_size", "val_fraction", "batching", "seq_len",
                         "eval_batches", "tie_weights"})
    size_keys = (*Family.size_keys, "length", "val_sequences")

    def claims(self, source: str) -> bool:
        return source in TASKS and not Path(source).exists()

    def normalize(self, keys) -> dict[str, Any]:
        keys = super().normalize(keys)
        if isinstance(keys.get("length"), int) and not isinstance(keys["length"], bool):
            keys["length"] = str(keys["length"])  # the Python API may say length=200
        return keys

    def own_config_of(self, config: dict[str, Any], path: Path) -> SyntheticConfig:
        """The run's synthetic keys; runs before 0.1.0 kept the length under "data" only."""
        try:
            keys = {k: v for k, v in config["synthetic"].items() if k != "record_every"}
            return SyntheticConfig(**{"length": config["data"]["length"], **keys})
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"{path}: invalid synthetic config ({err})") from err

    def configs_of(self, config: dict[str, Any], path: Path) -> Configs:
        configs = super().configs_of(config, path)
        if legacy := config["synthetic"].get("record_every"):  # a synthetic key before 0.1.0
            configs = dataclasses.replace(configs, train=dataclasses.replace(
                configs.train, record_every=legacy))
        return configs

    def shape(self, configs: Configs, assets: TaskData | None = None) -> limits.Shape:
        """Sequences of the task's longest length (its inputs and outputs: tokens or real
        channels); before the task is known, the smallest of them."""
        model, train = configs.model, configs.train
        high = parse_length(configs.own.length)[1]
        if assets is None:
            return limits.Shape(model, min(model.embedding_size, 2), 0, 1, high,
                                train.batch_size)
        spec = assets.spec
        tokens = spec.inputs == "tokens"
        return limits.Shape(model, model.embedding_size if tokens else spec.input_size,
                            spec.input_size if tokens else 0, spec.output_size,
                            high + spec.extra_steps, train.batch_size)

    def data_bytes(self, source: str, configs: Configs) -> tuple[int, str]:
        """A batch and the validation set, drawn at every evaluation: at least an int64 (or
        two float32 channels) per step and an int64 length per sequence."""
        high = parse_length(configs.own.length)[1]
        steps = high + (get_task(source).extra_steps if source in TASKS else 0)
        sequences = configs.own.val_sequences + configs.train.batch_size
        return (sequences * (steps + 1) * limits.INT,
                f"drawing a batch of {configs.train.batch_size:,} and "
                f"{configs.own.val_sequences:,} validation sequences of up to {steps:,} steps")

    def prepare(self, source: str, configs: Configs, assets: Any = None) -> Prepared:
        self.check_data(source, configs)
        data = assets or task_data(configs, source)
        length = str(data.max_length) if data.min_length == data.max_length \
            else f"{data.min_length}-{data.max_length}"
        return Prepared(data.spec.name, data, data, {"source": data.spec.name, "length": length,
                                                     "summary": data.spec.summary})

    def build(self, configs: Configs, assets: TaskData) -> SequenceModel:
        return build(configs.model, assets, configs.own.init_radius)

    def unused_keys(self, source: str, configs: Configs, prepared: Prepared) -> dict[str, str]:
        spec = prepared.assets.spec  # (no tokenizer here: the base's check does not apply)
        return {} if spec.inputs == "tokens" else {
            "embedding_size": f"sizes token embeddings, and {spec.name}'s inputs are numbers"}

    def task(self, prepared: Prepared, configs: Configs, device) -> SyntheticTask:
        return SyntheticTask(prepared.data, configs, device)

    def load_assets(self, run: RunDir, configs: Configs, config: dict[str, Any]) -> TaskData:
        return task_data(configs, config["data"]["source"])

    def evaluate(self, loaded: LoadedRun, source: str, **options) -> Report:
        """Loss, memoryless baseline, their ratio and accuracy on a held-out set."""
        data: TaskData = loaded.vocab
        if source != data.spec.name:
            raise ValueError(f"{loaded.run.path} was trained on the synthetic task "
                             f"{data.spec.name!r}; evaluate it on {data.spec.name!r}, not "
                             f"{source!r}")
        sequences = loaded.configs.own.val_sequences
        result = score(loaded.model, data, TEST, sequences, loaded.configs.train.batch_size,
                       next(loaded.model.parameters()).device)
        result = {"run": str(loaded.run.path), "data": data.spec.name,
                  "length": loaded.config["data"]["length"], "sequences": sequences, **result}
        return Report(result, summarize(result))

    def exporter(self, loaded: LoadedRun) -> list[Graph]:
        """The sequence model with its state in and out: inputs (B, T) ids or (B, T, C)
        channels and the state -> outputs (B, T, O) and the new state."""
        model, spec = loaded.model, loaded.vocab.spec
        inputs = token_inputs if spec.inputs == "tokens" else real_inputs
        return [step_graph(model, model.encoder.initial_state, inputs(spec.input_size),
                           ("inputs", "outputs"), {"family": self.name, "task": spec.name})]

    def info_lines(self, info: dict[str, Any]) -> list[str]:
        data = info["config"]["data"]
        return [f"data         {data['source']}, length {data['length']}: {data['summary']}",
                *super().info_lines(info)]

    def eval_note(self, record: dict[str, Any]) -> str:
        return f"baseline {record['val_baseline']:.4f}"

    def loss_unit(self, loss: float, assets: TaskData) -> str:
        return "(MSE)" if assets.spec.loss == "mse" else "nats per scored step"

    def headline(self, record: dict[str, Any]) -> Headline:
        return Headline(baseline=record.get("val_baseline"), accuracy=record.get("val_accuracy"))


def summarize(result: dict[str, Any]) -> str:
    """The line ``seqlab evaluate`` prints for a synthetic run's result."""
    accuracy = f"  accuracy {100 * result['accuracy']:.2f}%" if "accuracy" in result else ""
    return (f"loss {result['loss']:.4f}  memoryless baseline {result['baseline']:.4f}  "
            f"ratio {result['ratio']:.4f}{accuracy}  ({result['sequences']:,} sequences)")


SYNTHETIC = SyntheticFamily()
