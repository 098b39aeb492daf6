"""The family contract: what a kind of problem (a task family) gives the one runner.

A family is one object registered under the ``task`` name its runs write in config.json
(:mod:`seqlab.families.registry`). The runner (:mod:`seqlab.families.runner`) trains, resumes,
loads and evaluates every family the same way and asks the family only for what differs:

    keys       ``config_class`` (its own keys, a frozen dataclass; config.json keeps them under
               the family's name) and ``ignores`` (the shared model and training keys that mean
               nothing to it: giving one is an error naming the family)
    claims     ``claims(source)``: does a source name this family without ``--task``?
    prepare    ``prepare(source, configs, assets)`` -> :class:`Prepared`: read and check the
               data (every check before a byte is written); ``assets`` (a vocabulary, ...) are
               given when resuming, else built from the data
    complete   ``complete(configs, assets)``: fill what the data decides (vocab_size), then
               ``check_sizes``: refuse a model and batch that cannot fit the machine
    sizes      ``shape(configs, assets)`` (the model's and a batch's sizes, for the estimate of
               :mod:`seqlab.limits`), ``data_bytes(source, configs)`` (data it draws from its
               keys, checked by ``prepare`` before drawing), ``size_keys`` (keys to blame):
               :class:`seqlab.families.sizing.Sizing`, which Family mixes in
    build      ``build(configs, assets)`` -> the model, initialised from torch's global RNG
               (the runner seeds it)
    task       ``task(prepared, configs, device)`` -> the trainer's :class:`seqlab.training.Task`
               (``evaluate(model, world)``: a process's share of validation; ``probe(batch)``)
    save/load  ``save_assets(run, assets)`` / ``load_assets(run, configs)``: what the run
               directory needs beyond weights
    evaluate   ``evaluate(loaded, source, **options)`` -> :class:`Report` (``options``: the
               names in ``evaluate_options``)
    use        ``generator`` / ``translator`` / ``predictor`` / ``forecaster`` / ``exporter``:
               what the commands generate, translate, predict, forecast and export drive; the
               base refuses a run of a family that offers none; ``figures``: its diagnose figures
    print      ``info_lines(info)``, ``eval_note(record)``, ``loss_unit(loss, assets)``,
               ``headline(record)``: how its numbers read
    resume     ``resumable``: the keys a resumed run may change
    report     ``report_sections(run, loaded, live)``: the family's own sections of ``seqlab
               report``'s page (:mod:`seqlab.sections.blocks`; default: none)

Library code raises; the command line turns a ValueError into ``seqlab: error: ...``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from seqlab import limits
from seqlab.checkpoint import WEIGHTS, RunDir
from seqlab.config import (
    ModelConfig,
    TrainConfig,
    build,
    check_types,
    fields_of,
    to_dict,
)
from seqlab.diagnostics import Probe
from seqlab.families.configs import Configs
from seqlab.families.sizing import Sizing
from seqlab.training import Task
from seqlab.version import __version__

# the training keys a resumed run may change: where, how and how long it runs, how often it
# reports
RESUMABLE = frozenset({"max_steps", "time_budget", "device", "patience", "eval_every",
                       "log_every", "max_bad_steps", "compile"})
SHARED = (ModelConfig, TrainConfig)


@dataclass
class Prepared:
    """A source read and checked: what to train on, and the assets a run directory keeps."""

    source: str
    assets: Any  # vocabulary (or vocabularies), task generator, ...: saved beside the weights
    data: Any  # what the family's task reads
    description: dict[str, Any]  # config.json's "data" section


class Report(dict):
    """Numbers as a JSON-ready dict that also know the line they print as (``str(report)``)."""

    def __init__(self, values: Mapping[str, Any], line: str) -> None:
        super().__init__(values)
        self.line = line

    def __str__(self) -> str:
        return self.line


@dataclass
class Headline:
    """The figures of one evaluation record that tables put side by side."""

    baseline: float | None = None
    accuracy: float | None = None
    bpc: float | None = None


@dataclass
class LoadedRun:
    """A run's model (eval mode), its assets, its config.json and its family."""

    model: nn.Module
    vocab: Any  # the family's assets: a Vocab, a pair of vocabularies, a synthetic task
    config: dict[str, Any]
    run: RunDir
    family: Family | None = None
    configs: Configs | None = field(default=None, repr=False)


def no_model(run: RunDir, what: str) -> str:
    """Why a report section shows no ``what``: no weights yet, or weights that could not be
    loaded (the load error is listed above it)."""
    if (run.path / WEIGHTS).exists():
        return f"the weights could not be loaded (see above): no {what}"
    return f"no weights yet ({WEIGHTS} is written at the first evaluation): no {what}"


class Family(Sizing, ABC):
    """Base of every family: the shared behaviour; a family overrides what differs.

    Subclasses set ``name``, ``help`` and (optionally) ``config_class`` and ``ignores``, and
    implement ``claims``, ``prepare``, ``build``, ``task``, ``evaluate`` and the assets' I/O.
    """

    name: ClassVar[str]
    help: ClassVar[str]  # one line: what it trains, on what
    config_class: ClassVar[type | None] = None
    ignores: ClassVar[frozenset[str]] = frozenset()
    resumable: ClassVar[frozenset[str]] = RESUMABLE
    evaluate_options: ClassVar[frozenset[str]] = frozenset()
    fallback: ClassVar[bool] = False  # claims whatever no other family claims
    items: ClassVar[str] = "tok"  # what a step's loss counts, per second in progress lines

    # keys ----------------------------------------------------------------------------------
    def defaults(self) -> dict[str, Any]:
        return {f.name: f.default for cls in self.config_classes() for f in fields_of(cls)}

    def config_classes(self) -> tuple[type, ...]:
        return SHARED + ((self.config_class,) if self.config_class else ())

    def key_names(self) -> set[str]:
        names = {f.name for cls in self.config_classes() for f in fields_of(cls)}
        return names - self.ignores

    def normalize(self, keys: Mapping[str, Any]) -> dict[str, Any]:
        """Flat keys as the config classes take them (a family may accept looser forms).

        A clip value given without a clip norm replaces the default norm clipping (the two
        are exclusive, and only the norm has a default)."""
        keys = dict(keys)
        clip_value = keys.get("clip_value")
        if isinstance(clip_value, int | float) and clip_value > 0 and "clip_norm" not in keys:
            keys["clip_norm"] = 0.0
        return keys

    def configs(self, keys: Mapping[str, Any]) -> Configs:
        """Typed configs from flat keys (checked against this family by the registry)."""
        keys = self.normalize(keys)
        check_types(keys, self.config_classes())
        own = build(self.config_class, keys) if self.config_class else None
        return Configs(build(ModelConfig, keys), build(TrainConfig, keys), own)

    def configs_of(self, config: dict[str, Any], path: Path) -> Configs:
        """The typed configs of a run's config.json."""
        parts = []
        for name, cls in (("model", ModelConfig), ("training", TrainConfig)):
            try:
                parts.append(cls(**config[name if name == "model" else "train"]))
            except (TypeError, ValueError) as err:
                raise ValueError(f"{path}: invalid {name} config ({err})") from err
        return Configs(*parts, self.own_config_of(config, path))

    def own_config_of(self, config: dict[str, Any], path: Path) -> Any:
        if self.config_class is None:
            return None
        try:
            return self.config_class(**config[self.name])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: invalid {self.name} config ({err})") from err

    def run_config(self, configs: Configs, prepared: Prepared) -> dict[str, Any]:
        """config.json's content (the run directory adds its format number)."""
        config = {"seqlab_version": __version__, "task": self.name,
                  "model": to_dict(configs.model), "train": to_dict(configs.train)}
        if configs.own is not None:
            config[self.name] = to_dict(configs.own)
        return {**config, "data": prepared.description}

    # data and model ------------------------------------------------------------------------
    @abstractmethod
    def claims(self, source: str) -> bool:
        """Whether ``source`` names this family when no ``task`` key is given."""

    @abstractmethod
    def prepare(self, source: str, configs: Configs, assets: Any = None) -> Prepared:
        """Read and check ``source``: every check on the data happens here, before a byte is
        written. ``assets`` (from :meth:`load_assets`) are reused when given (resume)."""

    def complete(self, configs: Configs, assets: Any) -> Configs:
        """The configs with what the data decides filled in (default: unchanged), checked
        against the machine's memory (:meth:`check_sizes`)."""
        self.check_sizes(configs, assets)
        return configs

    def unused_keys(self, source: str, configs: Configs, prepared: Prepared) -> dict[str, str]:
        """Keys that mean nothing for this data and these settings, each with the reason
        (``{"length": "applies to reverse, sort, addition only"}``); training warns of those
        the user gave and records their defaults instead. Here: a BPE vocabulary's size
        without BPE; families add their own."""
        if configs.train.tokenizer == "bpe":
            return {}
        return {"bpe_vocab_size": f"applies to --tokenizer bpe only, not "
                                  f"{configs.train.tokenizer}"}

    @abstractmethod
    def build(self, configs: Configs, assets: Any) -> nn.Module:
        """The model, initialised from torch's global generator (the runner seeds it)."""

    @abstractmethod
    def task(self, prepared: Prepared, configs: Configs, device) -> Task:
        """What the trainer drives: batches by step, the loss, evaluation, a probe."""

    def save_assets(self, run: RunDir, assets: Any) -> None:  # noqa: B027 - optional hook
        """Write what the run needs beside its weights (default: nothing)."""

    @abstractmethod
    def load_assets(self, run: RunDir, configs: Configs, config: dict[str, Any]) -> Any:
        """What :meth:`save_assets` wrote (or what the config alone rebuilds), checked."""

    def source_of(self, config: dict[str, Any]) -> str:
        """Where the run's data is: its resolved path when it was a file or folder (so a
        resume from another folder reads the same file), else its name."""
        data = config["data"]
        return str(data.get("source_path") or data["source"])

    # using a run ---------------------------------------------------------------------------
    def assets_of(self, run: RunDir, configs: Configs, config: dict[str, Any]) -> Any:
        """The run's assets (:meth:`load_assets`, with its own checks first), then checked
        against the checksums config.json recorded."""
        assets = self.load_assets(run, configs, config)
        run.verify_checksums(config)
        return assets

    def load(self, path: str | Path, device: Any = "cpu", last: bool = False,
             config: dict[str, Any] | None = None) -> LoadedRun:
        """Model (best weights, or ``last/``'s; eval mode), assets and config of a run
        (``config``: its config.json, when the caller has read it already)."""
        run = RunDir(path)
        config = config or run.read_config()
        if (task := config.get("task", "lm")) != self.name:
            raise ValueError(f"{path} is a {task!r} run, not a {self.name!r} run")
        configs = self.configs_of(config, run.path)
        assets = self.assets_of(run, configs, config)
        self.refuse_beyond_memory(configs, lambda c: (  # built on the CPU, then moved
            limits.FLOAT * limits.parameters(self.shape(c, assets)),
            f"the weights of the model in {run.path / 'config.json'}"), "cpu")
        model = self.build(configs, assets).to(device)
        run.load_weights(model, last=last)
        model.eval()
        return LoadedRun(model, assets, config, run, self, configs)

    @abstractmethod
    def evaluate(self, loaded: LoadedRun, source: str, **options) -> Report:
        """The family's metrics of a loaded run on ``source``; ``options`` are the names in
        ``evaluate_options``."""

    def probe(self, loaded: LoadedRun, batch: int, device) -> Probe | None:
        """A batch of validation data to diagnose the model on, or None if none is offered."""
        prepared = self.prepare(self.source_of(loaded.config), loaded.configs, loaded.vocab)
        return self.task(prepared, loaded.configs, device).probe(batch)

    def generator(self, loaded: LoadedRun):
        """What samples from this run (``seqlab generate``)."""
        self.refuse(loaded, "a language model", "generate samples text from language models")

    def translator(self, loaded: LoadedRun):
        """What decodes new inputs with this run (``seqlab translate``)."""
        self.refuse(loaded, "an encoder-decoder", "translate decodes with seq2seq runs")

    def predictor(self, loaded: LoadedRun):
        """What labels new sequences with this run (``seqlab predict``)."""
        self.refuse(loaded, "a classifier", "predict labels sequences with classify runs")

    def forecaster(self, loaded: LoadedRun):
        """What forecasts new series with this run (``seqlab forecast``)."""
        self.refuse(loaded, "a forecaster", "forecast continues series with forecast runs")

    def exporter(self, loaded: LoadedRun) -> list:  # seqlab export's graphs (export.Graph)
        raise ValueError(f"{loaded.run.path}: a {self.name!r} run has no ONNX export")

    def refuse(self, loaded: LoadedRun, kind: str, use: str) -> None:
        """The error of a command that uses a kind of run this family does not train."""
        raise ValueError(f"{loaded.run.path} is a {self.name!r} run, not {kind}; {use}")

    def figures(self, loaded: LoadedRun, probe: Probe, out: Path) -> list[Path]:
        """``seqlab diagnose``'s figures of this family beyond the shared ones (default:
        none), written into ``out``; returns their paths."""
        return []

    def report_sections(self, run: RunDir, loaded: LoadedRun | None, live: bool = False
                        ) -> list:
        """Sections of the run's report beyond those every run has (samples, decodings, its
        own figures; :mod:`seqlab.sections.blocks`). ``loaded`` is None while the run has no
        weights; ``live`` (a refresh during training) asks for nothing slow. Default: none."""
        return []

    # how its numbers read ------------------------------------------------------------------
    def info_lines(self, info: dict[str, Any]) -> list[str]:
        return [f"steps        {info['steps']}", *best_line(info)]

    def eval_note(self, record: dict[str, Any]) -> str:
        """The second figure of a progress line after an evaluation."""
        return ""

    def loss_unit(self, loss: float, assets: Any) -> str:
        """The unit of the validation loss, as the end-of-training line says it."""
        return ""

    def headline(self, record: dict[str, Any]) -> Headline:
        return Headline()


def best_line(info: dict[str, Any]) -> list[str]:
    best = info["best_val_loss"]
    return [] if best is None else [f"best val     {best:.4f}"]


def token_lines(info: dict[str, Any]) -> list[str]:
    """``seqlab info``'s steps and best validation loss of a run scored in nats per token."""
    lines = [f"steps        {info['steps']}"]
    if (best := info["best_val_loss"]) is not None:
        bits = best / math.log(2) / info["config"]["data"]["chars_per_token"]
        lines.append(f"best val     {best:.4f} nats/token, {bits:.4f} bits/char")
    return lines
