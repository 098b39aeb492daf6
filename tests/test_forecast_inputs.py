"""What a forecaster reads beside its values: lags (the shifted series, never a later value;
the decoder's own samples past the context), calendar channels, a log transform inverted
exactly, covariates that reach the model, and future time stamps of a forecast."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from seqlab.cli import main
from seqlab.config import ModelConfig
from seqlab.data.series import Inputs, WindowSet, transformed, untransformed
from seqlab.data.series_csv import read_csv
from seqlab.data.series_time import calendar_phase, future_stamps
from seqlab.families.forecast_data import ForecastConfig, SeriesAssets, scaled, split_data
from seqlab.models.forecaster import Extra, Forecaster, encoder_inputs

C, H, LAGS = 6, 4, (1, 3, 8)


def monthly_csv(path: Path, steps: int = 48, start: int = 2, seed: int = 0) -> Path:
    """One positive monthly series with a season, from month ``start`` (0: January) of 2000."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    y = 100 + t + 20 * np.sin(2 * math.pi * t / 12) + rng.normal(0, 1, steps)
    rows = [f"{2000 + (start + k) // 12}-{(start + k) % 12 + 1:02d},{y[k]:.3f}" for k in t]
    path.write_text("month,sales\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def channels(values: np.ndarray, origin: int, scaling: str = "none", calendar: bool = False
             ) -> torch.Tensor:
    """The decoder's inputs (1, C + H - 1, F) of the window at ``origin`` (teacher forcing)."""
    own = ForecastConfig(context=C, horizon=H, lags=",".join(map(str, LAGS)), scaling=scaling,
                         calendar=calendar)
    windows = WindowSet([values], [[origin]], C, H, None,
                        Inputs(max(LAGS), [(12, 0)] if calendar else None))
    batch = scaled(windows, torch.arange(1), SeriesAssets(["y"], 12, torch.ones(1, 2)), own)
    e = batch.extra
    path = torch.cat([e.before, batch.context, batch.targets], 1)
    seen = torch.cat([e.before_seen, batch.observed], 1)
    return encoder_inputs(path, seen, e, LAGS, 0, C + H - 1)


def test_lag_channels_are_the_shifted_series_masked_before_its_start():
    values, origin = 1000 + np.arange(30.0), 9
    x = channels(values, origin)[0]  # (C + H - 1, 2 + 2 L)
    for j in range(C + H - 1):
        t = origin - C + j  # the step position j reads; it predicts t + 1
        assert x[j, 0] == values[t] and x[j, 1] == 1
        for m, k in enumerate(LAGS):
            inside = t + 1 - k >= 0
            assert x[j, 2 + len(LAGS) + m] == float(inside)
            assert x[j, 2 + m] == (values[t + 1 - k] if inside else 0.0)


@pytest.mark.parametrize("scaling", ["none", "window"])
def test_inputs_never_read_a_later_value(scaling):
    """Changing y_t and everything after it leaves every input before step t as it was: the
    inputs that predict y_t and the contexts of windows whose origin is t or earlier."""
    rng = np.random.default_rng(1)
    values = rng.normal(10, 3, 40)
    for t in range(12, 30, 5):
        changed = values.copy()
        changed[t:] = rng.normal(-50, 9, 40 - t)
        for origin in (t - 2, t):
            before = origin - C  # the window's first step
            a, b = channels(values, origin, scaling, True), channels(changed, origin, scaling, True)
            reads_t = t - before  # the first position whose own value is y_t
            assert torch.equal(a[:, :reads_t], b[:, :reads_t])
            assert not torch.equal(a, b)  # the later positions do read the change


def test_sampling_feeds_its_draws_to_the_lag_inputs_like_teacher_forcing():
    """Redrawing with the seed, step by step, from teacher forcing over the sampled path gives
    the same path: every lag input of a decoded step came from the path itself."""
    torch.manual_seed(0)
    model = Forecaster(ModelConfig(model="gru", hidden_size=8), "gaussian", H, (1, 2, 5), 2).eval()
    context = torch.randn(1, C)
    extra = Extra(torch.randn(1, 5), torch.ones(1, 5, dtype=torch.bool), torch.randn(1, C + H, 2),
                  torch.zeros(1, C, 0))
    path = model.sample(context, H, 1, seed=7, extra=extra)[0]  # (1, H)
    params, _ = model.read(torch.cat([context, path[:, :-1]], 1), extra=extra)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        again = [model.distribution(params[:, C - 1 + h]).sample() for h in range(H)]
    assert torch.allclose(torch.stack(again, 1), path, atol=1e-5)
    with pytest.raises(ValueError, match="reads lags, calendar or covariates; pass them"):
        model.read(context)


def test_calendar_channels_of_a_monthly_series_run_past_its_end(tmp_path):
    series = read_csv(monthly_csv(tmp_path / "m.csv", start=2))  # from March 2000
    assert calendar_phase(series.times[0], "m.csv") == (12, 2)
    windows = WindowSet(series.values, [[48]], C, H, None, Inputs(0, [(12, 2)]))
    known = windows.gather_calendar(torch.arange(1))[0]  # (C + H, 2), the last H past the end
    months = (2 + 48 - C + np.arange(C + H)) % 12
    assert np.allclose(known[:, 0], np.sin(2 * np.pi * months / 12), atol=1e-6)
    assert np.allclose(known[:, 1], np.cos(2 * np.pi * months / 12), atol=1e-6)
    assert calendar_phase(["2001-Q3", "2001-Q4"], "q") == (4, 2)
    assert calendar_phase(["2024-01-01", "2024-01-02"], "d") == (7, 0)  # a Monday
    yearly = tmp_path / "y.csv"
    yearly.write_text("year,a\n" + "".join(f"{1900 + k},{k}\n" for k in range(30)))
    with pytest.raises(ValueError, match=r"y.csv:line 2: --calendar needs monthly, quarterly or "
                                         r"daily time stamps; series 'a' has '1900'"):
        split_data(read_csv(yearly), ForecastConfig(context=4, horizon=2, calendar=True))


def test_log_transform_round_trip_and_non_positive_values(tmp_path):
    path = monthly_csv(tmp_path / "m.csv")
    series = read_csv(path)
    own = ForecastConfig(context=C, horizon=H, transform="log", scaling="window")
    data = split_data(series, own)
    batch = scaled(data.test, torch.arange(len(data.test)), data.assets, own)
    back = untransformed(batch.scale.invert(batch.targets), "log").double()
    assert torch.allclose(back, torch.tensor(series.values[0][-H:])[None], rtol=1e-5)
    assert np.allclose(np.exp(transformed(series, "log")[0]), series.values[0])
    text = path.read_text().splitlines()
    text[7] = text[7].split(",")[0] + ",0"
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match=r"m.csv:line 8: series 'sales' has the value 0; "
                                         r"--transform log needs values > 0"):
        split_data(read_csv(path), own)


@pytest.mark.parametrize("lags, message", [("12,x", "whole numbers separated by commas"),
                                           ("0", r"each in \[1, 10000\]"),
                                           ("3,3", "distinct")])
def test_bad_lags_are_refused(lags, message):
    with pytest.raises(ValueError, match=message):
        ForecastConfig(lags=lags)


def test_future_time_stamps_continue_the_time_column():
    assert future_stamps(["2005-11", "2005-12"], 2, "f") == ["2006-01", "2006-02"]
    assert future_stamps(["2001 Nov", "2001 Dec"], 1, "f") == ["2002 Jan"]
    assert future_stamps(["2001-11-01", "2001-12-01"], 1, "f") == ["2002-01-01"]
    assert future_stamps(["2008-Q3", "2008-Q4"], 2, "f") == ["2009-Q1", "2009-Q2"]
    assert future_stamps(["2024-02-28", "2024-02-29"], 2, "f") == ["2024-03-01", "2024-03-02"]
    assert future_stamps(["1998", "2000"], 2, "f") == ["2002", "2004"]
    assert future_stamps(["0", "1", "2"], 2, "f") == ["3", "4"]  # no time column: row numbers
    # times of day written as they came: minutes or seconds, a space or a T
    assert future_stamps(["2020-01-03 10:00", "2020-01-03 11:00"], 2, "f") == [
        "2020-01-03 12:00", "2020-01-03 13:00"]
    assert future_stamps(["2015-03-01T00:00:00", "2015-03-02T00:00:00"], 1, "f") == [
        "2015-03-03T00:00:00"]
    assert future_stamps(["2015-03-01 23:59:30", "2015-03-02 00:00:00"], 1, "f") == [
        "2015-03-02 00:00:30"]


def long_csv(path: Path, price_shift: float = 0.0, steps: int = 40) -> Path:
    """Two monthly series in long form with a price covariate (its last C values moved by
    ``price_shift``, the values not)."""
    rng = np.random.default_rng(0)
    rows = []
    for name in ("a", "b"):
        price = rng.normal(5, 1, steps)
        y = 50 + 3 * np.roll(price, 1) + rng.normal(0, 1, steps)
        price[-C:] += price_shift
        rows += [f"{name},{2000 + k // 12}-{k % 12 + 1:02d},{y[k]:.3f},{price[k]:.3f}"
                 for k in range(steps)]
    path.write_text("id,time,value,price\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


KEYS = ["--task", "forecast", "--model", "gru", "--hidden-size", "8", "--horizon", str(H),
        "--context", str(C), "--batch-size", "8", "--eval-every", "5", "--samples", "20",
        "--device", "cpu", "--quiet", "--max-steps", "10"]


def forecast(capsys, run: Path, data: Path) -> list[dict]:
    capsys.readouterr()
    assert main(["forecast", str(run), "--input", str(data)]) == 0
    return list(csv.DictReader(capsys.readouterr().out.splitlines()))


def test_covariates_reach_the_model_and_old_runs_still_load(tmp_path, capsys, single_thread):
    data = long_csv(tmp_path / "long.csv")
    run = tmp_path / "cov"
    assert main(["train", str(data), *KEYS, "--covariates", "--lags", "1,12", "--calendar",
                 "--out", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["data"]["covariates"] == ["price"]
    capsys.readouterr()
    assert main(["info", str(run)]) == 0
    assert "inputs       lags 1,12; calendar; covariates price" in capsys.readouterr().out
    same = forecast(capsys, run, data)
    assert [r["time"] for r in same[:2]] == ["2003-05", "2003-06"]
    moved = forecast(capsys, run, long_csv(tmp_path / "moved.csv", price_shift=3.0))
    assert [r["forecast"] for r in same] != [r["forecast"] for r in moved]
    capsys.readouterr()
    wide = tmp_path / "wide.csv"
    wide.write_text("month,a,b\n" + "".join(f"{2000 + k // 12}-{k % 12 + 1:02d},1,2\n"
                                            for k in range(40)))
    assert main(["forecast", str(run), "--input", str(wide)]) == 2
    assert "this source has none" in capsys.readouterr().err
    assert main(["train", str(wide), *KEYS, "--covariates", "--out", str(tmp_path / "w")]) == 2
    assert "this source has none" in capsys.readouterr().err
    # a run written before these keys existed: its config holds none of them
    plain = tmp_path / "plain"
    assert main(["train", str(data), *KEYS, "--out", str(plain)]) == 0
    config = json.loads((plain / "config.json").read_text())
    for key in ("transform", "lags", "calendar", "covariates"):
        del config["forecast"][key]
    for key in ("covariates", "covariate_stats"):
        del config["data"][key]
    (plain / "config.json").write_text(json.dumps(config))
    assert forecast(capsys, plain, data) == forecast(capsys, plain,
                                                     long_csv(tmp_path / "m2.csv", 3.0))


def test_month_end_dates_are_monthly_and_dates_three_months_apart_quarterly(tmp_path):
    """A monthly series written at each month's last day is regular (season 12), continues at
    month ends, and its calendar is the month of year; dates every third month are quarters."""
    import calendar

    months = [divmod(k, 12) for k in range(30)]
    ends = [f"{2000 + y}-{m + 1:02d}-{calendar.monthrange(2000 + y, m + 1)[1]:02d}"
            for y, m in months]
    path = tmp_path / "eom.csv"
    path.write_text("time,v\n" + "".join(f"{t},{k % 12}\n" for k, t in enumerate(ends)))
    series = read_csv(path)
    assert series.seasonality == 12
    assert calendar_phase(series.times[0], "eom") == (12, 0)
    assert future_stamps(ends, 3, "f") == ["2002-07-31", "2002-08-31", "2002-09-30"]
    assert future_stamps(["2023-12-31", "2024-01-31"], 1, "f") == ["2024-02-29"]
    quarters = [f"{1950 + k // 4}-{3 * (k % 4) + 1:02d}-01" for k in range(1, 9)]  # from Q2
    assert calendar_phase(quarters, "q") == (4, 1)
    assert future_stamps(quarters, 2, "f") == ["1952-04-01", "1952-07-01"]
    path.write_text("time,v\n" + "".join(f"{t},{k}\n" for k, t in enumerate(quarters)))
    assert read_csv(path).seasonality == 4
    mixed = tmp_path / "mixed.csv"  # a first and a last day: neither monthly nor daily
    mixed.write_text("time,v\n2000-01-01,1\n2000-01-31,2\n2000-03-31,3\n")
    with pytest.raises(ValueError, match=r"mixed.csv:line 4: irregular time stamps"):
        read_csv(mixed)
