"""The synthetic family's section of a run's report: the task's validation loss beside its
memoryless baseline (read from metrics.jsonl: it needs no weights), and accuracy if scored."""

from __future__ import annotations

from seqlab.checkpoint import RunDir
from seqlab.families.base import LoadedRun
from seqlab.sections import svg
from seqlab.sections.blocks import Figure, Note, Section


def sections(family, run: RunDir, loaded: LoadedRun | None, live: bool = False
             ) -> list[Section]:
    config = loaded.config if loaded is not None else run.read_config()
    data = config["data"]
    section = Section(f"Task: {data['source']}, length {data['length']}", anchor="task")
    section.blocks.append(Note(data.get("summary", "")))
    evals = [r for r in run.read_metrics() if "val_baseline" in r]
    if not evals:
        section.missing.append("no evaluation yet: no curve against the baseline")
        return [section]
    steps = [r["step"] for r in evals]
    curves = {"validation loss": (steps, [r["val_loss"] for r in evals]),
              "memoryless baseline": (steps, [r["val_baseline"] for r in evals])}
    section.blocks.append(Figure(svg.curves(curves, "the task's loss beside its baseline",
                                            "training step", "validation loss"),
                                 "below the baseline, the model remembers what the task asks"))
    if any("val_accuracy" in r for r in evals):
        accuracy = (steps, [100 * r.get("val_accuracy", float("nan")) for r in evals])
        section.blocks.append(Figure(svg.curves({"accuracy": accuracy}, "validation accuracy",
                                                "training step", "accuracy (%)")))
    last = evals[-1]
    section.blocks.append(Note(f"At step {last['step']}: loss {last['val_loss']:.4f} against "
                               f"the baseline's {last['val_baseline']:.4f} (ratio "
                               f"{last['val_loss'] / last['val_baseline']:.3f})."))
    return [section]
