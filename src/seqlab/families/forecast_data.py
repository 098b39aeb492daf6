"""What the forecast family reads and keeps: its keys, the series checked and split into
windows by time, their scaling, and the assets a run records in config.json."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from seqlab.config import opt, validate
from seqlab.data.series import (
    FILLS,
    SCALINGS,
    TRANSFORMS,
    Inputs,
    Scale,
    Series,
    Split,
    WindowSet,
    load,
    scale_of,
    series_stats,
    transformed,
)
from seqlab.data.series_csv import fill_gaps
from seqlab.data.series_time import calendar_phase
from seqlab.models.forecaster import HEADS, Extra

MAX_LAG = 10_000


@dataclass(frozen=True, kw_only=True)
class ForecastConfig:
    """Keys of the forecast family."""

    horizon: int = opt(12, "forecast: steps H to forecast from each origin", positive=True)
    context: int = opt(48, "forecast: past steps C the model reads before each origin",
                       positive=True)
    head: str = opt("student-t", "forecast: direct (H x 5 quantiles at once, pinball loss) or "
                    "an autoregressive decoder with a gaussian or student-t likelihood "
                    "(DeepAR), sampled for intervals", choices=HEADS)
    # the same key, values and default as classify's: one --fill flag serves both
    fill: str = opt("none", "forecast, classify: missing values in series: none (an error), "
                    "forward, linear or zero", choices=("none", *FILLS))
    samples: int = opt(200, "forecast: sample paths per forecast (gaussian and student-t "
                       "heads), for intervals and CRPS", positive=True, maximum=100_000)
    windows: int = opt(1, "forecast: rolling-origin test windows at the end of each series",
                       positive=True)
    val_windows: int = opt(0, "forecast: validation windows just before the test windows (0: "
                           "as many as --windows)", minimum=0)
    window_step: int = opt(1, "forecast: steps between consecutive rolling origins",
                           positive=True)
    seasonality: int = opt(0, "forecast: season length m of seasonal naive, ETS, ARIMA and "
                           "MASE (0: the bundled set's, or what a CSV's time stamps suggest: "
                           "monthly 12, quarterly 4)", minimum=0)
    scaling: str = opt("window", "forecast: scale each window by its context's mean and "
                       "standard deviation (window), by its series' training part's (series), "
                       "or not at all (none)", choices=SCALINGS)
    transform: str = opt("none", "forecast: log models the log of a positive series (forecasts "
                         "and intervals back in its units), none its values", choices=TRANSFORMS)
    lags: str = opt("", "forecast: the series' own values k steps back as extra inputs, e.g. "
                    "12,24 (scaled like the series, masked before its start; in the decoder "
                    "from its own samples when k is within the forecast)")
    calendar: bool = opt(False, "forecast: month of year, quarter or day of week as sine and "
                         "cosine inputs (monthly, quarterly or daily time stamps), known for "
                         "future steps too")
    covariates: bool = opt(False, "forecast: a long CSV's other columns as inputs over the "
                           "context (standardized; a forecast needs none past it)")

    def __post_init__(self) -> None:
        validate(self)
        self.lag_steps()

    def lag_steps(self) -> tuple[int, ...]:
        """The lags as numbers; ValueError for anything but distinct whole numbers >= 1."""
        if not self.lags.strip():
            return ()
        if not re.fullmatch(r"\s*\d+\s*(,\s*\d+\s*)*", self.lags):
            raise ValueError(f"lags must be whole numbers separated by commas, got "
                             f"{self.lags!r}")
        steps = tuple(int(k) for k in self.lags.split(","))
        if min(steps) < 1 or max(steps) > MAX_LAG or len(set(steps)) < len(steps):
            raise ValueError(f"lags must be distinct, each in [1, {MAX_LAG}], got {self.lags!r}")
        return steps

    def extras(self) -> bool:
        """Whether the model reads anything beside the values."""
        return bool(self.lag_steps() or self.calendar or self.covariates)

    def split(self) -> Split:
        return Split(self.context, self.horizon, self.windows,
                     self.val_windows or self.windows, self.window_step)


@dataclass
class SeriesAssets:
    """What a run keeps of its data (in config.json): names, season, training statistics."""

    names: list[str]
    seasonality: int
    stats: Tensor  # (S, 2) mean and standard deviation of each series' training part
    covariates: list[str] = field(default_factory=list)  # a long CSV's columns the model reads
    covariate_stats: Tensor | None = None  # (V, 2) their training parts' mean and deviation


@dataclass
class ForecastData:
    """A source read, checked and split: the windows of each part, the scaling statistics."""

    series: Series  # as read (the truth, baselines and MASE are in its units)
    assets: SeriesAssets
    train: WindowSet
    val: WindowSet
    test: WindowSet


def read_series(source: str, own: ForecastConfig) -> Series:
    """The series of ``source``, every check of the data and the split done."""
    series = load(source, own.fill)
    own.split().check(series)
    return series


def split_data(series: Series, own: ForecastConfig, assets: SeriesAssets | None = None
               ) -> ForecastData:
    """Windows by time: training, validation and test origins of every series."""
    split, values = own.split(), transformed(series, own.transform)
    lengths = [len(v) for v in values]
    train_ends = [split.train_end(n) for n in lengths]
    if assets is None:
        stats = series_stats(values, train_ends)
        assets = SeriesAssets(list(series.names), own.seasonality or series.seasonality, stats)
        if own.covariates:
            assets.covariates = covariate_names(series)
            raw = covariate_arrays(series, own.fill, assets.covariates)
            train = np.concatenate([a[:e] for a, e in zip(raw, train_ends, strict=True)])
            assets.covariate_stats = torch.tensor(
                np.stack([train.mean(0), train.std(0, ddof=1)], 1), dtype=torch.float32)
    inputs = window_inputs(series, own, assets)

    def windows(origins, ends=None) -> WindowSet:
        return WindowSet(values, [origins(n) for n in lengths], own.context, own.horizon, ends,
                         inputs)

    return ForecastData(series, assets, windows(split.train_origins, train_ends),
                        windows(split.val_origins), windows(split.test_origins))


def future_windows(series: Series, own: ForecastConfig, assets: SeriesAssets, horizon: int
                   ) -> WindowSet:
    """One window per series whose forecast starts after its last value."""
    values = transformed(series, own.transform)
    return WindowSet(values, [[len(v)] for v in values], own.context, horizon, None,
                     window_inputs(series, own, assets))


def covariate_names(series: Series) -> list[str]:
    if not series.covariates:
        raise ValueError(f"{series.source}: --covariates reads a long CSV's columns beside id, "
                         "time and value, and this source has none")
    return list(series.covariates)


def window_inputs(series: Series, own: ForecastConfig, assets: SeriesAssets) -> Inputs:
    """What the windows read beside the values: steps before the context for the lags, each
    series' calendar, the covariates standardized by the run's statistics."""
    lags = own.lag_steps()
    calendar = calendars(series) if own.calendar else None
    covariates = None
    if own.covariates:
        if (names := covariate_names(series)) != assets.covariates:
            raise ValueError(f"{series.source}:line 1: covariates {', '.join(names)} do not "
                             f"match the run's {', '.join(assets.covariates)}")
        stats = assets.covariate_stats.double().numpy()  # (V, 2)
        covariates = [(a - stats[:, 0]) / np.maximum(stats[:, 1], 1e-8)
                      for a in covariate_arrays(series, own.fill, names)]
    return Inputs(max(lags, default=0), calendar, covariates)


def calendars(series: Series) -> list[tuple[int, int]]:
    """(period, phase) of every series; ValueError naming the first without a calendar."""
    phases = []
    for k, name in enumerate(series.names):
        stamps = series.times[k] if series.times else []
        if (phase := calendar_phase(stamps, series.where(k, 0))) is None:
            raise ValueError(f"{series.where(k, 0)}: --calendar needs monthly, quarterly or "
                             f"daily time stamps; series {name!r} has "
                             f"{repr(stamps[0]) if stamps else 'none'}")
        phases.append(phase)
    return phases


def covariate_arrays(series: Series, fill: str, names: list[str]) -> list[np.ndarray]:
    """(T_i, V) covariates ``names`` of each series; a missing one is an error naming its
    line unless ``fill`` fills it."""
    arrays = []
    for k in range(len(series.names)):
        columns = []
        for name in names:
            column = series.covariates[name][k]
            if (missing := np.flatnonzero(np.isnan(column))).size and fill == "none":
                raise ValueError(f"{series.where(k, int(missing[0]))}: covariate {name!r} of "
                                 f"series {series.names[k]!r} is missing; gaps need --fill "
                                 f"{' | '.join(FILLS)}, chosen when the run is trained")
            columns.append(fill_gaps(column, fill) if missing.size else column)
        arrays.append(np.stack(columns, 1))
    return arrays


@dataclass
class Batch:
    """Scaled windows as the model reads them."""

    context: Tensor  # (B, C)
    targets: Tensor  # (B, H)
    observed: Tensor  # (B, C + H) bool
    extra: Extra | None  # lags, calendar, covariates; None when the model reads none
    scale: Scale

    def to(self, device) -> Batch:
        return Batch(self.context.to(device), self.targets.to(device),
                     self.observed.to(device),
                     None if self.extra is None else self.extra.to(device), self.scale)

    def model_inputs(self) -> tuple[Tensor, Tensor, Tensor, Extra | None]:
        """What :meth:`Forecaster.loss` takes."""
        return self.context, self.targets, self.observed, self.extra


def scaled(windows: WindowSet, rows: Tensor, assets: SeriesAssets, own: ForecastConfig
           ) -> Batch:
    """Windows ``rows`` scaled by statistics of the observed context (or of the series'
    training part), with what else the model reads."""
    context, targets, observed = windows.gather(rows)
    steps = context.shape[1]
    scale = scale_of(context, own.scaling, assets.stats[windows.series[rows]],
                     observed[:, :steps])
    extra = None
    if own.extras():
        before, seen = windows.gather_before(rows)
        extra = Extra(scale.apply(before, seen), seen, windows.gather_calendar(rows),
                      windows.gather_covariates(rows))
    return Batch(scale.apply(context, observed[:, :steps]),
                 scale.apply(targets, observed[:, steps:]), observed, extra, scale)
