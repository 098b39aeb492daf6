"""An incremental bar tracker for ABC tunes, fed character by character, and bar fit.

No library parses ABC incrementally, so this is written by hand (ABC 2.1, the subset folk
tunes use) and tested bar by bar against music21's durations on the bundled collections.

The tracker's state is an immutable :class:`BarState` (:mod:`seqlab.abc_state`); :func:`step`
maps a state and one character to the next, so a sampler can cache (state, token) -> state and
state -> mask. Lengths are kept as ints in units of ``1/GRID`` of a whole note, exact Fractions
where a length falls between the grid's points (``L:1/7``); what :func:`bars` and
``BarState.bar`` return is in whole notes. It reads the header's ``M:`` (``C`` is 4/4, ``C|``
2/2, ``none`` or no M: means no bar checks) and ``L:`` (default 1/16 below a meter of 3/4, else
1/8), then in the music: note lengths (``A2``, ``A3/2``, ``A/``, ``A//``, ``A/4``), broken
rhythm (``>``, ``<``, ``>>``, ``<<``), tuplets ``(p`` and ``(p:q:r``, chords ``[CEG]2`` (the
first note's length), rests ``z`` ``x``, bar rests ``Z`` ``X``, ties and slurs, grace notes
``{...}``, quoted chords and annotations ``"..."``, decorations ``!...!``, ``+...+`` and the
one-letter ones, which take no time; field lines and inline fields ``[M:...]`` ``[L:...]``; bar
lines ``|``, ``||``, ``|]``, ``[|``, ``:|``, ``|:``, ``::``, and endings ``[1``, ``|1``, ``:|2``.

What is legal (a *violation* is counted in ``BarState.violations`` when one happens):

- a note, rest or chord may not make the current bar longer than the meter's bar: a note is
  checked when it starts (its shortest length, a 64th of it, must fit), on each ``/`` and
  digit of its length (the shortest length it can still take must fit: ``A///`` after ``A//``,
  ``A/16`` after ``A/1``) and when it ends (its whole length must fit); ``>`` and ``<``
  lengthen the note before them and are checked like its end;
- a bar line may close a bar that is full, an empty one, or a partial bar where a partial bar
  is legal: the first bar of the tune (a pickup), a bar that a *section boundary* closes (a
  repeat ``:|`` ``|:`` ``::``, an ending ``|1`` ``[2``, a double bar ``||`` ``|]`` ``[|``), and
  the bar after a section boundary when the bar before it was full (a section's pickup) or when
  the two together make one bar (the halves of a bar split around a repeat or an ending) or,
  the second in an ending, are as long as each other (first and second endings). An ``M:``
  change may not leave the current bar overfull. The sign decides, so ``A2|`` then ``[1`` on
  the next line (a habit of irish.abc) closes a partial bar illegally: a sampler is led to
  ``:|`` or ``|1``, while :func:`bar_fit` counts such a bar as the half it is.
- what only comes before a note (accidentals, ``~``, ``.``, ``(``, ``{``, the one-letter
  decorations ``H L M O P S T u v`` and the spacer ``y``) needs room for one; an accidental's
  note follows it at once; any other letter that is no note, rest or field line is a
  violation (abc2midi skips it as junk); a tuplet sign ``(p:q:r`` has one digit each and
  2 <= p <= 9; a digit, ``/`` or octave mark with no note before it, and a fourth ``/``
  (``A////``), are violations (junk, not lengths);
- a length is written as music21 and abc2midi read it: no leading 0, a denominator a power of
  two up to 64, no digit after ``//`` and no ``/`` after a denominator (``A0``, ``A/3``,
  ``A//4``, ``A/2/`` are violations); no accidental after another but ``^^`` and ``__``
  (``^=``, ``==``); a chord holds notes (with their accidentals, octave marks, lengths no
  longer than a bar, and a tie after each) and nothing else, four at most.

In the header, a line must be a field the loader keeps (``X T M L Q K R P V I U``, ``X:``
once), ``M:`` a meter (``6/8``, ``C``, ``C|``, ``none``) and ``L:`` a unit (``1/8``), numbers of
two digits at most, as they are written, and ``K:`` (which ends the header) a key (``D``,
``Ador``, ``G Major``) only after a meter: what ``seqlab.music_checks.check_headers`` asks, and
a key music21 reads; a blank line (the tune's end) may not come before ``K:``. In the music
the same holds of field lines and inline fields, and ``X:`` may not come. A bar line, a space
or a line break may not fall inside a chord, a line break inside quoted text, grace notes or
an inline field (``[M:`` ``[L:`` ``[K:`` only), a bar line, ``/`` or a 46th character inside
quoted text, and a line may not start with ``R``, ``Q``, ``I`` or ``w`` (a field's name, no
decoration) unless a field follows; endings are numbered 1 and 2 (music21 reads
no others), and a tune may not end (a blank line) before its first note. Comments, quoted
text and decorations are otherwise never violations; a ``!`` followed by what is no
decoration's name (``!trill!``, ``!fermata!``, ...) is a line break, and what follows it is
music.
"""

from __future__ import annotations

from fractions import Fraction

from seqlab.abc_fields import (
    BODY_FIELDS,
    DECORATIONS,
    DENOMINATOR_PREFIXES,
    DENOMINATORS,
    HEADER_FIELDS,
    bar_can_hold,
    header_line,
    header_prefix,
    meter_of,
    scaled,
    unit_of,
)
from seqlab.abc_state import (
    ONE,
    BarState,
    Length,
    Note,
    closable,
    halves,
    length,
    note_fits,
    room,
    unit,
    units,
    violate,
    whole,
)

NOTES = frozenset("ABCDEFGabcdefgzx")
BAR_RESTS = frozenset("ZX")
DIGITS = frozenset("0123456789")
CHORD = NOTES | DIGITS | frozenset("^_=',/-]")  # what a chord may hold, and its end
LONGEST_DENOMINATOR = {1: 16, 3: 32, 6: 64}  # what a denominator's first digit can become
# broken rhythm: the factor of the next note after one sign and after two, and what the note
# before gains with the first sign and with the second, as (numerator, denominator)
BROKEN = {">": ((1, 2), (1, 4), (1, 2), (1, 6)), "<": ((3, 2), (7, 4), (-1, 2), (-1, 2))}
PREFIXES = frozenset("^_=~.({")  # what comes before a note: no room for one, no prefix
QUOTED = 45  # the longest quoted text (real tunes: 45 characters, nearly all under 10)
# the one-letter decorations (and the spacer y) of ABC 2.1: abc2midi skips any other letter
LETTER_MARKS = frozenset("HLMOPSTuvy")
SKIPS = {"{": "}", '"': '"', "!": "!", "+": "+"}  # no-time spans: grace notes, text, decorations


def field(s: BarState, text: str) -> BarState:
    """A field (a line or inline): M: and L: change the bar, K: ends the header."""
    name, _, value = text.partition(":")
    if name == "M":
        bar, compound = meter_of(value.strip())
        full = None if bar is None else units(bar.numerator, bar.denominator)
        s = violate(s._replace(full=full, compound=compound, metered=True),
                    full is None or s.pos <= full)
    elif name == "L":
        new = unit_of(value.strip())
        s = s._replace(unit=s.unit if new is None else units(1, new.denominator))
    elif name == "K" and s.header:
        s = s._replace(header=False)
    return s


def end_note(s: BarState) -> BarState:
    """The open note ends: its length joins the bar (or the chord, inside one)."""
    n = length(s.note)
    s = violate(s, s.note.den is None or s.note.den in DENOMINATORS)._replace(note=None)
    if s.chord is not None:
        return s._replace(chord=s.chord or n)
    left, factor = s.tuplet
    s = s._replace(tuplet=(left - 1, factor) if left > 1 else (0, ONE))
    return violate(s, room(s, n))._replace(pos=s.pos + n, last=n)


def start_note(s: BarState, base: Length) -> BarState:
    if s.loose is not None:
        s = s._replace(loose=None)
    s = violate(s, note_fits(s, base))  # room for its shortest length; four chord notes at most
    if s.chord is None:
        (bn, bd), (tn, td) = s.broken, s.tuplet[1]
        return s._replace(broken=ONE, note=Note(scaled(base, bn * tn, bd * td)))
    return s._replace(note=Note(base), chord_notes=s.chord_notes + 1)


def close_bar(s: BarState, sign: str) -> BarState:
    """A bar line ends the bar: legal or not (see the module docstring), then a new bar."""
    boundary, ending = sign != "|", any(c in DIGITS for c in sign)
    if s.pos == 0 and boundary and s.loose is not None:  # `A2|` then `[1`: its half
        return s._replace(after=s.loose, loose=None, ending=ending,
                          closed=(*s.closed, (s.pos, "", "boundary")))
    if s.pos == 0:
        return s._replace(after=0 if boundary else s.after, loose=None,
                          ending=ending or (s.ending and boundary))
    kind = ("first" if s.first else "plain" if s.after is None
            else "ending" if s.ending else "after")
    if s.full is None or s.pos == s.full:
        ok = True
    else:
        ok = s.pos < s.full and (halves(s.pos, s.after, s.full, s.ending) if s.after else
                                 (boundary or s.first or s.after == 0))
    bar = (s.pos, kind, "boundary" if boundary else "plain")
    half = s.pos if s.full is not None and s.pos < s.full else 0
    s = violate(s, ok)._replace(closed=(*s.closed, bar), loose=None if boundary else half or None)
    return s._replace(pos=0, first=False, after=half if boundary else None,
                      ending=ending)


def tuplet(s: BarState, text: str) -> BarState:
    """``(p``, ``(p:q`` or ``(p:q:r``: the next r notes take q/p of their length."""
    parts = [int(p) if p else 0 for p in text.split(":")] + [0, 0]
    p, q, r = parts[:3]
    if not 2 <= p <= 9 or (s.full is not None and s.pos >= s.full):  # no such tuplet, no room
        return violate(s, False)
    default = {2: 3, 3: 2, 4: 3, 6: 2, 8: 3}.get(p, 3 if s.compound else 2)
    return s._replace(tuplet=(r or p, (q or default, p)))


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
            if s.buf:  # a field: as check_headers reads it (in the music, after a meter)
                s = violate(s, header_line(s.buf, s.metered or not s.header))
            s = field(s, s.buf) if s.buf else s
            return s._replace(skip="", buf="", line_start=True)
        if (ch == "\n" and s.skip != "+") or (s.buf[:1] == '"' != ch and (
                ch in "|/" or len(s.buf) > QUOTED)):  # a line break in quoted text, grace
            s = violate(s, False)  # notes, `[M:...]`; a bar line or `/` in quoted text, or more
        if ch == s.skip and s.buf.startswith("["):  # an inline field [M:3/4]
            s = violate(s, header_line(s.buf[1:], True))
            return field(s._replace(skip="", buf=""), s.buf[1:])
        if ch == s.skip:
            return s._replace(skip="", buf="")
        if s.buf and s.buf[0] not in '!"':  # a field as it is written, never a dead end
            text = s.buf.lstrip("[") + ch
            s = violate(s, header_prefix(text) and bar_can_hold(text, whole(s.pos)))
        keep = s.buf and (len(s.buf) < 2 or s.buf[0] in 'MLK!"'
                          or s.buf.startswith(("[M", "[L", "[K")))
        return s._replace(buf=s.buf + ch) if keep else s
    if s.header:
        if ch == "\n":  # a blank line: the tune ends before its music
            return violate(s, False)._replace(line_start=True)
        if ch == "%" or s.line_start:
            # a header line is a field the loader keeps; K: (the last) after a meter; X: once
            s = violate(s, ch == "%" or (ch in HEADER_FIELDS and (ch != "K" or s.metered)
                                         and (ch != "X" or not s.numbered)))
            return s._replace(skip="\n", buf="" if ch == "%" else ch, line_start=False,
                              numbered=s.numbered or ch == "X")
        return s
    if s.buf:
        return pending(s, ch)
    return music(s, ch)


def pending(s: BarState, ch: str) -> BarState:
    """The character after ``(``, ``[``, a letter at a line's start, or in a bar line."""
    buf = s.buf
    if buf[0] == "(":
        if ch in DIGITS or (ch == ":" and len(buf) > 1):  # (p:q:r, one digit each, p >= 2
            ok = buf[-1] in "(:" and len(buf) < 6 and (buf != "(" or ch not in "01")
            return violate(s, ok)._replace(buf=buf + ch)
        s = tuplet(s._replace(buf=""), buf[1:]) if len(buf) > 1 else s._replace(buf="")
        return _step(s, ch)
    if buf == "[":
        if ch in DIGITS or ch == "|":  # `[1`, `[2` (endings 1 and 2 only) or `[|`
            return violate(s, ch in "12|")._replace(buf="|" + ch if ch in DIGITS else "[|")
        if ch.isalpha() and ch not in NOTES:  # an inline field [M:3/4], [L:1/8], [K:G]
            return violate(s, ch in "MLK")._replace(skip="]", buf="[" + ch)
        return music(s._replace(buf="", chord=0, chord_notes=0), ch)
    if buf[0].isalpha():  # a letter at a line's start: a field line, or a note
        if ch == ":":
            return violate(s, buf[0] in BODY_FIELDS)._replace(skip="\n", buf=buf + ch)
        return _step(music(s._replace(buf=""), buf), ch)  # `K|`, `R|`: junk (see music)
    if ch in "|:" or (ch == "]" and "]" not in buf) or (ch in DIGITS and buf[-1] == "|"):
        s = violate(s, len(buf) < 4 and ch not in "03456789")  # `:||:`; endings 1 and 2
        return s._replace(buf=buf + ch)  # an ending's number follows a `|` at once: `:|2`
    sign = "|" if buf == "|" else buf
    return _step(close_bar(s._replace(buf=""), sign), ch)


def music(s: BarState, ch: str) -> BarState:
    """One character of music, no span or pending sign open."""
    line_start, s = s.line_start, s._replace(line_start=ch == "\n")
    if s.chord is not None and (ch not in CHORD or (ch == "-" and s.note is None)):
        s = violate(s, False)  # `[DGB dG`: a chord left open; a tie in it follows a note
    if line_start and ch == "\n" and s.first and s.pos == 0:  # a tune ends before its music
        s = violate(s, False)
    if s.note is not None:
        if ch in DIGITS:
            return digit(s, ch)
        if ch == "/":
            n = s.note
            # A/// is an eighth of A: nothing shorter is music; no `/` after a denominator; the
            # shortest length the note can still take (A/64 after one `/`, A/// after two) fits
            shortest = scaled(n.base, n.num or 1, 64 if not n.slashes else 8)
            s = violate(s, n.slashes < 3 and n.den is None and room(s, shortest))
            return s._replace(note=n._replace(slashes=n.slashes + 1, den=None))
        if ch in "',":  # octave marks come before the length, three at most
            n = s.note
            s = violate(s, n.marks < 3 and n.num is None and not n.slashes)
            return s._replace(note=n._replace(marks=n.marks + 1))
        s = end_note(s)
    if line_start and ch.isalpha() and ch not in "abcdefgzx":  # a field line or music: next
        return violate(s, ch in BODY_FIELDS or music(s, ch).violations == s.violations
                       )._replace(buf=ch)
    if ch in "^_=":  # `^`, `^^`, `_`, `__` or `=`: no other accidental after one (`^=`, `==`)
        double = ch in "^_" and s.accidental == ch
        s = violate(s, double or not s.accidental)._replace(accidental=ch + ch if double else ch)
    elif s.accidental:  # its note follows at once: `^ A`, `^.A`, `^k` are malformed notes
        s = violate(s, ch in NOTES)._replace(accidental="")
    if ch in NOTES:
        return start_note(s, unit(s))
    if ch in BAR_RESTS:
        return start_note(s, s.full or units(1))
    if ch.isalpha() and ch not in LETTER_MARKS:  # no note, rest or decoration
        return violate(s, False)
    if ch in PREFIXES or ch.isalpha():  # before a note: room for one?
        s = violate(s, note_fits(s))
    if ch in "|:":  # a bar sign starts: some sign must be able to close this bar (no chord)
        return violate(s, closable(s) and s.chord is None)._replace(buf=ch)
    if ch in "([":
        return s._replace(buf=ch)
    if ch == "]" and s.chord is not None:
        s = violate(s, s.chord_notes > 0)
        base, s = s.chord or unit(s), s._replace(chord=None, chord_notes=0)
        return start_note(s, base)
    if ch in SKIPS:
        return s._replace(skip=SKIPS[ch], buf=ch if ch in '!"' else "")
    if ch == "%":
        return s._replace(skip="\n")
    if ch in BROKEN:
        return broken(s, ch)
    if ch in DIGITS or ch in "/',":  # a length or an octave mark with no note before it
        return violate(s, False)
    return s


def digit(s: BarState, ch: str) -> BarState:
    n = s.note
    if n.slashes:  # a denominator: a power of two up to 64, never after `//`; the length
        n = n._replace(den=(n.den or 0) * 10 + int(ch))  # it can still become must fit
        s = violate(s, n.slashes == 1 and n.den in DENOMINATOR_PREFIXES)
        shortest = scaled(n.base, n.num or 1, LONGEST_DENOMINATOR.get(n.den, max(n.den, 1)))
        return violate(s, room(s, shortest))._replace(note=n)
    n = n._replace(num=(n.num or 0) * 10 + int(ch))  # a multiplier: no leading 0
    return violate(s, n.num > 0 and room(s, length(n)))._replace(note=n)


def broken(s: BarState, ch: str) -> BarState:
    once, twice, gain, again = BROKEN[ch]
    if s.chord is not None or s.last == 0:
        return s
    if s.broken == once:  # the second sign: >> or <<
        extra, factor = scaled(s.last, *again), twice
    else:
        extra, factor = scaled(s.last, *gain), once
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
        meter = s.full
        s = step(s, ch)
        out += [(pos, meter, before, after) for pos, before, after in s.closed]
    meter, s = s.full, finish(s)
    out += [(pos, meter, before, after) for pos, before, after in s.closed]
    out = [(whole(pos), whole(meter), before, after) for pos, meter, before, after in out]
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
