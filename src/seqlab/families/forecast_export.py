"""The forecast family's ONNX export (``seqlab export``), one graph by head:

- ``direct``: the context window and its extra inputs -> the forecast: context (B, C) and
  observed (B, C) (False for padding before a series starts), then only the extra inputs the
  run reads: ``before`` (B, P) and ``before_seen`` (B, P), the P = largest lag values before
  the context (lags); ``known`` (B, C + H, 2), the calendar's sine and cosine of every window
  step (calendar); ``covariates`` (B, C, V) (covariates) -> ``quantiles`` (B, H, Q), ascending,
  at the levels of the file's ``seqlab.levels``;
- ``gaussian`` / ``student-t``: the decoder step that sampling repeats, with its state in and
  out: the encoder's input channels (B, T, F) (:func:`seqlab.models.forecaster.encoder_inputs`:
  value, observed flag, each lag and its flag, calendar, covariates and their flag) and the
  state (zeros at the start) -> ``params`` (B, T, P): mu, sigma (and the Student-t's nu) of the
  value after each step, and the new state. The sampling itself stays with the caller: ONNX's
  random operators cannot draw what torch's generator draws.

Values are scaled as the run scales each window (``seqlab.scaling``, ``seqlab.transform``):
the graphs read and write the model's own units.
"""

from __future__ import annotations

import json

import torch
from torch import Tensor, nn

from seqlab.export import Graph, generator, real_inputs, step_graph
from seqlab.families.base import LoadedRun
from seqlab.models.forecaster import Extra, Forecaster

EXTRAS = ("before", "before_seen", "known", "covariates")


class QuantileGraph(nn.Module):
    """(context, observed, *the extra inputs given) -> quantiles (B, H, Q) ascending."""

    def __init__(self, model: Forecaster, given: tuple[str, ...], extras: bool) -> None:
        super().__init__()
        self.model, self.given, self.extras = model, given, extras

    def forward(self, context: Tensor, observed: Tensor, *given: Tensor) -> Tensor:
        extra = None
        if self.extras:  # what the run does not read: empty, as seqlab's own windows hold it
            batch, steps = context.shape
            named = dict(zip(self.given, given, strict=True))
            extra = Extra(named.get("before", context[:, :0]),
                          named.get("before_seen", observed[:, :0]),
                          named.get("known", context.new_zeros(
                              (batch, steps + self.model.horizon, 0))),
                          named.get("covariates", context.new_zeros((batch, steps, 0))))
        return self.model.quantiles(context, observed, extra)[1]


class DistributionStep(nn.Module):
    """``(inputs (B, T, F), state) -> (params (B, T, P), state)``: the head's distribution
    parameters after each step."""

    def __init__(self, model: Forecaster) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: Tensor, state=None):
        outputs, state = self.model(inputs, state)
        p = self.model.distribution(outputs)
        nu = [p.df] if self.model.head == "student-t" else []
        return torch.stack([p.loc, p.scale, *nu], -1), state


def graphs(loaded: LoadedRun) -> list[Graph]:
    """The run's graph (module docstring)."""
    model, own = loaded.model, loaded.configs.own
    notes = {"family": loaded.family.name, "head": own.head, "scaling": own.scaling,
             "transform": own.transform}
    if own.head != "direct":
        return [step_graph(DistributionStep(model), model.encoder.initial_state,
                           real_inputs(model.channels), ("inputs", "params"), notes)]
    lags, covariates = own.lag_steps(), len(loaded.vocab.covariates)
    sizes = {"before": max(lags, default=0), "before_seen": max(lags, default=0),
             "known": 2 if own.calendar else 0, "covariates": covariates}
    given = tuple(name for name in EXTRAS if sizes[name])

    def example(batch: int, length: int) -> dict[str, Tensor]:
        draw = generator(batch, length)
        observed = torch.rand(batch, length, generator=draw) > 0.2
        shapes = {"before": (batch, sizes["before"]), "before_seen": (batch, sizes["before"]),
                  "known": (batch, length + own.horizon, 2), "covariates": (batch, length,
                                                                             covariates)}
        parts = {name: torch.randn(shapes[name], generator=draw) for name in given}
        if "before_seen" in parts:
            parts["before_seen"] = parts["before_seen"] > -0.5
        return {"context": torch.randn(batch, length, generator=draw), "observed": observed,
                **parts}

    axes = {"context": {0: "batch", 1: "context"}, "observed": {0: "batch", 1: "context"},
            "before": {0: "batch"}, "before_seen": {0: "batch"},
            "known": {0: "batch", 1: "context_and_horizon"},
            "covariates": {0: "batch", 1: "context"}, "quantiles": {0: "batch"}}
    levels = torch.sort(model.levels).values.tolist()
    return [Graph(QuantileGraph(model, given, own.extras()), example, ("quantiles",),
                  {k: v for k, v in axes.items() if k in ("context", "observed", "quantiles",
                                                          *given)},
                  notes={**notes, "levels": json.dumps(levels)})]
