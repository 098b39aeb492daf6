"""Shared fixtures: a tiny deterministic text, tiny training keys and one tiny trained run.

Everything is small enough to train in well under a second on one CPU thread, and written only
under pytest's temporary folders.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

import seqlab

WORDS = ("the", "cat", "sat", "on", "a", "mat", "dog", "ran", "far", "away", "reel", "jig")

# Keys of seqlab.train for a model that trains in milliseconds per step. Two layers with dropout
# so that resuming has to restore the RNG, and streams so that it has to restore the state.
TINY_KEYS = dict(model="lstm", embedding_size=8, hidden_size=16, num_layers=2, dropout=0.1,
                 seq_len=8, batch_size=4, warmup_steps=2, eval_every=5, log_every=1,
                 seed=0, device="cpu", batching="streams")


def make_text(lines: int = 80, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "\n".join(" ".join(rng.choice(WORDS) for _ in range(8)) for _ in range(lines)) + "\n"


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread: on two shared cores, tiny models run ~20x slower with two threads
    fighting other processes than with one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_text() -> str:
    return make_text()


@pytest.fixture
def text_file(tmp_path: Path, tiny_text: str) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text(tiny_text, encoding="utf-8")
    return path


@pytest.fixture
def tiny_keys() -> dict:
    return dict(TINY_KEYS)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_text: str) -> Path:
    """A finished 10-step run directory. Read it; copy it (shutil.copytree) before damaging it."""
    folder = tmp_path_factory.mktemp("trained")
    source = folder / "tiny.txt"
    source.write_text(tiny_text, encoding="utf-8")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seqlab.train(source, out=folder / "run", max_steps=10, **TINY_KEYS)
    finally:
        torch.set_num_threads(before)
    return folder / "run"


@pytest.fixture(scope="session")
def family_runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny finished run of every family (tests/report_runs.py), by name: text, tunes,
    synthetic, seq2seq, classify, forecast. Read them; copy one before changing it."""
    from report_runs import build_runs

    return build_runs(tmp_path_factory.mktemp("family-runs"))


@pytest.fixture(scope="session")
def family_reports(family_runs, tmp_path_factory) -> dict[str, Path]:
    """The report page of each of ``family_runs``, written once (outside the runs)."""
    from seqlab.report.run_report import write_report

    folder = tmp_path_factory.mktemp("family-reports")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {name: write_report(run, folder / f"report-{name}.html")
                for name, run in family_runs.items()}
    finally:
        torch.set_num_threads(before)
