"""benchmarks/classify.py's ensembles, on a few training steps: a model of kinds joined by "+"
trains ``members`` of each kind and scores the mean of all their class probabilities."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from seqlab.families import runner

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "classify.py"

pytestmark = pytest.mark.usefixtures("single_thread")  # conftest: one intra-op thread


@pytest.fixture
def bench(monkeypatch):
    pytest.importorskip("sktime")
    spec = importlib.util.spec_from_file_location("bench_classify", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    few = dict(max_steps=4, eval_every=2, warmup_steps=1, log_every=2)
    monkeypatch.setitem(module.PRESETS, "italy-power",
                        {**module.PRESETS["italy-power"], **few, "hidden_size": 8})
    monkeypatch.setitem(module.CONV_PRESETS, "italy-power",
                        {**module.CONV_PRESETS["italy-power"], **few,
                         "conv_filters": "4,4,4"})
    return module


def test_two_kinds_in_one_ensemble_weigh_every_member_alike(bench, tmp_path):
    result = bench.train_and_score("italy-power", "lstm-fcn+preset", 0, tmp_path, 0.0,
                                   members=2, refit=True)
    runs = [Path(r) for r in result["run"].split(", ")]
    assert [r.name for r in runs] == [
        "italy-power-lstm-fcn-refit-seed0", "italy-power-lstm-fcn-refit-seed1000",
        "italy-power-preset-refit-seed0", "italy-power-preset-refit-seed1000"]
    assert result["model"] == "lstm-fcn+preset x2 refit"
    probs = []
    for run in runs:
        loaded = runner.load_run(run, device="cpu", last=True)
        found, labels, split = loaded.family.scored_probabilities(loaded, "italy-power")
        probs.append(found)
        assert split == "test"
    assert runner.load_run(runs[0], device="cpu").config["classify"]["conv_filters"] == "4,4,4"
    assert runner.load_run(runs[2], device="cpu").config["classify"]["conv_filters"] == ""
    mean = np.mean(probs, axis=0)
    assert result["accuracy"] == pytest.approx(float((mean.argmax(1) == labels).mean()))
    assert result["examples"] == len(labels) == 1029
