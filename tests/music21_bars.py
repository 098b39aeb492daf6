"""Write tests/data/music21_bars.json.gz: music21's bar durations for every tune of the bundled
collections (oneills, ryans), the reference that tests/test_abc_meter.py holds the bar tracker
against. music21 takes about 0.2 s a tune, 10 minutes for the 3,068 tunes, too slow for a test
run; the fast test re-derives a sample live and checks it against this file.

    OMP_NUM_THREADS=1 .venv/bin/python tests/music21_bars.py
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

from seqlab.data.abc import load_tunes

OUT = Path(__file__).parent / "data" / "music21_bars.json.gz"
SOURCES = ("oneills", "ryans")


def tune_id(tune: str) -> str:
    return hashlib.sha1(tune.encode("utf-8")).hexdigest()[:16]


def for_music21(tune: str) -> str:
    """The tune as music21 times it right. In the music lines: quoted chord symbols and
    annotations are dropped (music21 reads ``">"d4`` as a broken rhythm), the one-letter
    fermata ``H`` becomes ``!fermata!`` (music21 drops the note after it), the invisible rest
    ``x`` becomes ``z`` (music21 gives it no time), and grace notes right after a tuplet sign
    move before it (``(3{a}gfg`` makes music21 split the bar)."""
    header, _, music = tune.partition("\nK:")
    key, _, music = music.partition("\n")
    lines = [line if re.match(r"^[A-Za-z]:", line) else _music_line(line)
             for line in music.splitlines()]
    return header + "\nK:" + key + "\n" + "\n".join(lines)


def _music_line(line: str) -> str:
    line = re.sub(r'"[^"]*"', "", line)
    line = re.sub(r"(\(\d)(\{[^}]*\})", r"\2\1", line)
    return line.replace("H", "!fermata!").replace("x", "z")


def music21_bars(tune: str) -> list[list[float]] | None:
    """[quarter lengths of each measure, in order, and the bar length music21 reads for it], or
    None when music21 does not parse the tune or finds no measures."""
    from music21 import stream

    from seqlab.music_checks import parse_music21

    ok, score = parse_music21(for_music21(tune))
    if not ok["ok"]:
        return None
    part = score.parts[0] if getattr(score, "parts", None) else score
    try:
        measures = list(part.getElementsByClass(stream.Measure))
        bars = [[round(float(m.duration.quarterLength), 6),
                 round(float(m.barDuration.quarterLength), 6)] for m in measures]
    except Exception:  # a measure music21 cannot time: no reference for this tune
        return None
    return bars or None


def main() -> None:
    reference = {}
    for source in SOURCES:
        for tune in load_tunes(source):
            reference[tune_id(tune)] = music21_bars(tune)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(OUT, "wt", encoding="utf-8") as f:
        json.dump(reference, f, separators=(",", ":"))


if __name__ == "__main__":
    main()
