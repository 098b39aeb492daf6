"""ABC fields and lengths as the bar tracker (:mod:`seqlab.abc_meter`) reads them: a meter, a
unit note length, a key, whether a header line is one that
:func:`seqlab.music_checks.check_headers` (and music21) accept, as it is written, which fields
a tune may hold, and exact arithmetic on lengths kept as integers where they can be."""

from __future__ import annotations

import re
from fractions import Fraction

from seqlab.data.abc import KEPT_FIELDS

MODES = ("", "m", "min", "maj", "dor", "mix", "lyd", "phr", "loc", "aeo", "ion", "Major",
         "Minor", "Dorian", "Mixolydian", "Lydian", "Phrygian", "Locrian", "Aeolian", "Ionian")
# K: values the header accepts: a tonic, a mode (written with or without a space), or none
KEYS = frozenset({"none", "HP", "Hp"} | {f"{t}{a}{sep}{m}" for t in "ABCDEFG"
                                         for a in ("", "#", "b") for m in MODES
                                         for sep in ("", " ") if m or not sep})

# the fields a tune may hold: those the loader keeps (every tune seqlab reads has no other); in
# the music, no X: (music21 reads it as a new tune's number)
HEADER_FIELDS = frozenset(f for f in KEPT_FIELDS if f.isupper())
BODY_FIELDS = KEPT_FIELDS - {"X"}
# a note length's denominator: a power of two (abc2midi reads no other), as its digits come
DENOMINATORS = frozenset({1, 2, 4, 8, 16, 32, 64})
DENOMINATOR_PREFIXES = DENOMINATORS | {3, 6}
# a meter's beats: a number of two digits at most, or an additive meter of two or three parts of
# one digit (3+3+2): music21 takes seconds on three parts and never ends on 13+13 or 2+2+2+3
BEATS = r"\d\d?|\d(\+\d){1,2}"

# ABC 2.1's !decorations! (and O'Neill's and Ryan's typos): a `!` then anything else is a
# line break, what follows it music
DECORATIONS = (
    "trill", "trill(", "trill)", "lowermordent", "uppermordent", "mordent", "pralltriller",
    "roll", "turn", "turnx", "invertedturn", "invertedturnx", "arpeggio", ">", "accent",
    "emphasis", "fermata", "fermat:a", "invertedfermata", "tenuto", "0", "1", "2", "3", "4",
    "5", "+", "plus", "snap", "slide", "wedge", "upbow", "downbow", "open", "thumb", "breath",
    "pppp", "ppp", "pp", "p", "mp", "mf", "f", "ff", "fff", "ffff", "sfz", "crescendo(", "<(",
    "crescendo)", "<)", "diminuendo(", ">(", "diminuendo)", ">)", "segno", "coda", "D.S.",
    "D.C.", "dacoda", "dacapo", "fine", "shortphrase", "mediumphrase", "longphrase", "Segno",
    "Coda", "sf", "8va(", "8va)")


def meter_of(value: str) -> tuple[Fraction | None, bool]:
    """(bar length, compound) of an M: value; (None, False) for none or an unreadable one."""
    value = value.replace(" ", "")
    if value in ("C", "C|"):  # common time and cut time: both a whole note a bar
        return Fraction(1), False
    top, _, bottom = value.partition("/")
    try:
        beats = sum(int(t) for t in top.strip("()").split("+"))
        bar = Fraction(beats, int(bottom))
    except (ValueError, ZeroDivisionError):
        return None, False
    return (bar, beats % 3 == 0 and beats > 3 and int(bottom) == 8) if bar > 0 else (None, False)


def header_prefix(text: str) -> bool:
    """Whether a header line written so far can still become a field that check_headers
    passes: ``N:``, with ``M:`` a meter and ``L:`` a unit as they are being written (numbers
    of two digits at most: music21 spends minutes on ``M:86132032/6``)."""
    if len(text) < 2:
        return text.isalpha()
    name, colon, value = text[0], text[1], text[2:]
    if colon != ":":
        return False
    if name == "M":
        written = re.fullmatch(rf"({BEATS}|\d(\+\d)?\+)(/\d{{0,2}})?", value)  # 3+ or 3+3+
        return any(m.startswith(value) for m in ("C|", "none")) or bool(written) and \
            denominator(value, False)
    if name == "K":
        return any(key.startswith(value) for key in KEYS)
    return name != "L" or bool(re.fullmatch(r"1(/\d{0,2})?|", value)) and denominator(value, False)


def header_line(text: str, has_meter: bool) -> bool:
    """Whether a whole header line is a field that check_headers passes; ``K:`` (the end of the
    header) only after a meter."""
    if not (len(text) >= 2 and text[0].isalpha() and text[1] == ":"):
        return False
    name, value = text[0], text[2:]
    if name == "M":
        return value in ("C", "C|", "none") or bool(
            re.fullmatch(rf"({BEATS})/\d\d?", value)) and denominator(value, True)
    if name == "L":
        return bool(re.fullmatch(r"1/\d\d?", value)) and denominator(value, True)
    return name != "K" or (has_meter and value in KEYS)


def bar_can_hold(text: str, pos: Fraction) -> bool:
    """Whether a field written so far can still end as one whose bar holds ``pos`` (of a whole
    note, already in the bar it interrupts): an ``M:`` field's bar at its longest. Before its
    ``/`` a meter can still grow; after it the smallest denominator its digits allow sets it."""
    if text[:2] != "M:" or not pos:
        return True
    value = text[2:].replace(" ", "")
    if value and "C|".startswith(value):
        return pos <= 1
    top, slash, digits = value.partition("/")
    dens = [d for d in sorted(DENOMINATORS) if str(d).startswith(digits)]
    if not slash or not dens:
        return True
    bar, _ = meter_of(f"{top}/{dens[0]}")
    return bar is None or bar >= pos  # None: not a meter, which header_prefix refuses


def denominator(value: str, whole: bool) -> bool:
    """Whether the digits after a value's ``/`` (none yet: fine) are a power of two up to 64,
    abc2midi's rule for meters and units too, or with ``whole`` False can still become one."""
    _, slash, digits = value.partition("/")
    if not slash or not digits:
        return not (whole and slash)
    return digits[0] != "0" and int(digits) in (DENOMINATORS if whole else DENOMINATOR_PREFIXES)


def unit_of(value: str) -> Fraction | None:
    try:
        unit = Fraction(value.replace(" ", ""))
    except (ValueError, ZeroDivisionError):
        return None
    return unit if unit > 0 and unit.numerator == 1 else None  # 1/n, as ABC writes it


def scaled(x: int | Fraction, num: int, den: int) -> int | Fraction:
    """``x * num / den`` exactly: an int where it is one (the fast case), else a Fraction."""
    if type(x) is int:
        value = x * num
        if value % den == 0:
            return value // den
    exact = Fraction(x) * num / den
    return exact.numerator if exact.denominator == 1 else exact
