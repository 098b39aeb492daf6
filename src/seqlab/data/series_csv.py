"""Numeric series from a CSV file, wide or long, every value and time stamp checked.

Wide form: an optional time column (its header one of :data:`TIME_NAMES`, or empty), then one
column per series, one row per time step. Long form (its header holds ``id``, ``value`` and a
time column, ``time`` or another of :data:`TIME_NAMES` such as ``date``): one row per (series,
time step), any other columns are covariates (numbers, checked, kept aside). Every error
names the file and the line: text in a value column, a missing value without a fill, a
duplicated, unsorted or irregular time stamp, a time stamp that is not understood.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqlab.data.text import csv_rows

# headers that mark a wide file's first column as its time stamps
TIME_NAMES = frozenset({"", "time", "date", "datetime", "timestamp", "ds", "period", "month",
                        "quarter", "year", "week", "day", "index"})
# a long file's time column, the first of these it holds: whole stamps before calendar parts
LONG_TIMES = ("time", "date", "datetime", "timestamp", "ds", "period", "month", "quarter",
              "week", "day", "year", "index")
MISSING = frozenset({"", "nan", "na", "n/a", "null", "none", "?"})
FILLS = ("forward", "linear", "zero")
MONTHS = {m: k for k, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug",
                                      "sep", "oct", "nov", "dec"), start=1)}
# the usual season of a regular step: monthly 12, quarterly 4, daily 7, hourly 24
SEASONS = {("month", 1): 12, ("month", 3): 4, ("quarter", 1): 4, ("day", 1): 7,
           ("second", 3600): 24}
TIME_FORMS = "a number, YYYY-MM, YYYY-Qn, YYYY Mon, YYYY-MM-DD[ HH:MM[:SS]]"


@dataclass
class Series:
    """Named numeric series, each with the file line (or row) of every value."""

    names: list[str]
    values: list[np.ndarray]  # one float64 array (T_i,) per series
    lines: list[list[int]]  # the line of each value in ``source`` (1 is the header)
    source: str  # a file path or a bundled set's name
    seasonality: int = 1  # the period its time stamps suggest (monthly: 12), 1 when none
    times: list[list[str]] = field(default_factory=list)  # each value's time stamp as written
    covariates: dict[str, list[np.ndarray]] = field(default_factory=dict)  # long form only

    def where(self, k: int, t: int = -1) -> str:
        """``file:line N`` of value ``t`` of series ``k`` (its last by default)."""
        return f"{self.source}:line {self.lines[k][t]}"


def read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(line, cells)]) of a CSV file; blank lines skipped; ValueError naming the
    file for an unreadable or empty one, or a row of the wrong width."""
    rows = [(line, [c.strip() for c in row]) for line, row in csv_rows(path) if row]
    if len(rows) < 2:
        raise ValueError(f"{path}: expected a header and at least one row of numbers")
    (_, header), body = rows[0], rows[1:]
    for line, cells in body:
        if len(cells) != len(header):
            raise ValueError(f"{path}:line {line}: {len(cells)} columns, the header has "
                             f"{len(header)}")
    return header, body


def number(text: str, where: str, column: str) -> float:
    """A value cell as a float (NaN when missing); text is an error naming where."""
    if text.lower() in MISSING:
        return float("nan")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: column {column!r}: {text!r} is not a number") from None
    if np.isinf(value):
        raise ValueError(f"{where}: column {column!r}: {text!r} is not a finite number")
    return value


def time_key(text: str, where: str) -> tuple[str, float]:
    """(kind, position) of a time stamp: positions of one kind are evenly spaced when the
    stamps are regular (months count months, dates count days)."""
    t = text.strip()
    with_day = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2}))?)?",
                            t)
    try:
        if (m := re.fullmatch(r"(\d{4})-(\d{1,2})", t)) and 1 <= int(m[2]) <= 12:
            return "month", int(m[1]) * 12 + int(m[2]) - 1
        if m := re.fullmatch(r"(\d{4})[- ]?[Qq]([1-4])", t):
            return "quarter", int(m[1]) * 4 + int(m[2]) - 1
        if (m := re.fullmatch(r"(\d{4}) ([A-Za-z]{3})", t)) and m[2].lower() in MONTHS:
            return "month", int(m[1]) * 12 + MONTHS[m[2].lower()] - 1
        if with_day:
            parts = [int(p or 0) for p in with_day.groups()]
            stamp = datetime.datetime(*parts)
            if with_day[4] is None:
                return "day", stamp.date().toordinal()
            return "second", stamp.timestamp()
        return "number", float(t)
    except ValueError:
        raise ValueError(f"{where}: time stamp {text!r} not understood (expected {TIME_FORMS})"
                         ) from None


def check_times(stamps: list[str], lines: list[int], path: Path, name: str = ""
                ) -> int:
    """Refuse duplicated, unsorted or irregular time stamps, naming the first bad line;
    returns the seasonality the regular step suggests (1 when none)."""
    keys = [time_key(s, f"{path}:line {n}") for s, n in zip(stamps, lines, strict=True)]
    kinds = {kind for kind, _ in keys}
    if len(kinds) > 1:
        bad = next(k for k, (kind, _) in enumerate(keys) if kind != keys[0][0])
        raise ValueError(f"{path}:line {lines[bad]}: time stamp {stamps[bad]!r} is not written "
                         f"like {stamps[0]!r} above it")
    kind, positions = positions_of(stamps, keys)
    positions = np.array(positions)
    steps = np.diff(positions)
    of = f" of series {name!r}" if name else ""
    for k, step in enumerate(steps, start=1):  # order first: a swap reads as two odd steps
        if step < 0:
            raise ValueError(f"{path}:line {lines[k]}: time stamp {stamps[k]!r}{of} comes "
                             f"before {stamps[k - 1]!r} on line {lines[k - 1]}: sort the rows")
    for k, step in enumerate(steps, start=1):
        if step == 0:
            raise ValueError(f"{path}:line {lines[k]}: duplicated time stamp {stamps[k]!r}{of} "
                             f"(also on line {lines[k - 1]})")
        if not np.isclose(step, steps[0]):
            raise ValueError(f"{path}:line {lines[k]}: irregular time stamps{of}: "
                             f"{stamps[k - 1]!r} to {stamps[k]!r} is not the step of "
                             f"{stamps[0]!r} to {stamps[1]!r}")
    return SEASONS.get((kind, float(steps[0]) if len(steps) else 0.0), 1)


def positions_of(stamps: list[str], keys: list[tuple[str, float]]
                 ) -> tuple[str, list[float]]:
    """(kind, positions) of stamps of one kind (their :func:`time_key`): dates that are
    monthly count months."""
    kind = keys[0][0]
    if kind == "day" and monthly_dates([p for _, p in keys]):
        return "month", [float(months_of(s)) for s in stamps]
    return kind, [p for _, p in keys]


def monthly_dates(days: list[float]) -> bool:
    """Whether dates (as day ordinals) are monthly: every one the first of its month, or
    every one the last."""
    dates = [datetime.date.fromordinal(int(d)) for d in days]
    return (all(d.day == 1 for d in dates)
            or all((d + datetime.timedelta(days=1)).day == 1 for d in dates))


def months_of(stamp: str) -> int:
    year, month = stamp.strip()[:7].split("-")
    return int(year) * 12 + int(month) - 1


def fill_gaps(values: np.ndarray, fill: str) -> np.ndarray:
    """Missing values (NaN) filled: forward (the last seen value; leading gaps take the first
    seen), linear (interpolated between the neighbours; the ends hold the nearest), zero."""
    missing = np.isnan(values)
    if not missing.any():
        return values
    seen = np.flatnonzero(~missing)
    if fill == "zero":
        return np.where(missing, 0.0, values)
    if fill == "linear":
        return np.interp(np.arange(len(values)), seen, values[seen])
    last = np.maximum.accumulate(np.where(missing, 0, np.arange(len(values))))
    last = np.where(np.arange(len(values)) < seen[0], seen[0], last)
    return values[last]


def finished(series: Series, fill: str) -> Series:
    """The series with missing values filled, or a ValueError naming the first one's line
    when the fill is none (or a series holds no value at all)."""
    for k, values in enumerate(series.values):
        missing = np.flatnonzero(np.isnan(values))
        if not len(missing):
            continue
        if len(missing) == len(values):
            raise ValueError(f"{series.where(k, 0)}: series {series.names[k]!r} has no value")
        if fill in ("", "none"):
            raise ValueError(f"{series.where(k, int(missing[0]))}: series {series.names[k]!r} "
                             f"has a missing value ({len(missing)} in all); gaps need "
                             f"--fill {' | '.join(FILLS)}, chosen when the run is trained")
        series.values[k] = fill_gaps(values, fill)
    return series


def read_csv(path: str | Path, fill: str = "none") -> Series:
    """The series of a CSV file in wide or long form (long when its header names ``id``,
    ``value`` and a time column), every value checked; see the module docstring."""
    path = Path(path)
    header, rows = read_rows(path)
    lowered = [h.strip().lower() for h in header]
    at = long_columns(lowered)
    series = long_series(path, lowered, rows, at) if at else wide_series(path, header, rows)
    return finished(series, fill)


def long_columns(lowered: list[str]) -> dict[str, int] | None:
    """Where a long CSV's id, time and value columns are, or None for a wide file. The time
    column is the one whose name ranks first in :data:`LONG_TIMES` (a date before a month
    number or a row index, which may sit beside it as covariates)."""
    times = [h for h in LONG_TIMES if h in lowered]
    if "id" not in lowered or "value" not in lowered or not times:
        return None
    return {"id": lowered.index("id"), "time": lowered.index(times[0]),
            "value": lowered.index("value")}


def wide_series(path: Path, header: list[str], rows, time_columns: int | None = None,
                stamp_of=None) -> Series:
    """One series per value column. The first column is time when its header says so;
    ``time_columns`` and ``stamp_of(cells)`` say otherwise (a stamp spread over columns)."""
    if time_columns is None:
        time_columns = 1 if header[0].strip().lower() in TIME_NAMES else 0
    if stamp_of is None and time_columns:
        stamp_of = lambda cells: cells[0]  # noqa: E731
    names = header[time_columns:]
    if not names:
        raise ValueError(f"{path}: no value column (the only column, {header[0]!r}, is time)")
    lines = [line for line, _ in rows]
    values = [np.array([number(cells[c], f"{path}:line {line}", header[c])
                        for line, cells in rows]) for c in range(time_columns, len(header))]
    stamps = [stamp_of(cells) if stamp_of else str(k) for k, (_, cells) in enumerate(rows)]
    season = check_times(stamps, lines, path) if stamp_of else 1
    return Series(list(names), values, [lines] * len(values), str(path), season,
                  [stamps] * len(values))


def long_series(path: Path, lowered: list[str], rows, at: dict[str, int]) -> Series:
    """One series per id, in the order ids first appear; each id's rows sorted by time in the
    file, and regular; ``at``: the id, time and value columns."""
    extra = [c for c in range(len(lowered)) if c not in at.values()]
    groups: dict[str, list[tuple[int, list[str]]]] = {}
    for line, cells in rows:
        groups.setdefault(cells[at["id"]], []).append((line, cells))
    series = Series([], [], [], str(path))
    seasons = set()
    for name, group in groups.items():
        lines = [line for line, _ in group]
        stamps = [cells[at["time"]] for _, cells in group]
        seasons.add(check_times(stamps, lines, path, name))
        series.names.append(name)
        series.lines.append(lines)
        series.times.append(stamps)
        series.values.append(np.array([number(cells[at["value"]], f"{path}:line {line}",
                                              "value") for line, cells in group]))
        for c in extra:
            series.covariates.setdefault(lowered[c], []).append(np.array(
                [number(cells[c], f"{path}:line {line}", lowered[c]) for line, cells in group]))
    series.seasonality = seasons.pop() if len(seasons) == 1 else 1
    return series
