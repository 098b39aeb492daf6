"""The seq2seq family: train, resume, load, translate and evaluate encoder-decoder runs.

A run claims the data when ``task="seq2seq"`` is given or when the data is a built-in pair task
(``dates``, ``reverse``, ``sort``, ``addition``). Its run directory is the language model's
(config.json with ``"task": "seq2seq"``, model.safetensors, last/, metrics.jsonl) with two
vocabulary folders, ``source_vocab/`` and ``target_vocab/``, instead of one vocab.json.

This module is the family contract of :mod:`seqlab.api`; decoding and scoring live in
:mod:`seqlab.seq2seq_eval`, and the names callers import from here stay importable here.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from seqlab import __version__
from seqlab.api import TrainResult, progress_lines
from seqlab.checkpoint import LoadedRun, RunDir
from seqlab.config import ModelConfig, Seq2SeqConfig, TrainConfig, split_keys, to_dict
from seqlab.data.pairs import (
    EncodedPairs,
    Pair,
    PairBatch,
    PairVocab,
    generate_pairs,
    is_task_name,
    parse_length,
    read_pairs,
    task_alphabet,
)
from seqlab.models.seq2seq import Seq2Seq, Seq2SeqShape
from seqlab.recurrent import CELLS
from seqlab.seq2seq_eval import (
    Translation,
    check_beam,
    match_scores,
    score_outputs,
    translate_texts,
    warn_long_inputs,
)
from seqlab.seq2seq_eval import encode_sources as encode_sources  # re-exported for callers
from seqlab.seq2seq_eval import save_attention as save_attention  # re-exported for callers
from seqlab.tasks import token_nll
from seqlab.training import Event, fit_keeping_best, resolve_device

log = logging.getLogger(__name__)
# generated validation pairs (a tenth of --num-pairs, at most this) and held-out test pairs
VAL_PAIRS, TEST_PAIRS = 1000, 2000
EVAL_DECODE = 500  # validation pairs decoded greedily at each evaluation (exact match)


def claims(source: str, keys: dict[str, Any]) -> bool:
    task = keys.get("task")
    return task == "seq2seq" or (task is None and is_task_name(str(source)))


# data ----------------------------------------------------------------------------------------
@dataclass
class Vocabs:
    source: PairVocab
    target: PairVocab


@dataclass
class PairData:
    source: str
    train: list[Pair]
    val: list[Pair]
    vocabs: Vocabs

    def describe(self) -> dict[str, Any]:
        target_chars = sum(len(t) for _, t in self.train)
        target_tokens = sum(len(self.vocabs.target.encode(t)) for _, t in self.train[:2000])
        sample_chars = sum(len(t) for _, t in self.train[:2000])
        return {"source": self.source, "tokenizer": self.vocabs.target.kind,
                "source_vocab_size": self.vocabs.source.size,
                "target_vocab_size": self.vocabs.target.size,
                "train_pairs": len(self.train), "val_pairs": len(self.val),
                "train_tokens": target_chars, "val_tokens": sum(len(t) for _, t in self.val),
                "chars_per_token": sample_chars / max(target_tokens, 1),
                "max_source_chars": max(len(s) for s, _ in self.train),
                "max_target_chars": max(len(t) for _, t in self.train)}


def train_pairs(source: str, s2s: Seq2SeqConfig, train: TrainConfig
                ) -> tuple[list[Pair], list[Pair]]:
    """(train, validation) pairs of a TSV file (seeded shuffle, then split) or built-in task."""
    if is_task_name(source):
        pairs = generate_pairs(source, s2s.num_pairs, train.seed, s2s.length)
        seen = {s for s, _ in pairs}
        count = min(VAL_PAIRS, max(50, s2s.num_pairs // 10))
        return pairs, generate_pairs(source, count, train.seed + 10_000, s2s.length, seen)
    if s2s.length:
        log.warning("--length applies to the built-in tasks only; ignored for %s", source)
    pairs = read_pairs(source)
    if len(pairs) < 2:
        raise ValueError(f"{source}: need at least 2 pairs (one to train, one to validate)")
    random.Random(train.seed).shuffle(pairs)
    cut = min(len(pairs) - 1, max(1, round(len(pairs) * (1 - train.val_fraction))))
    return pairs[:cut], pairs[cut:]


def held_out_pairs(source: str, run: RunDir) -> list[Pair]:
    """Pairs to evaluate on: a TSV file, or held-out pairs of the run's built-in task."""
    if not is_task_name(source):
        return read_pairs(source)
    config = run.read_config()
    s2s, train = seq2seq_config(config, run.path), run.train_config()
    if source != config["data"]["source"]:
        return generate_pairs(source, TEST_PAIRS, train.seed + 20_000, s2s.length)
    return generate_pairs(source, TEST_PAIRS, train.seed + 20_000, s2s.length,
                          seen_sources(source, s2s, train))


def seen_sources(task: str, s2s: Seq2SeqConfig, train: TrainConfig) -> set[str]:
    """The sources a run of a built-in task trained or validated on (held-out sets avoid them)."""
    fit, val = train_pairs(task, s2s, train)
    return {s for s, _ in fit + val}


def build_vocabs(pairs: list[Pair], s2s: Seq2SeqConfig, train: TrainConfig) -> Vocabs:
    sources, targets = [s for s, _ in pairs], [t for _, t in pairs]
    if s2s.shared_vocab:
        shared = PairVocab.build(sources + targets, train.tokenizer, train.bpe_vocab_size)
        return Vocabs(shared, shared)
    return Vocabs(PairVocab.build(sources, train.tokenizer, train.bpe_vocab_size),
                  PairVocab.build(targets, train.tokenizer, train.bpe_vocab_size))


def load_pair_data(source: str, s2s: Seq2SeqConfig, train: TrainConfig,
                   vocabs: Vocabs | None = None) -> PairData:
    parse_length(s2s.length, (1, 1))  # a malformed --length fails before any work
    fit, val = train_pairs(source, s2s, train)
    # the validation pairs' symbols are known (else they could not be scored); a built-in
    # task's alphabet is known whole
    known = fit + val + ([task_alphabet(source)] if is_task_name(source) else [])
    return PairData(source, fit, val, vocabs or build_vocabs(known, s2s, train))


# the task the trainer sees -------------------------------------------------------------------
class Seq2SeqTask:
    """Teacher forcing on random batches of pairs; validation loss and greedy exact match."""

    def __init__(self, data: PairData, config: TrainConfig, device: torch.device) -> None:
        self.train_set = EncodedPairs(data.train, data.vocabs.source, data.vocabs.target)
        self.val_set = EncodedPairs(data.val, data.vocabs.source, data.vocabs.target)
        self.val = data.val
        self.vocabs, self.config, self.device = data.vocabs, config, device
        described = data.describe()
        self.chars_per_token = described["chars_per_token"]
        self.max_target = described["max_target_chars"]

    def train_batch(self, step: int) -> PairBatch:
        return self.train_set.random_batch(step, self.config.batch_size, self.config.seed)

    def loss(self, model: nn.Module, batch: PairBatch, state: Any) -> tuple[Tensor, None, int]:
        logits, _ = model(batch.source.to(self.device), batch.source_lengths,
                          batch.target_in.to(self.device))
        total, count = token_nll(logits, batch.target_out.to(self.device))
        return total / count, None, count

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        was_training = model.training
        model.eval()
        nats, count = 0.0, 0
        for batch in self.val_set.batches(self.config.batch_size):
            total, n = token_nll(model(batch.source.to(self.device), batch.source_lengths,
                                       batch.target_in.to(self.device))[0],
                                 batch.target_out.to(self.device))
            nats, count = nats + float(total), count + n
        outputs = translate_texts(model, self.vocabs, [s for s, _ in self.val[:EVAL_DECODE]],
                                  batch_size=max(self.config.batch_size, 64),
                                  max_target=self.max_target)
        scores = match_scores([o.text for o in outputs], [t for _, t in self.val[:EVAL_DECODE]],
                              self.vocabs.target)
        model.train(was_training)
        loss = nats / max(count, 1)
        return {"val_loss": loss, "val_bpc": loss / math.log(2) / self.chars_per_token,
                "val_exact_match": scores["exact_match"],
                "val_token_accuracy": scores["token_accuracy"]}


# train / resume / load -----------------------------------------------------------------------
def model_shape(model: ModelConfig, s2s: Seq2SeqConfig, vocabs: Vocabs) -> Seq2SeqShape:
    if model.model not in CELLS:
        raise ValueError(f"seq2seq: --model must be one of {', '.join(CELLS)} (a recurrent "
                         f"encoder and decoder), got {model.model!r}")
    if model.tie_weights:
        raise ValueError("seq2seq: --tie-weights is not supported (the output head is tanh-"
                         "projected, not the embedding's size)")
    return Seq2SeqShape(cell=model.model, source_vocab_size=vocabs.source.size,
                        target_vocab_size=vocabs.target.size,
                        embedding_size=model.embedding_size, hidden_size=model.hidden_size,
                        num_layers=model.num_layers, dropout=model.dropout,
                        forget_bias=model.forget_bias, attention=s2s.attention,
                        attention_size=s2s.attention_size, bidirectional=s2s.bidirectional)


def train(source: str | Path, out: str | Path | None = None, on_event: Event | None = None,
          stop: threading.Event | None = None, **keys: Any) -> TrainResult:
    configs = split_keys({**keys, "task": "seq2seq"})
    model_config, train_config, s2s = (configs[c] for c in (ModelConfig, TrainConfig,
                                                             Seq2SeqConfig))
    data = load_pair_data(str(source), s2s, train_config)
    model_config = dataclasses.replace(model_config, vocab_size=data.vocabs.target.size)
    torch.manual_seed(train_config.seed)
    model = Seq2Seq(model_shape(model_config, s2s, data.vocabs))
    run = RunDir.create(out) if out is not None else None
    if run is not None:
        data.vocabs.source.save(run.path / "source_vocab")
        data.vocabs.target.save(run.path / "target_vocab")
        run.write_config({"seqlab_version": __version__, "task": "seq2seq",
                          "model": to_dict(model_config), "train": to_dict(train_config),
                          "seq2seq": to_dict(s2s), "data": data.describe()})
    return _fit(model, data, train_config, run, on_event, None, stop)


def resume(out: str | Path, on_event: Event | None = None, stop: threading.Event | None = None,
           **overrides: Any) -> TrainResult:
    run = RunDir(out)
    config = run.read_config()
    train_config = dataclasses.replace(run.train_config(), **overrides)
    s2s = seq2seq_config(config, run.path)
    vocabs = load_vocabs(run)
    data = load_pair_data(config["data"]["source"], s2s, train_config, vocabs)
    state = run.load_trainer_state()
    model = Seq2Seq(model_shape(run.model_config(), s2s, vocabs))
    run.load_weights(model, last=True)
    if overrides:
        run.write_config({**config, "train": to_dict(train_config)})
    run.truncate_metrics(int(state["step"]))
    return _fit(model, data, train_config, run, on_event, state, stop)


def _fit(model: Seq2Seq, data: PairData, config: TrainConfig, run: RunDir | None,
         on_event: Event | None, resume_state: dict | None,
         stop: threading.Event | None) -> TrainResult:
    device = resolve_device(config.device)
    summary = fit_keeping_best(model, Seq2SeqTask(data, config, device), config, run, on_event,
                               device, stop, resume_state)
    return TrainResult(model, data.vocabs, summary, run)


def load_vocabs(run: RunDir) -> Vocabs:
    if not run.path.is_dir():
        raise FileNotFoundError(f"{run.path}: no such run directory")
    try:
        return Vocabs(PairVocab.load(run.path / "source_vocab"),
                      PairVocab.load(run.path / "target_vocab"))
    except FileNotFoundError:
        raise ValueError(f"{run.path}: not a complete seq2seq run (no source_vocab/ or "
                         "target_vocab/)") from None


def seq2seq_config(config: dict[str, Any], path: Path) -> Seq2SeqConfig:
    """The run's encoder-decoder keys; a ValueError naming the run when they are unreadable."""
    try:
        return Seq2SeqConfig(**config["seq2seq"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: invalid seq2seq config ({err})") from err


def load(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Model (best weights, eval mode), Vocabs(source, target) and config of a run."""
    run = RunDir(run_dir)
    config = run.read_config()
    vocabs = load_vocabs(run)
    s2s = seq2seq_config(config, run.path)
    model = Seq2Seq(model_shape(run.model_config(), s2s, vocabs)).to(device)
    run.load_weights(model)
    model.eval()
    return LoadedRun(model, vocabs, config, run)


# translation and evaluation (the decoding and scoring are seqlab.seq2seq_eval's) -------------
def translate(run_dir: str | Path, texts: list[str], beam: int | None = None,
              length_penalty: float | None = None, device: str = "cpu") -> list[Translation]:
    """Translate texts with a run's best weights; beam and penalty default to the run's own."""
    loaded = load(run_dir, resolve_device(device))
    s2s = seq2seq_config(loaded.config, loaded.run.path)
    warn_long_inputs(texts, loaded.config["data"].get("max_source_chars", math.inf))
    return translate_texts(loaded.model, loaded.vocab, texts, s2s.beam if beam is None else beam,
                           s2s.length_penalty if length_penalty is None else length_penalty,
                           max_target=max_target(loaded.config))


def max_target(config: dict[str, Any]) -> int:
    return int(config["data"].get("max_target_chars", 0))


def evaluate(run_dir: str | Path, source: str | Path, device: str = "auto",
             beam: int | None = None) -> dict[str, Any]:
    """Exact match, token accuracy, BLEU and chrF of a run on a TSV file or a built-in task
    (for the run's own task: held-out pairs, none of whose sources was trained or validated on),
    decoded greedily or with a beam of width ``beam`` (default: the run's own)."""
    loaded = load(run_dir, resolve_device(device))
    pairs = held_out_pairs(str(source), loaded.run)
    s2s = seq2seq_config(loaded.config, loaded.run.path)
    beam = s2s.beam if beam is None else beam
    check_beam(beam)  # before any decoding
    sources = [s for s, _ in pairs]
    warn_long_inputs(sources, loaded.config["data"].get("max_source_chars", math.inf))
    outputs = translate_texts(loaded.model, loaded.vocab, sources, beam, s2s.length_penalty,
                              max_target=max_target(loaded.config))
    references = [t for _, t in pairs]
    return {"run": str(run_dir), "data": str(source), "pairs": len(pairs),
            "decoding": "greedy" if beam == 1 else "beam search", "beam": beam,
            "length_penalty": None if beam == 1 else s2s.length_penalty,
            **score_outputs([o.text for o in outputs], references, loaded.vocab.target)}


def exact_match_by_length(run_dir: str | Path, lengths: list[int], per_length: int,
                          device: str = "cpu", seed: int = 777) -> dict[int, float]:
    """Greedy exact match on ``per_length`` held-out sources of each length of the run's own
    built-in task (``reverse`` or ``sort``), none of them seen in training or validation."""
    loaded = load(run_dir, resolve_device(device))
    config = loaded.config
    task = config["data"]["source"]
    if task not in ("reverse", "sort"):
        raise ValueError(f"accuracy by length needs a reverse or sort run, not {task!r}")
    seen = seen_sources(task, seq2seq_config(config, loaded.run.path), loaded.run.train_config())
    curve = {}
    for length in lengths:
        pairs = generate_pairs(task, per_length, seed + length, str(length), seen)
        outputs = translate_texts(loaded.model, loaded.vocab, [s for s, _ in pairs],
                                  batch_size=250, max_target=max_target(config))
        curve[length] = score_outputs([o.text for o in outputs], [t for _, t in pairs],
                                      loaded.vocab.target)["exact_match"]
    return curve


# what the command line prints ----------------------------------------------------------------
def summarize(result: dict[str, Any]) -> str:
    """The line ``seqlab evaluate`` prints for a result of :func:`evaluate`."""
    decoding = ("greedy" if result["decoding"] == "greedy" else
                f"beam search, width {result['beam']}, length penalty "
                f"{result['length_penalty']:g}")
    return (f"exact match {100 * result['exact_match']:.2f}%  token accuracy "
            f"{100 * result['token_accuracy']:.2f}%  BLEU {result['bleu']:.2f}  chrF "
            f"{result['chrf']:.2f}  ({result['pairs']:,} pairs, {decoding})")


def info_lines(info: dict[str, Any]) -> list[str]:
    """The lines ``seqlab info`` prints after the parameter count: data, steps, best loss."""
    data = info["config"]["data"]
    return [f"data         {data['source']}  ({data['tokenizer']}, {data['train_pairs']:,} "
            f"train / {data['val_pairs']:,} validation pairs)", *progress_lines(info)]
