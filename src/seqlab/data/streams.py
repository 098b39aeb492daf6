"""Batches for truncated backpropagation through time over one long token stream.

:class:`StreamBatches` (char-rnn semantics): the tokens are cut into B parallel streams, read in
consecutive chunks of T, so chunk k+1 of a stream continues chunk k and the trainer carries the
hidden state across (detached). :class:`WindowBatches`: B windows at random offsets, the state
starting from zero each time. Both are pure functions of the step number, so a resumed run
sees exactly the batches a run that never stopped would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Chunk:
    inputs: Tensor  # (B, T) int64
    targets: Tensor  # (B, T) int64, inputs shifted by one
    fresh: bool  # True: start from a zero state (a new epoch, or a random window)


def min_tokens(batch_size: int, seq_len: int) -> int:
    return batch_size * seq_len + 1


class StreamBatches:
    """B contiguous streams read T tokens at a time; the last chunk of an epoch may be shorter."""

    def __init__(self, tokens: Tensor, batch_size: int, seq_len: int) -> None:
        if len(tokens) < min_tokens(batch_size, seq_len):
            raise ValueError(
                f"too short for one training chunk: {len(tokens)} tokens, need at least "
                f"{min_tokens(batch_size, seq_len)} (batch size {batch_size} x sequence length "
                f"{seq_len} + 1); lower --batch-size or --seq-len")
        per_stream = (len(tokens) - 1) // batch_size
        used = batch_size * per_stream
        self.inputs = tokens[:used].view(batch_size, per_stream)  # (B, N/B), views, no copy
        self.targets = tokens[1:used + 1].view(batch_size, per_stream)
        self.seq_len = seq_len
        self.chunks_per_epoch = -(-per_stream // seq_len)

    def __len__(self) -> int:
        return self.chunks_per_epoch

    def __getitem__(self, step: int) -> Chunk:
        k = step % self.chunks_per_epoch
        cols = slice(k * self.seq_len, (k + 1) * self.seq_len)
        return Chunk(self.inputs[:, cols].long(), self.targets[:, cols].long(), fresh=k == 0)


class WindowBatches:
    """B windows of T tokens at random offsets, drawn from a generator seeded by (seed, step)."""

    def __init__(self, tokens: Tensor, batch_size: int, seq_len: int, seed: int) -> None:
        if len(tokens) < seq_len + 1:
            raise ValueError(f"too short for one training window: {len(tokens)} tokens, need at "
                             f"least {seq_len + 1}; lower --seq-len")
        self.tokens, self.batch_size, self.seq_len, self.seed = tokens, batch_size, seq_len, seed
        self.chunks_per_epoch = max(1, (len(tokens) - 1) // (batch_size * seq_len))

    def __len__(self) -> int:
        return self.chunks_per_epoch

    def __getitem__(self, step: int) -> Chunk:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        starts = torch.randint(0, len(self.tokens) - self.seq_len, (self.batch_size,),
                               generator=gen)
        index = starts[:, None] + torch.arange(self.seq_len + 1)  # (B, T + 1)
        window = self.tokens[index].long()
        return Chunk(window[:, :-1], window[:, 1:], fresh=True)
