"""Batches of whole tunes: each tune one sequence, B tunes padded to the longest of them.

A tune is encoded as ``START + tune + END`` (START is the blank line that precedes every tune in
the tune stream, END the blank line that follows it), so the model reads what the stream shows
it: the marker, the tune, its marker. The start marker is read, not predicted: the targets
before the tune's first token are IGNORE, and so are the targets past a tune's end marker, so
padding adds nothing to a loss or to a token count. The inputs there are PAD (token 0): only a
row whose tune is over reads them, and what it computes from them is never scored.

:class:`TuneBatches` reads a batch of B tunes T tokens at a time, the state carried from chunk
to chunk of the same tunes (``fresh`` on the first chunk of a batch): a step costs what a
stream chunk costs whatever the length of the tunes, and ``--seq-len`` stays the truncation
length of BPTT. Epoch e shuffles the tunes by (seed, e), sorts each pool of POOL x B of them by
length and cuts it into batches, then shuffles the batches: every tune is read once per epoch,
and tunes of similar length share a batch, so little of it is padding. With ``seed=None`` the
tunes keep their order (validation).
The batch of a step is a pure function of the step, so a resumed run sees exactly the batches
that a run that never stopped would have seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from seqlab.data import IGNORE
from seqlab.data.abc import END, START
from seqlab.data.streams import Chunk

PAD = 0  # read by finished rows only; any id would do
# Batches sorted together by length: on irish.abc padding falls from 48% of a batch (a plain
# shuffle) to 13%, and seqlab's default model's held-out loss from 1.213 nats/char (1,982 steps
# in 8 minutes) to 1.115 (2,000 steps in 5.5 minutes).
POOL = 8


@dataclass(frozen=True)
class EncodedTunes:
    """Token sequences ``START + tune + END``; the first ``context`` tokens are the start
    marker, read but not predicted."""

    sequences: list[Tensor]  # each (L_i,) int64
    context: int
    chars: int  # characters of the scored text: every tune and its end marker


def encode_tunes(tunes: list[str], encode: Callable[[str], np.ndarray]) -> EncodedTunes:
    """Each tune as its own sequence of tokens, the start marker encoded apart so that every
    sequence begins with the same ``context`` tokens."""
    start = torch.as_tensor(encode(START).astype(np.int64))
    sequences = [torch.cat([start, torch.as_tensor(encode(tune + END).astype(np.int64))])
                 for tune in tunes]
    return EncodedTunes(sequences, len(start), sum(len(tune + END) for tune in tunes))


class TuneBatches:
    """B whole tunes per batch, padded, read T tokens at a time; the batch of step s is a pure
    function of s (see the module docstring)."""

    def __init__(self, tunes: EncodedTunes, batch_size: int, seq_len: int,
                 seed: int | None) -> None:
        if not tunes.sequences:
            raise ValueError("TuneBatches: no tunes")
        if min(len(s) for s in tunes.sequences) <= tunes.context:
            raise ValueError("TuneBatches: expected every tune to hold more than its start marker")
        if seq_len < tunes.context:  # the first chunk would score nothing
            raise ValueError(f"--batching tunes needs --seq-len of at least {tunes.context} (the "
                             f"start marker's tokens), got {seq_len}")
        self.batch_size, self.seq_len, self.seed = batch_size, seq_len, seed
        self.steps = torch.tensor([len(s) - 1 for s in tunes.sequences])  # (N,) inputs per tune
        # padded tables (N, L_max), cut per chunk: no Python loop per tune per step
        self.inputs = torch.full((len(self.steps), int(self.steps.max())), PAD, dtype=torch.int32)
        self.targets = torch.full_like(self.inputs, IGNORE)
        for i, seq in enumerate(tunes.sequences):
            self.inputs[i, :len(seq) - 1] = seq[:-1]
            self.targets[i, tunes.context - 1:len(seq) - 1] = seq[tunes.context:]
        # characters per scored token, for bits per character (1 for a character vocabulary)
        self.chars_per_token = tunes.chars / int((self.targets != IGNORE).sum())
        self._epoch_starts = [0]  # the first step of each epoch planned so far
        self._plans: dict[int, tuple[list[Tensor], Tensor]] = {}

    def __len__(self) -> int:
        """Steps of the first epoch (later epochs differ as the shuffle groups other tunes)."""
        return self.epoch_steps(0)

    def epoch_steps(self, epoch: int) -> int:
        return int(self._plan(epoch)[1][-1])

    def __getitem__(self, step: int) -> Chunk:
        epoch, within = self._locate(step)
        batches, ends = self._plan(epoch)
        b = int(torch.searchsorted(ends, within, right=True))
        chunk = within - (int(ends[b - 1]) if b else 0)
        rows = batches[b]  # (B,) tune ids; fewer at the end of an epoch
        start = chunk * self.seq_len
        stop = min(start + self.seq_len, int(self.steps[rows].max()))
        return Chunk(self.inputs[rows, start:stop].long(),  # (B, <= T), cut to the longest tune
                     self.targets[rows, start:stop].long(), fresh=chunk == 0)

    def tunes_of_epoch(self, epoch: int) -> list[list[int]]:
        """The tunes of each batch of an epoch, in the order they are read."""
        return [rows.tolist() for rows in self._plan(epoch)[0]]

    def _plan(self, epoch: int) -> tuple[list[Tensor], Tensor]:
        """(the tunes of each batch, cumulative steps at the end of each batch) of an epoch."""
        if epoch not in self._plans:
            n = len(self.steps)
            if self.seed is None:
                batches = list(torch.arange(n).split(self.batch_size))
            else:
                batches = self._shuffled_batches(epoch)
            chunks = [-(-int(self.steps[rows].max()) // self.seq_len) for rows in batches]
            if len(self._plans) > 4:  # only the epochs near the current step are read again
                self._plans.pop(min(self._plans))
            self._plans[epoch] = (batches, torch.tensor(chunks).cumsum(0))
        return self._plans[epoch]

    def _shuffled_batches(self, epoch: int) -> list[Tensor]:
        """The tunes in an order shuffled by (seed, epoch), cut into pools of POOL batches; each
        pool sorted by length and cut into batches; the batches shuffled."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.steps), generator=gen)
        batches = [rows for pool in order.split(POOL * self.batch_size)
                   for rows in pool[self.steps[pool].argsort(descending=True, stable=True)]
                   .split(self.batch_size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=gen)]

    def _locate(self, step: int) -> tuple[int, int]:
        """(epoch, step within it): epochs differ in length, so they are counted from 0."""
        if step < 0:
            raise ValueError(f"TuneBatches: expected a step >= 0, got {step}")
        if self.seed is None:
            return divmod(step, self.epoch_steps(0))
        while self._epoch_starts[-1] <= step:
            epoch = len(self._epoch_starts) - 1
            self._epoch_starts.append(self._epoch_starts[-1] + self.epoch_steps(epoch))
        epoch = int(np.searchsorted(self._epoch_starts, step, side="right")) - 1
        return epoch, step - self._epoch_starts[epoch]
