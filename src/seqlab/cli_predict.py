"""``seqlab predict``: label new sequences with a classify run, as TSV, CSV or JSON lines."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from seqlab.cli_base import check_outputs
from seqlab.io import atomic_write_text

FORMATS = ("tsv", "csv", "jsonl")


def add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory of a classify run")
    p.add_argument("data", metavar="DATA", help="sequences to label, in a format the run was "
                   "trained on: TSV (label<TAB>text or text alone), a folder, .ts, long CSV, "
                   "ABC tunes; a bundled set: its test split")
    p.add_argument("--format", default="tsv", choices=FORMATS,
                   help="tsv or csv (name, label, one probability column per class, the label "
                        "the input gave if any) or jsonl (one JSON object per sequence); "
                        "default: tsv")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="write the labels to FILE (atomically) instead of standard output")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where to run the model (default: auto)")


def run_predict(args: argparse.Namespace) -> int:
    from seqlab.families import runner
    from seqlab.training import resolve_device

    loaded = runner.load_run(args.run, resolve_device(args.device))
    check_outputs({"--out": args.out}, {"the data to label": args.data}, args.run)
    predictor = loaded.family.predictor(loaded)
    records = predictor.predict(args.data)
    text = render(records, predictor.classes, args.format)
    if args.out:
        atomic_write_text(Path(args.out), text)
        print(f"{len(records):,} sequences labelled: {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def render(records: list[dict], classes: list[str], form: str) -> str:
    """The predictions as one text in ``form``."""
    if form == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t" if form == "tsv" else ",", lineterminator="\n")
    writer.writerow(["name", "label", *(f"p_{c}" for c in classes), "given"])
    for r in records:
        writer.writerow([r["name"], r["label"], *(f"{r['probabilities'][c]:.6f}"
                                                  for c in classes), r["given"] or ""])
    return buffer.getvalue()
