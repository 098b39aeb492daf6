"""Pairs: TSV reading and its errors, the generated tasks, the vocabulary and the batches."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
import torch

from seqlab.data.pairs import (
    BOS,
    DATE_FORMATS,
    EOS,
    IGNORE,
    PAD,
    TASKS,
    EncodedPairs,
    PairVocab,
    generate_pairs,
    make_batch,
    parse_length,
    read_pairs,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pairs.tsv"
    path.write_text(text, encoding="utf-8")
    return path


def test_read_pairs(tmp_path):
    path = write(tmp_path, "hello\tbonjour\n\nthe cat\tle chat\n")
    assert read_pairs(path) == [("hello", "bonjour"), ("the cat", "le chat")]


@pytest.mark.parametrize("text, message", [
    ("a\tb\nno tab here\n", r"pairs.tsv line 2: expected exactly one tab .* found 0"),
    ("a\tb\nc\td\ne\tf\tg\n", r"pairs.tsv line 3: expected exactly one tab .* found 2"),
    ("a\tb\n\t x\n", r"pairs.tsv line 2: empty source"),
    ("a\tb\nc\td\nx\t  \n", r"pairs.tsv line 3: empty target"),
    ("\n\n", r"pairs.tsv: no source<TAB>target pairs"),
])
def test_read_pairs_errors(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        read_pairs(write(tmp_path, text))


def test_read_pairs_missing_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope.tsv: no such file \(built-in tasks: dates"):
        read_pairs(tmp_path / "nope.tsv")
    with pytest.raises(ValueError, match="a folder; expected a TSV file"):
        read_pairs(tmp_path)


def test_generation_is_seeded_and_excludes():
    for task in TASKS:
        a, b = generate_pairs(task, 50, seed=3), generate_pairs(task, 50, seed=3)
        assert a == b
        assert a != generate_pairs(task, 50, seed=4)
        held_out = generate_pairs(task, 50, seed=5, exclude={s for s, _ in a})
        assert not {s for s, _ in held_out} & {s for s, _ in a}


def test_symbol_tasks_and_lengths():
    for source, target in generate_pairs("reverse", 200, 0, "7"):
        assert len(source) == 7 and target == source[::-1]
    lengths = set()
    for source, target in generate_pairs("sort", 300, 0, "3-5"):
        assert target == "".join(sorted(source))
        lengths.add(len(source))
    assert lengths == {3, 4, 5}
    for source, target in generate_pairs("addition", 300, 0, "1-3"):
        a, b = source.split("+")
        assert int(a) + int(b) == int(target) and 1 <= len(a) <= 3 and str(int(a)) == a


def test_every_date_source_names_one_date():
    """No format is ambiguous: a source never stands for two dates, and every target is the
    ISO form of a date its source could be parsed to."""
    rng, seen = random.Random(0), {}
    days = [dt.date(2000, 1, 1) + dt.timedelta(days=rng.randrange(36500)) for _ in range(400)]
    days += [dt.date(1950, 1, 1), dt.date(2049, 12, 31), dt.date(2003, 4, 5), dt.date(2005, 4, 3)]
    for day in days:
        for fmt in DATE_FORMATS:
            source = fmt(day)
            assert seen.setdefault(source, day) == day, source
    source, target = generate_pairs("dates", 1, 0)[0]
    assert dt.date.fromisoformat(target).isoformat() == target


def test_parse_length():
    assert parse_length("", (5, 20)) == (5, 20)
    assert parse_length("8", (5, 20)) == (8, 8)
    assert parse_length("5-60", (1, 1)) == (5, 60)
    with pytest.raises(ValueError, match="length must be N or MIN-MAX, got 'x'"):
        parse_length("x", (1, 1))
    with pytest.raises(ValueError, match="1 <= MIN <= MAX, got '9-3'"):
        parse_length("9-3", (1, 1))


def test_vocab_round_trip_and_specials(tmp_path):
    vocab = PairVocab.build(["abc", "cab"])
    ids = vocab.encode("cab")
    assert min(ids) >= 3 and vocab.size == 3 + 3
    assert vocab.decode([BOS, *ids, EOS, PAD]) == "cab"
    vocab.save(tmp_path / "v")
    assert PairVocab.load(tmp_path / "v").encode("cab") == ids
    words = PairVocab.build(["the cat", "a dog"], kind="word")
    assert words.decode(words.encode("the dog")) == "the dog"


def test_batches_pad_and_shift():
    batch = make_batch([[5, 6, 7], [8]], [[9], [10, 11]])
    assert batch.source.tolist() == [[5, 6, 7], [8, PAD, PAD]]
    assert batch.source_lengths.tolist() == [3, 1]
    assert batch.target_in.tolist() == [[BOS, 9, PAD], [BOS, 10, 11]]
    assert batch.target_out.tolist() == [[9, EOS, IGNORE], [10, 11, EOS]]


def test_random_batches_are_a_function_of_the_step():
    pairs = generate_pairs("reverse", 100, 0)
    vocab = PairVocab.build([s for s, _ in pairs])
    data = EncodedPairs(pairs, vocab, vocab)
    one, again = data.random_batch(7, 8, seed=1), data.random_batch(7, 8, seed=1)
    assert torch.equal(one.source, again.source)
    assert not torch.equal(one.source, data.random_batch(8, 8, seed=1).source)


def test_batches_cut_from_tables_equal_make_batch():
    pairs = generate_pairs("reverse", 30, 0, "2-9")
    vocab = PairVocab.build([s for s, _ in pairs])
    data = EncodedPairs(pairs, vocab, vocab)
    index = [4, 17, 2, 2, 29]
    got, want = data.batch(index), make_batch([data.sources[i] for i in index],
                                             [data.targets[i] for i in index])
    for name in ("source", "source_lengths", "target_in", "target_out"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name


def test_a_pairs_file_as_editors_write_it(tmp_path):
    """A byte-order mark is no part of the first source; a Unicode line separator or a form
    feed inside a pair is part of it; any line ending ends a line."""
    path = tmp_path / "p.tsv"
    path.write_text("\ufeffab\tba\r\nc\u2028d\td\x0cc\ref\tfe\n", encoding="utf-8")
    assert read_pairs(path) == [("ab", "ba"), ("c\u2028d", "d\x0cc"), ("ef", "fe")]


def test_text_lines_end_only_at_line_ends():
    from seqlab.data.text import text_lines

    assert text_lines("a\u2028b\r\nc\rd\n\ne\x85f") == ["a\u2028b", "c", "d", "", "e\x85f"]
    assert text_lines("") == [] and text_lines("x\n") == ["x"]


def test_a_text_file_loses_its_byte_order_mark_only(tmp_path):
    from seqlab.data.text import read_text_file

    path = tmp_path / "t.txt"
    path.write_bytes("\ufeffhello \ufeff world".encode())
    assert read_text_file(path) == "hello \ufeff world"
