"""The command line's plumbing, shared by :mod:`seqlab.cli` and :mod:`seqlab.cli_use`."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
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
                  run: str | None = None, keep: tuple[str, ...] = (),
                  kinds: dict[str, tuple[str, ...]] | None = None) -> None:
    """Refuse before any work an output file that is a file the command reads (``reads``:
    what -> path), a file of the run folder ``run`` (but those named in ``keep``, which the
    command rewrites itself) or the data it was trained on, another output, or (``kinds``:
    flag -> the suffixes of what it writes) an existing file of another kind: writing it would
    destroy what is there. A report replaces an older report, never a data file."""
    from seqlab.checkpoint import RunDir
    from seqlab.lab import LAB_NOTE
    from seqlab.recording import GRADIENTS

    taken: dict[Path, str] = {}
    trained_on = None
    if run is not None and Path(run).is_dir():
        taken.update({f.resolve(): f"{f.relative_to(run)} of the run {run}"
                      for f in RunDir(run).own_files((GRADIENTS, LAB_NOTE))
                      if f.name not in keep})
        trained_on = training_data(run)
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
        if trained_on is not None and (where == trained_on or trained_on in where.parents):
            raise UsageError(f"{flag} {path} is {'' if where == trained_on else 'in '}the data "
                             f"the run {run} was trained on: writing there would change it; "
                             "give another path")
        suffixes = (kinds or {}).get(flag.split(" ")[0], ())
        if suffixes and where.is_file() and where.suffix.lower() not in suffixes:
            raise UsageError(f"{flag} {path} exists and is no {' or '.join(suffixes)} file: "
                             "writing there would replace it; give another path")
        written[where] = flag


def check_folder(out: str | None, writes: str) -> None:
    """Refuse an --out that is an existing file where the command writes a folder."""
    if out and Path(out).exists() and not Path(out).is_dir():
        raise UsageError(f"--out {out} is a file; {writes}: give a folder")


def training_data(run: str):
    """The resolved path of the file or folder a run was trained on, or None (a bundled set,
    a synthetic task, or a config that cannot be read: the command says so itself)."""
    from seqlab.checkpoint import RunDir

    with contextlib.suppress(ValueError, OSError, KeyError, TypeError, AttributeError):
        source = RunDir(run).read_config()["data"].get("source_path")
        return Path(source).resolve() if source else None
    return None


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


class interrupt_sets:
    """While active, Ctrl-C or SIGTERM (``kill``, ``timeout``, a scheduler, a container stop)
    sets ``stop``: the trainer finishes the step, checkpoints and returns (the previous
    checkpoint stays whole: last/ is replaced as a unit), the sampler keeps the tokens it has;
    a second signal aborts. Run from a thread other than the main one, it leaves the signals
    to the application's own handlers."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, stop: threading.Event, say: bool = True) -> None:
        self.stop, self.say = stop, say  # say: print the line (rank 0 of many processes)
        self.received: int | None = None

    def __enter__(self):
        def handler(signum, frame):
            if self.stop.is_set():
                raise KeyboardInterrupt
            self.received = signum
            self.stop.set()
            again = "Ctrl-C" if signum == signal.SIGINT else "the signal"
            if self.say:
                print(f"\nseqlab: stopping after this step ({again} again to abort)",
                      file=sys.stderr)

        self.handlers = handling(self.SIGNALS, handler)
        self.handlers.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.handlers.__exit__(*exc)

    def exit_code(self) -> int:
        """128 + the signal that stopped the run (130 for Ctrl-C, 143 for SIGTERM)."""
        return 128 + (self.received or signal.SIGINT)
