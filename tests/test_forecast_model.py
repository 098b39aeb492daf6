"""The forecaster's heads: shapes, losses against torch.distributions and by hand, sampling."""

from __future__ import annotations

import pytest
import torch

from seqlab.config import ModelConfig
from seqlab.models.forecaster import LEVELS, Forecaster

B, C, H, S = 3, 10, 4, 7


def model(head: str, name: str = "gru") -> Forecaster:
    torch.manual_seed(0)
    return Forecaster(ModelConfig(model=name, hidden_size=8), head, H).eval()


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru", "window-mlp"])
def test_direct_head_gives_sorted_quantiles_of_every_step(name):
    levels, quantiles = model("direct", name).quantiles(torch.randn(B, C))
    assert quantiles.shape == (B, H, len(LEVELS))
    assert levels.tolist() == pytest.approx(sorted(LEVELS))
    assert bool((quantiles.diff(dim=-1) >= 0).all())


@pytest.mark.parametrize("head", ["gaussian", "student-t"])
def test_autoregressive_heads_sample_paths_of_any_length_reproducibly(head):
    forecaster, context = model(head), torch.randn(B, C)
    paths = forecaster.sample(context, 2 * H, S, seed=3)
    assert paths.shape == (B, S, 2 * H)
    assert torch.equal(paths, forecaster.sample(context, 2 * H, S, seed=3))
    assert not torch.equal(paths, forecaster.sample(context, 2 * H, S, seed=4))
    state = torch.get_rng_state()
    forecaster.sample(context, H, S, seed=5)
    assert torch.equal(state, torch.get_rng_state())  # the global generator is untouched


def test_sampling_feeds_each_draw_back_as_the_next_input():
    """The first step's distribution is the one teacher forcing gives after the context."""
    forecaster, context = model("gaussian"), torch.randn(1, C)
    paths = forecaster.sample(context, 1, 20_000, seed=0)
    params, _ = forecaster.read(context)
    dist = forecaster.distribution(params[:, -1])
    assert paths.mean().item() == pytest.approx(dist.mean.item(), abs=0.05)  # MC error
    assert paths.std().item() == pytest.approx(dist.stddev.item(), rel=0.05)


def test_gaussian_nll_is_torch_distributions_normal_over_every_next_step():
    forecaster = model("gaussian").double()
    window = torch.randn(B, C + H, dtype=torch.float64)
    params, _ = forecaster.read(window[:, :-1])
    mu, sigma = params[..., 0], torch.nn.functional.softplus(params[..., 1]) + 1e-3
    expected = -torch.distributions.Normal(mu, sigma).log_prob(window[:, 1:]).mean()
    assert torch.allclose(forecaster.nll(window), expected)
    by_hand = (torch.log(sigma) + 0.5 * torch.log(torch.tensor(2 * torch.pi, dtype=torch.float64))
               + 0.5 * ((window[:, 1:] - mu) / sigma) ** 2).mean()
    assert torch.allclose(forecaster.nll(window), by_hand)


def test_student_t_nll_and_masked_steps():
    forecaster = model("student-t").double()
    window = torch.randn(B, C + H, dtype=torch.float64)
    params, _ = forecaster.read(window[:, :-1])
    df = 2 + torch.nn.functional.softplus(params[..., 2])
    sigma = torch.nn.functional.softplus(params[..., 1]) + 1e-3
    log_p = torch.distributions.StudentT(df, params[..., 0], sigma).log_prob(window[:, 1:])
    assert torch.allclose(forecaster.nll(window), -log_p.mean())
    observed = torch.ones_like(window, dtype=torch.bool)
    observed[:, -2:] = False  # the last two targets masked: they leave the loss
    params, _ = forecaster.read(window[:, :-1], observed[:, :-1])
    log_p = torch.distributions.StudentT(
        2 + torch.nn.functional.softplus(params[..., 2]), params[..., 0],
        torch.nn.functional.softplus(params[..., 1]) + 1e-3).log_prob(window[:, 1:])
    assert torch.allclose(forecaster.nll(window, observed), -log_p[:, :-2].mean())


def test_pinball_loss_by_hand():
    forecaster = model("direct").double()
    context, targets = torch.randn(B, C, dtype=torch.float64), torch.randn(B, H,
                                                                         dtype=torch.float64)
    q = forecaster.raw_quantiles(context).detach()  # (B, H, Q)
    total = 0.0
    for b in range(B):
        for h in range(H):
            for k, tau in enumerate(LEVELS):
                u = float(targets[b, h] - q[b, h, k])
                total += tau * u if u >= 0 else (tau - 1) * u
    assert forecaster.loss(context, targets).item() == pytest.approx(total / (B * H * len(LEVELS)))


def test_direct_head_learns_a_sine_and_the_unknown_head_is_refused():
    torch.manual_seed(0)
    forecaster = Forecaster(ModelConfig(model="gru", hidden_size=16), "direct", H)
    optimizer = torch.optim.Adam(forecaster.parameters(), lr=1e-2)
    phase = torch.rand(64, 1) * 6.28
    series = torch.sin(phase + 0.5 * torch.arange(C + H))  # (64, C + H)
    first = forecaster.loss(series[:, :C], series[:, C:]).item()
    for _ in range(150):
        optimizer.zero_grad()
        forecaster.loss(series[:, :C], series[:, C:]).backward()
        optimizer.step()
    assert forecaster.loss(series[:, :C], series[:, C:]).item() < first / 4
    with pytest.raises(ValueError, match="head must be one of direct, gaussian, student-t"):
        Forecaster(ModelConfig(), "laplace", H)
