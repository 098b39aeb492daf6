"""seqlab lab: the suite runs end to end, its report is traceable, and its numbers repeat."""

from __future__ import annotations

import json
import re

import pytest

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
