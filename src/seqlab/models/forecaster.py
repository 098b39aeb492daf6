"""Recurrent forecasters: a context window of a (scaled) series in, the next H values out.

Two heads on one encoder (any model name of :data:`seqlab.encoders.ENCODERS`), reading one real
channel, the scaled value:

- ``direct``: the encoder reads the context y_1..y_C; its last output goes, through one linear
  map, to H x Q quantiles of y_{C+1..C+H} at once, trained with the pinball loss
  :math:`\\rho_\\tau(u) = \\max(\\tau u, (\\tau - 1) u)`, u = y - q_\\tau. The point forecast is
  the median; the 2.5/97.5% and 10/90% quantiles are the 95% and 80% intervals.
- ``gaussian`` / ``student-t`` (DeepAR, Salinas et al. 2020): at step t the encoder reads
  y_{t-1} and emits the parameters of p(y_t | y_{<t}): Normal(mu, sigma) or StudentT(nu, mu,
  sigma), sigma = softplus(.) + 1e-3, nu = 2 + softplus(.); trained by the negative
  log-likelihood over every step of a context + horizon window (teacher forcing). Forecasts
  are S sample paths, each sampled value fed back as the next input.

Outputs are per step (B, T, O), so ``trace`` and the diagnostics work as for every sequence
model (inputs (B, T, 2): the value and whether it is observed); output 0 is the first
forecast step's median (direct) or mean (the others).
"""

from __future__ import annotations

import torch
from torch import Tensor, distributions, nn

from seqlab.config import ModelConfig
from seqlab.models.sequence import SequenceModel

HEADS = ("direct", "gaussian", "student-t")
# the direct head's quantile levels, the median first (output 0 is then the first step's median)
LEVELS = (0.5, 0.025, 0.1, 0.9, 0.975)
PARAMETERS = {"gaussian": 2, "student-t": 3}  # (mu, sigma) and (mu, sigma, nu)


class Forecaster(SequenceModel):
    """Scaled context (B, C) -> quantiles (B, H, Q) or sample paths (B, S, H).

    The encoder reads two channels per step: the scaled value and whether it is observed
    (0 for the left padding of a context that starts before its series)."""

    def __init__(self, config: ModelConfig, head: str, horizon: int) -> None:
        if head not in HEADS:
            raise ValueError(f"Forecaster: head must be one of {', '.join(HEADS)}, got {head!r}")
        outputs = horizon * len(LEVELS) if head == "direct" else PARAMETERS[head]
        super().__init__(config, "real", 2, outputs)
        self.head, self.horizon = head, horizon
        self.register_buffer("levels", torch.tensor(LEVELS), persistent=False)

    def read(self, values: Tensor, observed: Tensor | None = None, state=None):
        """The encoder and head over values (B, T) -> (outputs (B, T, O), state)."""
        seen = torch.ones_like(values) if observed is None else observed.to(values.dtype)
        return self(torch.stack([values, seen], -1), state)  # (B, T, 2) in

    # direct ------------------------------------------------------------------------------
    def raw_quantiles(self, context: Tensor, observed: Tensor | None = None) -> Tensor:
        """(B, C) -> (B, H, Q) in :data:`LEVELS` order, as trained (possibly crossing)."""
        outputs, _ = self.read(context, observed)  # (B, C, H Q)
        last = outputs[:, -1].view(len(context), len(LEVELS), self.horizon)  # (B, Q, H)
        return last.transpose(1, 2)  # (B, H, Q)

    def quantiles(self, context: Tensor, observed: Tensor | None = None
                  ) -> tuple[Tensor, Tensor]:
        """(levels (Q,) ascending, quantiles (B, H, Q) ascending): crossing quantiles are
        rearranged by sorting, which never moves them further from the truth."""
        order = torch.argsort(self.levels)
        raw = self.raw_quantiles(context, observed)[..., order]
        return self.levels[order], raw.sort(-1).values

    def pinball(self, context: Tensor, targets: Tensor, observed: Tensor | None = None
                ) -> Tensor:
        """Mean pinball loss of the H x Q quantiles against the observed targets (B, H)
        (``observed`` (B, C + H): which context steps and targets are real)."""
        steps = context.shape[1]
        seen = None if observed is None else observed[:, :steps]
        u = targets[..., None] - self.raw_quantiles(context, seen)  # (B, H, Q)
        loss = torch.maximum(self.levels * u, (self.levels - 1) * u).mean(-1)  # (B, H)
        if observed is None:
            return loss.mean()
        scored = observed[:, steps:]
        return (loss * scored).sum() / scored.sum().clamp_min(1)

    # probabilistic -----------------------------------------------------------------------
    def distribution(self, params: Tensor) -> distributions.Distribution:
        """p(y_t) from the raw outputs (..., P)."""
        mu, sigma = params[..., 0], nn.functional.softplus(params[..., 1]) + 1e-3
        if self.head == "gaussian":
            return distributions.Normal(mu, sigma)
        return distributions.StudentT(2 + nn.functional.softplus(params[..., 2]), mu, sigma)

    def nll(self, window: Tensor, observed: Tensor | None = None) -> Tensor:
        """Mean negative log-likelihood of the observed y_2..y_T of windows (B, T), each step
        given the values before it (teacher forcing)."""
        seen = torch.ones_like(window, dtype=torch.bool) if observed is None else observed
        params, _ = self.read(window[:, :-1], seen[:, :-1])  # (B, T - 1, P)
        log_p = self.distribution(params).log_prob(window[:, 1:])  # (B, T - 1)
        scored = seen[:, 1:]
        return -(log_p * scored).sum() / scored.sum().clamp_min(1)

    @torch.no_grad()
    def sample(self, context: Tensor, horizon: int, samples: int, seed: int = 0,
               observed: Tensor | None = None) -> Tensor:
        """(B, C) -> (B, S, H) sample paths, each drawn value the next step's input; the
        same seed draws the same paths (torch's global generator is left as it was)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._sample(context, horizon, samples, observed)

    def _sample(self, context: Tensor, horizon: int, samples: int,
                observed: Tensor | None) -> Tensor:
        batch = len(context)
        seen = None if observed is None else observed.repeat_interleave(samples, 0)
        params, state = self.read(context.repeat_interleave(samples, 0), seen)  # (B S, C, P)
        params, paths = params[:, -1], []
        for _ in range(horizon):
            y = self.distribution(params).sample()  # (B S,)
            paths.append(y)
            out, state = self.read(y[:, None], None, state)  # (B S, 1, P)
            params = out[:, -1]
        return torch.stack(paths, 1).view(batch, samples, horizon)

    # either head -------------------------------------------------------------------------
    def loss(self, context: Tensor, targets: Tensor, observed: Tensor | None = None
             ) -> Tensor:
        """The training loss of scaled windows: context (B, C), targets (B, H), which of
        their steps are observed (B, C + H)."""
        if self.head == "direct":
            return self.pinball(context, targets, observed)
        return self.nll(torch.cat([context, targets], 1), observed)
