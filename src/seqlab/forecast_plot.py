"""Forecast figures as PNG files (matplotlib's Agg backend): history, the truth where it is
known, the median forecast and its 80% and 95% intervals, one panel per series (the first
:data:`PANELS`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import numpy as np  # noqa: E402

from seqlab.data.series_time import future_stamps  # noqa: E402
from seqlab.io import atomic_write  # noqa: E402

PANELS = 6  # series drawn at most
SHOWN = 4  # history drawn: this many horizons before the forecast (at least 24 steps)
TICKS = 5  # time stamps written under each panel


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


def _panel(ax, name: str, values: np.ndarray, origin: int, quantiles: np.ndarray,
           levels: np.ndarray, truth: np.ndarray | None, stamps: list[str] | None) -> None:
    """One series: history before ``origin``, the forecast from it, the truth if given; the
    time axis labelled with ``stamps`` (one per step, the forecast's included) when known."""
    horizon = len(quantiles)
    start = max(0, origin - max(SHOWN * horizon, 24))
    ax.plot(np.arange(start, origin), values[start:origin], color="black", linewidth=1.2,
            label="history")
    steps = np.arange(origin, origin + horizon)
    at = {round(float(level), 4): k for k, level in enumerate(levels)}
    for (lo, hi), alpha, label in (((0.025, 0.975), 0.18, "95%"), ((0.1, 0.9), 0.35, "80%")):
        ax.fill_between(steps, quantiles[:, at[lo]], quantiles[:, at[hi]], color="tab:blue",
                        alpha=alpha, linewidth=0, label=label)
    ax.plot(steps, quantiles[:, at[0.5]], color="tab:blue", linewidth=1.4, label="forecast")
    if truth is not None:
        ax.plot(steps, truth, color="tab:red", linewidth=1.2, label="truth")
    ax.set_title(name, fontsize=9)
    ax.tick_params(labelsize=7)
    if stamps is not None and len(stamps) >= origin + horizon:
        ticks = np.unique(np.linspace(start, origin + horizon - 1, TICKS).round().astype(int))
        ax.set_xticks(ticks, [stamps[t] for t in ticks])


def _stamps(series, k: int, horizon: int) -> list[str] | None:
    """Series k's time stamps continued ``horizon`` steps past its end (as the forecast CSV
    writes them), or None when it has none or they cannot be continued."""
    if not series.times:
        return None
    try:
        return list(series.times[k]) + future_stamps(series.times[k], horizon, series.where(k))
    except ValueError:
        return None


def _figure(count: int):
    rows = min(count, PANELS)
    fig, axes = plt.subplots(rows, 1, figsize=(7.5, 2.6 * rows + 0.4), squeeze=False)
    return fig, axes[:, 0]


def plot_backtest(path: Path, run, series) -> Path:
    """The last test window of each of the first series, against the truth."""
    last = {}
    for w, k in enumerate(run.series.tolist()):
        last[k] = w  # windows run in time order within a series
    fig, axes = _figure(len(last))
    for ax, (k, w) in zip(axes, list(last.items())[:PANELS], strict=False):
        _panel(ax, series.names[k], series.values[k], int(run.origins[w]), run.quantiles[w],
               run.levels, run.truth[w], _stamps(series, k, 0))
    axes[0].legend(fontsize=7, loc="upper left")
    return _save(fig, Path(path))


def plot_forecast(path: Path, run, series) -> Path:
    """The forecast past the end of each of the first series."""
    fig, axes = _figure(len(series.names))
    for ax, k in zip(axes, range(min(len(series.names), PANELS)), strict=False):
        values = series.values[k]
        _panel(ax, series.names[k], values, len(values), run.quantiles[k], run.levels, None,
               _stamps(series, k, len(run.quantiles[k])))
    axes[0].legend(fontsize=7, loc="upper left")
    return _save(fig, Path(path))
