"""The forecast family through the command line: train, evaluate (--json, --baselines),
forecast (CSV and PNG), resume, and every bad input as one line naming file and line, exit 2,
nothing on disk changed."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from seqlab.cli import main

KEYS = ["--task", "forecast", "--model", "gru", "--hidden-size", "8", "--horizon", "6",
        "--context", "12", "--batch-size", "8", "--eval-every", "5", "--log-every", "5",
        "--samples", "20", "--device", "cpu", "--quiet"]


def series_csv(path: Path, steps: int = 72, seed: int = 0) -> Path:
    """Two monthly series: a trend with a yearly season, and a noisy level."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    a = 100 + t + 10 * np.sin(2 * math.pi * t / 12) + rng.normal(0, 1, steps)
    b = 50 + rng.normal(0, 2, steps)
    rows = [f"{2000 + k // 12}-{k % 12 + 1:02d},{a[k]:.3f},{b[k]:.3f}" for k in t]
    path.write_text("month,sales,visits\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, single_thread) -> tuple[Path, Path]:
    """(data, run): a 10-step run on two generated series."""
    folder = tmp_path_factory.mktemp("forecast")
    data, run = series_csv(folder / "shop.csv"), folder / "run"
    assert main(["train", str(data), *KEYS, "--max-steps", "10", "--out", str(run)]) == 0
    return data, run


def test_train_evaluate_and_forecast(trained, tmp_path, capsys):
    data, run = trained
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "forecast" and config["data"]["series"] == ["sales", "visits"]
    assert config["data"]["seasonality"] == 12  # monthly stamps
    code, out, err = run_cli(capsys, "evaluate", run, data, "--json", "--out", tmp_path / "ev")
    assert code == 0, err
    result = json.loads(out)
    assert result["windows"] == 2 and result["horizon"] == 6
    for key in ("mae", "rmse", "mape", "smape", "mase", "coverage_80", "coverage_95", "crps"):
        assert math.isfinite(result[key]), key
    assert json.loads((tmp_path / "ev" / "evaluation.json").read_text())["mase"] == result["mase"]
    assert (tmp_path / "ev" / "forecast.png").read_bytes()[:4] == b"\x89PNG"
    code, _, err = run_cli(capsys, "evaluate", run, data, "--out", data)  # a file, not a folder
    assert one_error(code, err) == (f"seqlab: error: --out {data} is a file; evaluate writes a "
                                    "folder (of evaluation.json and figures): give a folder")
    code, out, err = run_cli(capsys, "evaluate", run, data, "--baselines", "--json")
    assert code == 0, err
    baselines = json.loads(out)["baselines"]
    assert set(baselines) == {"naive", "seasonal_naive", "ets", "arima"}
    assert all(0 <= b["coverage_95"] <= 1 for b in baselines.values())
    assert (run / "evaluation" / "evaluation.json").exists()  # the default --out
    code, out, err = run_cli(capsys, "evaluate", run, data)  # the table
    assert code == 0 and out.splitlines()[2].split()[0] == "model"
    csv_path, png = tmp_path / "f.csv", tmp_path / "f.png"
    code, out, err = run_cli(capsys, "forecast", run, "--horizon", "4", "--input", data,
                             "--out", csv_path, "--plot", png)
    assert code == 0, err
    rows = list(csv.DictReader(csv_path.open()))
    assert [(r["series"], r["step"]) for r in rows[:5]] == [("sales", "1"), ("sales", "2"),
                                                          ("sales", "3"), ("sales", "4"),
                                                          ("visits", "1")]
    assert rows[0]["after"] == "2005-12"
    assert [r["time"] for r in rows[:5]] == ["2006-01", "2006-02", "2006-03", "2006-04",
                                              "2006-01"]
    assert all(float(r["lower_95"]) <= float(r["forecast"]) <= float(r["upper_95"])
               for r in rows)
    assert png.read_bytes()[:4] == b"\x89PNG"
    code, out, err = run_cli(capsys, "info", run)
    assert code == 0 and "2 series, season 12" in out


def test_resume_continues_the_run(tmp_path, capsys, single_thread):
    data, run = series_csv(tmp_path / "d.csv"), tmp_path / "run"
    assert run_cli(capsys, "train", data, *KEYS, "--max-steps", "10", "--out", run)[0] == 0
    code, _, err = run_cli(capsys, "train", data, *KEYS[:-1], "--max-steps", "15", "--out",
                           run, "--resume")  # not --quiet: the progress lines
    assert code == 0, err
    assert " values/s " in err and "tok/s" not in err  # what a forecaster's step scores
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 15
    code, _, err = run_cli(capsys, "train", data, *KEYS, "--horizon", "5", "--max-steps", "20",
                           "--out", run, "--resume")
    assert code == 2 and "cannot change: horizon" in err


def one_error(code: int, err: str) -> str:
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("seqlab: error: "), err
    return lines[0]


def replace_line(path: Path, line: int, text: str) -> Path:
    lines = path.read_text().splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("damage, extra, message", [
    (lambda p: replace_line(p, 5, "2000-04,12x,3"), [],
     r"bad.csv:line 5: column 'sales': '12x' is not a number"),
    (lambda p: series_csv(p, steps=17), [],
     r"bad.csv:line 18: series 'sales' has 17 points, shorter than context 12 \+ horizon 6"),
    (lambda p: replace_line(p, 9, "2000-08,,3"), [],
     r"bad.csv:line 9: series 'sales' has a missing value \(1 in all\); gaps need --fill"),
    (lambda p: replace_line(p, 4, "2000-02,5,5"), [],
     r"bad.csv:line 4: duplicated time stamp '2000-02' \(also on line 3\)"),
    (lambda p: replace_line(p, 4, "2000-04,5,5"), [],
     r"bad.csv:line 4: irregular time stamps: '2000-02' to '2000-04' is not the step of "),
    (lambda p: p, ["--horizon", "0"], r"horizon must be positive, got 0"),
])
def test_bad_training_input_is_one_line_and_writes_nothing(tmp_path, capsys, damage, extra,
                                                           message):
    import re

    data = damage(series_csv(tmp_path / "bad.csv"))
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "train", data, *KEYS, *extra, "--max-steps", "5", "--out",
                           tmp_path / "run")
    assert re.search(message, one_error(code, err))
    assert snapshot(tmp_path) == before


def test_missing_values_train_with_a_fill(tmp_path, capsys, single_thread):
    data = replace_line(series_csv(tmp_path / "gap.csv"), 9, "2000-08,,3")
    code, _, err = run_cli(capsys, "train", data, *KEYS, "--fill", "linear", "--max-steps", "5",
                           "--out", tmp_path / "run")
    assert code == 0, err


def test_bad_forecast_input_is_one_line_and_writes_nothing(trained, tmp_path, capsys):
    import re

    data, run = trained
    other = tmp_path / "other.csv"
    other.write_text(data.read_text().replace("month,sales,visits", "month,sales,clicks"))
    short = series_csv(tmp_path / "short.csv", steps=8)
    before, out = snapshot(run), tmp_path / "f.csv"
    for argv, message in [
        (["--input", other], r"other.csv:line 1: series sales, clicks do not match the run's "
                             "series sales, visits"),
        (["--input", short], r"short.csv:line 9: series 'sales' has 8 points; the run reads a "
                             "context of 12"),
        (["--horizon", "0"], r"--horizon must be positive, got 0"),
        (["--horizon", str(10**9)], r"--horizon 1000000000: forecasting 2 series "
                                    r"1,000,000,000 steps ahead with \d+ sample paths would need "
                                    r"[\d.]+ TiB; this machine has"),
        (["--input", tmp_path / "nothing.csv"], r"nothing.csv: no such file, and not a bundled"),
    ]:
        code, _, err = run_cli(capsys, "forecast", run, *argv, "--out", out)
        assert re.search(message, one_error(code, err)), err
    assert snapshot(run) == before and not out.exists()
    code, _, err = run_cli(capsys, "evaluate", run, other)
    assert "do not match the run's series" in one_error(code, err)


def test_a_direct_run_forecasts_its_horizon_at_most(tmp_path, capsys, single_thread):
    data, run = series_csv(tmp_path / "d.csv"), tmp_path / "run"
    assert run_cli(capsys, "train", data, *KEYS, "--head", "direct", "--max-steps", "5",
                   "--out", run)[0] == 0
    code, out, err = run_cli(capsys, "forecast", run, "--horizon", "6")
    assert code == 0 and len(out.splitlines()) == 1 + 2 * 6
    code, _, err = run_cli(capsys, "forecast", run, "--horizon", "7")
    assert "forecasts 6 steps at most (a direct head)" in one_error(code, err)
    code, _, err = run_cli(capsys, "forecast", run.parent / "nope")
    assert code == 2


def test_an_output_never_replaces_what_the_command_reads(trained, tmp_path, capsys):
    # forecast --plot DATA or --out DATA overwrote the run's own training CSV (a PNG in its
    # place, or the forecast), and --plot X --out X lost the figure: each is refused first
    data, run = trained
    copy = tmp_path / "copy.csv"
    copy.write_bytes(data.read_bytes())
    before, data_before, copy_before = snapshot(run), data.read_bytes(), copy.read_bytes()
    for argv, message in [
        (["--plot", data], rf"--plot {data} is the data the run {run} was trained on: "
                           r"writing there would change it; give another path"),
        (["--plot", copy], rf"--plot {copy} exists and is no \.png file: writing there would "
                           r"replace it; give another path"),
        (["--input", copy, "--out", copy], r"--out .*copy.csv is --input"),
        (["--out", run / "config.json"], r"is config.json of the run"),
        (["--plot", tmp_path / "p.csv", "--out", tmp_path / "p.csv"],
         r"--out and --plot name the same file, .*p.csv: give each its own"),
    ]:
        code, _, err = run_cli(capsys, "forecast", run, *map(str, argv))
        assert re.search(message, one_error(code, err)), err
    assert snapshot(run) == before and data.read_bytes() == data_before
    assert copy.read_bytes() == copy_before and not (tmp_path / "p.csv").exists()
    code, _, err = run_cli(capsys, "report", run, "--out", run / "metrics.jsonl")
    assert "is metrics.jsonl of the run" in one_error(code, err)
    code, _, err = run_cli(capsys, "forecast", run, "--out", run / "last" / "model.safetensors")
    assert "is last/model.safetensors of the run" in one_error(code, err)
    assert snapshot(run) == before
    # a file of the user's own in the run folder is theirs to write again
    for _ in range(2):
        code, _, err = run_cli(capsys, "forecast", run, "--out", run / "forecast.csv")
        assert code == 0, err
    (run / "forecast.csv").unlink()


def test_series_are_matched_by_name_in_any_order(trained, tmp_path, capsys):
    """A file listing the run's series in another order forecasts and scores each as itself."""
    data, run = trained
    rows = [line.split(",") for line in data.read_text().splitlines()]
    swapped = tmp_path / "swapped.csv"
    swapped.write_text("".join(f"{t},{b},{a}\n" for t, a, b in rows), encoding="utf-8")
    assert swapped.read_text().startswith("month,visits,sales\n")
    code, straight, err = run_cli(capsys, "forecast", run, "--input", data)
    assert code == 0, err
    code, crossed, err = run_cli(capsys, "forecast", run, "--input", swapped)
    assert code == 0, err
    assert crossed == straight  # the rows in the run's order, sales first
    code, out, err = run_cli(capsys, "evaluate", run, swapped, "--json", "--out", tmp_path / "e")
    assert code == 0, err
    code, first, err = run_cli(capsys, "evaluate", run, data, "--json", "--out", tmp_path / "f")
    assert json.loads(out)["mase"] == json.loads(first)["mase"]
