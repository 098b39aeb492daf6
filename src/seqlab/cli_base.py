"""The command line's plumbing, shared by :mod:`seqlab.cli` and :mod:`seqlab.cli_use`."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import NoReturn


class UsageError(Exception):
    """Bad input detected by the command line itself."""


class WarningLines(logging.Handler):
    """The library's log records of level WARNING and above as ``seqlab: warning: ...`` lines on
    stderr (the stderr of the moment, so that a test's captured stream receives them)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        print(f"seqlab: {record.levelname.lower()}: {record.getMessage()}", file=sys.stderr)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"seqlab: error: {message}\n")
        raise SystemExit(2)


def check_outputs(outputs: dict[str, str | None], reads: dict[str, object],
                  run: str | None = None, keep: tuple[str, ...] = ()) -> None:
    """Refuse before any work an output file that is a file the command reads (``reads``:
    what -> path), a file of the run folder ``run`` (but those named in ``keep``, which the
    command rewrites itself), or another output: writing it would destroy what is there."""
    from pathlib import Path

    from seqlab.checkpoint import RunDir
    from seqlab.lab import LAB_NOTE
    from seqlab.recording import GRADIENTS

    taken: dict[Path, str] = {}
    if run is not None and Path(run).is_dir():
        taken.update({f.resolve(): f"{f.relative_to(run)} of the run {run}"
                      for f in RunDir(run).own_files((GRADIENTS, LAB_NOTE))
                      if f.name not in keep})
    read = {what: Path(str(p)) for what, p in reads.items() if p is not None}
    taken.update({p.resolve(): what for what, p in read.items() if p.is_file()})
    written: dict[Path, str] = {}
    for flag, path in outputs.items():
        if not path:
            continue
        where = Path(path).resolve()
        if where in written:
            raise UsageError(f"{written[where]} and {flag} name the same file, {path}: give "
                             "each its own")
        if where in taken:
            raise UsageError(f"{flag} {path} is {taken[where]}: writing there would replace "
                             "it; give another path")
        written[where] = flag


@contextlib.contextmanager
def handling(signals: tuple[int, ...], handler: Callable) -> Iterator[bool]:
    """``handler`` for ``signals`` while active, the previous handlers after; yields whether
    they were installed: Python lets only the main thread install one, so a command run from
    another thread (an application's worker) keeps the handlers it had."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield True
    finally:
        for s, handler_before in previous.items():
            signal.signal(s, handler_before)
