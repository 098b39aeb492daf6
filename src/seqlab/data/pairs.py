"""Source/target pairs: a TSV file, or a built-in task generated from a seed.

TSV: one ``source<TAB>target`` pair per line, UTF-8; empty lines are skipped; a line without
exactly one tab, or with an empty side, is an error that names its line number.

Built-in tasks (nothing to download; the same seed gives the same pairs):

- ``dates``: a date written by a human in one of many formats ("Wednesday, 25 November 2026",
  "11/25/26", "25th of Nov 2026", ...) -> ISO ``2026-11-25``;
- ``reverse``, ``sort``: a string of symbols -> the same reversed / sorted; ``length`` "N" or
  "MIN-MAX" symbols;
- ``addition``: "123+4567" -> "4690"; ``length`` is the number of digits of each operand.

:class:`PairVocab` puts three special ids in front of a character, word or BPE vocabulary:
0 padding, 1 begin, 2 end.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from seqlab.data import IGNORE
from seqlab.data.text import read_text_file, text_lines
from seqlab.data.vocab import WORD_PATTERN, Vocab, WordVocab, build_vocab, load_vocab

PAD, BOS, EOS = 0, 1, 2
SPECIALS = 3
Pair = tuple[str, str]


# TSV ---------------------------------------------------------------------------------------
def read_pairs(path: str | Path) -> list[Pair]:
    """Every ``source<TAB>target`` line of a UTF-8 file, in order."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (built-in tasks: {', '.join(TASKS)})")
    if path.is_dir():
        raise ValueError(f"{path}: a folder; expected a TSV file of source<TAB>target lines")
    pairs = []
    for number, line in enumerate(text_lines(read_text_file(path)), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise ValueError(f"{path} line {number}: expected exactly one tab between source "
                             f"and target, found {len(parts) - 1}")
        for side, text in zip(("source", "target"), parts, strict=True):
            if not text.strip():
                raise ValueError(f"{path} line {number}: empty {side}")
        pairs.append((parts[0], parts[1]))
    if not pairs:
        raise ValueError(f"{path}: no source<TAB>target pairs")
    return pairs


# built-in tasks ----------------------------------------------------------------------------
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
FIRST_DAY, LAST_DAY = dt.date(1950, 1, 1).toordinal(), dt.date(2049, 12, 31).toordinal()


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# each format: date -> text; many share the numbers but differ in order, padding and words
DATE_FORMATS: tuple[Callable[[dt.date], str], ...] = (
    lambda d: f"{DAYS[d.weekday()]}, {d.day} {MONTHS[d.month - 1]} {d.year}",
    lambda d: f"{DAYS[d.weekday()][:3]} {d.day} {MONTHS[d.month - 1][:3]} {d.year}",
    lambda d: f"{d.month}/{d.day}/{d.year % 100:02d}",
    lambda d: f"{d.month:02d}/{d.day:02d}/{d.year}",
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
    lambda d: f"{d.day}.{d.month}.{d.year}",
    lambda d: f"{ordinal(d.day)} of {MONTHS[d.month - 1][:3]} {d.year}",
    lambda d: f"{ordinal(d.day)} of {MONTHS[d.month - 1]}, {d.year}",
    lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
    lambda d: f"{MONTHS[d.month - 1][:3]} {d.day}, {d.year}",
    lambda d: f"{MONTHS[d.month - 1][:3].upper()} {d.day:02d} {d.year}",
    lambda d: f"{d.day} {MONTHS[d.month - 1].lower()} {d.year}",
    lambda d: f"{DAYS[d.weekday()]}, {MONTHS[d.month - 1]} {ordinal(d.day)}, {d.year}",
    lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",
    lambda d: f"{d.year}.{d.month}.{d.day}",
    lambda d: f"{d.day}-{MONTHS[d.month - 1][:3]}-{d.year % 100:02d}",
    lambda d: f"{d.day} {MONTHS[d.month - 1][:3]}. {d.year}",
    lambda d: f"{DAYS[d.weekday()].lower()} {d.day} {MONTHS[d.month - 1].lower()} {d.year}",
)
# Every source names one date: slashes are month-first (or year-first), dots day-first (or
# year-first), and two-digit years stand for 1950-2049, the range drawn from.


def date_pair(rng: random.Random) -> Pair:
    date = dt.date.fromordinal(rng.randint(FIRST_DAY, LAST_DAY))
    return rng.choice(DATE_FORMATS)(date), date.isoformat()


SYMBOLS = "abcdefghijklmnopqrstuvwxyz"


def parse_length(text: str, default: tuple[int, int], minimum: int = 1) -> tuple[int, int]:
    """"N" or "MIN-MAX" -> (min, max), both >= ``minimum``; "" -> default."""
    if not text:
        return default
    try:
        low, _, high = text.partition("-")
        bounds = (int(low), int(high or low))
    except ValueError:
        raise ValueError(f"length must be N or MIN-MAX, got {text!r}") from None
    if not minimum <= bounds[0] <= bounds[1]:
        raise ValueError(f"length must be N or MIN-MAX with {minimum} <= MIN <= MAX, got "
                         f"{text!r}")
    return bounds


def symbols_pair(rng: random.Random, bounds: tuple[int, int], kind: str) -> Pair:
    source = "".join(rng.choice(SYMBOLS) for _ in range(rng.randint(*bounds)))
    return source, source[::-1] if kind == "reverse" else "".join(sorted(source))


def addition_pair(rng: random.Random, bounds: tuple[int, int]) -> Pair:
    a, b = (_number(rng, rng.randint(*bounds)) for _ in range(2))
    return f"{a}+{b}", str(a + b)


MAX_DIGITS = 4000  # sys.get_int_max_str_digits() is 4300 by default; the sum has one more


def _number(rng: random.Random, digits: int) -> int:
    """A number of exactly ``digits`` digits (0 counts as one)."""
    return rng.randrange(0 if digits == 1 else 10 ** (digits - 1), 10 ** digits)


# name -> (default length bounds, generator of one pair)
TASKS: dict[str, tuple[tuple[int, int], Callable[[random.Random, tuple[int, int]], Pair]]] = {
    "dates": ((0, 0), lambda rng, bounds: date_pair(rng)),
    "reverse": ((5, 20), lambda rng, bounds: symbols_pair(rng, bounds, "reverse")),
    "sort": ((5, 20), lambda rng, bounds: symbols_pair(rng, bounds, "sort")),
    "addition": ((1, 5), addition_pair),
}


def task_alphabet(task: str) -> Pair:
    """Every symbol a task's (source, target) can hold, so that a vocabulary built from a few
    drawn pairs still covers the held-out ones."""
    if task == "dates":
        days = [dt.date(2001, month, 1) + dt.timedelta(days=k) for month in range(1, 13)
                for k in range(7)]
        digits = "0123456789"
        return "".join(fmt(day) for fmt in DATE_FORMATS for day in days) + digits, digits + "-"
    if task == "addition":
        return "0123456789+", "0123456789"
    return SYMBOLS, SYMBOLS


def is_task_name(source: str) -> bool:
    return source in TASKS and not Path(source).exists()


# the built-in tasks whose pairs --length shapes (dates have length bounds of (0, 0): none)
LENGTH_TASKS = tuple(name for name, (bounds, _) in TASKS.items() if bounds != (0, 0))


def generate_pairs(task: str, count: int, seed: int, length: str = "",
                   exclude: Iterable[str] = ()) -> list[Pair]:
    """``count`` pairs of a built-in task, none of whose sources is in ``exclude``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; built-in tasks: {', '.join(TASKS)}")
    default, make = TASKS[task]
    bounds = parse_length(length, default)
    if task == "addition" and bounds[1] > MAX_DIGITS:
        raise ValueError(f"addition: --length is digits per operand, at most {MAX_DIGITS} "
                         f"(Python's limit for turning a number into text), got {bounds[1]}")
    rng, excluded, pairs = random.Random(f"{task}:{seed}"), set(exclude), []
    for _ in range(100 * count + 1000):  # a tiny space (reverse of length 1) may run dry
        pair = make(rng, bounds)
        if pair[0] not in excluded:
            pairs.append(pair)
            if len(pairs) == count:
                return pairs
    raise ValueError(f"task {task!r} with length {length!r}: could not draw {count} distinct "
                     "held-out pairs; widen --length")


# vocabulary --------------------------------------------------------------------------------
class PairVocab:
    """A base vocabulary behind three special ids (padding, begin, end)."""

    def __init__(self, base: Vocab) -> None:
        self.base = base
        self.kind = base.kind

    @classmethod
    def build(cls, texts: Sequence[str], kind: str = "char", bpe_vocab_size: int = 1024
              ) -> PairVocab:
        if kind == "char":  # joined by nothing: no separator enters the vocabulary
            return cls(build_vocab("".join(texts), kind))
        if kind == "word":
            return cls(WordVocab(sorted({w for t in texts for w in WORD_PATTERN.findall(t)})))
        return cls(build_vocab("\n".join(texts), kind, bpe_vocab_size))

    @property
    def size(self) -> int:
        return self.base.size + SPECIALS

    def unknown(self, text: str) -> list[str]:
        return self.base.unknown(text)

    def encode(self, text: str) -> list[int]:
        return (np.asarray(self.base.encode(text), dtype=np.int64) + SPECIALS).tolist()

    def decode(self, ids: Iterable[int]) -> str:
        return self.base.decode(i - SPECIALS for i in ids if i >= SPECIALS)

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """One string per id, for axis labels."""
        return [self.base.decode([i - SPECIALS]) if i >= SPECIALS else "" for i in ids]

    def save(self, folder: Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.base.save(folder)

    @classmethod
    def load(cls, folder: Path) -> PairVocab:
        return cls(load_vocab(folder))


@dataclass
class Vocabs:
    """The source and target vocabularies of an encoder-decoder (the same object when shared)."""

    source: PairVocab
    target: PairVocab

    @classmethod
    def build(cls, pairs: list[Pair], shared: bool, tokenizer: str, bpe_size: int) -> Vocabs:
        """Vocabularies of ``pairs``' sources and targets, or one of both when ``shared``."""
        sources, targets = [s for s, _ in pairs], [t for _, t in pairs]
        if shared:
            both = PairVocab.build(sources + targets, tokenizer, bpe_size)
            return cls(both, both)
        return cls(PairVocab.build(sources, tokenizer, bpe_size),
                   PairVocab.build(targets, tokenizer, bpe_size))


# batches -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairBatch:
    source: Tensor  # (B, S) int64, PAD past each length
    source_lengths: Tensor  # (B,) int64
    target_in: Tensor  # (B, T) BOS + target, PAD after
    target_out: Tensor  # (B, T) target + EOS, IGNORE after
    fresh: bool = True  # every batch starts from the encoder: no state is carried


def pad(rows: Sequence[Sequence[int]], value: int) -> Tensor:
    out = torch.full((len(rows), max(len(r) for r in rows)), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out


def make_batch(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> PairBatch:
    lengths = torch.tensor([len(s) for s in sources], dtype=torch.long)
    return PairBatch(pad(sources, PAD), lengths, pad([[BOS, *t] for t in targets], PAD),
                     pad([[*t, EOS] for t in targets], IGNORE))


class EncodedPairs:
    """Pairs as id lists, with random batches that are a pure function of the step."""

    def __init__(self, pairs: Sequence[Pair], source_vocab: PairVocab,
                 target_vocab: PairVocab) -> None:
        self.sources = [source_vocab.encode(s) for s, _ in pairs]
        self.targets = [target_vocab.encode(t) for _, t in pairs]
        for k, (s, t) in enumerate(zip(self.sources, self.targets, strict=True)):
            if not s or not t:
                side = "source" if not s else "target"
                raise ValueError(f"pair {k + 1}: the {side} encodes to no tokens: {pairs[k]!r}")

        # every batch is cut from these padded tables: no Python loop per example per step
        self.source_table = pad(self.sources, PAD)  # (N, S_max)
        self.source_lengths = torch.tensor([len(s) for s in self.sources], dtype=torch.long)
        self.target_in_table = pad([[BOS, *t] for t in self.targets], PAD)  # (N, T_max + 1)
        self.target_out_table = pad([[*t, EOS] for t in self.targets], IGNORE)
        self.target_lengths = torch.tensor([len(t) + 1 for t in self.targets], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.sources)

    def batch(self, index: Sequence[int]) -> PairBatch:
        """The pairs ``index`` as one batch, as ``make_batch`` would build it."""
        index = torch.as_tensor(list(index), dtype=torch.long)
        lengths = self.source_lengths[index]
        steps = int(self.target_lengths[index].max())
        return PairBatch(self.source_table[index, :int(lengths.max())], lengths,
                         self.target_in_table[index, :steps], self.target_out_table[index, :steps])

    def random_batch(self, step: int, batch_size: int, seed: int) -> PairBatch:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
        return self.batch(torch.randint(len(self), (batch_size,), generator=generator).tolist())

    def batches(self, batch_size: int) -> Iterable[PairBatch]:
        """The pairs in order, ``batch_size`` at a time."""
        for start in range(0, len(self), batch_size):
            yield self.batch(range(start, min(start + batch_size, len(self))))
