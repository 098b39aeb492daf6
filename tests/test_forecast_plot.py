"""Forecast figures: the time axis reads the series' own stamps, the forecast's continued."""

from __future__ import annotations

import numpy as np

from seqlab import forecast_plot
from seqlab.data.series_csv import Series
from seqlab.families.forecast_eval import Backtest


def drawn(monkeypatch, draw):
    """The figure ``draw`` saves, kept open for reading."""
    figures = []
    monkeypatch.setattr(forecast_plot, "_save", lambda fig, path: figures.append(fig) or path)
    draw()
    figures[0].canvas.draw()  # the tick labels as they are drawn
    return figures[0]


def monthly(times: bool = True) -> Series:
    stamps = [f"{2000 + m // 12}-{m % 12 + 1:02d}" for m in range(30)]
    values = np.sin(np.arange(30) / 3.0)
    return Series(["sales"], [values], [list(range(2, 32))], "s.csv", 12,
                  [stamps] if times else [])


def forecast(horizon: int = 6) -> Backtest:
    levels = np.array([0.025, 0.1, 0.5, 0.9, 0.975])
    quantiles = np.sort(np.random.default_rng(0).normal(size=(1, horizon, 5)), axis=-1)
    return Backtest(None, levels, quantiles, None, np.ones(1), np.zeros(1, int), np.array([30]))


def test_the_forecast_axis_continues_the_series_dates(monkeypatch, tmp_path):
    fig = drawn(monkeypatch, lambda: forecast_plot.plot_forecast(tmp_path / "f.png", forecast(),
                                                                   monthly()))
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels[0] == "2000-07" and labels[-1] == "2002-12"  # 24 steps back, 6 ahead
    assert all(len(label) == 7 and label[4] == "-" for label in labels)


def test_series_without_stamps_keep_numbered_steps(monkeypatch, tmp_path):
    fig = drawn(monkeypatch, lambda: forecast_plot.plot_forecast(tmp_path / "f.png", forecast(),
                                                                   monthly(times=False)))
    labels = [t.get_text().replace("\u2212", "-") for t in fig.axes[0].get_xticklabels()]
    assert labels and all(float(label) == int(float(label)) for label in labels)
