"""One example per line: reading, the whole-line split, padded line batches, evaluation and
sampling, each line from an empty state."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from seqlab.config import ModelConfig
from seqlab.data import IGNORE
from seqlab.data.lines import (
    EOL,
    PAD,
    LineBatches,
    encode_lines,
    eol_id,
    lines_text,
    read_lines,
    split_lines,
)
from seqlab.data.vocab import BPEVocab, CharVocab, WordVocab
from seqlab.line_lm import evaluate_lines, mark_seen, sample_lines
from seqlab.models import build_model
from seqlab.tasks import token_nll

NAMES = sorted("""emma olivia ava isabella sophia mia amelia harper evelyn abigail emily ella
elizabeth camila luna sofia avery mila aria scarlett penelope layla chloe victoria madison
eleanor grace nora riley zoey hannah hazel lily ellie violet lillian zoe stella aurora natalie
emilia everly leah aubrey willow addison lucy audrey bella nova brooklyn paisley savannah claire
skylar isla genesis naomi elena caroline eliana anna maya valentina ruby kennedy ivy ariana
aaliyah cora madelyn alice kinsley hailey gabriella allison gianna serenity samantha sarah
autumn quinn eva piper sophie sadie delilah josephine nevaeh adeline arya emery lydia clara
vivian madeline peyton julia rylee""".split())


def char_lines(lines: list[str]):
    vocab = CharVocab.build(lines_text(lines))
    return vocab, encode_lines(lines, vocab)


def tiny_lm(vocab_size: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = ModelConfig(model="lstm", vocab_size=vocab_size, embedding_size=8, hidden_size=16)
    return build_model(config).double()


def nll(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Summed nats over the targets that are not IGNORE, in the logits' precision (token_nll
    computes in float32)."""
    return float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                                                   ignore_index=IGNORE, reduction="sum"))


@torch.no_grad()
def line_nll(model, encoded, i: int) -> float:
    """Summed nats of line i alone, unpadded, from an empty state: the oracle."""
    start, length = int(encoded.starts[i]), int(encoded.lengths[i])
    seq = encoded.stream[start:start + length + 2].long()  # EOL line EOL
    return nll(model(seq[None, :-1])[0], seq[None, 1:])


# reading and splitting

def test_read_lines_strips_ends_and_drops_empty_lines():
    text = "anna\r\n  bob  \n\n \t\r\ncarl x\t\nlast"
    assert read_lines(text) == ["anna", "bob", "carl x", "last"]


@pytest.mark.parametrize("text", ["", "\n\n", " \r\n\t\n"])
def test_read_lines_refuses_a_text_without_lines(text):
    with pytest.raises(ValueError, match="read_lines: no lines"):
        read_lines(text)


def test_split_is_seeded_whole_line_disjoint_and_complete():
    train, val = split_lines(NAMES, 0.2, seed=3)
    assert split_lines(NAMES, 0.2, seed=3) == (train, val)
    assert split_lines(NAMES, 0.2, seed=4) != (train, val)
    assert len(val) == round(len(NAMES) * 0.2)
    assert not set(train) & set(val)
    assert sorted(train + val) == NAMES
    assert val != sorted(val)  # drawn at random, not the last block of a sorted file


def test_split_keeps_a_line_on_each_side():
    assert split_lines(["a", "b"], 0.01, seed=0)[1] in (["a"], ["b"])
    train, val = split_lines(["a", "b", "c"], 0.99, seed=0)
    assert (len(train), len(val)) == (1, 2)


@pytest.mark.parametrize("lines, fraction, message", [
    (["only"], 0.1, "at least 2 lines, got 1"),
    ([], 0.1, "at least 2 lines, got 0"),
    (["a", "b"], 0.0, r"val_fraction must be in \(0, 1\), got 0.0"),
    (["a", "b"], 1.0, r"val_fraction must be in \(0, 1\), got 1.0"),
])
def test_split_errors(lines, fraction, message):
    with pytest.raises(ValueError, match=message):
        split_lines(lines, fraction, seed=0)


# encoding, for every kind of vocabulary

def vocabularies(lines: list[str]):
    text = lines_text(lines)
    return [CharVocab.build(text), WordVocab.build(text), BPEVocab.build(text * 20, 300)]


@pytest.mark.parametrize("kind", [0, 1, 2], ids=["char", "word", "bpe"])
def test_encoded_lines_decode_back_between_eols(kind):
    lines = ["bob smith", "anna", "carl-x o'neil", "anna"]
    vocab = vocabularies(lines)[kind]
    encoded = encode_lines(lines, vocab)
    assert encoded.eol == eol_id(vocab) == int(vocab.encode(EOL)[0])
    assert encoded.chars == sum(len(line) + 1 for line in lines)
    for i, line in enumerate(lines):
        start, length = int(encoded.starts[i]), int(encoded.lengths[i])
        assert encoded.stream[start] == encoded.stream[start + length + 1] == encoded.eol
        assert vocab.decode(encoded.stream[start + 1:start + 1 + length].tolist()) == line


def test_a_word_vocabulary_without_a_lone_newline_is_refused():
    vocab = WordVocab.build("anna  \nbob\n\ncarl")  # only "  \n" and "\n\n" as whitespace runs
    with pytest.raises(ValueError, match="the word vocabulary has no newline token"):
        encode_lines(["anna", "bob"], vocab)


def test_encode_lines_errors():
    vocab = CharVocab.build("ab\n")
    with pytest.raises(ValueError, match="characters outside the vocabulary: 'c'"):
        encode_lines(["abc"], vocab)
    with pytest.raises(ValueError, match="a line holds a newline"):
        encode_lines(["a\nb"], vocab)
    with pytest.raises(ValueError, match="encode_lines: no lines"):
        encode_lines([], vocab)
    with pytest.raises(ValueError, match="the char vocabulary has no newline token"):
        encode_lines(["ab"], CharVocab.build("ab"))


# batches

def test_a_batch_reads_eol_plus_line_and_predicts_line_plus_eol():
    vocab, encoded = char_lines(NAMES)
    batches = LineBatches(encoded, batch_size=5, seed=1)
    chunk, rows = batches[3], batches.lines_of(3)
    eol = encoded.eol
    assert chunk.fresh and chunk.inputs.shape == chunk.targets.shape
    assert chunk.inputs.shape[1] == max(len(NAMES[int(r)]) for r in rows) + 1  # T
    assert batches.lengths(3).tolist() == [len(NAMES[int(r)]) + 1 for r in rows]
    for b, r in enumerate(rows.tolist()):
        ids = vocab.encode(NAMES[r]).tolist()
        n = len(ids) + 1
        assert chunk.inputs[b, :n].tolist() == [eol] + ids
        assert chunk.targets[b, :n].tolist() == ids + [eol]  # the EOL target is scored
        assert (chunk.targets[b, n:] == IGNORE).all() and (chunk.inputs[b, n:] == PAD).all()


def test_batches_are_pure_functions_of_the_step():
    encoded = char_lines(NAMES)[1]
    first = LineBatches(encoded, batch_size=8, seed=5)
    steps = [0, 7, 30, 3, 31, 30, 100]
    seen = [first[s] for s in steps]
    resumed = LineBatches(encoded, batch_size=8, seed=5)  # a fresh object, read backwards
    for step, chunk in reversed(list(zip(steps, seen, strict=True))):
        again = resumed[step]
        assert torch.equal(chunk.inputs, again.inputs)
        assert torch.equal(chunk.targets, again.targets)
    other = LineBatches(encoded, batch_size=8, seed=6)
    assert not torch.equal(other.lines_of(0), first.lines_of(0))


def test_an_epoch_reads_every_line_once_and_epochs_differ():
    encoded = char_lines(NAMES)[1]
    batches = LineBatches(encoded, batch_size=8, seed=2)
    assert len(batches) == math.ceil(len(NAMES) / 8)
    for epoch in range(3):
        rows = torch.cat([batches.lines_of(epoch * len(batches) + k)
                          for k in range(len(batches))])
        assert sorted(rows.tolist()) == list(range(len(NAMES)))
    assert not torch.equal(batches.lines_of(0), batches.lines_of(len(batches)))


def test_validation_batches_read_every_line_once_in_order():
    encoded = char_lines(NAMES)[1]
    batches = LineBatches(encoded, batch_size=7, seed=None)
    rows = torch.cat([batches.lines_of(k) for k in range(len(batches))])
    assert rows.tolist() == list(range(len(NAMES)))
    assert torch.equal(batches.lines_of(len(batches)), batches.lines_of(0))


def test_length_pools_cut_padding():
    encoded = char_lines(NAMES)[1]

    def padding(pool: int) -> float:
        batches = LineBatches(encoded, batch_size=4, seed=0, pool=pool)
        chunks = [batches[k] for k in range(len(batches))]
        return sum(int((c.targets == IGNORE).sum()) for c in chunks) / sum(
            c.targets.numel() for c in chunks)

    assert padding(8) < padding(1)


def test_line_batches_errors():
    encoded = char_lines(NAMES)[1]
    with pytest.raises(ValueError, match="expected batch_size and pool >= 1, got 0 and 8"):
        LineBatches(encoded, batch_size=0, seed=0)
    with pytest.raises(ValueError, match="expected a step >= 0, got -1"):
        LineBatches(encoded, batch_size=4, seed=0)[-1]


# a model over lines: each line from an empty state

@torch.no_grad()
def test_a_line_scores_the_same_alone_and_in_a_padded_batch(single_thread):
    encoded = char_lines(NAMES)[1]
    model = tiny_lm(int(encoded.stream.max()) + 1)
    batches = LineBatches(encoded, batch_size=6, seed=0)
    chunk, rows = batches[0], batches.lines_of(0)
    assert len(set(batches.lengths(0).tolist())) > 1  # the batch really is padded
    logits, _ = model(chunk.inputs)
    for b, r in enumerate(rows.tolist()):
        in_batch = nll(logits[b:b + 1], chunk.targets[b:b + 1])
        assert in_batch == pytest.approx(line_nll(model, encoded, r), abs=1e-6)
    # other ids under the padding change nothing that is scored
    noisy = chunk.inputs.masked_fill(chunk.targets == IGNORE, 3)
    assert nll(model(noisy)[0], chunk.targets) == pytest.approx(nll(logits, chunk.targets),
                                                                 abs=1e-9)


def test_evaluate_lines_scores_every_line_and_its_eol_once(single_thread):
    encoded = char_lines(NAMES)[1]
    model = tiny_lm(int(encoded.stream.max()) + 1)
    nats, count = evaluate_lines(model, LineBatches(encoded, batch_size=7, seed=None))
    assert count == sum(len(name) + 1 for name in NAMES)
    # relative 1e-6: evaluate_lines sums token_nll, which computes in float32
    assert nats == pytest.approx(sum(line_nll(model, encoded, i) for i in range(len(NAMES))),
                                 rel=1e-6)
    assert evaluate_lines(model, LineBatches(encoded, 7, None), max_batches=2)[1] == sum(
        len(name) + 1 for name in NAMES[:14])


@pytest.fixture(scope="module")
def trained(single_thread):
    """A tiny LSTM trained on the names as lines, its vocabulary, and its final loss."""
    vocab, encoded = char_lines(NAMES)
    model = tiny_lm(vocab.size)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.03)
    batches = LineBatches(encoded, batch_size=16, seed=0)
    for step in range(150):
        chunk = batches[step]
        total, count = token_nll(model(chunk.inputs)[0], chunk.targets)
        optimiser.zero_grad()
        (total / count).backward()
        optimiser.step()
    nats, count = evaluate_lines(model, LineBatches(encoded, 32, None))
    return model, vocab, nats / count


def test_a_tiny_lstm_learns_the_lines(trained):
    counts = Counter(lines_text(NAMES))  # every character and every EOL target
    total = sum(counts.values())
    unigram = -sum(n / total * math.log(n / total) for n in counts.values())
    assert trained[2] < unigram - 0.3


def test_sample_lines_gives_count_lines_reproducibly(trained):
    model, vocab, _ = trained
    lines = sample_lines(model, vocab, 12, seed=7, max_length=30)
    assert len(lines) == 12 and all(EOL not in line for line in lines)
    assert all(len(line) <= 30 for line in lines)
    assert sample_lines(model, vocab, 12, seed=7, max_length=30) == lines
    assert sample_lines(model, vocab, 12, seed=8, max_length=30) != lines
    assert any(mark_seen(lines, NAMES)) and len(set(lines)) > 3  # names, and varied


@torch.no_grad()
def greedy_line(model, vocab, max_length: int) -> str:
    """Naive oracle: the whole prefix re-read from an empty state at every step."""
    ids = vocab.encode(EOL).tolist()
    for _ in range(max_length):
        logits, _ = model(torch.tensor([ids]))
        ids.append(int(logits[0, -1].argmax()))
        if ids[-1] == ids[0]:
            return vocab.decode(ids[1:-1])
    return vocab.decode(ids[1:])


def test_every_sampled_line_starts_from_an_empty_state(trained):
    model, vocab, _ = trained
    lines = sample_lines(model, vocab, 3, seed=0, max_length=20, greedy=True)
    assert lines == [greedy_line(model, vocab, 20)] * 3


def test_sample_lines_errors(trained):
    model, vocab, _ = trained
    with pytest.raises(ValueError, match="count and max_length must be >= 1, got 0 and 256"):
        sample_lines(model, vocab, 0)
    with pytest.raises(ValueError, match="count and max_length must be >= 1, got 2 and 0"):
        sample_lines(model, vocab, 2, max_length=0)
    with pytest.raises(ValueError, match="the char vocabulary has no newline token"):
        sample_lines(model, CharVocab.build("ab"), 2)


def test_mark_seen():
    assert mark_seen(["anna", "Anna", "bob ", "bob"], ["bob", "anna"]) == [
        True, False, False, True]
