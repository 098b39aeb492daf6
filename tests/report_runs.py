"""Tiny runs of every family for the report tests (unit and browser): a few steps each on tiny
data, one thread, built once per session by the ``family_runs`` fixture of conftest.py."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch

import seqlab
from seqlab import music
from seqlab.diagnose import diagnose_run

COMMON = dict(seed=0, device="cpu", log_every=2, eval_every=5, max_steps=10)
REEL = "X:1\nT:Reel\nR:reel\nM:4/4\nL:1/8\nK:D\nA|:dAFA dAFA|GBdB GBdB|ABcd efge|fdec d3:|"
JIG = "X:2\nT:Jig\nR:jig\nM:6/8\nL:1/8\nK:G\nD|:GAB dBG|ced BAG|FGA DEF|GAB G2D:|"


def text_run(folder: Path) -> Path:
    rng = random.Random(0)
    words = ("the", "cat", "sat", "on", "a", "mat", "dog", "ran", "far", "away")
    source = folder / "tiny.txt"
    source.write_text("\n".join(" ".join(rng.choice(words) for _ in range(8))
                                for _ in range(60)) + "\n", encoding="utf-8")
    seqlab.train(source, out=folder / "text", model="lstm", embedding_size=8, hidden_size=16,
                 seq_len=8, batch_size=4, **COMMON)
    return folder / "text"


def tunes_run(folder: Path) -> Path:
    """A run on 12 short tunes, with a tunes/ folder of two real tunes (sheet music, audio)."""
    tunes = [f"X:{k}\nT:T{k}\nM:4/4\nL:1/8\nK:D\n|:dAFA dAFA|GBdB GBdB|ABcd efge|fdec d4:|"
             for k in range(12)]
    source = folder / "tunes.abc"
    source.write_text("\n\n".join(tunes) + "\n", encoding="utf-8")
    run = folder / "tunes"
    seqlab.train(source, out=run, model="lstm", embedding_size=8, hidden_size=16, seq_len=16,
                 batch_size=4, **{**COMMON, "max_steps": 6, "eval_every": 3})
    music.write_tunes([music.GeneratedTune(REEL, True), music.GeneratedTune(JIG, True)],
                      run / "tunes", training=tunes)
    return run


def synthetic_run(folder: Path) -> Path:
    """adding, T = 10, with the gradient recorded in training and a diagnose pass."""
    run = folder / "adding"
    seqlab.train("adding", out=run, model="lstm", length="10", hidden_size=8, batch_size=8,
                 val_sequences=32, record_every=5, **COMMON)
    diagnose_run(run, batch=4, jacobian=False)
    return run


def seq2seq_run(folder: Path) -> Path:
    run = folder / "reverse"
    seqlab.train("reverse", out=run, attention="additive", length="3-5", num_pairs=200,
                 hidden_size=16, embedding_size=8, batch_size=16, **COMMON)
    return run


def classify_run(folder: Path) -> Path:
    """Attention pooling on a TSV of short letter strings labelled by the order of x and y."""
    rng = np.random.default_rng(0)
    lines = ["label\ttext"]
    for _ in range(60):
        first, second = ("x", "y") if rng.random() < 0.5 else ("y", "x")
        letters = list(rng.choice(list("abc"), size=int(rng.integers(3, 7))))
        letters.insert(int(rng.integers(0, len(letters) + 1)), first)
        letters.append(second)
        lines.append(f"{first}{second}\t{''.join(letters)}")
    source = folder / "order.tsv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = folder / "classify"
    seqlab.train(source, out=run, task="classify", model="gru", pooling="attention",
                 hidden_size=8, embedding_size=8, batch_size=8, **COMMON)
    return run


def forecast_run(folder: Path) -> Path:
    """Two monthly series, 72 steps: a trend with a season, and a noisy level."""
    rng = np.random.default_rng(0)
    t = np.arange(72)
    a = 100 + t + 10 * np.sin(2 * math.pi * t / 12) + rng.normal(0, 1, 72)
    b = 50 + rng.normal(0, 2, 72)
    source = folder / "shop.csv"
    source.write_text("month,sales,visits\n" + "\n".join(
        f"{2000 + k // 12}-{k % 12 + 1:02d},{a[k]:.3f},{b[k]:.3f}" for k in t) + "\n",
        encoding="utf-8")
    run = folder / "forecast"
    seqlab.train(source, out=run, task="forecast", model="gru", hidden_size=8, horizon=6,
                 context=12, batch_size=8, samples=20, **COMMON)
    return run


BUILDERS = {"text": text_run, "tunes": tunes_run, "synthetic": synthetic_run,
            "seq2seq": seq2seq_run, "classify": classify_run, "forecast": forecast_run}


def build_runs(folder: Path) -> dict[str, Path]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {name: build(folder) for name, build in BUILDERS.items()}
    finally:
        torch.set_num_threads(before)
