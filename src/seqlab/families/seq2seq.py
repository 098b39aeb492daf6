"""The seq2seq family: encoder-decoders on ``source<TAB>target`` pairs or a built-in pair task.

A run claims the data when ``task="seq2seq"`` is given or when the data is a built-in pair task
(``dates``, ``reverse``, ``sort``, ``addition``). Its run directory is the language model's
(config.json with ``"task": "seq2seq"``, model.safetensors, last/, metrics.jsonl) with two
vocabulary folders, ``source_vocab/`` and ``target_vocab/``, instead of one vocab.json.
Decoding and scoring live in :mod:`seqlab.seq2seq_eval`; the names callers import from here
stay importable here.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from seqlab.checkpoint import RunDir
from seqlab.config import ModelConfig, TrainConfig, check_key, opt, validate
from seqlab.data.pairs import (
    LENGTH_TASKS,
    EncodedPairs,
    Pair,
    PairBatch,
    PairVocab,
    Vocabs,
    generate_pairs,
    is_task_name,
    parse_length,
    read_pairs,
    task_alphabet,
)
from seqlab.distributed import SINGLE, World
from seqlab.families import seq2seq_export, seq2seq_report
from seqlab.families.base import Configs, Family, Headline, LoadedRun, Prepared, Report, token_lines
from seqlab.families.seq2seq_sizes import PairSizes, check_beam_work
from seqlab.models.seq2seq import Seq2Seq, Seq2SeqShape
from seqlab.recurrent import CELLS
from seqlab.seq2seq_eval import (
    Translation,
    check_beam,
    greedy_match_scores,
    score_outputs,
    teacher_forced_nats,
    translate_texts,
    warn_long_inputs,
)
from seqlab.seq2seq_eval import encode_sources as encode_sources  # re-exported for callers
from seqlab.seq2seq_eval import match_scores as match_scores  # re-exported for callers
from seqlab.seq2seq_eval import save_attention as save_attention  # re-exported for callers
from seqlab.tasks import token_nll
from seqlab.training import resolve_device

# generated validation pairs (a tenth of --num-pairs, at most this) and held-out test pairs
VAL_PAIRS, TEST_PAIRS = 1000, 2000
EVAL_DECODE = 500  # validation pairs decoded greedily at each evaluation (exact match)


@dataclass(frozen=True, kw_only=True)
class Seq2SeqConfig:
    """Encoder-decoder keys (``--task seq2seq``, or a built-in pair task as the data)."""

    attention: str = opt("additive", "seq2seq decoder: none (the encoder's final state only), "
                         "additive (Bahdanau), dot or general (Luong)",
                         choices=("none", "additive", "dot", "general"))
    attention_size: int = opt(0, "size of the additive scorer's hidden layer (0: hidden_size)",
                              minimum=0)
    bidirectional: bool = opt(False, "classify, seq2seq: also read each sequence backwards "
                              "(classify: H units each way; seq2seq: H/2)")
    shared_vocab: bool = opt(False, "seq2seq: one vocabulary for source and target")
    beam: int = opt(1, "seq2seq: beam width used by evaluate and translate (1: greedy)",
                    positive=True)
    # length^this must stay a float for any decoding length: beyond 10 the longest wins anyway
    length_penalty: float = opt(1.0, "beam search ranks by log-probability / length^this "
                                "(0: no length normalisation)", minimum=0.0, maximum=10.0)
    length: str = opt("", "reverse and sort: symbols per source, N or MIN-MAX (default 5-20); "
                      "addition: digits per operand (default 1-5)")
    num_pairs: int = opt(20000, "built-in tasks: training pairs to generate", positive=True)

    def __post_init__(self) -> None:
        validate(self)
        parse_length(self.length, (1, 1))  # a malformed length fails before any work


# data ----------------------------------------------------------------------------------------
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
    pairs = read_pairs(source)
    if len(pairs) < 2:
        raise ValueError(f"{source}: need at least 2 pairs (one to train, one to validate)")
    random.Random(train.seed).shuffle(pairs)
    cut = min(len(pairs) - 1, max(1, round(len(pairs) * (1 - train.val_fraction))))
    return pairs[:cut], pairs[cut:]


def held_out_pairs(source: str, configs: Configs, trained_on: str) -> list[Pair]:
    """Pairs to evaluate on: a TSV file, or held-out pairs of a built-in task (none of whose
    sources the run saw, when it is the run's own task)."""
    if not is_task_name(source):
        return read_pairs(source)
    s2s, train = configs.own, configs.train
    seen = seen_sources(source, s2s, train) if source == trained_on else ()
    return generate_pairs(source, TEST_PAIRS, train.seed + 20_000, s2s.length, seen)


def seen_sources(task: str, s2s: Seq2SeqConfig, train: TrainConfig) -> set[str]:
    """The sources a run of a built-in task trained or validated on (held-out sets avoid them)."""
    fit, val = train_pairs(task, s2s, train)
    return {s for s, _ in fit + val}


def load_pair_data(source: str, s2s: Seq2SeqConfig, train: TrainConfig,
                   vocabs: Vocabs | None = None) -> PairData:
    parse_length(s2s.length, (1, 1))  # a malformed --length fails before any work
    fit, val = train_pairs(source, s2s, train)
    # the validation pairs' symbols are known (else they could not be scored); a built-in
    # task's alphabet is known whole
    known = fit + val + ([task_alphabet(source)] if is_task_name(source) else [])
    return PairData(source, fit, val, vocabs or Vocabs.build(
        known, s2s.shared_vocab, train.tokenizer, train.bpe_vocab_size))


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
    def evaluate(self, model: nn.Module, world: World = SINGLE) -> dict[str, float]:
        """Teacher-forced loss and greedy exact match; with many processes each process takes
        its block of every batch's rows and of the decoded pairs."""
        was_training = model.training
        model.eval()
        nats, count = teacher_forced_nats(model, self.val_set.batches(self.config.batch_size),
                                          self.device, world)
        scores = greedy_match_scores(model, self.vocabs, self.val[:EVAL_DECODE],
                                     max(self.config.batch_size, 64), self.max_target, world)
        model.train(was_training)
        loss = nats / max(count, 1)
        return {"val_loss": loss, "val_bpc": loss / math.log(2) / self.chars_per_token,
                "val_exact_match": scores["exact_match"],
                "val_token_accuracy": scores["token_accuracy"]}

    def probe(self, batch: int) -> None:
        """No diagnostics probe: an encoder-decoder's gradient through time has two clocks."""
        return None


# the family ----------------------------------------------------------------------------------
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


def load_vocabs(run: RunDir) -> Vocabs:
    if not run.path.is_dir():
        raise FileNotFoundError(f"{run.path}: no such run directory")
    try:
        return Vocabs(PairVocab.load(run.path / "source_vocab"),
                      PairVocab.load(run.path / "target_vocab"))
    except FileNotFoundError:
        raise ValueError(f"{run.path}: not a complete seq2seq run (no source_vocab/ or "
                         "target_vocab/)") from None


def max_target(config: dict[str, Any]) -> int:
    return int(config["data"].get("max_target_chars", 0))


class Seq2SeqFamily(PairSizes, seq2seq_export.Seq2SeqExport, Family):
    name = "seq2seq"
    help = "an encoder-decoder on source<TAB>target pairs or a built-in pair task"
    config_class = Seq2SeqConfig
    report_sections = seq2seq_report.sections  # translations, attention, by length
    # the decoder's input is the target so far, whole: no windows, chunks or recorded probe
    ignores = frozenset({"batching", "seq_len", "eval_batches", "record_every", "chrono_steps",
                         "window", "bow_mode"})
    evaluate_options = frozenset({"beam"})
    val_pairs = VAL_PAIRS

    def claims(self, source: str) -> bool:
        return is_task_name(source)

    def own_config_of(self, config: dict[str, Any], path: Path) -> Seq2SeqConfig:
        """The run's encoder-decoder keys (runs before families kept ``task`` among them)."""
        try:
            return Seq2SeqConfig(**{k: v for k, v in config["seq2seq"].items() if k != "task"})
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"{path}: invalid seq2seq config ({err})") from err

    def prepare(self, source: str, configs: Configs, assets: Vocabs | None = None) -> Prepared:
        self.check_data(source, configs)
        data = load_pair_data(source, configs.own, configs.train, assets)
        return Prepared(source, data.vocabs, data, data.describe())

    def complete(self, configs: Configs, assets: Vocabs) -> Configs:
        model_shape(configs.model, configs.own, assets)  # a model it cannot build fails here
        return super().complete(dataclasses.replace(configs, model=dataclasses.replace(
            configs.model, vocab_size=assets.target.size)), assets)  # then check_sizes

    def build(self, configs: Configs, assets: Vocabs) -> Seq2Seq:
        return Seq2Seq(model_shape(configs.model, configs.own, assets))

    def task(self, prepared: Prepared, configs: Configs, device) -> Seq2SeqTask:
        return Seq2SeqTask(prepared.data, configs.train, device)

    def unused_keys(self, source: str, configs: Configs, prepared: Prepared) -> dict[str, str]:
        built_in, unused = is_task_name(source), super().unused_keys(source, configs, prepared)
        if not built_in:
            unused["num_pairs"] = "applies to the built-in tasks only"
        if not (built_in and source in LENGTH_TASKS):
            unused["length"] = f"applies to {', '.join(LENGTH_TASKS)} only"
        if configs.own.attention != "additive":
            unused["attention_size"] = "sizes the additive scorer only (--attention additive)"
        return unused

    def save_assets(self, run: RunDir, assets: Vocabs) -> None:
        assets.source.save(run.path / "source_vocab")
        assets.target.save(run.path / "target_vocab")

    def load_assets(self, run: RunDir, configs: Configs, config: dict[str, Any]) -> Vocabs:
        return load_vocabs(run)

    def probe(self, loaded: LoadedRun, batch: int, device) -> None:
        return None

    def evaluate(self, loaded: LoadedRun, source: str, beam: int | None = None) -> Report:
        """Exact match, token accuracy, BLEU and chrF on a TSV file or a built-in task (for the
        run's own task: held-out pairs, none of whose sources was trained or validated on),
        decoded greedily or with a beam of width ``beam`` (default: the run's own)."""
        s2s = loaded.configs.own
        beam = s2s.beam if beam is None else beam
        check_beam(beam)  # before any decoding
        pairs = held_out_pairs(source, loaded.configs, self.source_of(loaded.config))
        sources = [s for s, _ in pairs]
        check_beam_work(beam, sources, max_target(loaded.config))
        warn_long_inputs(sources, loaded.config["data"].get("max_source_chars", math.inf))
        outputs = translate_texts(loaded.model, loaded.vocab, sources, beam, s2s.length_penalty,
                                  max_target=max_target(loaded.config))
        result = {"run": str(loaded.run.path), "data": source, "pairs": len(pairs),
                  "decoding": "greedy" if beam == 1 else "beam search", "beam": beam,
                  "length_penalty": None if beam == 1 else s2s.length_penalty,
                  **score_outputs([o.text for o in outputs], [t for _, t in pairs],
                                  loaded.vocab.target)}
        return Report(result, summarize(result))

    def translator(self, loaded: LoadedRun) -> Translator:
        return Translator(loaded)

    def info_lines(self, info: dict[str, Any]) -> list[str]:
        return info_lines(info)

    def eval_note(self, record: dict[str, Any]) -> str:
        return f"val_bpc {record['val_bpc']:.3f}"

    def loss_unit(self, loss: float, assets: Vocabs) -> str:
        return f"nats/token ({loss / math.log(2):.3f} bits)"

    def headline(self, record: dict[str, Any]) -> Headline:
        return Headline(accuracy=record.get("val_exact_match"), bpc=record.get("val_bpc"))


@dataclass
class Translator:
    """What ``seqlab translate`` decodes with: a loaded seq2seq run."""

    loaded: LoadedRun

    def __call__(self, texts: list[str], beam: int | None = None,
                 length_penalty: float | None = None, numbers: list[int] | None = None
                 ) -> list[Translation]:
        """Translate with the run's best weights; beam and penalty default to the run's own;
        ``numbers`` name the inputs in messages (default 1, 2, ...)."""
        s2s, loaded = self.loaded.configs.own, self.loaded
        beam = s2s.beam if beam is None else beam
        length_penalty = s2s.length_penalty if length_penalty is None else length_penalty
        check_key(Seq2SeqConfig, "length_penalty", length_penalty)
        check_beam_work(beam, texts, max_target(loaded.config))
        warn_long_inputs(texts, loaded.config["data"].get("max_source_chars", math.inf), numbers)
        return translate_texts(loaded.model, loaded.vocab, texts, beam, length_penalty,
                               max_target=max_target(loaded.config), numbers=numbers)


# for Python callers ----------------------------------------------------------------------------
def load(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Model (best weights, eval mode), Vocabs(source, target) and config of a run."""
    return SEQ2SEQ.load(run_dir, device)


def translate(run_dir: str | Path, texts: list[str], beam: int | None = None,
              length_penalty: float | None = None, device: str = "cpu") -> list[Translation]:
    """Translate texts with a run's best weights; beam and penalty default to the run's own."""
    return Translator(load(run_dir, resolve_device(device)))(texts, beam, length_penalty)


def evaluate(run_dir: str | Path, source: str | Path, device: str = "auto",
             beam: int | None = None) -> Report:
    """:meth:`Seq2SeqFamily.evaluate` of a run directory."""
    return SEQ2SEQ.evaluate(load(run_dir, resolve_device(device)), str(source), beam=beam)


def exact_match_by_length(run_dir: str | Path, lengths: list[int], per_length: int,
                          device: str = "cpu", seed: int = 777) -> dict[int, float]:
    """Greedy exact match on ``per_length`` held-out sources of each length of the run's own
    built-in task (``reverse`` or ``sort``), none of them seen in training or validation."""
    loaded = load(run_dir, resolve_device(device))
    config = loaded.config
    task = config["data"]["source"]
    if task not in ("reverse", "sort"):
        raise ValueError(f"accuracy by length needs a reverse or sort run, not {task!r}")
    seen = seen_sources(task, loaded.configs.own, loaded.configs.train)
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
            f"train / {data['val_pairs']:,} validation pairs)", *token_lines(info)]


SEQ2SEQ = Seq2SeqFamily()
