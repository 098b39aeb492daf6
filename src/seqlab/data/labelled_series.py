"""Labelled series for classification: sktime ``.ts`` files, long-form CSV, gap filling and
per-channel standardisation.

Every reader returns ``(items, labels, names, features)``: items are float32 arrays of shape
(T_i, C), labels are strings or None when the source has none, names say where each series came
from (``FILE:N`` for the N-th case of a .ts file, the id for CSV), features name the C channels.

Gaps (``?`` in .ts, NaN or an empty cell in CSV) are errors naming file and line unless a fill
says what to put there: ``forward`` carries the last value (a leading gap takes the first valid
value), ``linear`` interpolates over time per channel (constant beyond the ends), ``zero``
writes 0. Infinite values are errors whatever the fill: no fill can say what they meant.
"""

from __future__ import annotations

import codecs
import datetime as dt
import importlib.util
import math
import tempfile
from pathlib import Path

import numpy as np

from seqlab.data.text import csv_rows, read_utf8, text_lines

FILLS = ("none", "forward", "linear", "zero")
SERIES_EXTRA = "reading .ts files needs the series extra: pip install 'seqlab[series]'"
MISSING = frozenset({"", "?", "nan", "na", "n/a", "null"})  # CSV cells read as gaps
# bundled name -> the folder inside sktime's datasets/data holding NAME_TRAIN.ts, NAME_TEST.ts
UCR_SETS = {"japanese-vowels": "JapaneseVowels", "gunpoint": "GunPoint",
            "italy-power": "ItalyPowerDemand"}
Series = tuple[list[np.ndarray], list[str | None] | None, list[str], list[str]]


# gaps ----------------------------------------------------------------------------------------
def check_values(values: np.ndarray, fill: str, where, features: list[str]) -> np.ndarray:
    """(T, C) float64 values with gaps filled; ``where`` (file and line, or a function of the
    step giving them: a long CSV has a line per step) starts each error."""
    at = where if callable(where) else lambda step: where
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
    bad = np.isinf(values)
    if bad.any():
        step, channel = np.argwhere(bad)[0]
        raise ValueError(f"{at(step)}: infinite value in channel {features[channel]!r} at step "
                         f"{step + 1} (no fill can replace it; fix the data)")
    gaps = np.isnan(values)
    if not gaps.any():
        return values
    if fill == "none":
        step, channel = np.argwhere(gaps)[0]
        raise ValueError(f"{at(step)}: missing value in channel {features[channel]!r} at step "
                         f"{step + 1}; gaps need a fill (forward, linear or zero), chosen "
                         "when the run is trained (--fill)")
    if fill == "zero":
        return np.where(gaps, 0.0, values)
    empty = gaps.all(axis=0)
    if empty.any():
        channel = int(np.argmax(empty))
        raise ValueError(f"{at(0)}: channel {features[channel]!r} has no value at all; fill "
                         f"{fill!r} needs at least one (fill zero would write zeros)")
    return np.stack([_fill_channel(values[:, c], fill) for c in range(values.shape[1])], 1)


def _fill_channel(x: np.ndarray, fill: str) -> np.ndarray:
    """One channel (T,) with at least one valid value, its NaNs filled."""
    valid = ~np.isnan(x)
    steps = np.arange(len(x))
    if fill == "linear":  # np.interp holds the end values beyond the first and last valid step
        return np.interp(steps, steps[valid], x[valid])
    last = np.maximum.accumulate(np.where(valid, steps, -1))  # last valid step at or before t
    last[last < 0] = int(np.argmax(valid))  # a leading gap takes the first valid value
    return x[last]


# .ts -----------------------------------------------------------------------------------------
def _tags(lines: list[str]) -> tuple[dict[str, str], int]:
    """The ``@tag value`` lines before ``@data`` (lower-cased tags) and the index of @data."""
    tags = {}
    for k, line in enumerate(lines):
        text = line.strip()
        if text.lower() == "@data":
            return tags, k
        if text.startswith("@"):
            name, _, value = text.partition(" ")
            tags[name.lower()] = value.strip()
    return tags, len(lines)


def _cases(lines: list[str]) -> list[tuple[int, str]]:
    """(index, stripped text) of each case line after ``@data``: neither blank nor a comment."""
    _, start = _tags(lines)
    return [(k, text) for k in range(start + 1, len(lines))
            if (text := lines[k].strip()) and not text.startswith("#")]


def _prescan_ts(path: Path, lines: list[str], has_labels: bool
                ) -> tuple[list[int], list[str]]:
    """The 1-based line of each case and its label as written (sktime lower-cases labels), after
    checking that every case has as many ':'-separated dimensions as the first."""
    tags, _ = _tags(lines)
    declared = set(tags.get("@classlabel", "").split()[1:])
    spelled = {d.lower(): d for d in declared}
    numbers, labels, expected = [], [], None
    for k, text in _cases(lines):
        parts = text.split(":")
        count = len(parts) - has_labels
        if expected is None:
            expected, first = count, k + 1
        elif count != expected:
            raise ValueError(f"{path} line {k + 1}: {count} dimensions, but the first case "
                             f"(line {first}) has {expected}; every case needs the same "
                             "number of ':'-separated dimensions")
        if has_labels:
            label = parts[-1].strip()
            if declared and label.lower() not in spelled:
                raise ValueError(f"{path} line {k + 1}: class {label!r} is not among those "
                                 f"declared by @classLabel ({', '.join(sorted(declared))})")
            labels.append(spelled.get(label.lower(), label))  # as declared: `down` is `Down`
        numbers.append(k + 1)
    if not numbers:
        raise ValueError(f"{path}: no cases after @data")
    return numbers, labels


def _labels_as_written(lines: list[str], found: list[str]) -> list[str]:
    """A timestamped file's labels as written (sktime lower-cases them): the text after each
    case's last ':' (its times sit inside parentheses before it), where it agrees with
    sktime's label but for case."""
    written = [case.rsplit(":", 1)[-1].strip() for _, case in _cases(lines)]
    if len(written) != len(found) or any(w.lower() != f.lower()
                                         for w, f in zip(written, found, strict=True)):
        return found
    return written


def _locate_bad_number(path: Path, lines: list[str], numbers: list[int], has_labels: bool
                       ) -> str:
    """Where sktime's plain "could not convert" came from: the first value that is no number."""
    for number in numbers:
        parts = lines[number - 1].strip().split(":")
        for d, part in enumerate(parts[:len(parts) - has_labels]):
            for value in filter(None, (v.strip() for v in part.split(","))):
                try:
                    float("nan" if value == "?" else value)
                except ValueError:
                    return f"{path} line {number}: dimension {d + 1}: {value!r} is not a number"
    return ""


def _load_ts(path: Path, lines: list[str]):
    """sktime's reading of a .ts file; ``lines``: its text's lines. A byte-order mark and
    comment lines among the cases (seqlab skips both, sktime reads them as data) are left out
    of a copy it reads instead, comments as blank lines, so that its line numbers hold."""
    try:
        from sktime.datasets import load_from_tsfile_to_dataframe
    except ImportError:
        raise ValueError(SERIES_EXTRA) from None
    _, start = _tags(lines)
    cases = [line if k <= start or not line.strip().startswith("#") else ""
             for k, line in enumerate(lines)]
    with open(path, "rb") as file:  # the first bytes only: the text is read already
        plain = file.read(len(codecs.BOM_UTF8)) != codecs.BOM_UTF8 and cases == lines
    try:
        if plain:
            return load_from_tsfile_to_dataframe(str(path), return_separate_X_and_y=True,
                                                 replace_missing_vals_with="NaN")
        with tempfile.TemporaryDirectory() as folder:
            copy = Path(folder) / Path(path).name
            copy.write_text("\n".join(cases) + "\n", encoding="utf-8")
            return load_from_tsfile_to_dataframe(str(copy), return_separate_X_and_y=True,
                                                 replace_missing_vals_with="NaN")
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None  # sktime's own lines count from 1 too


def read_ts(path: Path, fill: str = "none", labels: bool = True, display: str = "") -> Series:
    """A univariate or multivariate .ts file, of equal or varying lengths, via sktime's loader.

    ``display`` names the file in item names (default: the path as given).
    """
    if importlib.util.find_spec("sktime") is None:
        raise ValueError(SERIES_EXTRA)
    lines = text_lines(read_utf8(path))
    tags, _ = _tags(lines)
    has_labels = tags.get("@classlabel", tags.get("@targetlabel", "false")).lower()
    has_labels = has_labels.split()[0] == "true" if has_labels else False
    if labels and not has_labels:
        raise ValueError(f"{path}: no class labels (@classLabel false); training needs them")
    timestamps = tags.get("@timestamps", "false").lower() == "true"
    numbers, written = [], []
    if not timestamps:  # with timestamps a ':' may sit inside a time; sktime checks those lines
        numbers, written = _prescan_ts(path, lines, has_labels)
    try:
        loaded = _load_ts(path, lines)
    except ValueError as err:
        if not numbers or "could not convert" not in str(err):
            raise
        raise ValueError(_locate_bad_number(path, lines, numbers, has_labels) or str(err)
                         ) from None
    frame, found = loaded if has_labels else (loaded, None)
    features = [str(c) for c in frame.columns]
    display = display or str(path)
    items = []
    for i in range(len(frame)):
        where = f"{path} line {numbers[i]} (case {i + 1})" if numbers else f"{path} case {i + 1}"
        channels = [np.asarray(frame.iat[i, c], dtype=np.float64) for c in range(frame.shape[1])]
        lengths = {len(x) for x in channels}
        if len(lengths) > 1:
            raise ValueError(f"{where}: channels of different lengths ({sorted(lengths)}); "
                             "a case needs one length for all its channels")
        if 0 in lengths:
            raise ValueError(f"{where}: no values")
        values = check_values(np.stack(channels, axis=1), fill, where, features)
        items.append(values.astype(np.float32))
    if has_labels:
        written = written or _labels_as_written(lines, [str(v) for v in found])
    names = [f"{display}:{i + 1}" for i in range(len(items))]
    return items, (written if has_labels else None), names, features


def ucr_files(name: str) -> tuple[Path, Path]:
    """The official TRAIN and TEST .ts files of a bundled UCR/UEA set inside sktime."""
    spec = importlib.util.find_spec("sktime")  # finds the folder without importing sktime
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"{name!r} needs the series extra: pip install 'seqlab[series]'")
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    stem = UCR_SETS[name]
    files = folder / stem / f"{stem}_TRAIN.ts", folder / stem / f"{stem}_TEST.ts"
    for file in files:
        if not file.is_file():
            raise ValueError(f"{name!r}: {file} is missing from the installed sktime")
    return files


# long-form CSV -------------------------------------------------------------------------------
def _columns(path: Path, header: list[str], labels: bool) -> dict[str, int]:
    names = [h.strip() for h in header]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{path} line 1: column {repeated[0]!r} appears twice")
    wanted = ("id", "time", "label") if labels else ("id", "time")
    missing = [w for w in wanted if w not in names]
    if missing:
        raise ValueError(f"{path} line 1: no {missing[0]!r} column; long-form CSV needs the "
                         f"header id,time,<features...>,label (found: {','.join(names)})")
    if len(set(names) - {"id", "time", "label"}) == 0:
        raise ValueError(f"{path} line 1: no feature columns besides id, time and label")
    return {n: k for k, n in enumerate(names)}


def _time(text: str, where: str) -> float:
    """A time: a number, or an ISO 8601 date or date-time (as seconds)."""
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            raise ValueError(f"{where}: time {text!r} is not a finite number")
        return number
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{where}: time {text!r} is neither a number nor an ISO date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def _value(text: str, column: str, where: str) -> float:
    text = text.strip()
    if text.lower() in MISSING:
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: column {column!r} is not a number: {text!r}") from None


def read_long_csv(path: Path, fill: str = "none", labels: bool = True) -> Series:
    """Long-form CSV: ``id,time,<features...>,label`` rows, those of an id together and sorted by
    time. The time values only order the steps: a series is its rows, evenly spaced or not."""
    found = csv_rows(path)
    header = found[0][1] if found else None
    if header is None:
        raise ValueError(f"{path}: empty; expected the header id,time,<features...>,label")
    cols = _columns(path, header, labels)
    features = [n for n in cols if n not in ("id", "time", "label")]
    rows: dict[str, list] = {}  # id -> [(line, time, values)], in file order
    label_of: dict[str, tuple[str, int]] = {}
    last_id = None
    for line, row in found[1:]:
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path} line {line}"
        if len(row) != len(cols):
            raise ValueError(f"{where}: {len(row)} fields, the header has {len(cols)}")
        key = row[cols["id"]].strip()
        if not key:
            raise ValueError(f"{where}: empty id")
        if key != last_id and key in rows:
            raise ValueError(f"{where}: id {key!r} again after other ids; the rows of an id "
                             "must be together")
        time = _time(row[cols["time"]], where)
        if key in rows and time <= rows[key][-1][1]:
            raise ValueError(f"{where}: time {row[cols['time']].strip()!r} of id {key!r} is not "
                             f"after the time of line {rows[key][-1][0]}; sort each id's rows "
                             "by time, without repeats")
        values = [_value(row[cols[f]], f, where) for f in features]
        rows.setdefault(key, []).append((line, time, values))
        last_id = key
        if "label" in cols:
            _check_label(row[cols["label"]].strip(), key, line, label_of, where, labels)
    if not rows:
        raise ValueError(f"{path}: no rows after the header")
    items = [check_values(np.array([r[2] for r in steps], dtype=np.float64), fill,
                          lambda t, steps=steps, key=key: f"{path} line {steps[t][0]} (id {key!r})",
                          features).astype(np.float32) for key, steps in rows.items()]
    found = [label_of.get(key, (None,))[0] for key in rows] if "label" in cols else None
    return items, found, list(rows), features


def _check_label(label: str, key: str, line: int, label_of: dict, where: str,
                 required: bool) -> None:
    if not label:
        if required:
            raise ValueError(f"{where}: empty label")
        return
    first = label_of.setdefault(key, (label, line))
    if first[0] != label:
        raise ValueError(f"{where}: id {key!r} has label {label!r} here but {first[0]!r} at "
                         f"line {first[1]}; a series has one label")


# standardisation -----------------------------------------------------------------------------
class Standardizer:
    """Per-channel mean and standard deviation over every time step of the training series:
    fit on training data only, apply the same numbers to validation, test and predict inputs."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)  # (C,)
        self.std = np.asarray(std, dtype=np.float64)  # (C,), no zeros
        if self.mean.shape != self.std.shape or self.mean.ndim != 1:
            raise ValueError(f"Standardizer: mean and std must be two vectors of one length, "
                             f"got shapes {self.mean.shape} and {self.std.shape}")
        if not (np.isfinite(self.mean).all() and (np.isfinite(self.std) & (self.std > 0)).all()):
            raise ValueError("Standardizer: mean must be finite and std finite and positive")

    @classmethod
    def fit(cls, series: list[np.ndarray]) -> Standardizer:
        if not series:
            raise ValueError("Standardizer.fit: no training series")
        steps = np.concatenate([_check_shape(x, series[0].shape[-1]) for x in series])  # (ΣT, C)
        steps = steps.astype(np.float64)
        if not np.isfinite(steps).all():
            raise ValueError("Standardizer.fit: the training series hold NaN or inf; read them "
                             "with a fill")
        std = steps.std(axis=0)
        return cls(steps.mean(axis=0), np.where(std > 0, std, 1.0))  # a constant channel: 1

    def apply(self, series: list[np.ndarray]) -> list[np.ndarray]:
        return [((_check_shape(x, len(self.mean)) - self.mean) / self.std).astype(np.float32)
                for x in series]

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Standardizer:
        if not isinstance(d, dict) or set(d) != {"mean", "std"}:
            raise ValueError(f"Standardizer.from_dict: expected keys mean and std, got "
                             f"{sorted(d) if isinstance(d, dict) else type(d).__name__}")
        return cls(np.asarray(d["mean"], dtype=np.float64), np.asarray(d["std"], np.float64))


def _check_shape(x: np.ndarray, channels: int) -> np.ndarray:
    if x.ndim != 2 or x.shape[1] != channels:
        raise ValueError(f"Standardizer: expected a series of shape (T, {channels}), got "
                         f"{tuple(x.shape)}")
    return x
