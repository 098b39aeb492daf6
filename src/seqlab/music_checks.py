"""Checks of one tune: validity, bars against the meter, novelty; and rates over many tunes.

Checks, per tune (each ``{"ok": bool | None, "reason": str}``; None: not run, its tool missing):

- ``headers``: X first (a number), M (a meter), L (a unit length, or absent: the default follows
  from M), K last;
- ``music21``: music21 parses it and finds at least one note;
- ``abc2midi``: abc2midi writes a MIDI file holding at least one note. abc2midi exits 0 after
  fatal errors and prints ``Error`` for things real tunes do all the time (2,000 of them in
  O'Neill's collection alone), so the file, not the exit status or the messages, decides;
  the first error message is kept as information.

A tune is ``valid`` when every check that ran passed. ``bar_fit`` (bars that fit the meter,
counted by :func:`seqlab.abc_meter.bar_fit` from the text: the two halves of a bar split around
a repeat or an ending are one bar) and ``rhythm`` (whether the meter fits the tune type of an
``R:`` line: a jig in 6/8, a reel in 4/4 or C|, ...) are reported beside it; so is the older
``bar_fraction`` (bars whose duration
matches the meter, from music21's measures; a pickup bar, the two halves of a bar split by a
repeat sign, and a short last bar count as matching) is reported beside it, not folded in: real
tunes are not all square either. Novelty is the longest run of bars shared with any training
tune; at ``near_copy_bars`` or more (default 8, a whole strain) a tune is a near-copy.

A malformed tune never raises here: every failure becomes a check with its reason. Every name
here is importable from :mod:`seqlab.music` too.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import warnings
from pathlib import Path
from typing import Any

from seqlab.abc_fields import BEATS
from seqlab.abc_meter import bar_fit
from seqlab.data.abc import body, headers

TOOL_TIMEOUT_S = 30
NEAR_COPY_BARS = 8
METER = re.compile(rf"^(C\|?|none|({BEATS})/\d+)$")
UNIT = re.compile(r"^1/\d+$")
BAR_LINE = re.compile(r":*\[?\|[\]|:]*\d*|::|\[\d")
COMMON = ("4/4", "C", "C|", "2/2")  # common time, written four ways
# tune type (R:, lower case, without spaces and hyphens) -> the meters it is written in (reels
# in 2/4 too: Ryan's Mammoth Collection writes 267 of its 423 reels so, with L:1/16)
RHYTHM_METERS = {
    "jig": ("6/8",), "doublejig": ("6/8",), "singlejig": ("6/8",), "slipjig": ("9/8",),
    "hopjig": ("9/8",), "reel": (*COMMON, "2/4"), "hornpipe": (*COMMON, "2/4"),
    "clog": (*COMMON, "2/4"),
    "polka": ("2/4",), "waltz": ("3/4",), "mazurka": ("3/4",), "slide": ("12/8", "6/8"),
    "strathspey": COMMON, "fling": COMMON, "highlandfling": COMMON, "barndance": COMMON,
    "march": (*COMMON, "2/4", "6/8"),
}


# checks -------------------------------------------------------------------------------------
def check(ok: bool | None, reason: str = "") -> dict[str, Any]:
    return {"ok": ok, "reason": reason}


def check_headers(tune: str) -> dict[str, Any]:
    lines = tune.splitlines()
    if not lines or not re.match(r"^X:\s*\d+\s*$", lines[0]):
        return check(False, "the first line is not X:<number>")
    fields = headers(tune)
    for name in "MK":
        if name not in fields:
            return check(False, f"no {name}: field in the header")
    if not METER.match(fields["M"].replace(" ", "")):
        return check(False, f"M:{fields['M']} is not a meter")
    if "L" in fields and not UNIT.match(fields["L"].replace(" ", "")):
        return check(False, f"L:{fields['L']} is not a unit note length")
    for name in "ML":  # abc2midi reads no other denominator
        bottom = fields.get(name, "").replace(" ", "").partition("/")[2]
        if bottom and (int(bottom) < 1 or int(bottom) & (int(bottom) - 1)):
            return check(False, f"{name}:{fields[name]}: {bottom} is not a power of two")
    return check(True)


# the largest number a meter or a unit length holds in a real tune: music21 spends minutes and
# gigabytes on a sampled "M:86132032/6" or "L:1/63956876", so such a tune is not handed to it
LARGEST_METER_NUMBER = 1024


def parse_music21(tune: str):
    """(check, score or None). music21 writes its warnings to stderr; they are kept quiet."""
    for name, field in re.findall(r"(?:^\s*|\[)([ML]):([^\]\n]*)", tune, flags=re.M):
        if any(int(n) > LARGEST_METER_NUMBER for n in re.findall(r"\d+", field)):
            return check(False, f"meter or unit length out of range: {field.strip()}"), None
        top = field.replace(" ", "").partition("/")[0]
        if name == "M" and "+" in top and not re.fullmatch(BEATS, top):
            return check(False, f"M:{field.strip()}: an additive meter of more than three "
                                "parts, or of a part over 9 (music21 does not finish it)"), None
    from music21 import converter

    quiet = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(quiet):
            warnings.simplefilter("ignore")
            score = converter.parseData(tune, format="abc")
            notes = len(score.flatten().notes)
    except Exception as err:  # music21 raises many types on bad input
        return check(False, f"music21: {type(err).__name__}: {first_line(err)}"), None
    if notes == 0:
        return check(False, "music21 found no notes"), None
    return check(True), score


def bar_fraction(score) -> float | None:
    """Fraction of bars whose length matches the meter (None: no meter or no bars)."""
    from music21 import meter, stream

    part = score.parts[0] if getattr(score, "parts", None) else score
    if not part.recurse().getElementsByClass(meter.TimeSignature):
        return None
    bars = [(float(m.duration.quarterLength), float(m.barDuration.quarterLength))
            for m in part.getElementsByClass(stream.Measure)]
    bars = [(have, full) for have, full in bars if have > 0]
    if not bars:
        return None
    ok = [abs(have - full) < 1e-6 for have, full in bars]
    for k in range(len(bars) - 1):  # a bar split by a repeat sign: two short halves
        (a, full), (b, _) = bars[k], bars[k + 1]
        if a < full and b < full and abs(a + b - full) < 1e-6:
            ok[k] = ok[k + 1] = True
    ok[0] = ok[0] or bars[0][0] < bars[0][1]  # pickup
    ok[-1] = ok[-1] or bars[-1][0] < bars[-1][1]  # a last bar completing the pickup
    return sum(ok) / len(ok)


def run_abc2midi(abc_path: Path, midi_path: Path, abc2midi: str | None) -> dict[str, Any]:
    """Convert with abc2midi; ok when the MIDI file it leaves holds at least one note."""
    if abc2midi is None:
        return check(None, "abc2midi not installed")
    midi_path.unlink(missing_ok=True)
    try:
        done = subprocess.run([abc2midi, str(abc_path), "-o", str(midi_path)],
                              capture_output=True, text=True, errors="replace",
                              timeout=TOOL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        midi_path.unlink(missing_ok=True)
        return check(False, f"abc2midi ran over {TOOL_TIMEOUT_S} s")
    errors = [line for line in (done.stdout + done.stderr).splitlines()
              if line.startswith("Error")]
    first = f" ({errors[0]})" if errors else ""
    if not midi_path.is_file():
        return check(False, f"abc2midi wrote no MIDI file{first}")
    if midi_notes(midi_path) == 0:
        midi_path.unlink()
        return check(False, f"abc2midi wrote a MIDI file without notes{first}")
    return check(True, f"{len(errors)} error messages{first}" if errors else "")


def midi_notes(path: Path) -> int:
    """Note-on events with a velocity in a MIDI file (0 for an unreadable one)."""
    from music21 import midi

    mf = midi.MidiFile()
    try:
        mf.readstr(Path(path).read_bytes())
    except Exception:  # a damaged file has no notes we can trust
        return 0
    return sum(1 for track in mf.tracks for event in track.events
               if event.isNoteOn() and event.velocity > 0)


def check_rhythm(tune: str) -> dict[str, Any]:
    """Whether the meter fits the tune type named by an ``R:`` line; ``ok`` None when the tune
    has no R: line or names a type without a fixed meter (an air)."""
    fields = headers(tune)
    kind = re.sub(r"[\s-]", "", fields.get("R", "")).lower()
    if kind not in RHYTHM_METERS:
        return check(None, f"R:{fields['R']} has no fixed meter" if kind else "no R: line")
    meter = fields.get("M", "").replace(" ", "")
    if meter in RHYTHM_METERS[kind]:
        return check(True)
    return check(False, f"R:{fields['R']} in M:{meter or '(none)'}, expected "
                        f"{' or '.join(RHYTHM_METERS[kind])}")


# novelty ------------------------------------------------------------------------------------
def tune_bars(tune: str) -> list[str]:
    """The bars of a tune's music, whitespace and line breaks removed; field lines skipped."""
    music = "".join(line for line in body(tune).splitlines()
                    if not re.match(r"^[A-Za-z]:", line))
    music = re.sub(r"[\s\\]+", "", music)
    return [bar for bar in BAR_LINE.split(music) if bar]


class NoveltyIndex:
    """Where every bar of the training tunes occurs, to find the longest shared run of bars."""

    def __init__(self, tunes: list[str]) -> None:
        self.titles = [headers(t).get("T", f"tune {k + 1}") for k, t in enumerate(tunes)]
        self.bars = [tune_bars(t) for t in tunes]
        self.where: dict[str, list[tuple[int, int]]] = {}
        for t, bars in enumerate(self.bars):
            for j, bar in enumerate(bars):
                self.where.setdefault(bar, []).append((t, j))

    def longest_shared(self, tune: str) -> tuple[int, str | None]:
        """(length in bars of the longest run shared with one training tune, its title)."""
        g = tune_bars(tune)
        best, title = 0, None
        for i, bar in enumerate(g):
            for t, j in self.where.get(bar, ()):
                other = self.bars[t]
                if i and j and other[j - 1] == g[i - 1]:
                    continue  # not the start of a run
                k = 1
                while i + k < len(g) and j + k < len(other) and g[i + k] == other[j + k]:
                    k += 1
                if k > best:
                    best, title = k, self.titles[t]
        return best, title


# one tune -----------------------------------------------------------------------------------
def assess(tune: str, abc_path: Path, midi_path: Path, tools: dict[str, str | None],
           novelty: NoveltyIndex | None = None, near_copy_bars: int = NEAR_COPY_BARS
           ) -> tuple[dict[str, Any], Any]:
    """Checks, bar fraction, novelty and descriptive fields of a tune already written at
    ``abc_path``; abc2midi's MIDI (when it converts) is left at ``midi_path``. Returns the
    record and music21's score (None when it did not parse)."""
    fields = headers(tune)
    checks = {"headers": check_headers(tune)}
    checks["music21"], score = parse_music21(tune)
    checks["abc2midi"] = run_abc2midi(abc_path, midi_path, tools.get("abc2midi"))
    fraction = None
    if score is not None:
        try:
            fraction = bar_fraction(score)
        except Exception:  # music21 measures of an odd tune; the fraction is just unknown
            fraction = None
    fit = bar_fit(tune)
    record = {"title": fields.get("T"), "key": fields.get("K"), "meter": fields.get("M"),
              "length": len(tune), "bars": len(tune_bars(tune)), "checks": checks,
              "valid": all(c["ok"] for c in checks.values() if c["ok"] is not None),
              "bar_fraction": fraction, "bars_fit": list(fit) if fit else None,
              "bar_fit": fit[0] / fit[1] if fit else None, "rhythm": check_rhythm(tune)}
    if novelty is not None:
        shared, title = novelty.longest_shared(tune)
        record["novelty"] = {"longest_shared_bars": shared, "shared_with": title,
                             "near_copy": shared >= near_copy_bars}
    return record, score



# many tunes ---------------------------------------------------------------------------------
def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Rates over tunes: each check (over the tunes where it ran), valid, near-copy."""
    n = max(len(records), 1)
    summary: dict[str, Any] = {"tunes": len(records),
                               "valid_rate": sum(r["valid"] for r in records) / n}
    for name in ("headers", "music21", "abc2midi"):
        ran = [r["checks"][name]["ok"] for r in records if r["checks"][name]["ok"] is not None]
        summary[f"{name}_rate"] = sum(ran) / len(ran) if ran else None
    fractions = [r["bar_fraction"] for r in records if r["bar_fraction"] is not None]
    summary["mean_bar_fraction"] = sum(fractions) / len(fractions) if fractions else None
    summary.update(bar_fit_summary(records))
    rhythm = [r["rhythm"]["ok"] for r in records if r["rhythm"]["ok"] is not None]
    summary["rhythm_tunes"] = len(rhythm)
    summary["header_consistency_rate"] = sum(rhythm) / len(rhythm) if rhythm else None
    if records and all("novelty" in r for r in records):
        summary["near_copy_rate"] = sum(r["novelty"]["near_copy"] for r in records) / n
    if records and all("meter_fallbacks" in r for r in records):
        summary["meter_fallbacks"] = sum(r["meter_fallbacks"] for r in records)
    if records and all("ended" in r for r in records):
        summary["ended_rate"] = sum(r["ended"] for r in records) / n
    return summary


def bar_fit_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Bar fit over tunes: the mean of each tune's fraction, the fraction of all bars, and the
    tunes whose every bar fits."""
    fits = [r["bars_fit"] for r in records if r.get("bars_fit")]
    if not fits:
        return {"mean_bar_fit": None, "bar_fit": None, "all_bars_fit_rate": None}
    return {"mean_bar_fit": sum(f / n for f, n in fits) / len(fits),
            "bar_fit": sum(f for f, _ in fits) / sum(n for _, n in fits),
            "all_bars_fit_rate": sum(f == n for f, n in fits) / len(fits)}


def first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else ""
