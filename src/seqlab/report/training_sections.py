"""The sections every run has, drawn from its files only: what was trained, the training
curves (metrics.jsonl) and the diagnostics (diagnostics.json, gradients.jsonl).

Family-free: a family's own figures of an evaluation (its accuracy, bits per character, ...)
are drawn generically, one small figure per key of the evaluation records beyond the loss.
"""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import Any

import torch

from seqlab.sections import svg
from seqlab.sections.blocks import Figure, Group, Note, Section, Table, number
from seqlab.version import __version__

VAL_LOSS_GID = "val-loss"  # the group of the validation loss's points in the loss figure
SHARED_EVAL_KEYS = {"step", "val_loss", "best_val_loss", "elapsed_s"}


def overview(run_path: Path, config: dict[str, Any], family_name: str,
             parameters: int | None, metrics: list[dict]) -> Section:
    """What was trained: model, data, sizes, versions, device, wall time; then every key."""
    train, data = config.get("train", {}), config.get("data", {})
    evals = [m for m in metrics if "val_loss" in m]
    facts = [["run folder", str(run_path)], ["task", family_name],
             ["model", str(config.get("model", {}).get("model", "-"))],
             ["parameters", number(parameters) if parameters is not None else
              "unknown (no weights loaded)"],
             ["data", str(data.get("source", "-"))],
             ["steps", number(max((m.get("step", 0) for m in metrics), default=0))],
             ["evaluations", number(len(evals))],
             ["best validation loss", number(min((m["val_loss"] for m in evals),
                                                 default=None))],
             ["wall time", wall_time(metrics)],
             ["device", str(train.get("device", "-"))],
             ["trained with", f"seqlab {config.get('seqlab_version', '-')}"],
             ["report by", f"seqlab {__version__}, torch {torch.__version__}, Python "
                           f"{platform.python_version()}"]]
    parts = [(name, value) for name, value in config.items()
             if isinstance(value, dict) and name != "checksums"]
    tables = [Table(["key", "value"], [[key, short(value)] for key, value in values.items()],
                    f"config.json: {name}") for name, values in parts]
    return Section("What was trained", [Table(["", ""], facts),
                                        Group("every key of config.json", tables, folded=True,
                                              columns=True)], anchor="overview")


def short(value: Any, limit: int = 160) -> str:
    """A config value as text, a long list cut (a forecast run's statistics)."""
    text = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return text if len(text) <= limit else text[:limit] + " ..."


def wall_time(metrics: list[dict]) -> str:
    seconds = max((m.get("elapsed_s", 0.0) for m in metrics), default=None)
    if seconds is None:
        return "-"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def training(metrics: list[dict], config: dict[str, Any]) -> Section:
    """Loss against steps and time, learning rate, gradient norm with its clip line, skipped
    steps; the loss figure's validation points are one ``<use>`` each in #val-loss."""
    section = Section("Training", anchor="training")
    logs = [m for m in metrics if "loss" in m]
    evals = [m for m in metrics if "val_loss" in m]
    if not metrics:
        section.missing.append("no metrics yet (metrics.jsonl is written at the first log "
                               "step): no curves")
        return section
    section.blocks.append(Figure(loss_figure(logs, evals), "training loss (mean over each log "
                                 "window) and validation loss at each evaluation"))
    if logs:
        section.blocks.append(Figure(rate_and_norm(logs, config.get("train", {})),
                                     "learning rate; global gradient norm before clipping"))
        skipped = logs[-1].get("skipped", 0)
        section.blocks.append(Note(f"Non-finite steps (loss or gradient not finite, skipped): "
                                   f"{skipped}." + skipped_where(logs)))
    else:
        section.missing.append("no training log records yet: no learning rate or gradient "
                               "norm")
    if not evals:
        section.missing.append("no evaluation yet: no validation loss")
    section.blocks += eval_figures(evals)
    return section


def loss_figure(logs: list[dict], evals: list[dict]) -> str:
    fig, axes = svg.figure(9.0, 3.4, cols=2)
    for ax, key, label, gid in ((axes[0], "step", "training step", VAL_LOSS_GID),
                                (axes[1], "elapsed_s", "wall time (s)", "val-loss-time")):
        series, markers = {}, {}
        if logs:
            series["training"] = ([m.get(key, math.nan) for m in logs],
                                  [m["loss"] for m in logs])
        if evals:
            series["validation"] = ([m.get(key, math.nan) for m in evals],
                                    [m["val_loss"] for m in evals])
            markers["validation"] = gid
        svg.draw_curves(ax, series, f"loss against {label.split(' (')[0]}", label, "loss",
                        markers)
    return svg.to_svg(fig)


def rate_and_norm(logs: list[dict], train: dict[str, Any]) -> str:
    fig, axes = svg.figure(9.0, 3.2, cols=2)
    steps = [m["step"] for m in logs]
    svg.draw_curves(axes[0], {"lr": (steps, [m.get("lr") for m in logs])}, "learning rate",
                    "training step", "learning rate")
    clip = train.get("clip_norm") or 0.0
    hlines = {f"clip norm {clip:g}": clip} if clip > 0 else None
    svg.draw_curves(axes[1], {"before clipping": (steps, [m.get("grad_norm") for m in logs])},
                    "gradient norm", "training step", "global L2 norm", hlines=hlines)
    return svg.to_svg(fig)


def skipped_where(logs: list[dict]) -> str:
    """The log windows in which steps were skipped."""
    where, before = [], 0
    for m in logs:
        if m.get("skipped", 0) > before:
            where.append(f"{m['skipped'] - before} by step {m['step']}")
            before = m["skipped"]
    return f" Skipped: {', '.join(where[:20])}." if where else ""


def eval_figures(evals: list[dict]) -> list[Figure]:
    """One small figure per further numeric figure of the evaluation records."""
    keys = sorted({k for m in evals for k, v in m.items() if k not in SHARED_EVAL_KEYS
                   and isinstance(v, int | float) and not isinstance(v, bool)})
    if not keys:
        return []
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = svg.figure(3.2 * cols, 2.6 * rows, cols=cols, rows=rows)
    for ax, key in zip(axes, keys, strict=False):
        points = [(m["step"], m[key]) for m in evals if key in m]
        svg.draw_curves(ax, {key: ([s for s, _ in points], [v for _, v in points])}, key,
                        "training step", "")
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    return [Figure(svg.to_svg(fig), "every other figure of the evaluations (metrics.jsonl)")]


def diagnostics(run_path: Path, recorded: list[dict]) -> Section:
    """``seqlab diagnose``'s figures, from RUN/diagnostics/diagnostics.json's numbers, and the
    gradient recorded in training (gradients.jsonl)."""
    section = Section("Diagnostics", anchor="diagnostics")
    path = run_path / "diagnostics" / "diagnostics.json"
    if path.is_file():
        try:
            section.blocks += diagnose_figures(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
            section.missing.append(f"{path}: unreadable ({type(err).__name__}: {err})")
    else:
        section.missing.append(f"no {path.relative_to(run_path)}: `seqlab diagnose "
                               f"{run_path}` writes the gradient through time, Jacobian norms "
                               "and gate statistics of a run whose task offers a probe")
    if len(recorded) > 1:
        section.blocks.append(Figure(svg.heatmap(
            [[math.log10(v) if v and v > 0 else math.nan for v in r["last"]] for r in recorded],
            [str(t) if t % 10 == 0 else "" for t in range(len(recorded[0]["last"]))],
            [str(r["step"]) for r in recorded], "||dL/dh_t|| in training (loss at the last "
            "step)", "time step t", "training step", colorbar="log10 norm"),
            "recorded every --record-every steps (gradients.jsonl)"))
    return section


def diagnose_figures(report: dict[str, Any]) -> list[Figure]:
    figures = []
    when = [w for w in ("init", "trained") if w in report]
    curves = {f"{w}, loss {r}": (list(range(len(report[w][f"grad_{r}"]))), report[w][f"grad_{r}"])
              for w in when for r in ("last", "sum") if f"grad_{r}" in report[w]}
    if curves:
        figures.append(Figure(svg.curves(curves, "||dL/dh_t|| through time", "time step t",
                                         "norm"), "the gradient through time (diagnose)"))
    if all("jacobian" in report[w] for w in when) and when:
        jac = {w: (list(range(1, len(report[w]["jacobian"]) + 1)), report[w]["jacobian"])
               for w in when}
        figures.append(Figure(svg.curves(jac, "||prod dh_k/dh_(k-1)|| over distance",
                                         "distance d", "spectral norm"), "Jacobian norms"))
    gates = report.get("trained", {}).get("gates") or {}
    if gates:
        series = {f"{g} mean": (list(range(len(s["mean"]))), s["mean"])
                  for g, s in gates.items()}
        figures.append(Figure(svg.curves(series, "mean gate value per step (trained)",
                                         "time step t", "mean activation"), "gate statistics"))
    return figures
