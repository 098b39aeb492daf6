"""Attention: a decoder reads every encoder state instead of only the last one.

Given a query q (the decoder's state), keys k_1..k_S (the encoder's outputs, also the values)
and a mask of the real (not padded) source positions:

.. math::

    e_s = \\operatorname{score}(q, k_s)                                        (1) scores
    a_s = \\frac{m_s \\exp(e_s)}{\\sum_{s'} m_{s'} \\exp(e_{s'})}               (2) weights
    c = \\sum_s a_s k_s                                                          (3) context

with m_s = 1 at a real position and 0 at padding, so a padded position gets a weight of exactly
zero (its score is replaced by -inf before the softmax, and exp(-inf) = 0 in floating point).

Scorers (Q query size, K key size, A attention size):

- ``additive`` (Bahdanau et al. 2014): e_s = v^T tanh(W_q q + W_k k_s), W_q (A, Q), W_k (A, K);
- ``dot`` (Luong et al. 2015): e_s = q^T k_s, needs Q == K;
- ``general`` (Luong et al. 2015): e_s = q^T W k_s, W (Q, K).

Every scorer splits into ``prepare(keys)`` (whatever depends on the keys alone, computed once
per source) and ``forward(query, prepared)``, and accepts queries of shape (B, Q) for one
decoder step or (B, T, Q) for T steps at once. Shapes: B batch, S source, T target steps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def length_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B,) lengths -> (B, S) bool, True at real positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(values: Tensor, mask: Tensor, dim: int) -> Tensor:
    """The mean of ``values`` along ``dim`` over the positions where ``mask`` (bool,
    broadcastable to values, size 1 elsewhere) is True; nothing masked out reaches it."""
    total = torch.where(mask, values, values.new_zeros(())).sum(dim)
    return total / mask.sum(dim).to(values.dtype)


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last axis with masked-out positions at exactly 0.

    scores (B, S) or (B, T, S); mask (B, S), True where a position is real. Every row needs at
    least one real position (a source of length 0 is rejected before it gets here).
    """
    if mask.dim() == scores.dim() - 1:
        mask = mask.unsqueeze(-2)  # (B, 1, S): the same source mask at every target step
    scores = scores.masked_fill(~mask, float("-inf"))  # (2) m_s = 0
    return torch.softmax(scores, dim=-1)


def context(weights: Tensor, values: Tensor) -> Tensor:
    """(3) weights (B, S) or (B, T, S), values (B, S, K) -> (B, K) or (B, T, K)."""
    if weights.dim() == 2:
        return torch.bmm(weights.unsqueeze(1), values).squeeze(1)
    return torch.bmm(weights, values)


class AdditiveScorer(nn.Module):
    """Bahdanau et al. 2014: e_s = v^T tanh(W_q q + W_k k_s)."""

    def __init__(self, query_size: int, key_size: int, attention_size: int) -> None:
        super().__init__()
        self.to_query = nn.Linear(query_size, attention_size, bias=False)
        self.to_key = nn.Linear(key_size, attention_size)
        self.to_score = nn.Linear(attention_size, 1, bias=False)

    def prepare(self, keys: Tensor) -> Tensor:
        return self.to_key(keys)  # (B, S, A), once per source

    def forward(self, query: Tensor, prepared: Tensor) -> Tensor:
        q = self.to_query(query)  # (B, A) or (B, T, A)
        if q.dim() == 2:
            return self.to_score(torch.tanh(q.unsqueeze(1) + prepared)).squeeze(-1)  # (B, S)
        hidden = torch.tanh(q.unsqueeze(2) + prepared.unsqueeze(1))  # (B, T, S, A)
        return self.to_score(hidden).squeeze(-1)  # (B, T, S)


class DotScorer(nn.Module):
    """Luong et al. 2015, dot: e_s = q^T k_s."""

    def __init__(self, query_size: int, key_size: int, attention_size: int = 0) -> None:
        super().__init__()
        if query_size != key_size:
            raise ValueError(f"DotScorer: the query and key sizes must be equal, got "
                             f"{query_size} and {key_size}")

    def prepare(self, keys: Tensor) -> Tensor:
        return keys

    def forward(self, query: Tensor, prepared: Tensor) -> Tensor:
        if query.dim() == 2:
            return torch.bmm(prepared, query.unsqueeze(-1)).squeeze(-1)  # (B, S)
        return torch.bmm(query, prepared.transpose(1, 2))  # (B, T, S)


class GeneralScorer(DotScorer):
    """Luong et al. 2015, general: e_s = q^T W k_s (W k_s is computed once per source)."""

    def __init__(self, query_size: int, key_size: int, attention_size: int = 0) -> None:
        nn.Module.__init__(self)
        self.to_query_space = nn.Linear(key_size, query_size, bias=False)

    def prepare(self, keys: Tensor) -> Tensor:
        return self.to_query_space(keys)  # (B, S, Q)


SCORERS: dict[str, Callable[[int, int, int], nn.Module]] = {
    "additive": AdditiveScorer,
    "dot": DotScorer,
    "general": GeneralScorer,
}


def build_scorer(name: str, query_size: int, key_size: int, attention_size: int) -> nn.Module:
    if name not in SCORERS:
        raise ValueError(f"unknown attention scorer {name!r}; choose from {', '.join(SCORERS)}")
    return SCORERS[name](query_size, key_size, attention_size)


class Attention(nn.Module):
    """A scorer plus the masked softmax and the context: (1), (2) and (3) together."""

    def __init__(self, name: str, query_size: int, key_size: int, attention_size: int) -> None:
        super().__init__()
        self.name = name
        self.scorer = build_scorer(name, query_size, key_size, attention_size)

    def prepare(self, keys: Tensor) -> Tensor:
        return self.scorer.prepare(keys)

    def forward(self, query: Tensor, keys: Tensor, prepared: Tensor, mask: Tensor
                ) -> tuple[Tensor, Tensor]:
        """query (B, Q) or (B, T, Q) -> context (B, K) or (B, T, K), weights (B, [T,] S)."""
        weights = masked_softmax(self.scorer(query, prepared), mask)  # (1), (2)
        return context(weights, keys), weights  # (3)
