"""Decoding a sequence from a step function: greedy (batched) and beam search.

Both work on any decoder given as two functions:

- ``step(tokens (K,), state) -> (log_probs (K, V), state, weights (K, S) or None)``: one step
  for K hypotheses, given the token each one emitted last;
- ``reorder(state, index (K',)) -> state``: keep (and repeat) the rows ``index`` of a state.

Beam search ranks finished hypotheses by their summed log-probability divided by
``length ** length_penalty`` (length counting the end token), so longer outputs are not
punished merely for having more factors below 1; ``length_penalty=0`` ranks by the raw sum.
With ``beam=1`` it is greedy search, token for token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

Step = Callable[[Tensor, Any], tuple[Tensor, Any, Tensor | None]]
Reorder = Callable[[Any, Tensor], Any]


@dataclass
class Hypothesis:
    tokens: list[int]  # without the end token
    score: float  # summed log-probability, the end token's included when finished
    weights: Tensor | None  # (len(tokens), S) attention of each output token, or None
    finished: bool

    def normalized(self, length_penalty: float) -> float:
        length = len(self.tokens) + int(self.finished)
        return self.score / max(length, 1) ** length_penalty


@torch.no_grad()
def greedy_search(step: Step, state: Any, batch: int, bos: int, eos: int,
                  max_len: int | list[int], device: torch.device | str = "cpu"
                  ) -> list[Hypothesis]:
    """The most likely token at every step, for ``batch`` inputs at once, each stopping at the
    end token or after ``max_len`` tokens (one limit for all, or each input's own: then an
    input's result does not depend on what else is in the batch)."""
    limits = torch.as_tensor(max_len, device=device).expand(batch)
    tokens = torch.full((batch,), bos, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)  # ended or at its limit
    scores = torch.zeros(batch, dtype=torch.float64, device=device)
    emitted, attended = [], []
    for k in range(int(limits.max()) if batch else 0):
        log_probs, state, weights = step(tokens, state)
        best, tokens = log_probs.max(-1)
        scores += torch.where(done, 0.0, best.double())
        emitted.append(tokens.masked_fill(done, eos))
        attended.append(weights)
        done = done | (tokens == eos) | (limits <= k + 1)
        if bool(done.all()):
            break
    if not emitted:
        return [Hypothesis([], 0.0, None, False) for _ in range(batch)]
    ids = torch.stack(emitted, 1).tolist()  # (B, T)
    weights = torch.stack(attended, 1) if attended[0] is not None else None  # (B, T, S)
    out = []
    for b, (row, limit) in enumerate(zip(ids, limits.tolist(), strict=True)):
        # the end token comes first before the row's limit only if the row wrote it: past
        # the limit (or an end) every position is filled with it
        n = row.index(eos) if eos in row else len(row)
        w = None if weights is None or n == 0 else weights[b, :n]
        out.append(Hypothesis(row[:n], float(scores[b]), w, n < limit))
    return out


@torch.no_grad()
def beam_search(step: Step, reorder: Reorder, state: Any, bos: int, eos: int, beam: int,
                max_len: int, length_penalty: float = 1.0,
                device: torch.device | str = "cpu") -> Hypothesis:
    """The best hypothesis found by a beam of width ``beam`` for one input (state of batch 1).

    Each step expands the live hypotheses by every token, keeps the ``beam`` best that do not
    end, and sets aside those that end; the search stops when ``beam`` have ended or at
    ``max_len`` tokens, and returns the best by length-normalised score.
    """
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    alive = [Hypothesis([], 0.0, None, False)]
    alive_weights: list[list[Tensor]] = [[]]
    finished: list[Hypothesis] = []
    tokens = torch.tensor([bos], dtype=torch.long, device=device)
    for _ in range(max_len):
        log_probs, state, weights = step(tokens, state)  # (K, V), (K, S)
        total = torch.tensor([h.score for h in alive], dtype=torch.float64,
                             device=log_probs.device)[:, None] + log_probs.double()
        vocab = total.shape[1]
        top = total.flatten().topk(min(2 * beam, total.numel()))
        rows, next_alive, next_weights, next_tokens = [], [], [], []
        for score, index in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            if score == float("-inf"):  # impossible continuations never enter the beam
                break
            row, token = divmod(index, vocab)
            seen = alive_weights[row]
            if token == eos:
                finished.append(Hypothesis(alive[row].tokens, score, _stack(seen), True))
                continue
            rows.append(row)
            next_tokens.append(token)
            next_alive.append(Hypothesis(alive[row].tokens + [token], score, None, False))
            next_weights.append(seen + ([] if weights is None else [weights[row]]))
            if len(next_alive) == beam:
                break
        if len(finished) >= beam or not next_alive:
            break
        alive, alive_weights = next_alive, next_weights
        index = torch.tensor(rows, dtype=torch.long, device=device)
        state = reorder(state, index)
        tokens = torch.tensor(next_tokens, dtype=torch.long, device=device)
    else:  # max_len reached: the live hypotheses compete unfinished
        finished += [Hypothesis(h.tokens, h.score, _stack(w), False)
                     for h, w in zip(alive, alive_weights, strict=True)]
    return max(finished, key=lambda h: h.normalized(length_penalty))


def _stack(weights: list[Tensor]) -> Tensor | None:
    return torch.stack(weights) if weights else None
