"""The report of ``seqlab lab``: Markdown tables and PNG figures from the runs' directories."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from seqlab import plots
from seqlab.diagnose import run_probe
from seqlab.diagnostics import gradients_through_time, in_float64
from seqlab.io import atomic_write_text
from seqlab.recording import PROBE, read_gradients
from seqlab.report.lab_page import write_lab_page


def fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 or abs(value) >= 1e4 \
            else f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


HEAD = ["run", "model", "parameters", "best val loss", "baseline", "accuracy", "bits/char",
        "steps", "stop", "wall s"]


def run_rows(names: list[str], runs: dict[str, dict]) -> list[list[str]]:
    """One row of :data:`HEAD` per run (its name first)."""
    return [[name, r["model"], fmt(r["parameters"]), fmt(r["best_val_loss"]),
             fmt(r["baseline"]), fmt(r["accuracy"], 3), fmt(r["bpc"], 3), str(r["steps"]),
             r["stop"], fmt(r["wall_s"], 1)] for name, r in ((n, runs[n]) for n in names)]


def run_table(names: list[str], runs: dict[str, dict]) -> str:
    head = "| " + " | ".join(HEAD) + " |\n" + "|---" * len(HEAD) + "|\n"
    rows = [f"| [{row[0]}]({runs[row[0]]['run']}) | " + " | ".join(row[1:]) + " |"
            for row in run_rows(names, runs)]
    return head + "\n".join(rows) + "\n"


def curve_figure(path: Path, names: list[str], runs: dict[str, dict], key: str, title: str,
                 ylabel: str, baseline: float | None = None) -> Path:
    series = {runs[n]["model"] if len({runs[m]["model"] for m in names}) == len(names) else n:
              [v for _, v in runs[n][key]] for n in names}
    x = dict(zip(series, ([s for s, _ in runs[n][key]] for n in names), strict=True))
    hlines = {f"memoryless baseline {baseline:.4f}": baseline} if baseline else None
    return plots.curves(path, series, title, "training step", ylabel, x=x, hlines=hlines)


def gradient_figures(names: list[str], summary: dict, out: Path) -> list[Path]:
    """dL/dh_t at initialisation and trained for every model, and each one's heatmap."""
    runs = summary["runs"]
    measured = {}
    for name in names:
        trained, initial, probe, _ = run_probe(out / runs[name]["run"], PROBE, "cpu")
        measured[runs[name]["model"]] = {
            when: gradients_through_time(*in_float64(model, probe), ("last",))["last"].tolist()
            for when, model in (("init", initial), ("trained", trained))}
    summary["gradients"] = measured
    files = [plots.curves(out / "figures" / f"gradients-{when}.png",
                          {m: v[when] for m, v in measured.items()},
                          f"||dL/dh_t|| for the loss at the last step, {when}",
                          "time step t", "norm (mean over 16 sequences)")
             for when in ("init", "trained")]
    for name in names:
        records = read_gradients(out / runs[name]["run"])
        if len(records) > 1:
            files.append(plots.heatmap(out / "figures" / f"heatmap-{runs[name]['model']}.png",
                                       [r["last"] for r in records], [r["step"] for r in records],
                                       f"{runs[name]['model']}: ||dL/dh_t|| during training",
                                       "time step t", "training step"))
    return files


def experiment_figures(experiment, summary: dict, out: Path) -> list[Path]:
    runs, names = summary["runs"], [r.name for r in experiment.runs]
    figures = out / "figures"
    if experiment.key in ("adding", "copy"):
        base = runs[names[0]]["baseline"]
        return [curve_figure(figures / f"{experiment.key}.png", names, runs, "val_curve",
                             experiment.title, "validation loss", base)]
    if experiment.key == "exploding":
        return [curve_figure(figures / "exploding-grad.png", names, runs, "grad_curve",
                             "pre-clip gradient norm", "global gradient norm"),
                curve_figure(figures / "exploding-loss.png", names, runs, "val_curve",
                             "validation MSE", "validation loss", 1 / 6)]
    if experiment.key == "gradients":
        return gradient_figures(names, summary, out)
    if experiment.key == "attention":
        series = {name: runs[name]["by_length"] for name in names}
        return [plots.curves(figures / "attention.png",
                             {k: [100 * v for v in c.values()] for k, c in series.items()},
                             experiment.title, "source length", "held-out exact match (%)",
                             x={k: [int(n) for n in c] for k, c in series.items()}, log=False)]
    return []


def write_report(experiments, summary: dict, out: Path) -> None:
    runs = summary["runs"]
    lines = [f"# seqlab lab: the lecture's claims, measured ({summary['suite']} suite)", "",
             f"seqlab {summary['seqlab_version']}, torch {summary['torch_version']}, "
             f"{summary['threads']} CPU thread(s), {summary['date']}; training wall time "
             f"{summary['wall_s']:.0f} s over the runs below. Every number below is read "
             "from the run directory linked beside it (config.json, metrics.jsonl); seeds are "
             "fixed, so running the suite again reproduces the table (wall times aside). "
             "Losses are MSE for adding, nats per scored step for the other tasks and nats "
             "per character for text.", ""]
    page = []
    for experiment in experiments:
        names = [r.name for r in experiment.runs]
        files = experiment_figures(experiment, summary, out)
        page.append({"title": experiment.title, "claim": experiment.claim,
                     "published": experiment.published, "figures": files,
                     **({"head": GRADIENT_HEAD,
                         "rows": gradient_rows(summary.get("gradients", {}))}
                        if experiment.key == "gradients" else
                        {"head": HEAD, "rows": run_rows(names, runs)}),
                     "verdict": summary["verdicts"].get(experiment.key) or ""})
        lines += [f"## {experiment.title}", "", f"Claim: {experiment.claim}.", "",
                  f"Published: {experiment.published}.", ""]
        if experiment.key != "gradients":
            lines += [run_table(names, runs)]
        if summary["verdicts"].get(experiment.key):
            lines += [f"Measured: {summary['verdicts'][experiment.key]}.", ""]
        if experiment.key == "gradients":
            lines += [gradient_lines(summary.get("gradients", {})), ""]
        lines += [f"![{f.stem}]({f.relative_to(out)})" for f in files] + [""]
    atomic_write_text(out / "report.md", "\n".join(lines))
    write_lab_page(out / "report.html", lines[0].removeprefix("# "), lines[2], page)


GRADIENT_HEAD = ["model", "norm ratio t=0 / t=T-1, init", "trained"]


def gradient_rows(gradients: dict[str, dict]) -> list[list[str]]:
    """One row per model: ||dL/dh_0|| / ||dL/dh_(T-1)||, at initialisation and trained."""
    rows = []
    for model, by_when in gradients.items():
        ratios = []
        for when in ("init", "trained"):
            norms = by_when[when]
            ratios.append(norms[0] / norms[-1] if norms[-1] else math.nan)
        rows.append([model, fmt(ratios[0], 3), fmt(ratios[1], 3)])
    return rows


def gradient_lines(gradients: dict[str, dict]) -> str:
    rows = [f"| {' | '.join(GRADIENT_HEAD)} |", "|---|---|---|"]
    return "\n".join(rows + [f"| {' | '.join(row)} |" for row in gradient_rows(gradients)])
