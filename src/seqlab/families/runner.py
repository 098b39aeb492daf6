"""The one runner: train, resume, load, evaluate and describe a run of any family.

Written once; what differs between families is asked of the family
(:class:`~seqlab.families.base.Family`). Data flows one way: source -> ``family.prepare`` ->
the task's batches -> model -> loss -> :class:`~seqlab.training.Trainer` -> run directory;
every later command reads the run directory and asks the family named in its config.json.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqlab import recording
from seqlab.arguments import flag, path_like
from seqlab.checkpoint import CONFIG, METRICS, WEIGHTS, RunDir, RunInUse
from seqlab.distributed import SINGLE, World
from seqlab.families import registry
from seqlab.families.base import Configs, Family, LoadedRun, Prepared, Report
from seqlab.families.configs import replace_keys
from seqlab.io import fingerprint
from seqlab.models import count_parameters
from seqlab.recurrent_loop import check_compile
from seqlab.training import Event, Summary, check_precision, fit_keeping_best, resolve_device

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: nn.Module  # best weights, eval mode
    vocab: Any  # the family's assets (a vocabulary, a synthetic task, ...)
    summary: Summary
    run: RunDir | None
    family: Family | None = None

    def best_loss(self) -> str:
        """The best validation loss with its unit, as the family words it."""
        loss = self.summary.best_val_loss
        unit = self.family.loss_unit(loss, self.vocab) if self.family else ""
        return f"{loss:.4f}" + (f" {unit}" if unit else "")


def family_for(source: str | Path, keys: dict[str, Any], say: bool = False) -> Family:
    """The family a training of ``source`` with these keys belongs to."""
    return registry.choose(str(source), keys.get("task"), say)


def family_of(run_dir: str | Path) -> Family:
    return registry.of_config(RunDir(run_dir).read_config())


def typed_configs(family: Family, keys: dict[str, Any]) -> Configs:
    keys = {k: v for k, v in keys.items() if k != "task"}
    registry.check_keys(family, keys)
    return family.configs(keys)


def initial_model(family: Family, configs: Configs, assets: Any) -> nn.Module:
    """The model as training starts it: built from the run's seed."""
    torch.manual_seed(configs.train.seed)
    return family.build(configs, assets)


# train and resume ------------------------------------------------------------------------
def train(source: str | Path, out: str | Path | None = None, on_event: Event | None = None,
          stop: threading.Event | None = None, world: World = SINGLE, **keys: Any
          ) -> TrainResult:
    """Train on ``source``; ``keys`` are the config keys of the command line's flags.

    With ``out`` the run directory is written there (it must not exist or be empty);
    without, nothing touches the disk. Setting ``stop`` ends training after the current step,
    with ``last/`` saved (the command line sets it on Ctrl-C). With many processes
    (``world``, see :mod:`seqlab.distributed`) each reads ``source`` and only rank 0 writes.
    """
    family = family_for(source, keys, say=True)
    configs = typed_configs(family, keys)
    prepared = family.prepare(str(source), configs)
    ignored = unused_given(family, str(source), configs, prepared, keys)
    if ignored:  # the defaults are what the run records and sizes (the data read is the same)
        configs = typed_configs(family, {k: v for k, v in keys.items() if k not in ignored})
    if Path(source).exists():  # a file or folder: where it is and what it held
        prepared.description.update(source_path=str(Path(source).resolve()),
                                    source_fingerprint=fingerprint(Path(source)))
    configs = family.complete(configs, prepared.assets)
    with family.allocation_errors(configs):  # what the estimates missed: one line, exit 2
        return start(family, configs, prepared, out, on_event, stop, world, ignored)


def unused_given(family: Family, source: str, configs: Configs, prepared: Prepared,
                 keys: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{key: {"given": value, "reason": why}} of the ``keys`` that mean nothing for this data
    and these settings (:meth:`Family.unused_keys`), each warned of: given, but without effect
    here. config.json keeps them under "ignored", so that repeating them on resume is no
    change."""
    unused = family.unused_keys(source, configs, prepared)
    found = {k: {"given": keys[k], "reason": unused[k]}
             for k in sorted(keys.keys() & unused.keys())}
    for key, entry in found.items():
        warn_ignored(key, entry["reason"], source)
    return found


def warn_ignored(key: str, reason: Any, source: Any) -> None:
    log.warning("--%s %s; ignored for %s", key.replace("_", "-"), reason, source)


def without_ignored(config: dict[str, Any], keys: dict[str, Any], source: Any = None
                    ) -> dict[str, Any]:
    """``keys`` without those the run recorded as ignored when it was trained (the original
    command repeated on resume), each warned of again when ``source`` names the data."""
    recorded = config.get("ignored")
    recorded = recorded if isinstance(recorded, dict) else {}
    for key in sorted(keys.keys() & recorded.keys()) if source is not None else ():
        entry = recorded[key] if isinstance(recorded[key], dict) else {}
        warn_ignored(key, entry.get("reason", "has no effect"), source)
    return {k: v for k, v in keys.items() if k not in recorded}


def start(family: Family, configs: Configs, prepared: Prepared, out: str | Path | None,
          on_event: Event | None, stop: threading.Event | None, world: World,
          ignored: dict[str, Any] | None = None) -> TrainResult:
    """Build the model and the task, then create the run folder (if any) and train; a run
    that fails before its first checkpoint leaves no folder behind (or the empty one given)."""
    model = initial_model(family, configs, prepared.assets)
    task = checked_task(family, prepared, configs, world)
    if out is None or not world.main:  # every check on the data is done: nothing is written
        return fit(family, model, task, configs, prepared, None, on_event, None, stop, world)
    created = not Path(out).exists()
    run = RunDir.create(out)
    try:
        with run.writing():
            family.save_assets(run, prepared.assets)
            run.write_config({**family.run_config(configs, prepared),
                              **({"ignored": ignored} if ignored else {}),
                              "checksums": run.checksums()})
            return fit(family, model, task, configs, prepared, run, on_event, None, stop, world)
    except BaseException as err:  # a full disk, a bug, memory: before any evaluation (the
        # first step's checkpoint is for kill -9 and Ctrl-C), the run is not kept
        if not isinstance(err, RunInUse | KeyboardInterrupt) and not run.has_weights():
            run.discard(created)
        raise


def checked_task(family: Family, prepared: Prepared, configs: Configs, world: World):
    """The family's task on this process's device, once the device can run the run's
    precision and, with ``compile``, torch.compile."""
    device = device_of(configs, world)
    task = family.task(prepared, whole_batches(configs, world), device)
    check_precision(configs.train.precision, device)
    if configs.train.compile:
        check_compile(device)
    return task


def resume(out: str | Path, on_event: Event | None = None, stop: threading.Event | None = None,
           source: str | Path | None = None, world: World = SINGLE, **keys: Any
           ) -> TrainResult:
    """Continue a stopped run from its ``last/`` checkpoint.

    ``keys`` may repeat the run's own values (the original command plus ``--resume``); only
    the family's ``resumable`` keys (``max_steps``, ``time_budget``, ``device``, ...) may
    differ. ``source``, when given, must be the run's own. With many processes every one
    reads the run folder (on several machines: a shared one) and only rank 0 writes.
    """
    run = RunDir(out)
    run.read_config()  # first: "no such run directory" before any lock
    if not world.main:  # rank 0 holds the folder; the others only read what it held
        return resume_writing(run, on_event, stop, source, keys, world)
    with run.writing():
        return resume_writing(run, on_event, stop, source, keys, world)


def resume_writing(run: RunDir, on_event: Event | None, stop: threading.Event | None,
                   source: str | Path | None, keys: dict[str, Any], world: World
                   ) -> TrainResult:
    """:func:`resume`, with the run folder held: everything is checked before anything is
    written."""
    out = run.path
    config = run.read_config()
    family = registry.of_config(config)
    if "task" in keys and keys["task"] != family.name:
        raise ValueError(f"{out} is a {family.name!r} run, not {keys['task']!r}")
    location = data_location(config["data"], family.source_of(config), source, out)
    configs = family.configs_of(config, run.path)
    # the original command repeated: a key it gave without effect is warned of and dropped
    # again (config.json holds its default), not taken for a change
    given = without_ignored(config, {k: v for k, v in keys.items() if k != "task"}, location)
    new_configs = changed(family, configs, given)
    assets = family.assets_of(run, new_configs, config)
    prepared = family.prepare(location, new_configs, assets)
    task = checked_task(family, prepared, new_configs, world)
    check_fingerprint(config["data"], location, out)
    state = run.load_trainer_state()
    step = int(state["step"])
    if new_configs.train.max_steps <= step:
        raise ValueError(f"{out} is at step {step} already and max_steps is "
                         f"{new_configs.train.max_steps}: nothing to train, nothing changed; "
                         "give a larger --max-steps")
    run.read_metrics(), recording.read_gradients(run.path)  # damaged files stop us here
    with family.allocation_errors(new_configs):
        return continue_run(family, run, config, configs, new_configs, prepared, task, state,
                            on_event, stop, world)


def continue_run(family: Family, run: RunDir, config: dict[str, Any], configs: Configs,
                 new_configs: Configs, prepared: Prepared, task, state: dict[str, Any],
                 on_event: Event | None, stop: threading.Event | None, world: World
                 ) -> TrainResult:
    """The model at its checkpoint, then training; its rewrites of the run wait for its first
    write and are undone if it fails before its first checkpoint."""
    step = int(state["step"])
    model = family.build(new_configs, prepared.assets)
    run.load_weights(model, last=True)
    if not world.main:
        return fit(family, model, task, new_configs, prepared, None, on_event, state, stop,
                   world)
    if new_configs != configs:
        fresh = family.run_config(new_configs, prepared)
        run.defer(lambda: run.write_config({**config, **{
            k: fresh[k] for k in ("model", "train", family.name) if k in fresh}}))
    run.defer(lambda: run.truncate_metrics(step))
    run.defer(lambda: recording.truncate_gradients(run, step))
    with run.restored_unless_checkpointed((CONFIG, METRICS, WEIGHTS, recording.GRADIENTS)):
        return fit(family, model, task, new_configs, prepared, run, on_event, state, stop,
                   world)


def data_location(data: dict[str, Any], recorded: str, given: str | Path | None,
                  out: Path) -> str:
    """Where a resumed run reads its data: the DATA given (it must name the run's own), else
    the resolved path recorded at training, else the name as given then."""
    named = str(data["source"])
    if given is not None:
        if not (same_source(named, str(given)) or same_source(recorded, str(given))):
            raise ValueError(f"{out} was trained on {named!r}, not {str(given)!r}")
        return str(given)
    return recorded if Path(recorded).exists() else named


def check_fingerprint(data: dict[str, Any], location: str, out: Path) -> None:
    """Refuse data that is not what the run was trained on: another file by the same name, or
    the same file changed (runs written before fingerprints pass)."""
    recorded = data.get("source_fingerprint")
    if recorded and Path(location).exists() and fingerprint(Path(location)) != recorded:
        raise ValueError(f"{location} is not the data {out} was trained on (it differs from "
                         f"{data['source_path']} as it was then); resuming on other data would "
                         "not continue the same run: put the original back, or train a new run")


def same_source(saved: str, given: str) -> bool:
    """The same name, or two paths to the same file or folder (``./data.txt``, ``data.txt``)."""
    if saved == given:
        return True
    paths = Path(saved), Path(given)
    return all(p.exists() for p in paths) and paths[0].resolve() == paths[1].resolve()


def resume_configs(out: str | Path, keys: dict[str, Any]) -> Configs:
    """The configs a resumed run would continue with; raises as :func:`resume` does."""
    run = RunDir(out)
    config = run.read_config()
    family = registry.of_config(config)
    return changed(family, family.configs_of(config, run.path),
                   without_ignored(config, {k: v for k, v in keys.items() if k != "task"}))


def changed(family: Family, configs: Configs, keys: dict[str, Any]) -> Configs:
    """``configs`` with ``keys`` put in; a key whose value differs and may not change is an
    error naming it with its old and new value."""
    registry.check_keys(family, keys)
    keys = family.normalize(keys)
    family.configs(keys)  # types and ranges, as for a new run
    new = replace_keys(configs, keys)
    old_flat, new_flat = configs.flat(), new.flat()
    differ = [k for k in keys if old_flat[k] != new_flat[k]]
    if refused := sorted(k for k in differ if k not in family.resumable):
        changes = "; ".join(f"{k + ' ' if len(refused) > 1 else ''}{old_flat[k]!r} -> "
                            f"{new_flat[k]!r}" for k in refused)
        raise ValueError(f"a resumed run keeps its config; cannot change: {', '.join(refused)} "
                         f"({changes}); a resumed run may change only "
                         f"{', '.join(sorted(family.resumable))}")
    if configs.train.decay_steps == 0 and new.train.max_steps != configs.train.max_steps:
        # --max-steps moves where the run stops, not its schedule: the cosine keeps the
        # horizon the run started with (past it, the floor), and config.json says so
        new = replace_keys(new, {"decay_steps": configs.train.max_steps})
    return new


def whole_batches(configs: Configs, world: World) -> Configs:
    """The configs a task is built with: its batches hold the rows of every process
    (``batch_size`` is per process), which each process then splits by rows."""
    if not world.many:
        return configs
    return dataclasses.replace(configs, train=dataclasses.replace(
        configs.train, batch_size=configs.train.batch_size * world.size))


def device_of(configs: Configs, world: World) -> torch.device:
    """Where this process trains: the run's device, on a GPU the LOCAL_RANK-th."""
    return world.device(resolve_device(configs.train.device))


def fit(family: Family, model: nn.Module, task, configs: Configs, prepared: Prepared,
        run: RunDir | None, on_event: Event | None, resume_state: dict | None,
        stop: threading.Event | None, world: World) -> TrainResult:
    device = device_of(configs, world)
    record = None
    if configs.train.record_every and run is not None:
        probe = task.probe(recording.PROBE)
        if probe is not None:
            record = recording.recorder(model.to(device), probe, configs.train.record_every,
                                        run)
    summary = fit_keeping_best(model, task, configs.train, run, on_event, device, stop,
                               resume_state, before_step=record, world=world)
    return TrainResult(model, prepared.assets, summary, run, family)


# using a run -----------------------------------------------------------------------------
def load_run(path: str | Path, device: str | torch.device = "cpu", last: bool = False
             ) -> LoadedRun:
    """Model (best weights, or ``last/``'s; eval mode), assets and config of a run."""
    path_like("path", path)
    flag("last", last)
    config = RunDir(path).read_config()
    device = device if isinstance(device, torch.device) else resolve_device(device)
    return registry.of_config(config).load(path, device, last, config)


def untrained(path: str | Path) -> nn.Module:
    """A run's model as its config builds it, before training (from the run's seed); a run
    that diverged before its first evaluation has no weights, but has this."""
    run = RunDir(path)
    config = run.read_config()
    family = registry.of_config(config)
    configs = family.configs_of(config, run.path)
    return initial_model(family, configs, family.assets_of(run, configs, config)).eval()


def evaluate(run_dir: str | Path, source: str | Path, device: str = "auto",
             **options: Any) -> Report:
    """The family's metrics of a run on ``source``; ``options`` (``beam`` for seq2seq) are
    the family's own, None meaning the run's default."""
    path_like("run_dir", run_dir)
    path_like("source", source)
    config = RunDir(run_dir).read_config()
    family = registry.of_config(config)
    options = {k: v for k, v in options.items() if v is not None}
    for name in sorted(set(options) - family.evaluate_options):
        offering = [f.name for f in registry.FAMILIES.values() if name in f.evaluate_options]
        if not offering:
            raise ValueError(f"unknown evaluate option {name!r}; a {family.name!r} run takes "
                             f"{', '.join(sorted(family.evaluate_options)) or 'none'}")
        raise ValueError(f"--{name.replace('_', '-')} applies to {' and '.join(offering)} runs "
                         f"only; {run_dir} is a {family.name!r} run")
    loaded = family.load(run_dir, resolve_device(device), config=config)
    return family.evaluate(loaded, str(source), **options)


def info(run_dir: str | Path) -> Report:
    """Config, parameter count and training progress of a run, with the lines they print as."""
    loaded = load_run(run_dir)
    metrics = loaded.run.read_metrics()
    evals = [m for m in metrics if "val_loss" in m]
    logs = [m for m in metrics if "loss" in m]
    values = {"run": str(run_dir), "parameters": count_parameters(loaded.model),
              "config": loaded.config, "steps": max((m["step"] for m in metrics), default=0),
              "best_val_loss": min((m["val_loss"] for m in evals), default=None),
              "last_log": logs[-1] if logs else None, "evaluations": len(evals)}
    model = loaded.configs.model
    tokens = (f"  embedding {model.embedding_size}  vocab {model.vocab_size}"
              if model.vocab_size else "")  # real-valued inputs have neither
    lines = [f"run          {run_dir}",
             f"model        {model.model}  layers {model.num_layers}  hidden "
             f"{model.hidden_size}{tokens}",
             f"parameters   {values['parameters']:,}", *loaded.family.info_lines(values)]
    ignored = loaded.config.get("ignored")
    if isinstance(ignored, dict) and ignored:  # given when it was trained, without effect
        lines.append("ignored      " + ", ".join(
            f"--{k.replace('_', '-')} {v.get('given') if isinstance(v, dict) else v}"
            for k, v in ignored.items()))
    return Report(values, "\n".join(lines))


def probe(loaded: LoadedRun, batch: int, device):
    """The family's diagnostics probe of a loaded run; a ValueError when it offers none."""
    found = loaded.family.probe(loaded, batch, device)
    if found is None:
        raise ValueError(f"diagnose needs a run whose task offers a probe of its recurrent "
                         f"state; {loaded.run.path} is a {loaded.family.name!r} run")
    return found
