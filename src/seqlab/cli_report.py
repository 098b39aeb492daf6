"""``seqlab report``: a run's HTML page; registered in :data:`seqlab.cli.COMMANDS`."""

from __future__ import annotations

import argparse

from seqlab.cli_base import check_outputs


def add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory written by seqlab train (finished, "
                   "stopped or still training)")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="where to write the page (default: RUN/report.html)")


def run_report(args: argparse.Namespace) -> int:
    from seqlab.report.run_report import REPORT, write_report

    check_outputs({"--out": args.out}, {}, args.run, keep=(REPORT,),
                  kinds={"--out": (".html", ".htm")})
    path = write_report(args.run, args.out)
    print(f"report: {path} ({path.stat().st_size / 2**20:.2f} MB)")
    return 0


REPORT_COMMAND = {"report": ("write a run's report: one self-contained HTML file (curves, "
                             "samples, tunes with audio and sheet music, attention maps, ...)",
                             add_report, run_report)}
