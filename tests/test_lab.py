"""seqlab lab: the suite runs end to end, its report is traceable, and its numbers repeat."""

from __future__ import annotations

import json
import re

import pytest
import torch

from seqlab.cli import main
from seqlab.lab import SUITES, execute, measured_lengths, suite, table

pytestmark = pytest.mark.usefixtures("single_thread")


def test_suites_cover_the_lecture():
    for name in SUITES:
        keys = [e.key for e in suite(name)]
        assert keys == ["adding", "gradients", "exploding", "copy", "baselines", "attention"]
    full = {e.key: e for e in suite("full")}
    assert "T = 200" in full["adding"].title and "T = 100" in full["copy"].title
    assert {r.keys["model"] for r in full["adding"].runs} == {"rnn", "irnn", "lstm", "gru"}
    clip = {r.name: r.keys["clip_norm"] for r in full["exploding"].runs}
    assert clip == {"exploding-noclip": 0.0, "exploding-clip": 1.0}
    attention = {r.name: r.keys["attention"] for r in full["attention"].runs}
    assert attention == {"reverse-attention": "general", "reverse-none": "none"}
    assert measured_lengths("5-60") == [5, 16, 27, 38, 49, 60]
    with pytest.raises(ValueError, match="unknown lab suite 'huge'"):
        suite("huge")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("lab") / "smoke"
    assert main(["lab", "--suite", "smoke", "--out", str(out)]) == 0
    return out


def test_report_links_every_run_and_figure(smoke):
    report = (smoke / "report.md").read_text()
    results = json.loads((smoke / "results.json").read_text())
    for name, run in results["runs"].items():
        assert f"[{name}]({run['run']})" in report or name.startswith("adding-")
        assert (smoke / run["run"] / "config.json").exists()
        assert run["wall_s"] >= 0 and run["parameters"] > 0
    for figure in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report):
        assert (smoke / figure).read_bytes()[:4] == b"\x89PNG"
    assert "window-mlp" in report and "bow" in report and "oneills" in report
    # the big window has more parameters than the small one: no sharing across positions
    windows = sorted((r["parameters"], name) for name, r in results["runs"].items()
                     if name.startswith("oneills-window"))
    assert [name for _, name in windows] == ["oneills-window2", "oneills-window4"]
    assert windows[0][0] < windows[1][0]


def test_the_html_page_holds_the_claims_and_every_figure(smoke):
    page = (smoke / "report.html").read_text()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (smoke / "report.md").read_text())
    assert page.count('<img src="data:image/png;base64,') == len(figures) > 0
    assert "The claims" in page and "Claim: " in page
    assert re.findall(r"https?://", page) == []


def test_attention_experiment_measures_exact_match_by_length(smoke):
    results = json.loads((smoke / "results.json").read_text())
    curves = {name: results["runs"][name]["by_length"]
              for name in ("reverse-attention", "reverse-none")}
    for curve in curves.values():
        assert list(curve) == ["3", "4", "5", "6"]  # the smoke suite's lengths, 3 to 6
        assert all(0.0 <= v <= 1.0 for v in curve.values())
    verdict = results["verdicts"]["attention"]
    assert verdict.startswith("length 3: attention ") and "length 6: attention" in verdict
    assert "figures/attention.png" in (smoke / "report.md").read_text()


def test_a_second_run_reproduces_the_table(smoke, tmp_path):
    results = json.loads((smoke / "results.json").read_text())["runs"]
    again = {}
    for experiment in suite("smoke"):
        for run in experiment.runs:
            if run.name in ("adding-gru", "order-bow", "oneills-window2"):
                again[run.name] = execute(run, tmp_path)
    assert table(again) == table({name: results[name] for name in again})


def test_finished_runs_are_read_not_retrained(smoke, capsys):
    before = json.loads((smoke / "results.json").read_text())
    assert main(["lab", "--suite", "smoke", "--out", str(smoke)]) == 0
    after = json.loads((smoke / "results.json").read_text())
    assert table(after["runs"]) == table(before["runs"])
    assert [r["wall_s"] for r in after["runs"].values()] == \
        [r["wall_s"] for r in before["runs"].values()]  # the first session's wall times


def test_one_experiment_at_a_time(tmp_path, capsys):
    out = tmp_path / "lab"
    assert main(["lab", "--suite", "smoke", "--out", str(out), "--only", "exploding"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["experiments"] == ["exploding"]
    assert sorted(results["runs"]) == ["exploding-clip", "exploding-noclip"]
    assert "## Exploding gradients" in (out / "report.md").read_text()
    assert main(["lab", "--suite", "smoke", "--out", str(out), "--only", "nothing"]) == 2
    assert "unknown experiment nothing" in capsys.readouterr().err


def test_the_adding_verdict_places_the_tanh_rnn_against_the_baseline():
    from seqlab.lab import verdict_adding

    def results(rnn: float) -> dict:
        return {f"adding-{m}": {"best_val_loss": loss} for m, loss in
                (("irnn", 0.005), ("lstm", 0.5), ("gru", 0.002), ("rnn", rnn))}

    assert verdict_adding(results(1.281)).endswith("tanh RNN best 1.2810 (above the baseline "
                                                   "0.1667)")
    assert "reached MSE < 0.01: irnn, gru;" in verdict_adding(results(0.16))
    assert verdict_adding(results(0.16)).endswith("(at the baseline 0.1667)")
    assert verdict_adding(results(0.05)).endswith("(below the baseline 0.1667)")


def test_a_lab_folder_of_another_suite_is_named_not_reported(tmp_path, capsys):
    # a quick lab in a smoke lab's folder read the smoke runs and reported them as T = 100
    out = tmp_path / "lab"
    assert main(["lab", "--suite", "smoke", "--out", str(out), "--only", "exploding"]) == 0
    capsys.readouterr()
    assert main(["lab", "--suite", "quick", "--out", str(out), "--only", "exploding"]) == 2
    err = capsys.readouterr().err
    assert re.match(rf"seqlab: error: {re.escape(str(out))}/runs/exploding-\w+ holds a run of "
                    r"other settings than this suite's: .*max_steps \d+ \(asked 1500\)", err)
    assert err.count("\n") == 1


def test_an_interrupted_lab_run_is_continued_and_repeats_an_uninterrupted_one(tmp_path):
    import threading

    from seqlab.checkpoint import RunDir
    from seqlab.families import runner

    run = next(r for e in suite("smoke") for r in e.runs if r.name == "exploding-clip")
    whole = execute(run, tmp_path / "whole")
    # Ctrl-C or SIGTERM during the lab: a checkpoint, no lab.json
    stopped = tmp_path / "stopped"
    halt = threading.Event()
    halt.set()
    runner.train(run.source, out=stopped / run.name, stop=halt, **run.keys)
    assert not (stopped / run.name / "lab.json").exists()
    # the interrupted session trained for an hour: the run's wall time counts it
    from seqlab.checkpoint import TRAINER_STATE

    state_file = RunDir(stopped / run.name).last_dir() / TRAINER_STATE
    state = torch.load(state_file, weights_only=True)
    torch.save({**state, "elapsed": 3600.0}, state_file)
    again = execute(run, stopped)
    assert 3600 <= again["wall_s"] < 3600 + 10 * whole["wall_s"] + 60
    assert table({run.name: again}) == table({run.name: whole})
    assert again["best_val_loss"] == whole["best_val_loss"]
    # trained to the end but killed before the lab noted it: read, not trained again
    (stopped / run.name / "lab.json").unlink()
    state = RunDir(stopped / run.name).load_trainer_state()
    assert int(state["step"]) == run.keys["max_steps"]
    assert execute(run, stopped)["best_val_loss"] == whole["best_val_loss"]
    # killed before its first step: only config.json and the like, trained from the start
    for path in (stopped / run.name).iterdir():
        if path.name != "config.json":
            path.unlink() if path.is_file() else __import__("shutil").rmtree(path)
    assert execute(run, stopped)["best_val_loss"] == whole["best_val_loss"]


def test_sigterm_stops_a_lab_as_ctrl_c_does(tmp_path, capsys, monkeypatch):
    import os
    import signal
    import time

    import seqlab.lab

    def killed(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises in this thread first
        raise AssertionError("SIGTERM did not stop the lab")

    monkeypatch.setattr(seqlab.lab, "run_suite", killed)
    assert main(["lab", "--suite", "smoke", "--out", str(tmp_path / "lab")]) == 143
    assert capsys.readouterr().err == "seqlab: interrupted\n"
    assert signal.getsignal(signal.SIGTERM) is not None  # the previous handler is back
