"""seqlab.data: vocabularies, text sources, the train/validation split and the batchers."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import seqlab
from seqlab.config import TrainConfig
from seqlab.data import vocab as vocab_module
from seqlab.data.streams import StreamBatches, WindowBatches, min_tokens
from seqlab.data.text import CORPORA, load_text, split_tokens
from seqlab.data.vocab import (
    UNK,
    BPEVocab,
    CharVocab,
    WordVocab,
    build_vocab,
    check_prompt,
    load_vocab,
)

pytestmark = pytest.mark.usefixtures("single_thread")

# accents, a CJK character and an emoji outside the BMP: one code point each, several bytes
UNICODE_TEXT = "Caf\u00e9 na h\u00c9ireann, \u4e2d \U0001f3b5!\n\tX: 1\nK: D  reel\n"


# vocabularies -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_round_trip(kind, tiny_text):
    text = tiny_text + UNICODE_TEXT
    vocab = build_vocab(text, kind, bpe_vocab_size=300)
    ids = vocab.encode(text)
    assert ids.ndim == 1 and np.issubdtype(ids.dtype, np.integer)
    assert 0 <= ids.min() and ids.max() < vocab.size
    assert vocab.decode(ids) == text


def test_char_vocab_is_sorted_distinct_characters():
    vocab = CharVocab.build("banana\n")
    assert vocab.tokens == ["\n", "a", "b", "n"]
    assert vocab.encode("nab").tolist() == [3, 1, 2]


def test_char_encoding_in_chunks_equals_a_dict_loop(monkeypatch, tiny_text):
    text = (UNICODE_TEXT + tiny_text[:500]) * 3
    monkeypatch.setattr(vocab_module, "CHUNK_CHARS", 7)  # ~300 chunks, boundaries mid-character run
    assert len(text) > 10 * vocab_module.CHUNK_CHARS
    vocab = CharVocab.build(text)
    assert vocab.tokens == sorted(set(text))
    index = {c: i for i, c in enumerate(vocab.tokens)}
    assert vocab.encode(text).tolist() == [index[c] for c in text]
    assert vocab.decode(vocab.encode(text)) == text


def test_char_unknown_characters_are_named(monkeypatch):
    vocab = CharVocab.build("abc")
    with pytest.raises(ValueError, match=r"characters outside the vocabulary: '!', 'z'$"):
        vocab.encode("abz!a")
    # also when the unknown character sits in a later chunk than the first
    monkeypatch.setattr(vocab_module, "CHUNK_CHARS", 4)
    with pytest.raises(ValueError, match=re.escape("outside the vocabulary: '\U0001f3b5'")):
        vocab.encode("abcabcab\U0001f3b5")
    assert vocab.unknown("zaz\u00e9") == ["z", "\u00e9"]


def test_char_vocab_rejects_bad_token_lists():
    with pytest.raises(ValueError, match="no characters"):
        CharVocab([])
    with pytest.raises(ValueError, match="distinct single characters"):
        CharVocab(["a", "a"])
    with pytest.raises(ValueError, match="distinct single characters"):
        CharVocab(["ab"])


def test_word_vocab_tokens_and_unknown_words():
    vocab = WordVocab.build("the cat,  the mat\n")
    assert vocab.tokens[0] == UNK
    assert vocab.decode(vocab.encode("the mat, the cat")) == "the mat, the cat"
    # unseen words become <unk> in data, but are an error in a strict encode (a prompt)
    ids = vocab.encode("the dog")
    assert ids.tolist() == [vocab.index["the"], vocab.index[" "], vocab.index[UNK]]
    with pytest.raises(ValueError, match=r"words outside the vocabulary: 'dog', 'zebra'"):
        vocab.encode("zebra the dog", strict=True)


def test_check_prompt_names_missing_symbols():
    with pytest.raises(ValueError, match=r"the prompt has characters outside the vocabulary: 'q'"):
        check_prompt(CharVocab.build("abc"), "aqa")
    with pytest.raises(ValueError, match=r"the prompt has words outside the vocabulary: 'dog'"):
        check_prompt(WordVocab.build("the cat"), "the dog")
    check_prompt(CharVocab.build("abc"), "cab")  # all known: no error


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_save_load_round_trip(kind, tmp_path, tiny_text):
    text = tiny_text + UNICODE_TEXT
    vocab = build_vocab(text, kind, bpe_vocab_size=300)
    vocab.save(tmp_path)
    loaded = load_vocab(tmp_path)
    assert type(loaded) is type(vocab) and loaded.kind == kind
    assert loaded.size == vocab.size
    assert np.array_equal(loaded.encode(text), vocab.encode(text))
    assert loaded.decode(vocab.encode(text)) == text


def test_bpe_vocab_has_no_unknowns_and_bounded_size(tiny_text):
    vocab = BPEVocab.build(tiny_text, vocab_size=300)
    assert 256 < vocab.size <= 300  # the 256 byte symbols plus merges; a tiny text runs out
    assert vocab.unknown("\u00fcber \U0001f3b5") == []
    assert vocab.decode(vocab.encode("\u00fcber \U0001f3b5")) == "\u00fcber \U0001f3b5"
    assert len(vocab.encode(tiny_text)) < len(tiny_text)  # merges happened


def test_load_vocab_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no vocab.json or tokenizer.json"):
        load_vocab(tmp_path)
    (tmp_path / "vocab.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not a valid vocabulary file"):
        load_vocab(tmp_path)
    (tmp_path / "vocab.json").write_text('{"kind": "morse", "tokens": ["."]}', encoding="utf-8")
    with pytest.raises(ValueError, match="unknown vocabulary kind 'morse'"):
        load_vocab(tmp_path)


def test_build_vocab_unknown_kind():
    with pytest.raises(ValueError, match="unknown tokenizer 'bytes'"):
        build_vocab("abc", "bytes")


# text sources -----------------------------------------------------------------------------
def test_load_text_file(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text(UNICODE_TEXT, encoding="utf-8")
    assert load_text(path) == UNICODE_TEXT
    assert load_text(str(path)) == UNICODE_TEXT


def test_load_text_folder_sorted_and_hidden_skipped(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / ".git").mkdir()
    (folder / "b.txt").write_text("B", encoding="utf-8")
    (folder / "a.txt").write_text("A", encoding="utf-8")
    (folder / "sub" / "c.txt").write_text("C", encoding="utf-8")
    (folder / ".hidden.txt").write_text("HIDDEN", encoding="utf-8")
    (folder / ".git" / "config").write_text("GIT", encoding="utf-8")
    (folder / "sub" / ".swap").write_bytes(b"\x00\x01")  # hidden and binary: never read
    assert load_text(folder) == "A\nB\nC"


def test_load_text_folder_without_files(tmp_path):
    (tmp_path / ".only_hidden").write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="the folder has no files"):
        load_text(tmp_path)


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_bundled_corpora(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a file named like the corpus in the cwd would win
    text = load_text(name)
    assert "X:" in text  # ABC tune headers
    assert text.count("X:") > 100
    assert len(text) > 100_000


def test_load_text_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_text(tmp_path / "absent.txt")
    with pytest.raises(FileNotFoundError, match=r"bundled corpora: oneills, ryans"):
        load_text("oneils")  # a misspelt corpus name gets a hint


@pytest.mark.parametrize(("content", "message"), [
    (b"", ": empty \\(only white space, or nothing\\)"),
    (b"  \n\t\n", ": empty \\(only white space, or nothing\\)"),
    (b"abc\x00def", ": looks binary \\(it contains NUL bytes\\), expected UTF-8 text"),
    (b"abc\xff\xfedef", " line 1: not UTF-8 text \\(invalid byte at offset 3\\)"),
    (b"\xef\xbb\xbfab\ncd\xff", " line 2: not UTF-8 text \\(invalid byte at offset 8\\)"),
])
def test_load_text_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(str(path)) + message):
        load_text(path)


def test_load_text_bad_file_inside_folder(tmp_path):
    (tmp_path / "a.txt").write_text("fine", encoding="utf-8")
    (tmp_path / "b.bin").write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match=r"b\.bin: looks binary"):
        load_text(tmp_path)


# train / validation split -------------------------------------------------------------------
def test_split_is_one_contiguous_block():
    tokens = torch.arange(1000)
    train, val = split_tokens(tokens, 0.25)
    assert torch.equal(train, tokens[:750]) and torch.equal(val, tokens[750:])


def test_default_split_holds_out_the_last_tenth(text_file):
    assert TrainConfig().val_fraction == 0.1
    data = seqlab.load_data(text_file)
    everything = torch.as_tensor(data.vocab.encode(text_file.read_text(encoding="utf-8")))
    n = len(everything)
    assert len(data.val_tokens) == n - round(0.9 * n)
    assert torch.equal(torch.cat([data.train_tokens, data.val_tokens]), everything)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_rejects_bad_fractions(fraction):
    with pytest.raises(ValueError, match="val_fraction must be in \\(0, 1\\)"):
        split_tokens(torch.arange(10), fraction)


# batchers ----------------------------------------------------------------------------------
def test_streams_are_contiguous_across_chunks():
    B, T = 3, 4
    tokens = torch.arange(3 * 11 + 1, dtype=torch.int16)  # 11 tokens per stream: chunks 4, 4, 3
    batches = StreamBatches(tokens, B, T)
    assert len(batches) == 3
    chunks = [batches[k] for k in range(len(batches))]
    assert [c.inputs.shape for c in chunks] == [(B, 4), (B, 4), (B, 3)]  # remainder is shorter
    assert all(c.inputs.dtype == torch.int64 and c.targets.dtype == torch.int64 for c in chunks)
    rows = torch.cat([c.inputs for c in chunks], dim=1)  # (B, 11)
    for b in range(B):
        # row b of chunk k+1 continues row b of chunk k: one unbroken stretch of the text
        assert torch.equal(rows[b], torch.arange(11 * b, 11 * (b + 1)))
    for c in chunks:
        assert torch.equal(c.targets, c.inputs + 1)  # targets are the next tokens
    assert [c.fresh for c in chunks] == [True, False, False]


def test_streams_wrap_into_a_fresh_epoch():
    batches = StreamBatches(torch.arange(2 * 8 + 1), 2, 4)  # 2 chunks per epoch
    assert [batches[s].fresh for s in range(5)] == [True, False, True, False, True]
    assert torch.equal(batches[2].inputs, batches[0].inputs)
    assert torch.equal(batches[5].targets, batches[1].targets)


def test_streams_targets_shift_by_one_on_real_text(tiny_text):
    vocab = CharVocab.build(tiny_text)
    tokens = torch.as_tensor(vocab.encode(tiny_text))
    batches = StreamBatches(tokens, 4, 8)
    for k in (0, 1, len(batches) - 1):
        chunk = batches[k]
        # inputs and targets overlap in all but one column
        assert torch.equal(chunk.inputs[:, 1:], chunk.targets[:, :-1])
    per_stream = (len(tokens) - 1) // 4
    assert torch.equal(batches[0].inputs[1], tokens[per_stream:per_stream + 8].long())


def test_streams_too_short():
    StreamBatches(torch.arange(min_tokens(4, 8)), 4, 8)  # exactly enough
    with pytest.raises(ValueError, match=r"too short for one training chunk: 32 tokens, need "
                                         r"at least 33"):
        StreamBatches(torch.arange(32), 4, 8)


def test_windows_deterministic_per_seed_and_step():
    tokens = torch.arange(500, dtype=torch.int32)
    a, b = WindowBatches(tokens, 4, 8, seed=7), WindowBatches(tokens, 4, 8, seed=7)
    later_first = b[9]  # the order of requests does not matter
    assert torch.equal(a[3].inputs, b[3].inputs) and torch.equal(a[9].inputs, later_first.inputs)
    assert not torch.equal(a[3].inputs, a[4].inputs)
    assert not torch.equal(a[3].inputs, WindowBatches(tokens, 4, 8, seed=8)[3].inputs)
    chunk = a[3]
    assert chunk.fresh and chunk.inputs.shape == (4, 8) and chunk.inputs.dtype == torch.int64
    # each row is one stretch of the text, and the targets are its next tokens
    assert torch.equal(chunk.inputs - chunk.inputs[:, :1], torch.arange(8).expand(4, 8))
    assert torch.equal(chunk.targets, chunk.inputs + 1)
    assert int(chunk.targets.max()) < len(tokens)


def test_windows_too_short():
    with pytest.raises(ValueError, match="too short for one training window: 8 tokens"):
        WindowBatches(torch.arange(8), 4, 8, seed=0)
