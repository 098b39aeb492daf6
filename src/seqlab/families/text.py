"""The text family (``task = "lm"``): language models on text and on ABC tunes.

A source is a UTF-8 file, a folder of them or a bundled corpus. ABC sources (a bundled corpus,
``.abc`` files) split train/validation by whole tunes; other text by one contiguous block.
The run directory holds ``vocab.json`` (or ``tokenizer.json``) beside the weights. The model is
any registered language model (:func:`seqlab.models.build_model`): recurrent or a feed-forward
baseline, ``forward(tokens, state=None) -> (logits, state)``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seqlab import limits, music
from seqlab.checkpoint import RunDir
from seqlab.config import TrainConfig
from seqlab.data.abc import is_abc_source, join_tunes, load_tunes, train_val_tunes
from seqlab.data.lines import (
    EncodedLines,
    LineBatches,
    encode_lines,
    lines_text,
    read_lines,
    split_lines,
)
from seqlab.data.text import load_text, split_tokens, to_tensor
from seqlab.data.tunes_batches import EncodedTunes, encode_tunes
from seqlab.data.vocab import UNK, Vocab, build_vocab, check_prompt
from seqlab.diagnostics import Probe
from seqlab.encoders import encoder_spec
from seqlab.export import Graph, step_graph, token_inputs
from seqlab.families import text_report
from seqlab.families.base import Configs, Family, Headline, LoadedRun, Prepared, Report, token_lines
from seqlab.generate import generate
from seqlab.line_lm import sample_lines
from seqlab.models import build_model
from seqlab.tasks import LanguageModelTask, evaluate_chunks, evaluate_tokens, lm_metrics

log = logging.getLogger(__name__)


@dataclass
class TextData:
    """A text source turned into one token tensor, split into train and validation blocks."""

    source: str
    vocab: Vocab
    train_tokens: Tensor
    val_tokens: Tensor
    chars_per_token: float
    tunes: tuple[EncodedTunes, EncodedTunes] | None = None  # ABC: (train, val), tune by tune
    lines: tuple[EncodedLines, EncodedLines] | None = None  # --batching lines: (train, val)
    train_lines: list[str] | None = None  # --batching lines: the training lines as text

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "tokenizer": self.vocab.kind, "vocab_size": self.vocab.size,
                "train_tokens": len(self.train_tokens), "val_tokens": len(self.val_tokens),
                "chars_per_token": self.chars_per_token}


def load_data(source: str | Path, config: TrainConfig | None = None,
              vocab: Vocab | None = None) -> TextData:
    """Read a file, folder or bundled corpus; build (or reuse) the vocabulary; split it.

    ABC sources (a bundled corpus, ``.abc`` files) split by whole tunes, see
    :func:`load_tune_data`; with ``batching="lines"`` any text splits by whole lines, see
    :func:`load_line_data`; other text by one contiguous block.
    """
    config = config or TrainConfig()
    if config.batching == "lines":
        return load_line_data(source, config, vocab)
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


def load_line_data(source: str | Path, config: TrainConfig, vocab: Vocab | None = None
                   ) -> TextData:
    """One example per line: the lines of a text, split by whole lines drawn with
    ``config.seed``, each read from an empty state after the end-of-line token and predicting
    its own end (:mod:`seqlab.data.lines`)."""
    lines = read_lines(load_text(source))
    train, val = split_lines(lines, config.val_fraction, config.seed)
    vocab = vocab or build_vocab(lines_text(lines), config.tokenizer, config.bpe_vocab_size)
    encoded = (encode_lines(train, vocab), encode_lines(val, vocab))
    chars = sum(e.chars for e in encoded)
    tokens = sum(int(e.lengths.sum()) + len(e) for e in encoded)
    return TextData(str(source), vocab, encoded[0].stream, encoded[1].stream, chars / tokens,
                    lines=encoded, train_lines=train)


def token_probe(tokens: Tensor, seq_len: int, batch: int, device="cpu") -> Probe:
    """A language model's probe: ``batch`` windows of seq_len + 1 tokens, evenly spaced."""
    span = min(seq_len + 1, len(tokens))
    starts = np.linspace(0, len(tokens) - span, batch).round().astype(int)
    return Probe.from_tokens(torch.stack([tokens[s:s + span].long() for s in starts]
                                         ).to(device))


class TextTask(LanguageModelTask):
    """The language-model task, with the validation windows diagnostics probe."""

    def probe(self, batch: int) -> Probe:
        return token_probe(self.val_tokens, self.config.seq_len, batch, self.device)


@dataclass
class Sampler:
    """What ``seqlab generate`` samples from a language-model run: text, tunes or lines."""

    loaded: LoadedRun

    def text(self, prompt: str, length: int, num_samples: int = 1, seed: int | None = None,
             progress=None, stop=None, **sampling) -> list[str]:
        return generate(self.loaded.model, self.loaded.vocab, prompt, length, num_samples, seed,
                        progress, stop, **sampling)

    def tunes(self, count: int, prompt: str, max_length: int, seed: int | None = None,
              meter: bool = True, **sampling) -> list:
        """Whole tunes; a model trained on whole tunes began each from an empty state. With
        ``meter``, sampling never overfills a bar (:func:`seqlab.music.generate_tunes`)."""
        vocab = self.loaded.vocab
        if lacks := vocab.unknown("X:"):  # a word vocabulary would read them as <unk>
            raise ValueError(f"{self.loaded.run.path} cannot write ABC tunes: its vocabulary "
                             f"has no {' or '.join(map(repr, lacks))} (a run trained on text, "
                             "not tunes); sample text with --length")
        check_prompt(vocab, prompt)
        fresh = self.loaded.configs.train.batching == "tunes"
        return music.generate_tunes(self.loaded.model, self.loaded.vocab, count, prompt,
                                    max_length, seed, fresh_state=fresh, meter=meter,
                                    **sampling)

    def tune_split(self) -> tuple[list[str], list[str]] | None:
        """(training tunes, held-out tunes) of an ABC run, or None for other text."""
        return music.tune_split(self.loaded.run.path)

    def lines(self, count: int, max_length: int, seed: int | None = None, **sampling
              ) -> list[str]:
        """New lines, each from an empty state (a run trained with ``--batching lines``)."""
        if self.loaded.configs.train.batching != "lines":
            raise ValueError(f"{self.loaded.run.path} was trained on --batching "
                             f"{self.loaded.configs.train.batching}, not lines; sample text "
                             "with --length")
        return sample_lines(self.loaded.model, self.loaded.vocab, count, seed, max_length,
                            **sampling)

    def training_lines(self) -> list[str] | None:
        """The run's training lines, or None when its source is no longer readable."""
        loaded = self.loaded
        try:
            data = load_line_data(loaded.config["data"]["source"], loaded.configs.train,
                                  loaded.vocab)
        except (OSError, ValueError):
            return None
        return data.train_lines


class TextFamily(Family):
    name = "lm"
    help = "a language model on text or ABC tunes: a file, a folder or a bundled corpus"
    fallback = True  # any source no other family claims is text
    report_sections = text_report.sections  # samples at two temperatures, or tunes

    def claims(self, source: str) -> bool:
        return True

    def prepare(self, source: str, configs: Configs, assets: Any = None) -> Prepared:
        data = load_data(source, configs.train, vocab=assets)
        return Prepared(str(source), data.vocab, data, data.describe())

    def complete(self, configs: Configs, assets: Vocab) -> Configs:
        return super().complete(dataclasses.replace(configs, model=dataclasses.replace(
            configs.model, vocab_size=assets.size)), assets)  # then check_sizes

    def shape(self, configs: Configs, assets: Vocab | None = None) -> limits.Shape:
        """A language model's sizes; bow in counts mode reads one-hots of the vocabulary."""
        shape = super().shape(configs, assets)
        if encoder_spec(configs.model.model).one_hot(configs.model):
            return dataclasses.replace(shape, input_size=shape.outputs, vocab_in=0)
        return shape

    def build(self, configs: Configs, assets: Vocab):
        return build_model(configs.model)

    def task(self, prepared: Prepared, configs: Configs, device) -> TextTask:
        data: TextData = prepared.data
        task = TextTask(data.train_tokens, data.val_tokens, configs.train, data.chars_per_token,
                        data.tunes, data.lines)
        task.device = device
        return task

    def save_assets(self, run: RunDir, assets: Vocab) -> None:
        assets.save(run.path)

    def load_assets(self, run: RunDir, configs: Configs, config: dict[str, Any]) -> Vocab:
        vocab = run.vocab()
        if configs.model.vocab_size != vocab.size:
            raise ValueError(f"{run.path}: config.json says vocab_size "
                             f"{configs.model.vocab_size} but the vocabulary has {vocab.size} "
                             "tokens")
        return vocab

    def evaluate(self, loaded: LoadedRun, source: str, **options) -> Report:
        """Loss (nats per token), perplexity and bits per character on a text source."""
        train = loaded.configs.train
        device = next(loaded.model.parameters()).device
        if train.batching == "lines":  # each line from an empty state, as it was trained
            lines = encode_lines(read_lines(load_text(source)), loaded.vocab)
            batches = LineBatches(lines, train.batch_size, None)
            nats, count = evaluate_chunks(loaded.model, batches, device)
            metrics = lm_metrics(nats, count, batches.chars_per_token)
            tokens = lines.stream[1:]  # the scored ones: every line and the EOL after it
        else:
            text = join_tunes(load_tunes(source)) if is_abc_source(source) \
                else load_text(source)
            tokens = to_tensor(loaded.vocab.encode(text))
            nats, count = evaluate_tokens(loaded.model, tokens, train.batch_size, train.seq_len,
                                          device)
            metrics = lm_metrics(nats, count, len(text) / max(len(tokens), 1))
        if loaded.vocab.kind == "word":  # words the run never saw are all one <unk>
            metrics["unknown_tokens"] = unknown = int((tokens == loaded.vocab.index[UNK]).sum())
            if unknown:
                log.warning("%s: %d of %d tokens are words the run's vocabulary lacks, all "
                            "scored as <unk>: the loss undercounts what they cost", source,
                            unknown, len(tokens))
        result = {"run": str(loaded.run.path), "data": str(source), **metrics}
        return Report(result, f"loss {result['loss']:.4f} nats/token  perplexity "
                              f"{result['ppl']:.3f}  bits/char {result['bpc']:.4f}  "
                              f"({result['tokens']:,} tokens)")

    def generator(self, loaded: LoadedRun) -> Sampler:
        return Sampler(loaded)

    def exporter(self, loaded: LoadedRun) -> list[Graph]:
        """One step with the state in and out: token ids (B, T) and the state -> logits
        (B, T, V) and the new state; a server feeds each sampled token back with the state."""
        model = loaded.model
        return [step_graph(model, model.initial_state, token_inputs(model.config.vocab_size),
                           ("tokens", "logits"), {"family": self.name, "tokens": "ids of the "
                                                  "run's vocabulary (vocab.json or "
                                                  "tokenizer.json)"})]

    def info_lines(self, info: dict[str, Any]) -> list[str]:
        data = info["config"]["data"]
        return [f"data         {data['source']}  ({data['tokenizer']}, "
                f"{data['train_tokens']:,} train / {data['val_tokens']:,} validation tokens)",
                *token_lines(info)]

    def eval_note(self, record: dict[str, Any]) -> str:
        return f"val_bpc {record['val_bpc']:.3f}"

    def loss_unit(self, loss: float, assets: Any) -> str:
        return f"nats/token ({loss / math.log(2):.3f} bits)"

    def headline(self, record: dict[str, Any]) -> Headline:
        return Headline(bpc=record.get("val_bpc"))


TEXT = TextFamily()
