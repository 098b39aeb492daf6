"""Vocabularies: text <-> token ids, at the level of characters, words or byte-level BPE.

Every vocabulary has ``kind``, ``size``, ``encode(text) -> np.ndarray``, ``decode(ids) -> str``
and ``save(folder)``; :func:`load_vocab` reads back what ``save`` wrote. Encoding is vectorised
(numpy over code points for characters, the ``tokenizers`` library for BPE) so that a 100 MB
text never becomes a Python object per character.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from seqlab.io import atomic_write_text

CHUNK_CHARS = 1 << 22  # encode 4M characters at a time: bounded transient memory
WORD_PATTERN = re.compile(r"\s+|\w+|[^\w\s]")
UNK = "<unk>"


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _chunks(text: str) -> Iterable[str]:
    for start in range(0, len(text), CHUNK_CHARS):
        yield text[start:start + CHUNK_CHARS]


def _id_dtype(size: int) -> np.dtype:
    return np.dtype(np.int16) if size < 2**15 else np.dtype(np.int32)


def _describe(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(s) for s in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


class CharVocab:
    """One token per Unicode character; ids in code-point order."""

    kind = "char"

    def __init__(self, chars: Sequence[str]) -> None:
        if not chars:
            raise ValueError("CharVocab: no characters")
        if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError("CharVocab: expected distinct single characters")
        self.tokens = sorted(chars)
        self._points = np.array([ord(c) for c in self.tokens], dtype=np.uint32)

    @classmethod
    def build(cls, text: str) -> CharVocab:
        seen = np.zeros(0, dtype=np.uint32)
        for chunk in _chunks(text):
            seen = np.union1d(seen, np.unique(_code_points(chunk)))
        return cls([chr(p) for p in seen])

    @property
    def size(self) -> int:
        return len(self.tokens)

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of text that are not in the vocabulary."""
        missing = np.setdiff1d(np.unique(_code_points(text)), self._points)
        return [chr(p) for p in missing]

    def encode(self, text: str) -> np.ndarray:
        out = np.empty(len(text), dtype=_id_dtype(self.size))
        start = 0
        for chunk in _chunks(text):
            points = _code_points(chunk)
            ids = np.searchsorted(self._points, points)
            ids = np.minimum(ids, self.size - 1)
            bad = self._points[ids] != points
            if bad.any():
                missing = sorted({chr(p) for p in np.unique(points[bad])})
                raise ValueError(f"characters outside the vocabulary: {_describe(missing)}")
            out[start:start + len(chunk)] = ids
            start += len(chunk)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.tokens[int(i)] for i in ids)

    def save(self, folder: Path) -> None:
        data = {"kind": self.kind, "tokens": self.tokens}
        atomic_write_text(Path(folder) / "vocab.json", json.dumps(data, ensure_ascii=False))


class WordVocab:
    """Words, punctuation marks and whitespace runs as tokens, so decode(encode(t)) == t.

    Words not seen when the vocabulary was built map to ``<unk>`` in data; in a prompt they are
    an error that names them.
    """

    kind = "word"

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        if UNK not in tokens:
            tokens = [UNK] + tokens
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def build(cls, text: str) -> WordVocab:
        return cls(sorted(set(WORD_PATTERN.findall(text))))

    @property
    def size(self) -> int:
        return len(self.tokens)

    def unknown(self, text: str) -> list[str]:
        return sorted({w for w in WORD_PATTERN.findall(text) if w not in self.index})

    def encode(self, text: str, strict: bool = False) -> np.ndarray:
        if strict and (missing := self.unknown(text)):
            raise ValueError(f"words outside the vocabulary: {_describe(missing)}")
        unk = self.index[UNK]
        return np.fromiter((self.index.get(w, unk) for w in WORD_PATTERN.findall(text)),
                           dtype=_id_dtype(self.size))

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.tokens[int(i)] for i in ids)

    def save(self, folder: Path) -> None:
        data = {"kind": self.kind, "tokens": self.tokens}
        atomic_write_text(Path(folder) / "vocab.json", json.dumps(data, ensure_ascii=False))


class BPEVocab:
    """Byte-level BPE through the ``tokenizers`` library: any text encodes, nothing is unknown."""

    kind = "bpe"

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    @classmethod
    def build(cls, text: str, vocab_size: int = 1024) -> BPEVocab:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tokenizer.train_from_iterator(_chunks(text), trainer=trainer)
        return cls(tokenizer)

    @property
    def size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def unknown(self, text: str) -> list[str]:
        return []

    def encode(self, text: str) -> np.ndarray:
        parts = [np.asarray(self.tokenizer.encode(chunk).ids, dtype=_id_dtype(self.size))
                 for chunk in _chunks(text)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=_id_dtype(self.size))

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids])

    def save(self, folder: Path) -> None:
        atomic_write_text(Path(folder) / "tokenizer.json", self.tokenizer.to_str())


Vocab = CharVocab | WordVocab | BPEVocab
TOKENIZERS = ("char", "word", "bpe")


def build_vocab(text: str, kind: str = "char", bpe_vocab_size: int = 1024) -> Vocab:
    if kind == "char":
        return CharVocab.build(text)
    if kind == "word":
        return WordVocab.build(text)
    if kind == "bpe":
        return BPEVocab.build(text, bpe_vocab_size)
    raise ValueError(f"unknown tokenizer {kind!r}; choose from {', '.join(TOKENIZERS)}")


def load_vocab(folder: Path) -> Vocab:
    folder = Path(folder)
    if (folder / "tokenizer.json").exists():
        from tokenizers import Tokenizer

        try:
            return BPEVocab(Tokenizer.from_file(str(folder / "tokenizer.json")))
        except Exception as err:  # tokenizers raises its own exception types
            raise ValueError(f"{folder / 'tokenizer.json'}: not a valid tokenizer ({err})") from err
    path = folder / "vocab.json"
    if not path.exists():
        raise FileNotFoundError(f"{folder}: no vocab.json or tokenizer.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        kind, tokens = data["kind"], data["tokens"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a valid vocabulary file ({err})") from err
    if kind == "char":
        return CharVocab(tokens)
    if kind == "word":
        return WordVocab(tokens)
    raise ValueError(f"{path}: unknown vocabulary kind {kind!r}")


def check_prompt(vocab: Vocab, prompt: str) -> None:
    """Raise ValueError naming every symbol of the prompt that the vocabulary lacks."""
    missing = vocab.unknown(prompt)
    if missing:
        what = "characters" if vocab.kind == "char" else "words"
        raise ValueError(f"the prompt has {what} outside the vocabulary: {_describe(missing)}")
