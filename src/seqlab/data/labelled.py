"""Labelled examples for sequence classification: texts or series, each with a class.

Sources (:func:`read_examples`):

- a TSV file (``.tsv``, or any text file with a tab): ``label<TAB>text`` per line, split on the
  first tab; an optional header line ``label<TAB>text``; blank lines skipped;
- a folder with one subfolder per label, one example per text file (hidden files skipped);
- an ABC file: its tunes, prepared as ``tune-types`` prepares them, labelled by their R: field;
- a ``.ts`` file (sktime's format) or a long-form CSV (``id,time,<features...>,label``): see
  :mod:`seqlab.data.labelled_series`;
- a bundled set by name (:data:`BUNDLED`), offline, with its official test split.

Predict inputs (``labels=False``) may lack labels: a TSV line without a tab, a folder of files,
a tune without R:, a .ts file without class labels. A source where only some examples carry a
label gives no labels at all (``Examples.labels`` is None) and says so in its note.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from seqlab.data.abc import FIELD_LINE, TUNE_START, body, headers, normalise_tune, split_tunes
from seqlab.data.labelled_series import (
    FILLS,
    UCR_SETS,
    Standardizer,
    read_long_csv,
    read_ts,
    ucr_files,
)
from seqlab.data.text import corpus_files, read_utf8, text_lines, visible_files

__all__ = ["BUNDLED", "FILLS", "Examples", "Standardizer", "is_bundled", "read_examples",
           "stratified_split"]
log = logging.getLogger(__name__)

BUNDLED = {
    "tune-types": "Irish and Scottish dance tunes from O'Neill's (1850) and Ryan's Mammoth (1883)"
                  " collections in music21, as ABC text, labelled by type (reel, jig, ...)",
    "japanese-vowels": "UEA JapaneseVowels: 9 speakers from 12 LPC channels, 7-29 steps; "
                       "270 train, 370 test",
    "gunpoint": "UCR GunPoint: a gun drawn or a finger pointed, 1 channel, 150 steps; 50 train, "
                "150 test",
    "italy-power": "UCR ItalyPowerDemand: a winter or a summer day of Italian power demand, "
                   "1 channel, 24 hourly steps; 67 train, 1029 test",
}
TUNE_CORPORA = ("oneills", "ryans")
MIN_TUNES = 40  # a kept tune type: 20% test (>= 8) and a validation split from the remaining 32
TEST_FRACTION, TEST_SEED = 0.2, 0  # tune-types' fixed test split, whatever the training seed
TUNE_ALIASES = {"double jig": "jig", "single jig": "jig", "slipjig": "slip jig",
                "fling": "highland fling", "setdance": "set dance"}
KEPT_TUNE_FIELDS = frozenset("KL")  # key and unit length: the notes need them, the type does not
INLINE_FIELD = re.compile(r"\[[MRTQ]:[^\]]*\]")
_CACHE: dict[str, tuple[Examples, Examples | None]] = {}


@dataclass
class Examples:
    """Labelled (or, for predict inputs, possibly unlabelled) examples of one kind."""

    kind: str  # "text" or "series"
    items: list  # text: list[str]; series: list[np.ndarray] float32 of shape (T_i, C)
    labels: list[str] | None  # None when the source carries no labels
    names: list[str]  # where each item came from, for messages and predictions
    features: list[str]  # series: the C channel names; text: []
    source: str  # the path or bundled name
    note: str = ""  # what was merged, dropped or left out

    def __len__(self) -> int:
        return len(self.items)


def is_bundled(source: str) -> bool:
    return source in BUNDLED and not Path(source).exists()


def read_examples(source: str, *, fill: str = "none", labels: bool = True
                  ) -> tuple[Examples, Examples | None]:
    """(the examples to train on, the official test examples or None).

    A bundled set's test part is its official test split; a user's source has none. ``fill``
    fills gaps in series (see :mod:`seqlab.data.labelled_series`). With ``labels`` every example
    needs a label (two classes at least are a need of training, checked by its split). A
    bundled set has neither gaps nor unlabelled examples: ``fill`` and ``labels`` leave it as
    it is.
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
    source = str(source)
    if is_bundled(source):
        if source not in _CACHE:
            _CACHE[source] = _read_bundled(source)
        train, test = _CACHE[source]
        return _copy(train), (_copy(test) if test is not None else None)
    examples = _read_path(source, fill, labels)
    if not examples.items:
        raise ValueError(f"{source}: no examples")
    return examples, None  # one class is an error for training (the split), not for scoring


def _copy(examples: Examples) -> Examples:
    """A copy whose lists a caller may change without touching the cache (arrays are shared)."""
    return replace(examples, items=list(examples.items), names=list(examples.names),
                   features=list(examples.features),
                   labels=None if examples.labels is None else list(examples.labels))


def _read_path(source: str, fill: str, labels: bool) -> Examples:
    path = Path(source)
    if not path.exists():
        hint = f" (bundled sets: {', '.join(BUNDLED)})" if "/" not in source else ""
        raise FileNotFoundError(f"{source}: no such file or folder{hint}")
    if path.is_dir():
        return _text_examples(read_folder(path, labels), source)
    if not path.is_file():
        raise ValueError(f"{source}: not a regular file or folder (a pipe or a device?)")
    suffix = path.suffix.lower()
    if suffix in (".ts", ".csv"):
        reader = read_ts if suffix == ".ts" else read_long_csv
        items, found, names, features = reader(path, fill, labels)
        return _mixed_note(Examples("series", items, found, names, features, source))
    if suffix == ".abc":
        return _text_examples(read_abc(path, labels), source)
    text = read_utf8(path)
    if suffix != ".tsv" and labels and "\t" not in text:
        raise ValueError(f"{source}: cannot tell its format: expected label<TAB>text lines "
                         "(.tsv), a long-form .csv, a .ts file, an .abc file or a folder")
    return _text_examples(read_tsv(path, labels, text), source)


def _text_examples(read: tuple[list[str], list[str | None], list[str]], source: str
                   ) -> Examples:
    items, found, names = read
    return _mixed_note(Examples("text", items, found, names, [], source))


def _mixed_note(examples: Examples) -> Examples:
    """Labels for all or for none: some missing drops them all, and says so."""
    found = examples.labels
    if found is None or all(label is not None for label in found):
        return examples
    have = sum(label is not None for label in found)
    note = (f"{have} of {len(found)} examples carry a label and the others none: labels "
            "left out")
    if have:
        log.warning("%s: %s", examples.source, note)
    return replace(examples, labels=None, note=note if have else "")


# text ----------------------------------------------------------------------------------------
def read_tsv(path: Path, labels: bool = True, text: str | None = None
             ) -> tuple[list[str], list[str | None], list[str]]:
    """``label<TAB>text`` lines: (texts, labels, names "FILE:LINE"); with ``labels`` False a
    line without a tab is an unlabelled text."""
    lines = text_lines(read_utf8(path) if text is None else text)
    start = 1 if lines and lines[0].strip().lower() == "label\ttext" else 0
    items, found, names = [], [], []
    for number, line in enumerate(lines[start:], start=start + 1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        if "\t" not in line:
            if labels:
                raise ValueError(f"{where}: no tab; expected label<TAB>text")
            label, text_ = None, line
        else:
            label, text_ = line.split("\t", 1)
            label = label.strip()
            if not label:
                raise ValueError(f"{where}: empty label")
        if not text_.strip():
            raise ValueError(f"{where}: empty text")
        items.append(text_)
        found.append(label)
        names.append(f"{path}:{number}")
    return items, found, names


def read_folder(folder: Path, labels: bool = True
                ) -> tuple[list[str], list[str | None], list[str]]:
    """One subfolder per label, one example per file; with ``labels`` False a folder of files
    without subfolders holds unlabelled texts."""
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = [p for p in visible_files(folder) if p.parent == folder]
    if not subfolders and (labels or not loose):
        raise ValueError(f"{folder}: no subfolders; a folder source holds one subfolder per "
                         "label, each with one text file per example")
    if subfolders and loose:
        raise ValueError(f"{loose[0]}: a file beside the label subfolders; put each example in "
                         "its label's subfolder")
    groups = [(sub.name, visible_files(sub)) for sub in subfolders] or [(None, loose)]
    items, found, names = [], [], []
    for label, files in groups:
        if not files:
            raise ValueError(f"{folder / label}: no files in this label's subfolder")
        for file in files:
            text = read_utf8(file)
            if not text.strip():
                raise ValueError(f"{file}: empty file")
            items.append(text)
            found.append(label)
            names.append(str(file))
    return items, found, names


# tunes ---------------------------------------------------------------------------------------
def tune_type(value: str) -> str:
    """An R: field in normal form: "Reels", "REEL." -> "reel"; "Double Jig" -> "jig"."""
    kind = re.sub(r"[\s_-]+", " ", value.strip().lower().rstrip(".").strip())
    if kind.endswith("s") and kind[:-1] in ("reel", "jig", "hornpipe", "slip jig", "polka",
                                            "march", "air", "waltz", "strathspey", "slide"):
        kind = kind[:-1]
    return TUNE_ALIASES.get(kind, kind)


def prepare_tune(tune: str) -> str:
    """A normalised tune (:func:`seqlab.data.abc.normalise_tune`) without what names its type:
    every field line but K: and L: (title, rhythm, meter, tempo, ...) and inline [M:], [R:],
    [T:], [Q:] fields. What is left is the key, the unit length and the notes."""
    kept = []
    for line in tune.splitlines():
        field = FIELD_LINE.match(line)
        if field and field.group(1) not in KEPT_TUNE_FIELDS:
            continue
        line = INLINE_FIELD.sub("", line).strip()
        if line:
            kept.append(line)
    return "\n".join(kept)


def tunes_with_lines(text: str) -> list[tuple[int, str]]:
    """(the line of its X:, the normalised tune) for each tune of an ABC text that has a K:."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [text.count("\n", 0, m.start()) + 1 for m in TUNE_START.finditer(text)]
    tunes = zip(lines, map(normalise_tune, split_tunes(text)), strict=True)
    return [(line, tune) for line, tune in tunes if re.search(r"^K:", tune, re.MULTILINE)]


def read_abc(path: Path, labels: bool = True
             ) -> tuple[list[str], list[str | None], list[str]]:
    """The tunes of an ABC file, prepared as tune-types items, labelled by their R: field;
    names "tune N: title" with N the tune's place in the file."""
    items, found, names = [], [], []
    for n, (line, tune) in enumerate(tunes_with_lines(read_utf8(path)), start=1):
        fields = headers(tune)
        kind = tune_type(fields.get("R", ""))
        if not kind and labels:
            raise ValueError(f"{path} line {line}: tune {n} has no R: field (its type); every "
                             "tune needs one to train on")
        items.append(prepare_tune(tune))
        found.append(kind or None)
        names.append(f"tune {n}: {fields.get('T', '')}")
    if not items:
        raise ValueError(f"{path}: no ABC tunes (a tune starts with an X: line and has a K: "
                         "line)")
    return items, found, names


def _read_tune_types() -> tuple[Examples, Examples]:
    """Every typed tune of the bundled collections, one per distinct body, types with at least
    MIN_TUNES tunes; a fixed stratified test split by whole tune."""
    tunes, raw, seen = [], Counter(), set()
    untyped = repeated = n = 0
    for corpus in TUNE_CORPORA:
        for file in corpus_files(corpus):
            for _, tune in tunes_with_lines(read_utf8(file)):
                n += 1
                fields = headers(tune)
                kind, item = tune_type(fields.get("R", "")), prepare_tune(tune)
                if not kind:
                    untyped += 1
                elif body(item) in seen:  # the same notes twice: never in both train and test
                    repeated += 1
                else:
                    seen.add(body(item))
                    raw[fields["R"], kind] += 1
                    tunes.append((item, kind, f"tune {n}: {fields.get('T', '')}"))
    counts = Counter(kind for _, kind, _ in tunes)
    kept = [t for t in tunes if counts[t[1]] >= MIN_TUNES]
    note = _tune_note(raw, counts, untyped, repeated)
    kinds = [kind for _, kind, _ in kept]
    train, test = stratified_split(kinds, TEST_FRACTION, TEST_SEED, source="tune-types")
    parts = [Examples("text", [kept[i][0] for i in index], [kinds[i] for i in index],
                      [kept[i][2] for i in index], [], "tune-types", note)
             for index in (train, test)]
    return parts[0], parts[1]


def _tune_note(raw: Counter, counts: Counter, untyped: int, repeated: int) -> str:
    merged = {}
    for (value, kind), _ in sorted(raw.items()):
        if value != kind:
            merged.setdefault(kind, []).append(repr(value))
    merges = "; ".join(f"{kind} <- {', '.join(values)}" for kind, values in sorted(merged.items()))
    small = ", ".join(f"{kind} ({c})" for kind, c in counts.most_common() if c < MIN_TUNES)
    return (f"merged: {merges}. dropped: {untyped} tunes without a type (no or empty R:), "
            f"{repeated} repeating the notes of an earlier tune, types under {MIN_TUNES} tunes: "
            f"{small or 'none'}")


def _read_bundled(name: str) -> tuple[Examples, Examples]:
    if name == "tune-types":
        return _read_tune_types()
    assert name in UCR_SETS, name
    parts = []
    for file, note in zip(ucr_files(name), ("official train split", "official test split"),
                          strict=True):
        items, found, names, features = read_ts(file, labels=True, display=file.name)
        parts.append(Examples("series", items, found, names, features, name, note))
    return parts[0], parts[1]


# splits --------------------------------------------------------------------------------------
def stratified_split(labels: list[str], fraction: float, seed: int, *, source: str = ""
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices), both sorted: per class ``round(fraction * n)``
    examples validate, at least one, and at least one stays for training. The same labels and
    seed give the same split. ``source`` names the data in errors."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the validation fraction must be in (0, 1), got {fraction}")
    where = f" in {source}" if source else ""
    counts = Counter(labels)
    if len(counts) < 2:
        only = f" ({next(iter(counts))!r})" if counts else ""
        raise ValueError(f"one class only{only}{where}: a classifier needs at least two")
    labels_array = np.asarray(labels, dtype=object)
    rng = np.random.default_rng(seed)
    chosen = []
    for kind in sorted(counts):
        n = counts[kind]
        if n < 2:
            raise ValueError(f"class {kind!r} has {n} example{where}; the validation split "
                             "needs at least 2 per class")
        members = np.flatnonzero(labels_array == kind)
        chosen.append(rng.permutation(members)[:min(max(1, round(fraction * n)), n - 1)])
    validate = np.sort(np.concatenate(chosen))
    train = np.setdiff1d(np.arange(len(labels)), validate)
    return train, validate
