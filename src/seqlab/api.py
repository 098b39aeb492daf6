"""The Python API: the same operations as the command line, returning objects instead of text.

    import seqlab
    result = seqlab.train("oneills", model="lstm", hidden_size=128, max_steps=200, out="runs/x")
    print(seqlab.generate(result.model, result.vocab, prompt="X:", length=200)[0])
    print(seqlab.evaluate("runs/x", "my_tunes.abc"))
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from seqlab import __version__, recording
from seqlab.checkpoint import RunDir, load_run
from seqlab.config import ModelConfig, TrainConfig, split_keys, to_dict
from seqlab.data.abc import is_abc_source, join_tunes, load_tunes, train_val_tunes
from seqlab.data.text import load_text, split_tokens, to_tensor
from seqlab.data.tunes_batches import EncodedTunes, encode_tunes
from seqlab.data.vocab import Vocab, build_vocab
from seqlab.models import build_model
from seqlab.tasks import LanguageModelTask, evaluate_tokens, lm_metrics
from seqlab.training import Event, Summary, fit_keeping_best, resolve_device


@dataclass
class TextData:
    """A text source turned into one token tensor, split into train and validation blocks."""

    source: str
    vocab: Vocab
    train_tokens: Tensor
    val_tokens: Tensor
    chars_per_token: float
    tunes: tuple[EncodedTunes, EncodedTunes] | None = None  # ABC: (train, val), tune by tune

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "tokenizer": self.vocab.kind, "vocab_size": self.vocab.size,
                "train_tokens": len(self.train_tokens), "val_tokens": len(self.val_tokens),
                "chars_per_token": self.chars_per_token}


def load_data(source: str | Path, config: TrainConfig | None = None,
              vocab: Vocab | None = None) -> TextData:
    """Read a file, folder or bundled corpus; build (or reuse) the vocabulary; split it.

    ABC sources (a bundled corpus, ``.abc`` files) split by whole tunes, see
    :func:`load_tune_data`; other text by one contiguous block.
    """
    config = config or TrainConfig()
    if is_abc_source(source):
        return load_tune_data(source, config, vocab)
    text = load_text(source)
    vocab = vocab or build_vocab(text, config.tokenizer, config.bpe_vocab_size)
    tokens = to_tensor(vocab.encode(text))
    chars_per_token = len(text) / max(len(tokens), 1)
    train_tokens, val_tokens = split_tokens(tokens, config.val_fraction)
    return TextData(str(source), vocab, train_tokens, val_tokens, chars_per_token)


def load_tune_data(source: str | Path, config: TrainConfig, vocab: Vocab | None = None
                   ) -> TextData:
    """ABC tunes, normalised, split train/validation by whole tunes drawn with ``config.seed``;
    each split is one stream of whole tunes, each followed by its end marker (a blank line), so
    TBPTT streams read tunes whole and in order and learn where a tune ends."""
    train, val = train_val_tunes(source, config.val_fraction, config.seed)
    train_text, val_text = join_tunes(train), join_tunes(val)
    vocab = vocab or build_vocab(train_text + val_text, config.tokenizer, config.bpe_vocab_size)
    train_tokens = to_tensor(vocab.encode(train_text))
    val_tokens = to_tensor(vocab.encode(val_text))
    chars = len(train_text) + len(val_text)
    chars_per_token = chars / max(len(train_tokens) + len(val_tokens), 1)
    tunes = (encode_tunes(train, vocab.encode), encode_tunes(val, vocab.encode))
    return TextData(str(source), vocab, train_tokens, val_tokens, chars_per_token, tunes)


@dataclass
class TrainResult:
    model: nn.Module  # best weights, eval mode
    vocab: Vocab
    summary: Summary
    run: RunDir | None


def train(source: str | Path, out: str | Path | None = None, on_event: Event | None = None,
          stop: threading.Event | None = None, **keys: Any) -> TrainResult:
    """Train a language model on ``source``; ``keys`` are the config keys of the CLI flags.

    With ``out`` the run directory is written there (it must not exist or be empty);
    without, nothing touches the disk. Setting ``stop`` ends training after the current step,
    with ``last/`` saved (the CLI sets it on Ctrl-C).
    """
    family = family_for(source, keys)
    if family is not None:
        return family.train(source, out=out, on_event=on_event, stop=stop, **keys)
    configs = split_keys(keys)
    model_config, train_config = configs[ModelConfig], configs[TrainConfig]
    data = load_data(source, train_config)
    model_config = dataclasses.replace(model_config, vocab_size=data.vocab.size)
    model = initial_model(model_config, train_config)
    task = make_task(data, train_config)  # every check on the data before anything is written
    run = RunDir.create(out) if out is not None else None
    if run is not None:
        data.vocab.save(run.path)
        run.write_config(run_config(model_config, train_config, data))
    return _fit(model, task, data.vocab, train_config, run, on_event, None, stop)


# Task families other than the language model, by the "task" they write in config.json. Each
# module provides claims(source, keys) -> bool, train(source, out, on_event, stop, **keys) ->
# TrainResult, resume(out, on_event, stop, **overrides), evaluate(run_dir, source, device) ->
# dict (seq2seq's also takes beam), load(run_dir, device) -> LoadedRun, and what the command
# line prints of them: summarize(evaluate's result) -> str and info_lines(info) -> list[str].
# They are imported only when used.
FAMILIES: dict[str, str] = {"seq2seq": "seqlab.seq2seq_task",
                            "synthetic": "seqlab.synthetic_task"}


def family_module(task: str):
    import importlib

    if task not in FAMILIES:
        raise ValueError(f"unknown task {task!r}")
    return importlib.import_module(FAMILIES[task])


def family_for(source: str | Path, keys: dict[str, Any]):
    """The family module that claims this source and keys, or None for a language model."""
    for task in FAMILIES:
        module = family_module(task)
        if module.claims(str(source), keys):
            return module
    return None


def task_of(run_dir: str | Path) -> str:
    return RunDir(run_dir).read_config().get("task", "lm")


def resume(out: str | Path, on_event: Event | None = None, stop: threading.Event | None = None,
           **overrides: Any) -> TrainResult:
    """Continue a stopped run from its ``last/`` checkpoint.

    Only ``max_steps``, ``time_budget`` and ``device`` may change; the rest is the run's own.
    """
    allowed = {"max_steps", "time_budget", "device"}
    if extra := sorted(set(overrides) - allowed):
        raise ValueError(f"a resumed run keeps its config; cannot change: {', '.join(extra)}")
    if (task := task_of(out)) != "lm":
        return family_module(task).resume(out, on_event=on_event, stop=stop, **overrides)
    run = RunDir(out)
    config = run.read_config()
    model_config = run.model_config()
    train_config = dataclasses.replace(run.train_config(), **overrides)
    vocab = run.vocab()
    data = load_data(config["data"]["source"], train_config, vocab=vocab)
    task = make_task(data, train_config)
    state = run.load_trainer_state()
    model = build_model(model_config)
    run.load_weights(model, last=True)
    if overrides:
        run.write_config({**config, "train": to_dict(train_config)})
    run.truncate_metrics(int(state["step"]))
    recording.truncate_gradients(run, int(state["step"]))
    return _fit(model, task, vocab, train_config, run, on_event, state, stop)


def initial_model(model_config: ModelConfig, train_config: TrainConfig) -> nn.Module:
    """The language model as training starts it: built from the run's seed."""
    torch.manual_seed(train_config.seed)
    return build_model(model_config)


def make_task(data: TextData, config: TrainConfig) -> LanguageModelTask:
    """The language-model task on the device the config names; raises on data too short."""
    task = LanguageModelTask(data.train_tokens, data.val_tokens, config, data.chars_per_token,
                             data.tunes)
    task.device = resolve_device(config.device)
    return task


def _fit(model: nn.Module, task: LanguageModelTask, vocab: Vocab, config: TrainConfig,
         run: RunDir | None, on_event: Event | None, resume_state: dict | None,
         stop: threading.Event | None) -> TrainResult:
    record = None
    if config.record_every and run is not None:
        probe = recording.token_probe(task.val_tokens, config.seq_len, recording.PROBE,
                                      task.device)
        record = recording.recorder(model.to(task.device), probe, config.record_every, run)
    summary = fit_keeping_best(model, task, config, run, on_event, task.device, stop,
                               resume_state, before_step=record)
    return TrainResult(model, vocab, summary, run)


def run_config(model: ModelConfig, train: TrainConfig, data: TextData) -> dict[str, Any]:
    return {"seqlab_version": __version__, "task": "lm", "model": to_dict(model),
            "train": to_dict(train), "data": data.describe()}


def evaluate(run_dir: str | Path, source: str | Path, device: str = "auto",
             beam: int | None = None) -> dict[str, Any]:
    """Loss (nats per token), perplexity and bits per character of a run on a text source.

    For runs of other task families, that family's metrics; ``beam`` (seq2seq runs only) is the
    beam width to decode with, default the run's own.
    """
    task = task_of(run_dir)
    if beam is not None and task != "seq2seq":
        raise ValueError(f"beam applies to seq2seq runs only; {run_dir} is a {task!r} run")
    if task != "lm":
        options = {} if beam is None else {"beam": beam}
        return family_module(task).evaluate(run_dir, source, device, **options)
    loaded = load_run(run_dir, resolve_device(device))
    text = join_tunes(load_tunes(source)) if is_abc_source(source) else load_text(source)
    tokens = to_tensor(loaded.vocab.encode(text))
    train = loaded.run.train_config()
    nats, count = evaluate_tokens(loaded.model, tokens, train.batch_size, train.seq_len,
                                  next(loaded.model.parameters()).device)
    return {"run": str(run_dir), "data": str(source),
            **lm_metrics(nats, count, len(text) / max(len(tokens), 1))}


def summarize(task: str, result: dict[str, Any]) -> str:
    """The line ``seqlab evaluate`` prints for a result of :func:`evaluate` on a run of ``task``
    (each family words its own)."""
    if task != "lm":
        return family_module(task).summarize(result)
    return (f"loss {result['loss']:.4f} nats/token  perplexity {result['ppl']:.3f}  "
            f"bits/char {result['bpc']:.4f}  ({result['tokens']:,} tokens)")


def info_lines(task: str, info: dict[str, Any]) -> list[str]:
    """The lines ``seqlab info`` prints after the parameter count of a run of ``task``: its data,
    steps and best validation loss (each family words its own)."""
    if task != "lm":
        return family_module(task).info_lines(info)
    data = info["config"]["data"]
    return [f"data         {data['source']}  ({data['tokenizer']}, {data['train_tokens']:,} "
            f"train / {data['val_tokens']:,} validation tokens)", *progress_lines(info)]


def progress_lines(info: dict[str, Any]) -> list[str]:
    """``seqlab info``'s steps and best validation loss of a run scored in nats per token."""
    lines = [f"steps        {info['steps']}"]
    if (best := info["best_val_loss"]) is not None:
        bits = best / math.log(2) / info["config"]["data"]["chars_per_token"]
        lines.append(f"best val     {best:.4f} nats/token, {bits:.4f} bits/char")
    return lines
