"""Attention: scorers against their formulas, exact zeros over padding, padded == unpadded."""

from __future__ import annotations

import pytest
import torch

from seqlab.attention import (
    AdditiveScorer,
    Attention,
    DotScorer,
    GeneralScorer,
    context,
    length_mask,
    masked_softmax,
)

B, S, Q, A = 3, 6, 5, 4
LENGTHS = torch.tensor([6, 2, 4])


def make(name: str, seed: int = 0) -> Attention:
    torch.manual_seed(seed)
    return Attention(name, Q, Q, A).double()


def test_length_mask():
    assert length_mask(torch.tensor([1, 3]), 4).tolist() == [[True, False, False, False],
                                                           [True, True, True, False]]


@pytest.mark.parametrize("shape", [(B, S), (B, 2, S)])
def test_masked_softmax_is_exactly_zero_over_padding(shape):
    scores = torch.randn(*shape, dtype=torch.float64) * 50  # large scores: no underflow excuse
    weights = masked_softmax(scores, length_mask(LENGTHS, S))
    for b, n in enumerate(LENGTHS.tolist()):
        assert torch.equal(weights[b, ..., n:], torch.zeros_like(weights[b, ..., n:]))
        torch.testing.assert_close(weights[b, ..., :n].sum(-1),
                                   torch.ones(weights[b, ..., 0].shape, dtype=torch.float64))
        # the real positions get the softmax of their scores alone
        torch.testing.assert_close(weights[b, ..., :n], torch.softmax(scores[b, ..., :n], -1))


def test_scores_follow_the_formulas():
    torch.manual_seed(1)
    q, k = torch.randn(B, Q, dtype=torch.float64), torch.randn(B, S, Q, dtype=torch.float64)
    additive = AdditiveScorer(Q, Q, A).double()
    want = torch.stack([torch.stack([
        additive.to_score.weight[0] @ torch.tanh(additive.to_query.weight @ q[b]
                                                 + additive.to_key.weight @ k[b, s]
                                                 + additive.to_key.bias)
        for s in range(S)]) for b in range(B)])  # e_s = v^T tanh(W_q q + W_k k_s)
    torch.testing.assert_close(additive(q, additive.prepare(k)), want)
    dot = DotScorer(Q, Q)
    torch.testing.assert_close(dot(q, dot.prepare(k)), torch.einsum("bq,bsq->bs", q, k))
    general = GeneralScorer(Q, Q).double()
    W = general.to_query_space.weight  # (Q, K)
    torch.testing.assert_close(general(q, general.prepare(k)),
                               torch.einsum("bq,qk,bsk->bs", q, W, k))


@pytest.mark.parametrize("name", ["additive", "dot", "general"])
def test_many_queries_equal_one_at_a_time(name):
    attention = make(name)
    q, k = torch.randn(B, 3, Q, dtype=torch.float64), torch.randn(B, S, Q, dtype=torch.float64)
    mask = length_mask(LENGTHS, S)
    ctx, w = attention(q, k, attention.prepare(k), mask)
    for t in range(3):
        ctx_t, w_t = attention(q[:, t], k, attention.prepare(k), mask)
        torch.testing.assert_close(ctx[:, t], ctx_t)
        torch.testing.assert_close(w[:, t], w_t)


@pytest.mark.parametrize("name", ["additive", "dot", "general"])
def test_padded_batch_equals_each_source_alone(name):
    """Garbage at padded positions changes nothing; weights there are exactly zero."""
    attention = make(name)
    q, k = torch.randn(B, Q, dtype=torch.float64), torch.randn(B, S, Q, dtype=torch.float64)
    junk = k.clone()
    for b, n in enumerate(LENGTHS.tolist()):
        junk[b, n:] = 1e6  # would dominate any score that leaked through the mask
    ctx, w = attention(q, junk, attention.prepare(junk), length_mask(LENGTHS, S))
    for b, n in enumerate(LENGTHS.tolist()):
        alone = k[b:b + 1, :n]
        ctx_b, w_b = attention(q[b:b + 1], alone, attention.prepare(alone),
                               torch.ones(1, n, dtype=torch.bool))
        assert torch.equal(w[b, n:], torch.zeros(S - n, dtype=torch.float64))
        torch.testing.assert_close(w[b, :n], w_b[0])
        torch.testing.assert_close(ctx[b], ctx_b[0])


@pytest.mark.parametrize("name", ["additive", "general"])
def test_gradcheck(name):
    attention = make(name)
    q = torch.randn(2, Q, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 4, Q, dtype=torch.float64, requires_grad=True)
    mask = length_mask(torch.tensor([4, 2]), 4)
    assert torch.autograd.gradcheck(
        lambda q, k: attention(q, k, attention.prepare(k), mask)[0], (q, k))


def test_context_is_the_weighted_sum():
    w = torch.tensor([[0.25, 0.75, 0.0]], dtype=torch.float64)
    v = torch.arange(6, dtype=torch.float64).view(1, 3, 2)
    torch.testing.assert_close(context(w, v), torch.tensor([[0.25 * 0 + 0.75 * 2,
                                                             0.25 * 1 + 0.75 * 3]],
                                                           dtype=torch.float64))


def test_errors():
    with pytest.raises(ValueError, match="DotScorer: the query and key sizes must be equal"):
        DotScorer(4, 6)
    with pytest.raises(ValueError, match="unknown attention scorer 'cosine'"):
        Attention("cosine", 4, 4, 4)
