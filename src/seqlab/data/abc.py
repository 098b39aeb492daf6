"""ABC tunes: read files, folders or bundled collections, split them into tunes, normalise them,
split train/validation by whole tunes, and join tunes into one token stream.

A tune starts at an ``X:`` line and ends at the first blank line (ABC 2.1, section 2.2): text
after that blank line and before the next ``X:`` is free text, not music, and is dropped (one
such line sits in O'Neill's collection between tunes 1645 and 0). Text before the first ``X:``
(a file header) is dropped too; none of the bundled files has one.

Normalisation keeps the music and drops what is not: a normalised tune renders and plays exactly
as the original did.

- kept: the fields that define or name the music: X (number), T (title), M (meter), L (unit
  note length), Q (tempo), K (key), R (rhythm: reel, jig, ...), P (parts), V (voices),
  I (instructions), U (user symbols), w (aligned lyrics), and every music line, in order;
- dropped: bibliographic free text (A, B, C, D, F, G, H, N, O, S, W, Z: area, book, composer,
  discography, file, group, history, notes, origin, source, words, transcriber), ``%``
  comments and ``%%`` typesetting directives: e-mail addresses and page layout are noise to a
  model of tunes and carry no notes;
- whitespace: CRLF becomes LF; runs of spaces and tabs become one space; lines are stripped;
  ``X: 1`` becomes ``X:1``. Within a bar a single space is kept where there was one, because
  in ABC a space breaks a beam.

Joined, tunes are separated by one blank line, the ABC tune separator, so the token stream is
itself a valid ABC file and END (``"\\n\\n"``) is the end-of-tune marker the generator stops at.
Read alone (``--batching tunes``), a tune is preceded by START, the same blank line, so it
starts as it does in the stream.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path

from seqlab.data.text import (
    is_source_name,
    read_text_file,
    source_files,
    visible_files,
)

log = logging.getLogger(__name__)

END = "\n\n"  # a blank line: the end of a tune in ABC, and the marker generation stops at
START = END  # what precedes every tune in the stream: the start marker of a tune read alone
KEPT_FIELDS = frozenset("XTMLQKRPVIUw")
FIELD_LINE = re.compile(r"^([A-Za-z+]):[ \t]*(.*)$")
SPACES = re.compile(r"[ \t]+")
TUNE_START = re.compile(r"^X:", re.MULTILINE)


def is_abc_source(source: str | Path) -> bool:
    """A bundled corpus name, an ``.abc`` file, or a folder holding ``.abc`` files."""
    source = str(source)
    if is_source_name(source):
        return True
    path = Path(source)
    if path.is_file():
        return path.suffix.lower() == ".abc"
    return path.is_dir() and any(_abc_files(path))


def _abc_files(folder: Path) -> list[Path]:
    return visible_files(folder, ".abc")


def split_tunes(text: str) -> list[str]:
    """The tunes of an ABC text, raw: from each ``X:`` line to the first blank line after it."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    starts = [m.start() for m in TUNE_START.finditer(text)] + [len(text)]
    tunes = []
    for start, stop in zip(starts[:-1], starts[1:], strict=True):
        block = re.split(r"\n[ \t]*\n", text[start:stop], maxsplit=1)[0]
        tunes.append(block.strip("\n"))
    return tunes


def normalise_line(line: str) -> str | None:
    """One line of a tune, normalised; None when the line is to be dropped."""
    line = _strip_comment(line)  # a comment or a %% directive leaves nothing
    line = SPACES.sub(" ", line).strip()
    if not line:
        return None
    field = FIELD_LINE.match(line)
    if field:
        name, value = field.groups()
        return f"{name}:{value}" if name in KEPT_FIELDS else None
    return line


def _strip_comment(line: str) -> str:
    """The line without a trailing ``% comment`` (``\\%`` is an escaped percent sign)."""
    match = re.search(r"(?<!\\)%", line)
    return line if match is None else line[:match.start()]


def normalise_tune(tune: str) -> str:
    """A raw tune (see :func:`split_tunes`) in normal form: kept fields and music lines only."""
    lines = (normalise_line(line) for line in tune.splitlines())
    return "\n".join(line for line in lines if line is not None)


def has_key(tune: str) -> bool:
    """Whether a tune has a ``K:`` line (the end of its header); without one it is no tune."""
    return re.search(r"^K:", tune, re.MULTILINE) is not None


def tunes_from_text(text: str) -> list[str]:
    """Split and normalise; tunes without a K: line (an empty ``X:`` stub) are dropped."""
    return [t for t in map(normalise_tune, split_tunes(text)) if has_key(t)]


def load_tunes(source: str | Path) -> list[str]:
    """The normalised tunes of a bundled corpus (``oneills``, ``ryans``), an ABC file, or the
    ``.abc`` files under a folder (sorted). Raises FileNotFoundError for a missing path and
    ValueError when no tune is found."""
    source = str(source)
    files = source_files(source, _abc_files)
    abc = set(files)
    if Path(source).is_dir() and (others := [f for f in visible_files(Path(source))
                                             if f not in abc]):
        names = ", ".join(f.name for f in others[:5]) + (", ..." if len(others) > 5 else "")
        log.warning("%s: tunes read from its %d .abc file(s); %d other file(s) left out (%s)",
                    source, len(files), len(others), names)
    tunes = [t for f in files for t in tunes_from_text(read_text_file(f))]
    if not tunes:
        raise ValueError(f"{source}: no ABC tunes found (a tune starts with an X: line and "
                         "needs a K: line)")
    return tunes


def split_train_val(tunes: list[str], val_fraction: float, seed: int
                    ) -> tuple[list[str], list[str]]:
    """Whole tunes, shuffled by ``seed``: the first ``val_fraction`` of them validate.

    Never a cut through the character stream: a tune is in one split or the other. Both splits
    keep at least one tune.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if len(tunes) < 2:
        raise ValueError(f"a train/validation split needs at least 2 tunes, got {len(tunes)}")
    order = list(range(len(tunes)))
    random.Random(seed).shuffle(order)
    n_val = min(max(1, round(len(tunes) * val_fraction)), len(tunes) - 1)
    return [tunes[i] for i in order[n_val:]], [tunes[i] for i in order[:n_val]]


def train_val_tunes(source: str | Path, val_fraction: float, seed: int
                    ) -> tuple[list[str], list[str]]:
    """The tunes of an ABC source, split as training splits them."""
    return split_train_val(load_tunes(source), val_fraction, seed)


def join_tunes(tunes: list[str]) -> str:
    """One ABC text: each tune followed by END, so every tune, the last too, has its marker."""
    return "".join(tune + END for tune in tunes)


def headers(tune: str) -> dict[str, str]:
    """The header fields of a tune (lines up to and including the first ``K:``), first value
    of each field."""
    fields: dict[str, str] = {}
    for line in tune.splitlines():
        match = FIELD_LINE.match(line.strip())
        if not match:
            break  # music before K: (a malformed header)
        fields.setdefault(match.group(1), match.group(2).strip())
        if match.group(1) == "K":
            break
    return fields


def body(tune: str) -> str:
    """The music of a tune: the lines after the header's ``K:`` line."""
    lines = tune.splitlines()
    for k, line in enumerate(lines):
        if line.startswith("K:"):
            return "\n".join(lines[k + 1:])
    return ""
