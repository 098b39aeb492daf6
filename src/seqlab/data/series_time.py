"""What a series' time stamps say beyond their order: the position of each step in its season
(month of year, quarter, day of week) and the stamps of the steps after the last one.

Both read stamps already checked by :func:`seqlab.data.series_csv.check_times` (one kind,
regular); monthly stamps written as dates (``2020-01-01`` or ``2020-01-31``: every day the
first of its month, or every day the last) count as months, and every third month as quarters.
"""

from __future__ import annotations

import calendar
import datetime
import re

from seqlab.data.series_csv import MONTHS, positions_of, time_key

# the calendar's season of each kind of stamp: month of year, quarter of year, day of week
PERIODS = {"month": 12, "quarter": 4, "day": 7}
MONTH_NAMES = {k: m.capitalize() for m, k in MONTHS.items()}


def stamp_kind(stamps: list[str], where: str) -> tuple[str, list[float]]:
    """(kind, positions) of regular stamps: months count months, dates days, numbers as
    written."""
    return positions_of(stamps, [time_key(s, where) for s in stamps])


def calendar_phase(stamps: list[str], where: str) -> tuple[int, int] | None:
    """(period, position of the first step in it) of monthly, quarterly or daily stamps (month
    of year 0-11, quarter 0-3, day of week 0-6 from Monday); None for other stamps."""
    if not stamps:
        return None
    kind, positions = stamp_kind(stamps, where)
    step = positions[1] - positions[0] if len(positions) > 1 else 1
    if kind == "month" and step == 3:  # quarterly, as months: the quarter of the first
        return PERIODS["quarter"], int(positions[0]) % 12 // 3
    if kind not in PERIODS or step != 1:
        return None
    period = PERIODS[kind]
    # date ordinals count from Monday 0001-01-01 (ordinal 1)
    first = int(positions[0]) - (1 if kind == "day" else 0)
    return period, first % period


def future_stamps(stamps: list[str], count: int, where: str) -> list[str]:
    """The stamps of the ``count`` steps after the last of regular ``stamps``, written like it
    (monthly, quarterly, daily, numbers such as years); a single stamp is read as a step of 1."""
    kind, positions = stamp_kind(stamps, where)
    step = positions[-1] - positions[-2] if len(positions) > 1 else 1.0
    nexts = [positions[-1] + h * step for h in range(1, count + 1)]
    last = stamps[-1].strip()
    if kind == "month":
        return [month_stamp(int(p), last) for p in nexts]
    if kind == "quarter":
        sep = re.fullmatch(r"\d{4}([- ]?)[Qq][1-4]", last)[1]
        return [f"{int(p) // 4:04d}{sep}Q{int(p) % 4 + 1}" for p in nexts]
    if kind == "day":
        return [datetime.date.fromordinal(int(p)).isoformat() for p in nexts]
    if kind == "second":  # as written: a T or a space before the time, seconds or not
        sep = "T" if "T" in last else " "
        spec = "seconds" if re.search(r"\d:\d{2}:\d{2}$", last) else "minutes"
        return [datetime.datetime.fromtimestamp(p).isoformat(sep=sep, timespec=spec)
                for p in nexts]
    whole = all(float(p).is_integer() for p in (*positions[-2:], step))
    return [str(int(p)) if whole else f"{p:g}" for p in nexts]


def month_stamp(position: int, like: str) -> str:
    """Month ``position`` (year * 12 + month - 1) written like ``like``: YYYY-MM, YYYY Mon,
    YYYY-MM-01 or the month's last day."""
    year, month = divmod(position, 12)
    if re.fullmatch(r"\d{4} [A-Za-z]{3}", like):
        return f"{year:04d} {MONTH_NAMES[month + 1]}"
    if len(like) > 7:
        day = 1 if like.endswith("-01") else calendar.monthrange(year, month + 1)[1]
        return f"{year:04d}-{month + 1:02d}-{day:02d}"
    return f"{year:04d}-{month + 1:02d}"
