"""Decoding and scoring for the seq2seq family: a model and vocabularies in, text and scores out.

Nothing here reads a run directory: :mod:`seqlab.families.seq2seq` loads runs and calls these
(and re-exports the names its callers import from it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from seqlab.arguments import whole
from seqlab.data.pairs import BOS, EOS, PairBatch, PairVocab, Vocabs, make_batch
from seqlab.data.vocab import WORD_PATTERN
from seqlab.distributed import SINGLE, World, own_rows
from seqlab.io import atomic_write
from seqlab.models.seq2seq import Seq2Seq
from seqlab.search import Hypothesis, beam_search, greedy_search
from seqlab.tasks import token_nll

log = logging.getLogger(__name__)
LISTED = 3  # more inputs longer than training than this are warned about in one line


# translation ---------------------------------------------------------------------------------
@dataclass
class Translation:
    source: str
    text: str
    source_tokens: list[str]
    output_tokens: list[str]
    weights: Tensor | None  # (len(output_tokens), len(source_tokens)), None without attention
    score: float  # log-probability of the output, its end token included when it ended


def encode_sources(vocab: PairVocab, texts: list[str], numbers: list[int] | None = None
                   ) -> list[list[int]]:
    """Ids of each input; an empty input or one with unknown symbols is a ValueError naming it
    by its number (``numbers``: each input's, default 1, 2, ...; a line of stdin)."""
    encoded = []
    for k, text in zip(numbers or range(1, len(texts) + 1), texts, strict=True):
        if not text.strip():
            raise ValueError(f"input {k} is empty")
        if missing := vocab.unknown(text):
            shown = ", ".join(repr(m) for m in missing[:10])
            raise ValueError(f"input {k} ({text!r}) has symbols outside the source vocabulary: "
                             f"{shown}")
        encoded.append(vocab.encode(text))
    return encoded


def check_beam(beam: int) -> None:
    whole("beam", beam, 1)


def warn_long_inputs(texts: list[str], longest: float, numbers: list[int] | None = None
                     ) -> None:
    """Warn about inputs longer than ``longest``, the longest source seen in training: they are
    decoded, but past any length the model has learnt from."""
    longer = [(k, len(text)) for k, text in zip(numbers or range(1, len(texts) + 1), texts,
                                                strict=True) if len(text) > longest]
    if len(longer) > LISTED:
        log.warning("%d of %d inputs are longer than any source seen in training (%d "
                    "characters), up to %d; decoding them anyway", len(longer), len(texts),
                    longest, max(n for _, n in longer))
        return
    for k, n in longer:
        log.warning("input %d is %d characters long, longer than any source seen in training "
                    "(%d); decoding it anyway", k, n, longest)


@torch.no_grad()
def translate_texts(model: Seq2Seq, vocabs: Vocabs, texts: list[str], beam: int = 1,
                    length_penalty: float = 1.0, batch_size: int = 64,
                    max_target: int = 0, numbers: list[int] | None = None
                    ) -> list[Translation]:
    """Decode each text: greedy in batches when ``beam == 1``, else one beam search per text.

    Decoding stops at the end token or after max(source length, 2 * max_target) + 10 tokens
    (``max_target``: the longest target seen in training, 0 if unknown); ``numbers`` name the
    inputs in errors (:func:`encode_sources`).
    """
    check_beam(beam)
    ids = encode_sources(vocabs.source, texts, numbers)
    device = next(model.parameters()).device
    model.eval()
    hyps: list[Hypothesis] = []
    for start in range(0, len(ids), 1 if beam > 1 else batch_size):
        chunk = ids[start:start + (1 if beam > 1 else batch_size)]
        batch = make_batch(chunk, [[EOS]] * len(chunk))
        memory, state = model.encode(batch.source.to(device), batch.source_lengths)
        limits = [max(len(c), 2 * max_target) + 10 for c in chunk]
        if beam > 1:
            hyps.append(beam_search(model.step_fn(), Seq2Seq.select, (state, memory), BOS, EOS,
                                    beam, limits[0], length_penalty, device))
        else:
            hyps += greedy_search(model.step_fn(), (state, memory), len(chunk), BOS, EOS,
                                  limits, device)
    return [Translation(text, vocabs.target.decode(h.tokens),
                        vocabs.source.tokens(source), vocabs.target.tokens(h.tokens),
                        None if h.weights is None else h.weights[:, :len(source)].cpu(), h.score)
            for text, source, h in zip(texts, ids, hyps, strict=True)]


# scoring -------------------------------------------------------------------------------------
@torch.no_grad()
def teacher_forced_nats(model: Seq2Seq, batches: Iterable[PairBatch], device,
                        world: World = SINGLE) -> tuple[float, int]:
    """(summed nats, target tokens scored) of ``batches`` under teacher forcing; with many
    processes each scores its block of every batch's rows and the sums are added up."""
    nats, count = 0.0, 0
    for full in batches:
        batch, own = own_rows(full, world)
        if own:
            logits, _ = model(batch.source.to(device), batch.source_lengths,
                              batch.target_in.to(device))
            total, n = token_nll(logits, batch.target_out.to(device))
            nats, count = nats + float(total), count + n
    nats, count = world.sum([nats, count])
    return nats, int(count)


def greedy_match_scores(model: Seq2Seq, vocabs: Vocabs, pairs: list[tuple[str, str]],
                        batch_size: int, max_target: int, world: World = SINGLE
                        ) -> dict[str, float]:
    """:func:`match_scores` of ``pairs``' sources decoded greedily against their targets; with
    many processes each decodes its block of the pairs and the texts are gathered in order."""
    mine = pairs[world.block(len(pairs))]
    outputs = translate_texts(model, vocabs, [s for s, _ in mine], batch_size=batch_size,
                              max_target=max_target)
    texts = [t for part in world.gather([o.text for o in outputs]) for t in part]
    return match_scores(texts, [t for _, t in pairs], vocabs.target)


def match_scores(outputs: list[str], references: list[str], vocab: PairVocab) -> dict[str, float]:
    """Exact match, and token accuracy: reference tokens matched at their position, over
    max(len(output), len(reference)) tokens per pair (so extra output tokens count as errors)."""
    exact = sum(o == r for o, r in zip(outputs, references, strict=True))
    right = total = 0
    for output, reference in zip(outputs, references, strict=True):
        o, r = symbols(vocab, output), symbols(vocab, reference)
        right += sum(a == b for a, b in zip(o, r, strict=False))
        total += max(len(o), len(r))
    return {"exact_match": exact / max(len(references), 1), "token_accuracy": right / max(total, 1)}


def symbols(vocab: PairVocab, text: str) -> list:
    """The tokens of text at the vocabulary's level; a reference may hold unknown ones."""
    if vocab.kind == "char":
        return list(text)
    if vocab.kind == "word":
        return WORD_PATTERN.findall(text)
    return vocab.encode(text)


def score_outputs(outputs: list[str], references: list[str], vocab: PairVocab) -> dict[str, float]:
    """match_scores plus corpus BLEU and chrF from sacrebleu (BLEU on characters for a character
    vocabulary, where whitespace words would make most outputs one token)."""
    import sacrebleu

    tokenize = "char" if vocab.kind == "char" else "13a"
    bleu = sacrebleu.corpus_bleu(outputs, [references], tokenize=tokenize)
    chrf = sacrebleu.corpus_chrf(outputs, [references])
    return {**match_scores(outputs, references, vocab), "bleu": bleu.score, "chrf": chrf.score}


# attention -----------------------------------------------------------------------------------
def save_attention(path: str | Path, translation: Translation) -> None:
    """A heatmap of the attention weights: source along x, output along y."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if translation.weights is None:
        raise ValueError("this run has no attention (--attention none): nothing to show")
    w = translation.weights.numpy()
    fig, ax = plt.subplots(figsize=(max(3, 0.3 * w.shape[1] + 1.5),
                                    max(2.5, 0.3 * w.shape[0] + 1.2)))
    ax.imshow(w, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(w.shape[1]),
                  [token_label(t) for t in translation.source_tokens], fontsize=8)
    ax.set_yticks(range(w.shape[0]),
                  [token_label(t) for t in translation.output_tokens], fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def token_label(token: str) -> str:
    return repr(token)[1:-1] if token.strip() else "␣"
