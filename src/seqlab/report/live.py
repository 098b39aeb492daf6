"""Watching a run as it trains: ``seqlab train ... --report`` and ``--tensorboard DIR``.

:class:`Watcher` is an ``on_event(kind, record)`` hook of the trainer (beside the progress
lines). With ``report``, RUN/report.html is rewritten (atomically) at every evaluation, a
*live* page: the family draws nothing slow (text samples and seq2seq decodings are short; tunes
are sampled and rendered only at the end). When training stops, the page is written once more
in full. With ``tensorboard``, every log and evaluation record becomes TensorBoard scalars
(``train/KEY``, ``eval/KEY``: the keys of metrics.jsonl) through ``torch.utils.tensorboard``,
and the family's text samples become text, whenever its sections are drawn (every evaluation
with ``report``; at the end of training in any case). A failure to refresh is a warning,
never the end of a training run.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch

from seqlab.checkpoint import RunDir
from seqlab.families import registry
from seqlab.report import run_report
from seqlab.sections.blocks import Section

log = logging.getLogger(__name__)


def summary_writer(folder: str | Path):
    """A TensorBoard SummaryWriter into ``folder``; a one-line error without the package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ValueError("--tensorboard needs the tensorboard package: pip install "
                         f"'seqlab[tensorboard]' ({err})") from None
    return SummaryWriter(str(folder))


class Watcher:
    """The trainer's event hook that keeps the run's report and TensorBoard logs current."""

    def __init__(self, run_dir: str | Path, report: bool = False,
                 tensorboard: str | Path | None = None) -> None:
        self.run_dir, self.report = Path(run_dir), report
        self.writer = summary_writer(tensorboard) if tensorboard is not None else None
        self.failed = False  # warned once already

    def __call__(self, kind: str, record: dict[str, Any]) -> None:
        try:
            if kind in ("log", "eval") and self.writer is not None:
                self.scalars(kind, record)
            if kind == "eval" and self.report:
                self.refresh(record["step"], live=True)
            elif kind == "stop":
                self.refresh(record["steps"], live=False)
        except Exception as err:  # a report is a view of the run: it never stops the run
            if not self.failed:
                log.warning("the report of %s was not refreshed: %s: %s", self.run_dir,
                            type(err).__name__, err)
            self.failed = True

    def scalars(self, kind: str, record: dict[str, Any]) -> None:
        group = "train" if kind == "log" else kind
        for key, value in record.items():
            if key != "step" and isinstance(value, int | float) and not isinstance(value, bool) \
                    and math.isfinite(value):
                self.writer.add_scalar(f"{group}/{key}", value, record["step"])
        self.writer.flush()

    def refresh(self, step: int, live: bool) -> None:
        """Rewrite the page (with ``report``) and send the family's samples to TensorBoard."""
        if self.report:
            with torch.random.fork_rng(devices=[]):
                page = run_report.build(self.run_dir, live, own=True)
            run_report.write_page(self.run_dir / run_report.REPORT,
                                  run_report.render("run.html.j2", **page))
            sections = page["sections"]
        elif self.writer is not None:
            sections = self.family_sections()
        else:
            return
        if self.writer is not None:
            for section in sections:
                for samples in section.samples():  # Markdown: each sample a code block
                    text = "\n\n".join("\n".join(f"    {line}" for line in t.splitlines())
                                       for t in samples.texts)
                    self.writer.add_text(f"{section.title}/{samples.label}", text, step)
            self.writer.flush()

    def family_sections(self) -> list[Section]:
        """The family's sections as a live page draws them (for their samples)."""
        run = RunDir(self.run_dir)
        config = run.read_config()
        family = registry.of_config(config)
        with torch.random.fork_rng(devices=[]):
            loaded = run_report.load_quietly(family, run, config, [])
            return run_report.family_sections(family, run, loaded, live=True)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
