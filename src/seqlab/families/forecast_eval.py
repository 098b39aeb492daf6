"""Forecast runs in use: the backtest on held-out windows, with or without the statistical
baselines, and forecasts of new series (``seqlab forecast``).

Every forecast is a set of quantiles at 2.5, 10, 50, 90 and 97.5% (the median is the point
forecast; 10-90% and 2.5-97.5% are the 80% and 95% intervals), plus sample paths for the
autoregressive heads (CRPS from the samples; from the quantiles for the direct head). The
baselines' Gaussian forecasts are sampled the same way, so their CRPS reads like the model's.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seqlab import forecast_metrics as metrics
from seqlab import limits
from seqlab.data.series import Series, WindowSet, load, untransformed
from seqlab.data.series_time import future_stamps
from seqlab.distributed import SINGLE, World
from seqlab.families.base import LoadedRun, Report
from seqlab.families.forecast_data import (
    Batch,
    future_windows,
    read_series,
    scaled,
    split_data,
)
from seqlab.io import atomic_write_json, atomic_write_text
from seqlab.models.forecaster import Forecaster

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
CHUNK = 8192  # sample paths drawn per model call


@dataclass
class Backtest:
    """Forecasts of W windows in the series' units, and what scores them."""

    truth: np.ndarray | None  # (W, H); None for a forecast past the data
    levels: np.ndarray  # (Q,) ascending
    quantiles: np.ndarray  # (W, H, Q)
    samples: np.ndarray | None  # (W, S, H)
    scales: np.ndarray  # (W,) MASE denominators
    series: np.ndarray  # (W,) series index of each window
    origins: np.ndarray  # (W,) index of each window's first forecast step

    def median(self) -> np.ndarray:
        return median_of(self.levels, self.quantiles)

    def metrics(self) -> dict[str, float]:
        return {**metrics.point_metrics(self.truth, self.median(), self.scales),
                **metrics.interval_metrics(self.truth, self.levels, self.quantiles,
                                           self.samples)}


def median_of(levels: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """The point forecasts (W, H): the 50% quantile of quantiles (W, H, Q) at ``levels``."""
    return quantiles[..., list(np.round(levels, 4)).index(0.5)]


def sampled_together(model: Forecaster, samples: int) -> int:
    """Windows forecast by one model call: those whose paths are drawn from one seed (the
    first window's index), or 1 for the direct head, which draws nothing."""
    return 1 if model.head == "direct" else max(1, CHUNK // samples)


@torch.no_grad()
def predict(model: Forecaster, batch: Batch, horizon: int, samples: int, first: int = 0
            ) -> tuple[Tensor, Tensor, Tensor | None]:
    """(levels (Q,), quantiles (B, H, Q), samples (B, S, H) or None) of scaled windows, in
    the series' units (the batch's scale and the run's transform inverted by the caller);
    ``first``: the index of the batch's first window among all (the seeds follow it)."""
    context, extra = batch.context, batch.extra
    seen = batch.observed[:, :context.shape[1]]
    if model.head == "direct":
        levels, quantiles = model.quantiles(context, seen, extra)
        return levels, quantiles[:, :horizon], None
    levels = torch.sort(model.levels).values
    rows = sampled_together(model, samples)
    paths = torch.cat([model.sample(context[k:k + rows], horizon, samples, seed=first + k,
                                    observed=seen[k:k + rows],
                                    extra=None if extra is None else extra.select(
                                        slice(k, k + rows)))
                       for k in range(0, len(context), rows)])  # (B, S, H)
    return levels, torch.quantile(paths, levels, dim=1).permute(1, 2, 0), paths


def forecasts(model: Forecaster, windows: WindowSet, assets, own, horizon: int,
              rows: range | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(levels, quantiles (W, H, Q), paths (W, S, H) or None) of every window (or of
    ``rows``, a run of them), in the series' units: scaled, forecast, then the scale and the
    transform inverted."""
    device = next(model.parameters()).device
    rows = range(len(windows)) if rows is None else rows
    batch = scaled(windows, torch.arange(rows.start, rows.stop), assets, own)
    levels, quantiles, paths = predict(model, batch.to(device), horizon, own.samples,
                                       rows.start)

    def units(z: Tensor) -> np.ndarray:
        return untransformed(batch.scale.invert(z.cpu()), own.transform).numpy().astype(float)

    return levels.cpu().numpy(), units(quantiles), None if paths is None else units(paths)


def backtest(model: Forecaster, data, windows: WindowSet, own) -> Backtest:
    """The model's forecasts of every window of ``windows``, in the series' units."""
    levels, quantiles, paths = forecasts(model, windows, data.assets, own, own.horizon)
    return Backtest(truth_of(data.series, windows, own.horizon), levels, quantiles, paths,
                    window_scales(data.series, windows, data.assets.seasonality),
                    windows.series.numpy(), windows.origins.numpy())


def validation_mase(model: Forecaster, data, windows: WindowSet, own, world: World = SINGLE
                    ) -> float:
    """MASE of the model's median forecasts of ``windows``, which :func:`backtest` would give;
    with many processes each forecasts its block of the windows, in whole model calls (so
    that each window's paths are drawn as they are alone), and the medians are gathered."""
    together = sampled_together(model, own.samples)
    calls = world.block(-(-len(windows) // together))
    rows = range(calls.start * together, min(calls.stop * together, len(windows)))
    median = np.zeros((0, own.horizon))
    if len(rows):
        median = median_of(*forecasts(model, windows, data.assets, own, own.horizon, rows)[:2])
    return metrics.mase(truth_of(data.series, windows, own.horizon),
                        np.concatenate(world.gather(median)),
                        window_scales(data.series, windows, data.assets.seasonality))


def truth_of(series: Series, windows: WindowSet, horizon: int) -> np.ndarray:
    """(W, H): what followed each window's origin."""
    return np.stack([series.values[k][o:o + horizon]
                     for k, o in zip(windows.series.tolist(), windows.origins.tolist(),
                                     strict=True)])


def window_scales(series: Series, windows: WindowSet, m: int) -> np.ndarray:
    """MASE's denominator of each window: the mean seasonal-naive error of its history."""
    return np.array([metrics.naive_scale(series.values[k][:o], m)
                     for k, o in zip(windows.series.tolist(), windows.origins.tolist(),
                                     strict=True)])


def baseline_backtest(name: str, data, windows: WindowSet, own, model_run: Backtest
                      ) -> Backtest:
    """Baseline ``name`` fitted on each window's history, sampled like the model."""
    from seqlab.forecast_baselines import LEVELS, baseline_quantiles

    m, values = data.assets.seasonality, data.series.values
    quantiles = np.stack([baseline_quantiles(name, values[k][:o], own.horizon, m)
                          for k, o in zip(model_run.series, model_run.origins, strict=True)])
    sd = (quantiles[..., -1] - quantiles[..., 0]) / (2 * Z95)  # (W, H)
    z = np.random.default_rng(0).standard_normal((len(quantiles), own.samples, own.horizon))
    paths = quantiles[:, None, :, 2] + sd[:, None, :] * z  # (W, S, H)
    return Backtest(model_run.truth, LEVELS, quantiles, paths, model_run.scales,
                    model_run.series, model_run.origins)


def checked_series(loaded: LoadedRun, source: str) -> Series:
    """``source`` read with the run's checks, its series those the run was trained on."""
    return in_run_order(read_series(source, loaded.configs.own), loaded.vocab.names)


def in_run_order(series: Series, names: list[str]) -> Series:
    """``series`` with the run's series ``names`` in the run's order (a file may list them in
    any order: columns or ids are matched by name); a ValueError when the names differ."""
    if list(series.names) == list(names):
        return series
    if sorted(series.names) != sorted(names) or len(set(names)) != len(names):
        raise ValueError(f"{series.source}:line 1: series {', '.join(series.names)} do not "
                         f"match the run's series {', '.join(names)}")
    order = [series.names.index(name) for name in names]

    def pick(items: list) -> list:
        return [items[k] for k in order] if items else items

    return dataclasses.replace(
        series, names=list(names), values=pick(series.values), lines=pick(series.lines),
        times=pick(series.times),
        covariates={key: pick(arrays) for key, arrays in series.covariates.items()})


def evaluate_run(loaded: LoadedRun, source: str, out: str | None, baselines: bool) -> Report:
    """The test windows' metrics (and the baselines'), with evaluation.json and forecast.png
    written into ``out`` (default RUN/evaluation) once everything is computed."""
    from seqlab.forecast_baselines import BASELINES, statsmodels_api

    own = loaded.configs.own
    if baselines:
        statsmodels_api()  # the missing extra stops us before any work
    series = checked_series(loaded, source)
    data = split_data(series, own, loaded.vocab)
    run = backtest(loaded.model, data, data.test, own)
    result: dict[str, Any] = {
        "run": str(loaded.run.path), "data": series.source, "series": len(series.names),
        "windows": len(data.test), "horizon": own.horizon, "seasonality": data.assets.seasonality,
        "head": own.head, "crps_from": "samples" if run.samples is not None else "quantiles",
        **run.metrics()}
    if baselines:
        result["baselines"] = {name: baseline_backtest(name, data, data.test, own, run).metrics()
                               for name in BASELINES}
    return Report(write_evaluation(result, run, series, loaded, out), summarize(result))


def write_evaluation(result: dict[str, Any], run: Backtest, series: Series, loaded: LoadedRun,
                     out: str | None) -> dict[str, Any]:
    from seqlab.forecast_plot import plot_backtest

    folder = Path(out) if out is not None else loaded.run.path / "evaluation"
    result["files"] = [str(folder / "evaluation.json"), str(folder / "forecast.png")]
    plot_backtest(folder / "forecast.png", run, series)
    atomic_write_json(folder / "evaluation.json", result)
    return result


def summarize(result: dict[str, Any]) -> str:
    """The table ``seqlab evaluate`` prints: the model, then each baseline."""
    rows = {"model": result, **result.get("baselines", {})}
    keys = ("mae", "rmse", "mape", "smape", "mase", "coverage_80", "coverage_95", "crps")
    lines = [f"{result['windows']} test windows of horizon {result['horizon']} "
             f"({result['series']} series, season {result['seasonality']})",
             f"{'':16}" + "".join(f"{k:>12}" for k in keys)]
    lines += [f"{name:16}" + "".join(f"{values[k]:>12.4g}" for k in keys)
              for name, values in rows.items()]
    return "\n".join(lines + [f"written: {', '.join(result['files'])}"])


# seqlab forecast ---------------------------------------------------------------------------
class RunForecaster:
    """Forecasts of new series (the run's own by default) past their last value."""

    def __init__(self, loaded: LoadedRun) -> None:
        self.loaded = loaded

    def __call__(self, source: str | None, horizon: int) -> tuple[Series, Backtest]:
        own = self.loaded.configs.own
        if horizon < 1:
            raise ValueError(f"--horizon must be positive, got {horizon}")
        if own.head == "direct" and horizon > own.horizon:
            raise ValueError(f"{self.loaded.run.path} forecasts {own.horizon} steps at most (a "
                             f"direct head); --horizon {horizon} needs an autoregressive head "
                             "(--head gaussian or student-t) or a run trained with it")
        series = in_run_order(load(source or self.loaded.family.source_of(self.loaded.config),
                                   own.fill), self.loaded.vocab.names)
        # each series' sample paths, quantiles and input features over the horizon, as floats
        # of 8 bytes (the CSV's rows and the plot hold as many again): refused before it runs
        need = 2 * len(series.values) * horizon * (own.samples + 32) * 8
        limits.check_fits(need, f"--horizon {horizon}", f"forecasting {len(series.values)} "
                          f"series {horizon:,} steps ahead with {own.samples} sample paths",
                          next(self.loaded.model.parameters()).device)
        for k, values in enumerate(series.values):
            if len(values) < own.context:
                raise ValueError(f"{series.where(k)}: series {series.names[k]!r} has "
                                 f"{len(values)} points; the run reads a context of "
                                 f"{own.context}")
        return series, self.forecast(series, horizon)

    def forecast(self, series: Series, horizon: int) -> Backtest:
        own, assets = self.loaded.configs.own, self.loaded.vocab
        windows = future_windows(series, own, assets, horizon)
        levels, quantiles, paths = forecasts(self.loaded.model, windows, assets, own, horizon)
        count = len(series.values)
        return Backtest(None, levels, quantiles, paths, np.ones(count), np.arange(count),
                        np.array([len(v) for v in series.values]))


def forecast_csv(series: Series, result: Backtest) -> str:
    """One row per series and step: its time stamp (continuing a regular time column, else
    the row number after the last), the median and the 80% and 95% intervals' ends."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(("series", "after", "step", "time", "lower_95", "lower_80", "forecast",
                     "upper_80", "upper_95"))
    for k, name in enumerate(series.names):
        n, quantiles = len(series.values[k]), result.quantiles[k]
        after = series.times[k][-1] if series.times else str(n - 1)
        stamps = (future_stamps(series.times[k], len(quantiles), series.where(k))
                  if series.times else [str(n - 1 + h) for h in range(1, len(quantiles) + 1)])
        for h, (stamp, row) in enumerate(zip(stamps, quantiles, strict=True), start=1):
            writer.writerow((name, after, h, stamp, *(f"{v:.6g}" for v in row)))
    return text.getvalue()


def write_forecast(series: Series, result: Backtest, csv_path: str | None,
                   png_path: str | None) -> list[str]:
    """Write the forecast CSV and plot (each when given); returns the paths written."""
    from seqlab.forecast_plot import plot_forecast

    written = []
    if png_path:
        written.append(str(plot_forecast(Path(png_path), result, series)))
    if csv_path:
        atomic_write_text(Path(csv_path), forecast_csv(series, result))
        written.append(csv_path)
    return written
