"""An incremental bar tracker for ABC tunes, fed character by character, and bar fit.

No library parses ABC incrementally, so this is written by hand (ABC 2.1, the subset folk
tunes use) and tested bar by bar against music21's durations on the bundled collections.

The tracker's state is an immutable :class:`BarState`; :func:`step` maps a state and one
character to the next, so a sampler can cache (state, token) -> state and state -> mask.
Lengths are fractions of a whole note. It reads the header's ``M:`` (``C`` is 4/4, ``C|`` 2/2,
``none`` or no M: means no bar checks) and ``L:`` (default 1/16 below a meter of 3/4, else 1/8),
then in the music: note lengths (``A2``, ``A3/2``, ``A/``, ``A//``, ``A/4``), broken rhythm
(``>``, ``<``, ``>>``, ``<<``), tuplets ``(p`` and ``(p:q:r``, chords ``[CEG]2`` (the first
note's length), rests ``z`` ``x``, bar rests ``Z`` ``X``, ties and slurs, grace notes ``{...}``,
quoted chords and annotations ``"..."``, decorations ``!...!``, ``+...+`` and the one-letter
ones, which take no time; field lines and inline fields ``[M:...]`` ``[L:...]``; bar lines
``|``, ``||``, ``|]``, ``[|``, ``:|``, ``|:``, ``::``, and endings ``[1``, ``|1``, ``:|2``.

What is legal (a *violation* is counted in ``BarState.violations`` when one happens):

- a note, rest or chord may not make the current bar longer than the meter's bar: a note is
  checked when it starts (there must be room left), on each digit of its length (the length
  written so far must fit) and when it ends (its whole length must fit); ``/`` only shortens a
  note and is never a violation; ``>`` and ``<`` lengthen the note before them and are checked
  like its end;
- a bar line may close a bar that is full, an empty one, or a partial bar where a partial bar
  is legal: the first bar of the tune (a pickup), a bar that a *section boundary* closes (a
  repeat ``:|`` ``|:`` ``::``, an ending ``|1`` ``[2``, a double bar ``||`` ``|]`` ``[|``), and the
  bar after a section boundary when the bar before it was full (a section's pickup) or when the
  two together make one bar (the halves of a bar split around a repeat or an ending) or, the
  second in an ending, are as long as each other (first and second endings). An ``M:`` change
  may not leave the current bar overfull. The sign decides, so ``A2|`` then ``[1`` on the next
  line (a habit of irish.abc) closes a partial bar illegally: a sampler is led to ``:|`` or
  ``|1``, while :func:`bar_fit` counts such a bar as the half it is.
- what only comes before a note (accidentals, ``~``, ``.``, ``(``, ``{``, one-letter
  decorations) needs room left in the bar; a tuplet sign ``(p:q:r`` has one digit each and
  2 <= p <= 9; a digit or ``/`` with no note before it, and a fourth ``/`` (``A////``), are
  violations (junk, not lengths).

In the header, a line must be a field (a capital letter and ``:``), ``M:`` a meter (``6/8``, ``C``,
``C|``, ``none``) and ``L:`` a unit (``1/8``), as they are written, and ``K:`` (which ends the
header) a key (``D``, ``Ador``, ``G Major``) only after a meter: what
``seqlab.music_checks.check_headers`` asks, and a key music21 reads. A bar line, a space or
a line break may not fall inside a chord, endings are numbered 1 and 2 (music21 reads no
others), and a tune may not end (a blank line) before its first note. In the music, field
lines, comments, quoted text and decorations are never violations; a ``!`` followed by what
is no decoration's name (``!trill!``, ``!fermata!``, ...) is a line break, and what follows
it is music.
"""

from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple

from seqlab.abc_fields import DECORATIONS, header_line, header_prefix, meter_of, unit_of

NOTES = frozenset("ABCDEFGabcdefgzx")
BAR_RESTS = frozenset("ZX")
DIGITS = frozenset("0123456789")
HALF, QUARTER = Fraction(1, 2), Fraction(1, 4)
# broken rhythm: the factor of the next note after one and after two signs
BROKEN = {">": (Fraction(1, 2), Fraction(1, 4)), "<": (Fraction(3, 2), Fraction(7, 4))}
PREFIXES = frozenset("^_=~.({")  # what comes before a note: no room for one, no prefix
SKIPS = {"{": "}", '"': '"', "!": "!", "+": "+"}  # no-time spans: grace notes, text, decorations


class Note(NamedTuple):
    """A note (or chord) whose length is still being written."""
    base: Fraction  # its length with no length written (unit, broken and tuplet factors)
    num: int | None = None  # the written multiplier, while digits come
    slashes: int = 0
    den: int | None = None  # the digits after a slash
    marks: int = 0  # octave marks (' and ,), before the length


class BarState(NamedTuple):
    header: bool = True  # until the K: line ends
    skip: str = ""  # the character that ends a no-time span ("\n" for a line), or ""
    buf: str = ""  # a field being read, or the characters of a bar line or `(` or `[`
    line_start: bool = True
    unit: Fraction | None = None  # L:, None until given (then the meter's default)
    bar: Fraction | None = None  # the meter's bar length; None: no checks
    compound: bool = False  # the meter is compound (6/8, 9/8, 12/8): tuplets of 5, 7, 9
    metered: bool = False  # an M: field was read (M:none included)
    pos: Fraction = Fraction(0)  # the current bar so far, notes that ended
    note: Note | None = None
    chord: Fraction | None = None  # inside [..]: the first note's length (0: none yet)
    last: Fraction = Fraction(0)  # the length of the last note, for > and <
    broken: Fraction = Fraction(1)  # the next note's factor from > or <
    tuplet: tuple[int, Fraction] = (0, Fraction(1))  # notes left, their factor
    first: bool = True  # the bar is the tune's first
    after: Fraction | None = None  # after a boundary: the partial bar before it (0: full)
    ending: bool = False  # that boundary begins an ending (`|2`, `:|2`, `[2`)
    violations: int = 0
    loose: Fraction | None = None  # a partial bar that a plain bar line closed: a boundary
    # right after it (`A2|` then `[1` on the next line) makes it a half, as bar_fit counts it
    closed: tuple[tuple[Fraction, str, str], ...] = ()  # the bars this character closed


def unit(s: BarState) -> Fraction:
    if s.unit is not None:
        return s.unit
    return Fraction(1, 16) if s.bar is not None and s.bar < Fraction(3, 4) else Fraction(1, 8)


def length(note: Note) -> Fraction:
    value = Fraction(note.num if note.num is not None else 1)
    if note.den is not None:
        return note.base * value / max(note.den, 1)
    return note.base * value / 2 ** note.slashes


def field(s: BarState, text: str) -> BarState:
    """A field (a line or inline): M: and L: change the bar, K: ends the header."""
    name, _, value = text.partition(":")
    if name == "M":
        bar, compound = meter_of(value.strip())
        s = violate(s._replace(bar=bar, compound=compound, metered=True),
                    bar is None or s.pos <= bar)
    elif name == "L":
        s = s._replace(unit=unit_of(value.strip()) or s.unit)
    elif name == "K" and s.header:
        s = s._replace(header=False)
    return s


def room(s: BarState, extra: Fraction) -> bool:
    return s.bar is None or s.chord is not None or s.pos + extra <= s.bar


def violate(s: BarState, ok: bool) -> BarState:
    return s if ok else s._replace(violations=s.violations + 1)


def end_note(s: BarState) -> BarState:
    """The open note ends: its length joins the bar (or the chord, inside one)."""
    n = length(s.note)
    s = s._replace(note=None)
    if s.chord is not None:
        return s._replace(chord=s.chord or n)
    left, factor = s.tuplet
    s = s._replace(tuplet=(left - 1, factor) if left > 1 else (0, Fraction(1)))
    return violate(s, room(s, n))._replace(pos=s.pos + n, last=n)


def start_note(s: BarState, base: Fraction) -> BarState:
    if s.loose is not None:
        s = s._replace(loose=None)
    if s.chord is None:
        base = base * s.broken * s.tuplet[1]
        s = s._replace(broken=Fraction(1))
    return violate(s, s.bar is None or s.chord is not None or s.pos < s.bar
                   )._replace(note=Note(base))


def closable(s: BarState) -> bool:
    """Whether some bar sign (a section boundary at least) may close the bar now."""
    if s.bar is None or s.pos in (0, s.bar):
        return True
    return s.pos < s.bar and (halves(s.pos, s.after, s.bar, s.ending) if s.after else True)


def halves(second: Fraction, first: Fraction, bar: Fraction, ending: bool) -> bool:
    """Whether two partial bars around a boundary are legal: they make one bar, or, the second
    in an ending, they are as long as each other (two endings: ``|1 E6 :|2 F6 ||``)."""
    return first + second == bar or (ending and first == second)


def close_bar(s: BarState, sign: str) -> BarState:
    """A bar line ends the bar: legal or not (see the module docstring), then a new bar."""
    boundary, ending = sign != "|", any(c in DIGITS for c in sign)
    if s.pos == 0 and boundary and s.loose is not None:  # `A2|` then `[1`: its half
        return s._replace(after=s.loose, loose=None, ending=ending,
                          closed=(*s.closed, (s.pos, "", "boundary")))
    if s.pos == 0:
        return s._replace(after=Fraction(0) if boundary else s.after, loose=None,
                          ending=ending or (s.ending and boundary))
    kind = ("first" if s.first else "plain" if s.after is None
            else "ending" if s.ending else "after")
    if s.bar is None or s.pos == s.bar:
        ok = True
    else:
        ok = s.pos < s.bar and (halves(s.pos, s.after, s.bar, s.ending) if s.after else
                                (boundary or s.first or s.after == 0))
    bar = (s.pos, kind, "boundary" if boundary else "plain")
    half = s.pos if s.bar is not None and s.pos < s.bar else Fraction(0)
    s = violate(s, ok)._replace(closed=(*s.closed, bar), loose=None if boundary else half or None)
    return s._replace(pos=Fraction(0), first=False, after=half if boundary else None,
                      ending=ending)


def tuplet(s: BarState, text: str) -> BarState:
    """``(p``, ``(p:q`` or ``(p:q:r``: the next r notes take q/p of their length."""
    parts = [int(p) if p else 0 for p in text.split(":")] + [0, 0]
    p, q, r = parts[:3]
    if not 2 <= p <= 9 or (s.bar is not None and s.pos >= s.bar):  # no such tuplet, no room
        return violate(s, False)
    default = {2: 3, 3: 2, 4: 3, 6: 2, 8: 3}.get(p, 3 if s.compound else 2)
    return s._replace(tuplet=(r or p, Fraction(q or default, p)))


def step(s: BarState, ch: str) -> BarState:
    """The state after one more character."""
    return _step(s._replace(closed=()) if s.closed else s, ch)


def _step(s: BarState, ch: str) -> BarState:
    if s.skip:
        if s.skip == "!" and ch != "!" and not any(d.startswith(s.buf[1:] + ch)
                                                   for d in DECORATIONS):
            # a lone "!" (a line break): what followed is music
            text, s = s.buf[1:] + ch, s._replace(skip="", buf="")
            for c in text:
                s = _step(s, c)
            return s
        if ch == "\n" and s.skip == "\n":  # a line ends a field or a comment
            if s.header and s.buf:
                s = violate(s, header_line(s.buf, s.metered))
            s = field(s, s.buf) if s.buf else s
            return s._replace(skip="", buf="", line_start=True)
        if ch == s.skip and s.buf.startswith("["):  # an inline field [M:3/4]
            return field(s._replace(skip="", buf=""), s.buf[1:])
        if ch == s.skip:
            return s._replace(skip="", buf="")
        if s.header and s.buf:
            s = violate(s, header_prefix(s.buf + ch))
        keep = s.buf and (len(s.buf) < 2 or s.buf[0] in "MLK!"
                          or s.buf.startswith(("[M", "[L", "[K")))
        return s._replace(buf=s.buf + ch) if keep else s
    if s.header:
        if ch == "\n":
            return s._replace(line_start=True)
        if ch == "%" or s.line_start:
            # a header line is a field, named by a capital; K: (the last) after a meter
            s = violate(s, ch == "%" or (ch.isupper() and (ch != "K" or s.metered)))
            return s._replace(skip="\n", buf="" if ch == "%" else ch, line_start=False)
        return s
    if s.buf:
        return pending(s, ch)
    return music(s, ch)


def pending(s: BarState, ch: str) -> BarState:
    """The character after ``(``, ``[``, a letter at a line's start, or in a bar line."""
    buf = s.buf
    if buf[0] == "(":
        if ch in DIGITS or (ch == ":" and len(buf) > 1):  # (p:q:r, one digit each
            return violate(s, buf[-1] in "(:" and len(buf) < 6)._replace(buf=buf + ch)
        s = tuplet(s._replace(buf=""), buf[1:]) if len(buf) > 1 else s._replace(buf="")
        return _step(s, ch)
    if buf == "[":
        if ch in DIGITS or ch == "|":
            return s._replace(buf="|" + ch if ch in DIGITS else "[|")
        if ch.isalpha() and ch not in NOTES:
            return s._replace(skip="]", buf="[" + ch)
        return music(s._replace(buf="", chord=Fraction(0)), ch)
    if buf[0].isalpha():  # a letter at a line's start: a field line, or a note
        if ch == ":":
            return s._replace(skip="\n", buf=buf + ch)
        return _step(music(s._replace(buf=""), buf), ch)
    if ch in "|:" or (ch == "]" and "]" not in buf) or (ch in DIGITS and buf[-1] == "|"):
        s = violate(s, len(buf) < 4 and ch not in "03456789")  # `:||:`; endings 1 and 2
        return s._replace(buf=buf + ch)  # an ending's number follows a `|` at once: `:|2`
    sign = "|" if buf == "|" else buf
    return _step(close_bar(s._replace(buf=""), sign), ch)


def music(s: BarState, ch: str) -> BarState:
    """One character of music, no span or pending sign open."""
    line_start, s = s.line_start, s._replace(line_start=ch == "\n")
    if s.chord is not None and ch in " \n":  # `[DGB dG`: a chord left open
        s = violate(s, False)
    if line_start and ch == "\n" and s.first and s.pos == 0:  # a tune ends before its music
        s = violate(s, False)
    if s.note is not None:
        if ch in DIGITS:
            return digit(s, ch)
        if ch == "/":
            n = s.note
            s = violate(s, n.slashes < 3)  # A/// is an eighth of A: nothing shorter is music
            return s._replace(note=n._replace(slashes=n.slashes + 1, den=None))
        if ch in "',":  # octave marks come before the length, three at most
            n = s.note
            s = violate(s, n.marks < 3 and n.num is None and not n.slashes)
            return s._replace(note=n._replace(marks=n.marks + 1))
        s = end_note(s)
    if ch in NOTES:
        if line_start and ch in "ABCDEFG":  # maybe a field line (A:, B:, ...), decided next
            return s._replace(buf=ch)
        return start_note(s, unit(s))
    if ch in BAR_RESTS:
        return start_note(s, s.bar or Fraction(1))
    if ch in PREFIXES or (ch.isalpha() and not line_start):  # before a note: room for one?
        s = violate(s, s.bar is None or s.chord is not None or s.pos < s.bar)
    if ch in "|:":  # a bar sign starts: some sign must be able to close this bar (no chord)
        return violate(s, closable(s) and s.chord is None)._replace(buf=ch)
    if ch in "([":
        return s._replace(buf=ch)
    if ch == "]" and s.chord is not None:
        base, s = s.chord or unit(s), s._replace(chord=None)
        return start_note(s, base)
    if ch in SKIPS:
        return s._replace(skip=SKIPS[ch], buf="!" if ch == "!" else "")
    if ch == "%":
        return s._replace(skip="\n")
    if ch in BROKEN:
        return broken(s, ch)
    if ch in DIGITS or ch == "/":  # a length with no note before it
        return violate(s, False)
    if line_start and ch.isalpha():
        return s._replace(buf=ch)
    return s


def digit(s: BarState, ch: str) -> BarState:
    n = s.note
    if n.slashes:
        n = n._replace(den=(n.den or 0) * 10 + int(ch))
    else:
        n = n._replace(num=(n.num or 0) * 10 + int(ch))
    return violate(s, room(s, length(n)))._replace(note=n)


def broken(s: BarState, ch: str) -> BarState:
    once, twice = BROKEN[ch]
    if s.chord is not None or s.last == 0:
        return s
    if s.broken == once:  # the second sign: >> or <<; the note was `last / (2 - once)` long
        extra, factor = s.last / (2 - once) * (once - twice), twice
    else:
        extra, factor = s.last * (1 - once), once
    s = violate(s, room(s, extra))
    return s._replace(pos=s.pos + extra, last=s.last + extra, broken=factor)


def finish(s: BarState) -> BarState:
    """The state at the end of a tune: an open note, sign or line ends."""
    s = step(s, "\n")
    if s.note is not None:
        s = end_note(s)
    if s.pos:
        kind = "first" if s.first else "after" if s.after is not None else "plain"
        s = s._replace(closed=(*s.closed, (s.pos, kind, "end")))
    return s


def read(text: str, state: BarState | None = None) -> BarState:
    """The state after ``text`` (a tune so far, its header included)."""
    s = state or BarState()
    for ch in text:
        s = step(s, ch)
    return s


def bars(tune: str) -> list[tuple[Fraction, Fraction | None, str, str]]:
    """The bars of a tune as written: (length, the meter's bar length, what precedes the bar:
    "first" | "after" (a section boundary) | "ending" (an ending's sign) | "plain", what ends
    it: "plain" | "boundary" | "end"), in order. Empty bars (a bar line right after another)
    are left out."""
    out = []
    s = BarState()
    for ch in tune:
        meter = s.bar
        s = step(s, ch)
        out += [(pos, meter, before, after) for pos, before, after in s.closed]
    meter, s = s.bar, finish(s)
    out += [(pos, meter, before, after) for pos, before, after in s.closed]
    for k, (pos, _, _, _) in enumerate(out):  # `A2|` then `[1`: the bar's end is a boundary
        if pos == 0 and k:
            out[k - 1] = (*out[k - 1][:3], "boundary")
    return [bar for bar in out if bar[0]]


def bar_fit(tune: str) -> tuple[int, int] | None:
    """(bars that fit the meter, bars) of a tune; None when it has no meter or no bars.

    Bars are counted as played: a partial bar before a section boundary and a partial bar
    right after it are one bar, which fits when the two make a whole bar (the halves of a bar
    split around a repeat or an ending) or, the second in an ending, are as long as each
    other (two endings). Any other
    bar fits when it is as long as the meter's bar, or shorter where a partial bar is legal
    (see the module docstring): the tune's first bar (a pickup), its last, and a bar next to a
    section boundary whose other half is elsewhere (a section's pickup). A bar longer than the
    meter's never fits.
    """
    written = [b for b in bars(tune) if b[1] is not None]
    fit = counted = k = 0
    while k < len(written):
        have, full, before, after = written[k]
        if (after == "boundary" and have < full and k + 1 < len(written)
                and written[k + 1][2] in ("after", "ending") and written[k + 1][0] < full):
            ok = halves(written[k + 1][0], have, full, written[k + 1][2] == "ending")
            k += 1
        else:
            ok = have == full or (have < full and (before != "plain" or after != "plain"))
        fit, counted, k = fit + ok, counted + 1, k + 1
    return (fit, counted) if counted else None
