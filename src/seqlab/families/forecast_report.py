"""The forecast family's section of a run's report: the test windows' forecasts with their
80% and 95% intervals beside the truth, and the metrics of the backtest (the best weights)."""

from __future__ import annotations

import numpy as np

from seqlab.checkpoint import RunDir
from seqlab.families.base import LoadedRun, no_model
from seqlab.families.forecast_eval import backtest
from seqlab.sections import svg
from seqlab.sections.blocks import Figure, Note, Section, Table, number

PANELS = 6  # series drawn at most
BANDS = (((0.025, 0.975), 0.18, "95%"), ((0.1, 0.9), 0.35, "80%"))


def sections(family, run: RunDir, loaded: LoadedRun | None, live: bool = False
             ) -> list[Section]:
    section = Section("Forecasts", anchor="forecasts")
    if loaded is None:
        section.missing.append(no_model(run, "forecasts"))
        return [section]
    data = family.prepare(family.source_of(loaded.config), loaded.configs,
                          loaded.vocab).data
    result = backtest(loaded.model, data, data.test, loaded.configs.own)
    section.blocks.append(Note(f"The last test window of each series ({len(data.test)} test "
                               "windows in all), forecast with the best weights: median, 80% "
                               "and 95% intervals, and the truth."))
    section.blocks.append(Figure(panels(result, data.series), "forecasts on the test windows"))
    metrics = result.metrics()
    section.blocks.append(Table(list(metrics), [[number(v) for v in metrics.values()]],
                                "the backtest on every test window"))
    return [section]


def panels(result, series) -> str:
    last: dict[int, int] = {}
    for w, k in enumerate(result.series.tolist()):
        last[k] = w  # windows run in time order within a series
    shown = list(last.items())[:PANELS]
    fig, axes = svg.figure(7.5, 2.4 * len(shown) + 0.4, rows=len(shown))
    at = {round(float(level), 4): q for q, level in enumerate(result.levels)}
    for ax, (k, w) in zip(axes, shown, strict=True):
        origin, quantiles = int(result.origins[w]), result.quantiles[w]
        horizon = len(quantiles)
        start = max(0, origin - max(4 * horizon, 24))
        values = np.asarray(series.values[k], dtype=float)
        ax.plot(np.arange(start, origin), values[start:origin], color="black", linewidth=1.1,
                label="history")
        steps = np.arange(origin, origin + horizon)
        for (lo, hi), alpha, label in BANDS:
            ax.fill_between(steps, quantiles[:, at[lo]], quantiles[:, at[hi]],
                            color="tab:blue", alpha=alpha, linewidth=0, label=label)
        ax.plot(steps, quantiles[:, at[0.5]], color="tab:blue", linewidth=1.3, label="median")
        ax.plot(steps, result.truth[w], color="tab:red", linewidth=1.1, label="truth")
        ax.set_title(str(series.names[k]))
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left", fontsize=7)
    return svg.to_svg(fig)
