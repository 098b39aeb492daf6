"""One example per line (``--batching lines``): each line its own sequence from an empty state.

A text of names, words, SMILES strings or commands is read as lines (:func:`read_lines`), split
into training and validation by whole lines drawn at random (:func:`split_lines`), and encoded
with the run's vocabulary (:func:`encode_lines`). The newline is the end-of-line token EOL and
serves as the start marker too: a line ``x_1 .. x_L`` is read as ``EOL x_1 .. x_L`` and predicts
``x_1 .. x_L EOL``, so the model learns where a line ends, a loss per character counts that
prediction (as makemore's do), and no special token enters the vocabulary.

:class:`LineBatches` puts B lines in a batch, padded to the longest of them and masked: past a
line's EOL the targets are IGNORE (nothing scored, nothing counted) and the inputs PAD. Every
batch starts from an empty state (``fresh``). The batch of a step is a pure function of
(seed, step), so a resumed run sees exactly the batches of a run that never stopped.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from seqlab.data import IGNORE
from seqlab.data.streams import Chunk
from seqlab.data.vocab import Vocab

log = logging.getLogger(__name__)

EOL = "\n"  # ends every line, and is read before its first token as the start marker
PAD = 0  # inputs past a line's end; read by finished rows only, never scored, so any id would do
# Batches sorted together by length within pools of POOL batches, as TuneBatches does for tunes
# (there it cut padding from 48% of a batch to 13%); 1 gives a plain shuffle.
POOL = 8


def read_lines(text: str) -> list[str]:
    """The non-empty lines of a text, in order.

    Lines are cut at ``"\\n"`` only, and whitespace at both ends of each line is removed: the
    ``"\\r"`` of a ``"\\r\\n"`` ending, trailing spaces and tabs, and indentation, none of which
    an example per line means to hold (and a word vocabulary would merge them with the newline
    into tokens of their own). Lines that are then empty are dropped. Other separators that
    ``str.splitlines`` would cut at (a lone ``"\\r"``, ``"\\x0c"``, ``"\\u2028"``) stay inside
    their line as characters. Raises ValueError when no line is left.
    """
    lines = [line.strip() for line in text.split("\n")]
    lines = [line for line in lines if line]
    if not lines:
        raise ValueError("read_lines: no lines (the text is empty or only whitespace)")
    return lines


def split_lines(lines: list[str], val_fraction: float, seed: int
                ) -> tuple[list[str], list[str]]:
    """(training lines, validation lines): whole lines, shuffled by ``seed``; the first
    ``round(N * val_fraction)`` of the shuffled order validate, the rest train.

    Both splits keep at least one line (a warning says when the rounding gave none). Each split
    comes in the shuffled order, so any first batches of the validation lines are a random
    sample of them. A line repeated in the text is drawn once per occurrence, so it may land in
    both splits. Raises ValueError for ``val_fraction`` outside (0, 1) or fewer than 2 lines.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"split_lines: val_fraction must be in (0, 1), got {val_fraction}")
    if len(lines) < 2:
        raise ValueError(f"split_lines: a train/validation split needs at least 2 lines, "
                         f"got {len(lines)}")
    order = list(range(len(lines)))
    random.Random(seed).shuffle(order)
    wanted = round(len(lines) * val_fraction)
    n_val = min(max(1, wanted), len(lines) - 1)
    if n_val != wanted:
        log.warning("split_lines: val_fraction %g of %d lines gives %d validation lines; "
                    "using %d", val_fraction, len(lines), wanted, n_val)
    return [lines[i] for i in order[n_val:]], [lines[i] for i in order[:n_val]]


def lines_text(lines: list[str]) -> str:
    """The lines joined, each followed by the newline: the text to build a vocabulary over,
    so that it holds the EOL token (a word vocabulary built over the raw text may lack a lone
    newline when the text has blank lines or trailing spaces)."""
    return "".join(line + EOL for line in lines)


def eol_id(vocab: Vocab) -> int:
    """The id of the newline token, the EOL of every line.

    Character and word vocabularies have it when they were built over text with a lone newline
    (:func:`lines_text` has one after every line); byte-level BPE always has it (a byte of its
    alphabet). Raises ValueError when the vocabulary lacks it or spends more than one token on
    it.
    """
    if vocab.unknown(EOL):
        raise ValueError(f"the {vocab.kind} vocabulary has no newline token, which --batching "
                         "lines needs to start and end every line; build it over the lines "
                         "each followed by a newline (seqlab.data.lines.lines_text)")
    ids = vocab.encode(EOL)
    if len(ids) != 1:
        raise ValueError(f"the {vocab.kind} vocabulary encodes a newline as {len(ids)} tokens; "
                         "--batching lines needs it as one")
    return int(ids[0])


@dataclass(frozen=True)
class EncodedLines:
    """Lines as one token stream ``EOL line_0 EOL line_1 EOL ... line_{N-1} EOL``; line i's
    tokens are ``stream[starts[i] + 1 : starts[i] + 1 + lengths[i]]``, EOL on either side."""

    stream: Tensor  # (N_tokens,) int32
    starts: Tensor  # (N,) int64, position of the EOL before each line
    lengths: Tensor  # (N,) int64, tokens of each line without its EOL, each >= 1
    eol: int
    chars: int  # characters of the scored text: every line and its EOL

    def __len__(self) -> int:
        return len(self.starts)


def encode_lines(lines: list[str], vocab: Vocab) -> EncodedLines:
    """Encode lines (as :func:`read_lines` returns them) with one vectorised call.

    Raises ValueError for no lines, a line holding a newline, a vocabulary without a one-token
    newline (:func:`eol_id`), characters outside a character vocabulary (as ``encode`` does;
    a word vocabulary maps unseen words to ``<unk>``), or a vocabulary whose tokens do not
    stop at the newlines.
    """
    if not lines:
        raise ValueError("encode_lines: no lines")
    if any(EOL in line for line in lines):
        raise ValueError("encode_lines: a line holds a newline; read the text with read_lines")
    eol = eol_id(vocab)
    ids = vocab.encode(EOL + lines_text(lines))
    ends = np.flatnonzero(ids == eol)  # (N + 1,) the EOL before each line, and the last one
    if len(ends) != len(lines) + 1 or np.diff(ends).min() < 2:
        raise ValueError(f"encode_lines: the {vocab.kind} vocabulary does not encode every line "
                         "apart from the newlines around it")
    ends = torch.as_tensor(ends, dtype=torch.int64)
    return EncodedLines(stream=torch.as_tensor(ids.astype(np.int32)), starts=ends[:-1],
                        lengths=ends.diff() - 1, eol=eol,
                        chars=sum(len(line) + 1 for line in lines))


class LineBatches:
    """B whole lines per batch, each ``EOL + line`` predicting ``line + EOL``, padded to the
    longest line of the batch and masked; every batch ``fresh`` (an empty state).

    With a seed, epoch e shuffles the lines by (seed, e), sorts each pool of ``pool`` x B of
    them by length, cuts it into batches and shuffles the batches: every line is read once per
    epoch, and lines of similar length share a batch. With ``seed=None`` the lines keep their
    order, B at a time (validation: steps 0 .. len - 1 read every line exactly once). An epoch
    has ``ceil(N / B)`` batches either way; one of them may hold fewer than B lines.
    """

    def __init__(self, lines: EncodedLines, batch_size: int, seed: int | None,
                 pool: int = POOL) -> None:
        if len(lines) == 0:
            raise ValueError("LineBatches: no lines")
        if batch_size < 1 or pool < 1:
            raise ValueError(f"LineBatches: expected batch_size and pool >= 1, got "
                             f"{batch_size} and {pool}")
        self.lines, self.batch_size, self.seed, self.pool = lines, batch_size, seed, pool
        self.batches_per_epoch = -(-len(lines) // batch_size)
        # characters per scored token, for bits per character (1 for a character vocabulary)
        self.chars_per_token = lines.chars / int(lines.lengths.sum() + len(lines))
        self._plans: dict[int, list[Tensor]] = {}

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __getitem__(self, step: int) -> Chunk:
        rows = self.lines_of(step)  # (B,)
        scored = self.lines.lengths[rows] + 1  # (B,) the line's tokens and its EOL
        width = int(scored.max())  # T
        index = self.lines.starts[rows, None] + torch.arange(width + 1)  # (B, T + 1)
        window = self.lines.stream[index.clamp_max(len(self.lines.stream) - 1)].long()
        pad = torch.arange(width) >= scored[:, None]  # (B, T) past the line's EOL
        return Chunk(window[:, :-1].masked_fill(pad, PAD),  # EOL + line
                     window[:, 1:].masked_fill(pad, IGNORE), fresh=True)  # line + EOL

    def lines_of(self, step: int) -> Tensor:
        """(B,) the indices (into the encoded lines) of the lines of a step's batch, row order."""
        if step < 0:
            raise ValueError(f"LineBatches: expected a step >= 0, got {step}")
        epoch, within = divmod(step, self.batches_per_epoch)
        return self._plan(epoch if self.seed is not None else 0)[within]

    def lengths(self, step: int) -> Tensor:
        """(B,) the scored positions of each row of a step's batch: its line's tokens + 1."""
        return self.lines.lengths[self.lines_of(step)] + 1

    def _plan(self, epoch: int) -> list[Tensor]:
        """The lines of each batch of an epoch, in the order they are read."""
        if epoch not in self._plans:
            if len(self._plans) > 2:  # only the epoch of the current step is read again
                self._plans.pop(min(self._plans))
            self._plans[epoch] = self._order(epoch)
        return self._plans[epoch]

    def _order(self, epoch: int) -> list[Tensor]:
        n = len(self.lines)
        if self.seed is None:
            return list(torch.arange(n).split(self.batch_size))
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=gen)
        lengths = self.lines.lengths
        batches = [rows for pool in order.split(self.pool * self.batch_size)
                   for rows in pool[lengths[pool].argsort(descending=True, stable=True)]
                   .split(self.batch_size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=gen)]
