"""What the forecast family reads and keeps: its keys, the series checked and split into
windows by time, their scaling, and the assets a run records in config.json."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from seqlab.config import opt, validate
from seqlab.data.series import (
    FILLS,
    SCALINGS,
    Series,
    Split,
    WindowSet,
    load,
    scale_of,
    series_stats,
)
from seqlab.models.forecaster import HEADS


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

    def __post_init__(self) -> None:
        validate(self)

    def split(self) -> Split:
        return Split(self.context, self.horizon, self.windows,
                     self.val_windows or self.windows, self.window_step)


@dataclass
class SeriesAssets:
    """What a run keeps of its data (in config.json): names, season, training statistics."""

    names: list[str]
    seasonality: int
    stats: Tensor  # (S, 2) mean and standard deviation of each series' training part


@dataclass
class ForecastData:
    """A source read, checked and split: the windows of each part, the scaling statistics."""

    series: Series
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
    split, values = own.split(), series.values
    lengths = [len(v) for v in values]
    if assets is None:
        season = own.seasonality or series.seasonality
        stats = series_stats(values, [split.train_end(n) for n in lengths])
        assets = SeriesAssets(list(series.names), season, stats)

    def windows(origins, ends=None) -> WindowSet:
        return WindowSet(values, [origins(n) for n in lengths], own.context, own.horizon, ends)

    train_ends = [split.train_end(n) for n in lengths]
    return ForecastData(series, assets, windows(split.train_origins, train_ends),
                        windows(split.val_origins), windows(split.test_origins))


def scaled(windows: WindowSet, rows: Tensor, assets: SeriesAssets, scaling: str
           ) -> tuple[Tensor, Tensor, Tensor, Any]:
    """(context (B, C), targets (B, H), observed (B, C + H), scale) of windows ``rows``,
    scaled by statistics of the observed context (or of the series' training part)."""
    context, targets, observed = windows.gather(rows)
    steps = context.shape[1]
    scale = scale_of(context, scaling, assets.stats[windows.series[rows]], observed[:, :steps])
    return (scale.apply(context, observed[:, :steps]),
            scale.apply(targets, observed[:, steps:]), observed, scale)
