"""``seqlab report RUN``: one self-contained HTML page of a run, from its folder only.

The page holds the sections every run has (:mod:`seqlab.report.training_sections`), then the
family's own (:meth:`seqlab.families.base.Family.report_sections`), rendered from
``templates/run.html.j2``: CSS inline, figures as inline SVG, audio as data: URIs, no script,
no address on any network. What a run lacks (metrics, weights, diagnostics, a tune's files)
is said on the page; the file is written atomically, so a reader never sees half of it.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from seqlab.checkpoint import RunDir
from seqlab.families import registry
from seqlab.families.base import Family, LoadedRun
from seqlab.io import atomic_write_text
from seqlab.models import count_parameters
from seqlab.recording import read_gradients
from seqlab.report import training_sections
from seqlab.report.render import render
from seqlab.sections.blocks import Section

log = logging.getLogger(__name__)
REPORT = "report.html"


def load_quietly(family: Family, run: RunDir, config: dict[str, Any], missing: list[str]
                 ) -> LoadedRun | None:
    """The run's best weights on the CPU, or None (and why, in ``missing``)."""
    try:
        return family.load(run.path, "cpu", config=config)
    except (ValueError, OSError) as err:
        missing.append(f"the model could not be loaded: {err}")
        return None


def family_sections(family: Family, run: RunDir, loaded: LoadedRun | None, live: bool
                    ) -> list[Section]:
    """The family's sections; a failure in them is said on the page, never fatal (the rest
    of the report stands on its own)."""
    try:
        return list(family.report_sections(run, loaded, live))
    except Exception as err:  # a family's drawing code, a tool, a missing data file: any
        log.warning("%s: the %s sections failed: %s: %s", run.path, family.name,
                    type(err).__name__, err)
        return [Section("The family's sections", missing=[
            f"could not be drawn: {type(err).__name__}: {err}"])]


def build(run_dir: str | Path, live: bool = False, own: bool = False) -> dict[str, Any]:
    """Everything the page shows: title, sections and what is missing (``own``: built by the
    process training the run, which holds it; else a run held by another process is named as
    being trained)."""
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise FileNotFoundError(f"{run.path}: no such run directory")
    config = run.read_config()
    family = registry.of_config(config)
    missing: list[str] = []
    try:
        metrics = run.read_metrics()
    except ValueError as err:
        metrics = []
        missing.append(str(err))
    try:
        recorded = read_gradients(run.path)
    except ValueError as err:
        recorded = []
        missing.append(str(err))
    loaded = load_quietly(family, run, config, missing)
    parameters = count_parameters(loaded.model) if loaded is not None else None
    sections = [training_sections.overview(run.path, config, family.name, parameters, metrics),
                training_sections.training(metrics, config),
                *family_sections(family, run, loaded, live),
                training_sections.diagnostics(run.path, recorded)]
    missing += [line for s in sections for line in s.missing]
    evaluations = sum("val_loss" in m for m in metrics)
    model, data = config.get("model", {}).get("model", "?"), config.get("data", {})
    return {"title": f"{run.path.name}: {model} on {Path(str(data.get('source', '?'))).name}",
            "subtitle": f"task {family.name}: {family.help}",
            "run": str(run.path), "sections": sections, "missing": missing,
            "evaluations": evaluations, "live": live,
            "training": not own and run.in_use(),  # by another process: a snapshot
            "made": time.strftime("%Y-%m-%d %H:%M:%S"), "family": family.name}


def write_report(run_dir: str | Path, out: str | Path | None = None, live: bool = False
                 ) -> Path:
    """Write the run's page to ``out`` (default RUN/report.html), atomically; returns its path.

    torch's global random state is left as it was (loading a model builds it from that
    state first), so a run that refreshes its report trains exactly as one that does not.
    """
    if out is not None and str(out).endswith(("/", os.sep)):  # Path() drops the slash
        raise IsADirectoryError(f"{out} is a folder; give the HTML file to write")
    path = Path(out) if out is not None else Path(run_dir) / REPORT
    with torch.random.fork_rng(devices=[]):
        page = render("run.html.j2", **build(run_dir, live))
    write_page(path, page)
    return path


def write_page(path: Path, page: str) -> None:
    """Write ``page`` to ``path`` atomically; an OSError names ``path``, never a temporary."""
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give the HTML file to write")
    folder = next((p for p in path.parents if p.exists()), None)
    if folder is not None and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not a folder: cannot write {path}")
    try:
        atomic_write_text(path, page)
    except OSError as err:
        raise type(err)(err.errno, err.strerror, str(path)) from err
