"""The command line's plumbing, shared by :mod:`seqlab.cli` and :mod:`seqlab.cli_use`."""

from __future__ import annotations

import argparse
import logging
import sys
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
