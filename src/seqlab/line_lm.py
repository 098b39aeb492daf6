"""A language model of one example per line: evaluate it on whole lines, sample new lines.

Every line is read and written from an empty state, as ``--batching lines`` trains it
(:mod:`seqlab.data.lines`): the newline EOL starts each line and ends it. Kept apart from the
data module so that the data layer never imports the tasks layer.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from seqlab.data.lines import EOL, LineBatches, eol_id
from seqlab.data.vocab import Vocab
from seqlab.generate import sample_until
from seqlab.tasks import evaluate_chunks


def evaluate_lines(model: nn.Module, batches: LineBatches, device: torch.device | str = "cpu",
                   max_batches: int = 0) -> tuple[float, int]:
    """(summed nats, tokens scored) of a language model over the batches of one epoch of
    ``batches`` (built with ``seed=None``: every line once, in order), each from an empty state.

    Every target that is not IGNORE counts: each line's tokens and its EOL; padding never.
    ``max_batches`` > 0 reads only the first that many batches.
    """
    return evaluate_chunks(model, batches, device, max_batches)


def sample_lines(model: nn.Module, vocab: Vocab, count: int, seed: int | None = None,
                 max_length: int = 256, **sampling) -> list[str]:
    """``count`` new lines, sampled in parallel as one batch, each from an empty state.

    Each line starts from the EOL token and ends when the model writes EOL (not part of the
    line) or after ``max_length`` tokens (then it is returned cut there). Keyword arguments are
    those of :class:`seqlab.generate.SamplingConfig`; a seed makes the lines reproducible.
    Raises ValueError for a vocabulary without a one-token newline (:func:`eol_id`), for
    ``count`` or ``max_length`` below 1, or for bad sampling settings.
    """
    if count < 1 or max_length < 1:
        raise ValueError(f"sample_lines: count and max_length must be >= 1, got {count} and "
                         f"{max_length}")
    eol_id(vocab)
    samples = sample_until(model, vocab, EOL, EOL, max_length, count, seed, **sampling)
    return [text for text, _ in samples]


def mark_seen(lines: Iterable[str], training_lines: Iterable[str]) -> list[bool]:
    """For each line, whether it occurs exactly (character for character) among the training
    lines."""
    seen = set(training_lines)
    return [line in seen for line in lines]
