"""Checks of untyped arguments (the Python API, model constructors): the one place that says a
bool is no integer here, so that ``hidden_size=True`` or ``beam=2.0`` fails by name rather than
deep in torch. Imports nothing from seqlab: every layer may use it."""

from __future__ import annotations

import os
from typing import Any


def is_count(value: Any) -> bool:
    """A positive int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def whole(name: str, value: Any, minimum: int | None = None) -> None:
    """An integer argument (>= ``minimum`` when given): TypeError or ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def real(name: str, value: Any) -> None:
    """A number argument (an int or a float, not a bool): TypeError naming it."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {value!r}")


def flag(name: str, value: Any) -> None:
    """A True/False argument (not 1, not "yes"): TypeError naming it."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def path_like(name: str, value: Any) -> None:
    """A path argument (a str or an os.PathLike): TypeError naming it."""
    if not isinstance(value, str | os.PathLike):
        raise TypeError(f"{name} must be a path (a str or a pathlib.Path), got {value!r}")


def instance(name: str, value: Any, kind: Any, what: str) -> None:
    """An argument of ``kind`` (a class or a union of them): TypeError naming it and ``what``
    it should be."""
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__} {value!r:.60}")
