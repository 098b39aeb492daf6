"""``seqlab diagnose``: a run measured at initialisation and trained, with figures.

The numbers are :mod:`seqlab.diagnostics`'s; the data they are measured on is the probe the
run's family offers (its first validation sequences, or evenly spaced validation windows of a
language model); the initial weights are rebuilt from the run's seed, as training built them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from seqlab import limits, plots
from seqlab.checkpoint import RunDir
from seqlab.diagnostics import Probe, grad_norm_history, measure, recurrent_of
from seqlab.families import runner
from seqlab.families.base import LoadedRun
from seqlab.io import atomic_write_json
from seqlab.recording import read_gradients


def run_probe(run_dir, batch: int, device) -> tuple[nn.Module, nn.Module, Probe, LoadedRun]:
    """(trained model, the same model at initialisation, probe, the loaded run) of a run
    directory."""
    loaded = runner.load_run(run_dir, device)
    check_batch(loaded, batch, device)
    probe = runner.probe(loaded, batch, device)
    recurrent_of(loaded.model)
    initial = runner.initial_model(loaded.family, loaded.configs, loaded.vocab)
    return loaded.model, initial.to(device).eval(), probe, loaded


def check_batch(loaded, batch: int, device) -> None:
    """Refuse a probe of ``batch`` sequences whose trace and gradients cannot fit in memory,
    before drawing it: per sequence and step, the input, every layer's states and gates and the
    logits, twice (the values and their gradients)."""
    shape = loaded.family.shape(loaded.configs, loaded.vocab)
    per_step = (shape.input_size + limits.encoder_activations(shape.model, shape.input_size)
                + 3 * shape.outputs)
    need = 2 * limits.FLOAT * batch * shape.steps * per_step
    limits.check_fits(need, f"batch {batch}",
                      f"diagnosing {batch:,} sequences of {shape.steps:,} steps", device)


def diagnose_run(run_dir, out=None, batch: int = 16, device: str = "cpu",
                 jacobian: bool = True) -> dict:
    """Measure a run at initialisation and at its best weights, read what training recorded,
    and write diagnostics.json and PNG figures into ``out`` (default RUN/diagnostics)."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    metrics, recorded = RunDir(run_dir).read_metrics(), read_gradients(run_dir)  # checked first
    trained, initial, probe, loaded = run_probe(run_dir, batch, torch.device(device))
    out = Path(out) if out is not None else Path(run_dir) / "diagnostics"
    config = loaded.config
    train = config["train"]
    report = {"run": str(run_dir), "model": config["model"]["model"],
              "init": measure(initial, probe, jacobian),
              "trained": measure(trained, probe, jacobian),
              "recorded": recorded,
              "grad_norms": grad_norm_history(metrics, train["clip_norm"],
                                              train["clip_value"])}
    figures = write_figures(report, out) + loaded.family.figures(loaded, probe, out)
    report["files"] = [str(f) for f in figures]
    atomic_write_json(out / "diagnostics.json", report)
    return report


def write_figures(report: dict, out) -> list:
    """The PNG figures of a diagnose_run report; returns their paths."""
    name, history, jacobian = report["model"], report["recorded"], "jacobian" in report["init"]
    # one scored step (adding, order): the two losses are one, and so are their curves
    same = all(report[w]["grad_last"] == report[w]["grad_sum"] for w in ("init", "trained"))
    reduces = ("last",) if same else ("last", "sum")
    files = [plots.curves(out / "gradient_through_time.png",
                          {f"{when}, loss {r}": report[when][f"grad_{r}"]
                           for when in ("init", "trained") for r in reduces},
                          f"{name}: ||dL/dh_t|| through time", "time step t", "norm")]
    if jacobian:
        files.append(plots.curves(out / "jacobian.png",
                                  {w: report[w]["jacobian"] for w in ("init", "trained")},
                                  f"{name}: ||prod dh_k/dh_(k-1)|| over distance",
                                  "distance d (steps back from the last)", "spectral norm",
                                  x={w: list(range(1, len(report[w]["jacobian"]) + 1))
                                     for w in ("init", "trained")}))
    if history:
        files.append(plots.heatmap(out / "gradient_heatmap.png", [r["last"] for r in history],
                                   [r["step"] for r in history],
                                   f"{name}: ||dL/dh_t|| (loss at the last step) in training",
                                   "time step t", "training step"))
    if report["trained"]["gates"]:
        files.append(plots.curves(out / "gates.png",
                                  {f"{g} mean": s["mean"] for g, s in
                                   report["trained"]["gates"].items()},
                                  f"{name}: mean gate value per step (trained)", "time step t",
                                  "mean activation", log=False))
    if report["grad_norms"]["step"]:
        norms = report["grad_norms"]
        files.append(plots.curves(out / "grad_norms.png",
                                  {"pre-clip": norms["pre_clip"], "post-clip": norms["post_clip"]},
                                  f"{name}: global gradient norm in training", "training step",
                                  "norm", x={"pre-clip": norms["step"],
                                             "post-clip": norms["step"]}))
    return files
