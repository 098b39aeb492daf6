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
model (inputs (B, T, F)); output 0 is the first forecast step's median (direct) or mean (the
others).

Input channels (:func:`encoder_inputs`): window position j reads its value y_j and whether it
is observed; then, when the model has them, the known inputs of the step it predicts, j + 1:
y_{j+1-k} and whether it is observed for every lag k (from the window's past, or from the
decoder's own samples once the forecast runs past the context), the calendar's sine and cosine;
then covariates of step j itself and a flag saying they are known: over the context only
(past it, zeros and flag 0, in training as in forecasting, so no future covariate is needed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, distributions, nn

from seqlab.config import ModelConfig
from seqlab.models.sequence import SequenceModel

HEADS = ("direct", "gaussian", "student-t")
# the direct head's quantile levels, the median first (output 0 is then the first step's median)
LEVELS = (0.5, 0.025, 0.1, 0.9, 0.975)
PARAMETERS = {"gaussian": 2, "student-t": 3}  # (mu, sigma) and (mu, sigma, nu)


@dataclass
class Extra:
    """What B windows give a forecaster beside their values, scaled like them."""

    before: Tensor  # (B, P) values before the context, read by lag inputs only (P >= max lag)
    before_seen: Tensor  # (B, P) bool: False before the series starts
    known: Tensor  # (B, C + H, K) calendar channels of every window step (K may be 0)
    covariates: Tensor  # (B, C, V) covariates of the context steps (V may be 0)

    def select(self, rows) -> Extra:
        return Extra(*(t[rows] for t in self.parts()))

    def repeat(self, times: int) -> Extra:
        return Extra(*(t.repeat_interleave(times, 0) for t in self.parts()))

    def to(self, device) -> Extra:
        return Extra(*(t.to(device) for t in self.parts()))

    def parts(self) -> tuple[Tensor, ...]:
        return self.before, self.before_seen, self.known, self.covariates


def input_size(lags: tuple[int, ...] = (), known: int = 0, covariates: int = 0) -> int:
    """Channels F per step: value and flag, each lag and its flag, known, covariates and flag."""
    return 2 + 2 * len(lags) + known + (covariates + 1 if covariates else 0)


def encoder_inputs(path: Tensor, seen: Tensor, extra: Extra | None, lags: tuple[int, ...],
                   start: int, steps: int) -> Tensor:
    """(B, steps, F) inputs of window positions start..start+steps-1 (module docstring);
    ``path`` and ``seen`` (B, P + T) hold the P steps before the window, then the window."""
    before = 0 if extra is None else extra.before.shape[1]
    j = torch.arange(start, start + steps, device=path.device)  # window positions
    flags = seen.to(path.dtype)
    parts = [path[:, before + j, None], flags[:, before + j, None]]  # (B, steps, 1) each
    if lags:
        at = before + j[:, None] + 1 - torch.tensor(lags, device=path.device)  # (steps, L)
        parts += [path[:, at], flags[:, at]]  # y_{j+1-k}: (B, steps, L) each
    if extra is not None:
        context = extra.covariates.shape[1]
        within = (j < context).to(path.dtype)[None, :, None]  # (1, steps, 1)
        covariates = extra.covariates[:, j.clamp(max=context - 1)] * within  # (B, steps, V)
        parts += [extra.known[:, j + 1], covariates]
        if covariates.shape[-1]:
            parts.append(within.expand(path.shape[0], -1, -1))
    return torch.cat(parts, -1)


class Forecaster(SequenceModel):
    """Scaled context (B, C) -> quantiles (B, H, Q) or sample paths (B, S, H).

    The encoder reads the value and whether it is observed (0 for the left padding of a
    context that starts before its series) at each step, and with ``lags``, ``known`` calendar
    channels or ``covariates`` the inputs of :func:`encoder_inputs`, given as an :class:`Extra`.
    """

    def __init__(self, config: ModelConfig, head: str, horizon: int, lags: tuple[int, ...] = (),
                 known: int = 0, covariates: int = 0) -> None:
        if head not in HEADS:
            raise ValueError(f"Forecaster: head must be one of {', '.join(HEADS)}, got {head!r}")
        outputs = horizon * len(LEVELS) if head == "direct" else PARAMETERS[head]
        self.channels = input_size(lags, known, covariates)
        super().__init__(config, "real", self.channels, outputs)
        self.head, self.horizon, self.lags = head, horizon, tuple(lags)
        self.register_buffer("levels", torch.tensor(LEVELS), persistent=False)

    def read(self, values: Tensor, observed: Tensor | None = None, state=None,
             extra: Extra | None = None, start: int = 0):
        """The encoder and head over window positions start.. of values (B, T) (the window
        from its first step) -> (outputs (B, T - start, O), state)."""
        seen = torch.ones_like(values, dtype=torch.bool) if observed is None else observed
        if extra is None and self.channels > 2:
            raise ValueError("Forecaster: this model reads lags, calendar or covariates; "
                             "pass them as extra")
        if extra is not None:
            values = torch.cat([extra.before, values], 1)
            seen = torch.cat([extra.before_seen, seen.bool()], 1)
        steps = values.shape[1] - start - (0 if extra is None else extra.before.shape[1])
        return self(encoder_inputs(values, seen, extra, self.lags, start, steps), state)

    # direct ------------------------------------------------------------------------------
    def raw_quantiles(self, context: Tensor, observed: Tensor | None = None,
                      extra: Extra | None = None) -> Tensor:
        """(B, C) -> (B, H, Q) in :data:`LEVELS` order, as trained (possibly crossing)."""
        outputs, _ = self.read(context, observed, extra=extra)  # (B, C, H Q)
        last = outputs[:, -1].view(context.shape[0], len(LEVELS), self.horizon)  # (B, Q, H)
        return last.transpose(1, 2)  # (B, H, Q)

    def quantiles(self, context: Tensor, observed: Tensor | None = None,
                  extra: Extra | None = None) -> tuple[Tensor, Tensor]:
        """(levels (Q,) ascending, quantiles (B, H, Q) ascending): crossing quantiles are
        rearranged by sorting, which never moves them further from the truth."""
        order = torch.argsort(self.levels)
        raw = self.raw_quantiles(context, observed, extra)[..., order]
        return self.levels[order], raw.sort(-1).values

    def pinball(self, context: Tensor, targets: Tensor, observed: Tensor | None = None,
                extra: Extra | None = None) -> Tensor:
        """Mean pinball loss of the H x Q quantiles against the observed targets (B, H)
        (``observed`` (B, C + H): which context steps and targets are real)."""
        steps = context.shape[1]
        seen = None if observed is None else observed[:, :steps]
        u = targets[..., None] - self.raw_quantiles(context, seen, extra).float()  # (B, H, Q)
        loss = torch.maximum(self.levels * u, (self.levels - 1) * u).mean(-1)  # (B, H)
        if observed is None:
            return loss.mean()
        scored = observed[:, steps:]
        return (loss * scored).sum() / scored.sum().clamp_min(1)

    # probabilistic -----------------------------------------------------------------------
    def distribution(self, params: Tensor) -> distributions.Distribution:
        """p(y_t) from the raw outputs (..., P)."""
        params = params.float()  # the likelihood in float32, also under autocast
        mu, sigma = params[..., 0], nn.functional.softplus(params[..., 1]) + 1e-3
        if self.head == "gaussian":
            return distributions.Normal(mu, sigma)
        return distributions.StudentT(2 + nn.functional.softplus(params[..., 2]), mu, sigma)

    def nll(self, window: Tensor, observed: Tensor | None = None, extra: Extra | None = None
            ) -> Tensor:
        """Mean negative log-likelihood of the observed y_2..y_T of windows (B, T), each step
        given the values before it (teacher forcing)."""
        seen = torch.ones_like(window, dtype=torch.bool) if observed is None else observed
        params, _ = self.read(window[:, :-1], seen[:, :-1], extra=extra)  # (B, T - 1, P)
        log_p = self.distribution(params).log_prob(window[:, 1:])  # (B, T - 1)
        scored = seen[:, 1:]
        return -(log_p * scored).sum() / scored.sum().clamp_min(1)

    @torch.no_grad()
    def sample(self, context: Tensor, horizon: int, samples: int, seed: int = 0,
               observed: Tensor | None = None, extra: Extra | None = None) -> Tensor:
        """(B, C) -> (B, S, H) sample paths, each drawn value the next step's input (and the
        lag input of later steps); the same seed draws the same paths (torch's global
        generator is left as it was). ``extra.known`` must span C + H steps."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._sample(context, horizon, samples, observed, extra)

    def _sample(self, context: Tensor, horizon: int, samples: int,
                observed: Tensor | None, extra: Extra | None) -> Tensor:
        batch = len(context)
        path = context.repeat_interleave(samples, 0)  # (B S, C), grows by one step each draw
        seen = (torch.ones_like(path, dtype=torch.bool) if observed is None
                else observed.repeat_interleave(samples, 0))
        extra = None if extra is None else extra.repeat(samples)
        params, state = self.read(path, seen, None, extra)  # (B S, C, P)
        params = params[:, -1]
        for h in range(horizon):
            y = self.distribution(params).sample()  # (B S,)
            path = torch.cat([path, y[:, None]], 1)
            seen = torch.cat([seen, torch.ones_like(y[:, None], dtype=torch.bool)], 1)
            if h + 1 < horizon:
                out, state = self.read(path, seen, state, extra, start=path.shape[1] - 1)
                params = out[:, -1]  # (B S, P)
        return path[:, -horizon:].reshape(batch, samples, horizon)

    # either head -------------------------------------------------------------------------
    def loss(self, context: Tensor, targets: Tensor, observed: Tensor | None = None,
             extra: Extra | None = None) -> Tensor:
        """The training loss of scaled windows: context (B, C), targets (B, H), which of
        their steps are observed (B, C + H), their :class:`Extra` inputs."""
        if self.head == "direct":
            return self.pinball(context, targets, observed, extra)
        return self.nll(torch.cat([context, targets], 1), observed, extra)
