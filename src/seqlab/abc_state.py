"""The bar tracker's state (:mod:`seqlab.abc_meter`) and what it asks of it: lengths in the
tracker's units, room left in the bar, whether a bar may close.

Lengths are kept in units of ``1/GRID`` of a whole note: ints, fast to add, compare and hash,
where a length is a whole number of units (every length of a real tune is), else exact
Fractions (``L:1/7``); :func:`seqlab.abc_fields.scaled` keeps them exact either way.
"""

from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple

from seqlab.abc_fields import scaled

# lengths are in units of 1/GRID of a whole note: every length of a real tune is a whole number
# of them (L: 1/4 to 1/64, /// and /64, >> and <<, tuplets up to 9); others stay Fractions
GRID = 2 ** 12 * 3 ** 3 * 5 * 7
CHORD_NOTES = 4  # the most notes in a chord (real tunes: 4)
ONE = (1, 1)

Length = int | Fraction  # in units of 1/GRID


def units(num: int, den: int = 1) -> Length:
    """``num/den`` of a whole note in the tracker's units."""
    return scaled(GRID, num, den)


def whole(x: Length | None) -> Fraction | None:
    """A length in the tracker's units as a fraction of a whole note."""
    return None if x is None else Fraction(x) / GRID


class Note(NamedTuple):
    """A note (or chord) whose length is still being written."""
    base: Length  # its length with no length written (unit, broken and tuplet factors)
    num: int | None = None  # the written multiplier, while digits come
    slashes: int = 0
    den: int | None = None  # the digits after a slash
    marks: int = 0  # octave marks (' and ,), before the length


class BarState(NamedTuple):
    header: bool = True  # until the K: line ends
    skip: str = ""  # the character that ends a no-time span ("\n" for a line), or ""
    buf: str = ""  # a field being read, or the characters of a bar line or `(` or `[`
    line_start: bool = True
    unit: Length | None = None  # L:, None until given (then the meter's default)
    full: Length | None = None  # the meter's bar length; None: no checks
    compound: bool = False  # the meter is compound (6/8, 9/8, 12/8): tuplets of 5, 7, 9
    metered: bool = False  # an M: field was read (M:none included)
    numbered: bool = False  # an X: field was read
    pos: Length = 0  # the current bar so far, notes that ended
    note: Note | None = None
    chord: Length | None = None  # inside [..]: the first note's length (0: none yet)
    chord_notes: int = 0  # the notes of that chord so far
    accidental: str = ""  # an accidental just written (spaces after it): no other may follow
    last: Length = 0  # the length of the last note, for > and <
    broken: tuple[int, int] = ONE  # the next note's factor from > or <
    tuplet: tuple[int, tuple[int, int]] = (0, ONE)  # notes left, their factor
    first: bool = True  # the bar is the tune's first
    after: Length | None = None  # after a boundary: the partial bar before it (0: full)
    ending: bool = False  # that boundary begins an ending (`|2`, `:|2`, `[2`)
    violations: int = 0
    loose: Length | None = None  # a partial bar that a plain bar line closed: a boundary
    # right after it (`A2|` then `[1` on the next line) makes it a half, as bar_fit counts it
    closed: tuple[tuple[Length, str, str], ...] = ()  # the bars this character closed

    @property
    def bar(self) -> Fraction | None:
        """The meter's bar length, in whole notes."""
        return whole(self.full)


def unit(s: BarState) -> Length:
    if s.unit is not None:
        return s.unit
    return units(1, 16) if s.full is not None and s.full < units(3, 4) else units(1, 8)


def length(note: Note) -> Length:
    value = note.num if note.num is not None else 1
    return scaled(note.base, value, max(note.den, 1) if note.den is not None
                  else 2 ** note.slashes)


def room(s: BarState, extra: Length) -> bool:
    """Whether the bar has room for ``extra`` more. In a chord, its first note (the chord's
    length, after broken rhythm and tuplet) must fit, the others be no longer than a bar."""
    if s.full is None:
        return True
    if s.chord is None:
        return s.pos + extra <= s.full
    if s.chord:
        return extra <= s.full
    (bn, bd), (tn, td) = s.broken, s.tuplet[1]
    return s.pos + scaled(extra, bn * tn, bd * td) <= s.full


def violate(s: BarState, ok: bool) -> BarState:
    return s if ok else s._replace(violations=s.violations + 1)


def note_fits(s: BarState, base: Length | None = None) -> bool:
    """Whether a note of ``base`` length (default: the unit) may come: its shortest length (a
    64th of it, after broken rhythm and tuplet) fits the bar, or a chord has fewer than four
    notes."""
    base = unit(s) if base is None else base
    if s.chord is not None:  # a chord's first note: room for the chord
        return s.chord_notes < CHORD_NOTES and bool(s.chord or room(s, scaled(base, 1, 64)))
    (bn, bd), (tn, td) = s.broken, s.tuplet[1]
    return room(s, scaled(base, bn * tn, bd * td * 64))


def closable(s: BarState) -> bool:
    """Whether some bar sign (a section boundary at least) may close the bar now."""
    if s.full is None or s.pos in (0, s.full):
        return True
    return s.pos < s.full and (halves(s.pos, s.after, s.full, s.ending) if s.after else True)


def halves(second: Length, first: Length, bar: Length, ending: bool) -> bool:
    """Whether two partial bars around a boundary are legal: they make one bar, or, the second
    in an ending, they are as long as each other (two endings: ``|1 E6 :|2 F6 ||``)."""
    return first + second == bar or (ending and first == second)
