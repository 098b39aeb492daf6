"""seqlab.generate: the stateful sampler against a full re-run of the prefix, and the filters."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import seqlab
from seqlab.config import ModelConfig
from seqlab.data.vocab import CharVocab, WordVocab
from seqlab.generate import SamplingConfig, filter_logits, sample_ids
from seqlab.models import build_model

pytestmark = pytest.mark.usefixtures("single_thread")

ALPHABET = "abcdefgh \n"
CELL_NAMES = ["rnn", "irnn", "lstm", "gru"]


def make_model(cell: str = "lstm", vocab_size: int = len(ALPHABET), seed: int = 0) -> nn.Module:
    """A float64 two-layer model with dropout, left in training mode (the sampler must switch
    dropout off itself). Weights are nudged off their init so no cell is a special case."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(model=cell, embedding_size=6, hidden_size=12, num_layers=2,
                                    dropout=0.3, vocab_size=vocab_size)).double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(0.3 * torch.randn_like(p))
            if cell == "irnn" and "weight_hh" in name:
                p.mul_(0.5)  # identity + noise grows without bound under ReLU: keep it contractive
    return model.train()


class Recording(nn.Module):
    """Passes through to a model and keeps the last-step logits of every call."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, tokens, state=None):
        logits, state = self.inner(tokens, state)
        self.seen.append(logits[:, -1])
        return logits, state


def full_logits(model: nn.Module, prompt: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Logits of one forward pass over prompt + generated ids, from a zero state: (N, P + L, V)."""
    model.eval()
    with torch.no_grad():
        logits, _ = model(torch.cat([prompt.expand(len(ids), -1), ids], dim=1))
    return logits


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_stateful_sampling_equals_rerunning_the_prefix(cell):
    model = make_model(cell)
    prompt = torch.tensor([0, 3, 8, 1], dtype=torch.long)
    recording = Recording(model)
    ids = sample_ids(recording, prompt, 12, SamplingConfig(), num_samples=3, seed=0)
    assert ids.shape == (3, 12) and model.training  # the mode is given back
    stepped = torch.stack(recording.seen, dim=1)  # (N, L + 1, V): the prompt, then one per token
    assert len(recording.seen) == 13
    assert stepped.dtype == torch.float64
    assert_close(stepped, full_logits(model, prompt, ids)[:, len(prompt) - 1:])
    assert len({tuple(row.tolist()) for row in ids}) > 1  # the samples differ: a real check


def test_greedy_is_deterministic_and_takes_the_argmax():
    model = make_model("gru")
    prompt = torch.tensor([2, 5], dtype=torch.long)
    greedy = SamplingConfig(greedy=True)
    ids = sample_ids(model, prompt, 15, greedy, num_samples=2, seed=0)
    assert torch.equal(ids, sample_ids(model, prompt, 15, greedy, num_samples=2, seed=99))
    expected = full_logits(model, prompt, ids)[:, len(prompt) - 1:-1].argmax(-1)
    assert torch.equal(ids, expected)


def test_seeds_repeat_and_differ():
    model = make_model("lstm")
    prompt = torch.tensor([1], dtype=torch.long)
    config = SamplingConfig(temperature=1.5)
    a = sample_ids(model, prompt, 40, config, num_samples=2, seed=7)
    assert torch.equal(a, sample_ids(model, prompt, 40, config, num_samples=2, seed=7))
    assert not torch.equal(a, sample_ids(model, prompt, 40, config, num_samples=2, seed=8))


def test_a_stop_keeps_the_tokens_sampled_so_far():
    """Setting stop during sampling (Ctrl-C in seqlab generate) ends after that step: the
    columns sampled are those of an uninterrupted run with the same seed."""
    import threading

    model, prompt = make_model("gru"), torch.tensor([1], dtype=torch.long)
    config = SamplingConfig(temperature=1.0)
    whole = sample_ids(model, prompt, 30, config, num_samples=3, seed=5)
    stop = threading.Event()

    def progress(steps):
        for t in steps:
            if t == 12:
                stop.set()  # as the signal handler does, between two steps
            yield t

    part = sample_ids(model, prompt, 30, config, num_samples=3, seed=5, progress=progress,
                      stop=stop)
    assert part.shape == (3, 12) and torch.equal(part, whole[:, :12])
    vocab = CharVocab(list(ALPHABET))
    assert seqlab.generate(model, vocab, "bad ", 30, stop=stop) == ["bad "]  # set before


def test_generate_stopped_by_ctrl_c_prints_what_it_sampled(trained_run, capsys, monkeypatch):
    import os
    import signal

    from seqlab import cli_use
    from seqlab.cli import main

    def interrupting(length):
        def progress(steps):
            for t in steps:
                if t == 20:
                    os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C, mid-sample
                yield t
        return progress

    monkeypatch.setattr(cli_use, "token_bar", interrupting)
    code = main(["generate", str(trained_run), "--prompt", "the", "--length", "100000",
                 "--seed", "3"])
    out, err = capsys.readouterr()
    assert code == 130 and out.startswith("the") and 20 < len(out) < 200
    assert err.endswith("seqlab: stopped early: the sample above is shorter than --length "
                        "100000\n")
    monkeypatch.undo()
    assert main(["generate", str(trained_run), "--prompt", "the", "--length", "20",
                 "--seed", "3"]) == 0
    assert capsys.readouterr().out == out  # the same 20 tokens, uninterrupted


def test_top_k_one_is_greedy():
    model = make_model("rnn")
    prompt = torch.tensor([4, 4, 9], dtype=torch.long)
    greedy = sample_ids(model, prompt, 20, SamplingConfig(greedy=True), num_samples=2, seed=0)
    top1 = sample_ids(model, prompt, 20, SamplingConfig(top_k=1, temperature=3.0), num_samples=2,
                      seed=5)
    assert torch.equal(greedy, top1)


def test_filter_top_k_keeps_exactly_k():
    logits = torch.randn(3, 10, generator=torch.Generator().manual_seed(0))
    filtered = filter_logits(logits, SamplingConfig(top_k=4, temperature=2.0))
    finite = torch.isfinite(filtered)
    assert finite.sum(-1).tolist() == [4, 4, 4]
    for row in range(3):
        assert set(finite[row].nonzero().flatten().tolist()) == set(
            logits[row].topk(4).indices.tolist())
    assert_close(filtered[finite], (logits / 2.0)[finite])
    assert torch.equal(filter_logits(logits, SamplingConfig(top_k=50)), logits)  # k >= V: all


@pytest.mark.parametrize(("top_p", "kept"), [
    (0.4, {1}),  # the most likely token alone already reaches 0.4
    (0.75, {1, 3}),  # 0.5 < 0.75 <= 0.5 + 0.3
    (0.85, {1, 3, 0}),  # 0.8 < 0.85 <= 0.95
    (0.99, {1, 3, 0, 2}),
    (1.0, {1, 3, 0, 2}),
])
def test_filter_top_p_keeps_the_smallest_set_reaching_p(top_p, kept):
    probs = torch.tensor([[0.15, 0.5, 0.05, 0.3]], dtype=torch.float64)  # not sorted on purpose
    filtered = filter_logits(probs.log(), SamplingConfig(top_p=top_p))
    assert set(torch.isfinite(filtered[0]).nonzero().flatten().tolist()) == kept
    survivors = filtered.softmax(-1)[0]
    assert_close(survivors[sorted(kept)], probs[0, sorted(kept)] / probs[0, sorted(kept)].sum())


@pytest.mark.parametrize(("keys", "message"), [
    ({"temperature": 0.0}, r"temperature must be positive, got 0.0; greedy decoding "
                         r"\(--greedy\) is the limit of temperature 0"),
    ({"temperature": -1.0}, "temperature must be positive"),
    ({"temperature": math.nan}, "temperature must be positive"),
    ({"top_k": -1}, "top_k must be >= 0, got -1"),
    ({"top_p": 0.0}, re.escape("top_p must be in (0, 1], got 0.0")),
    ({"top_p": 1.5}, re.escape("top_p must be in (0, 1], got 1.5")),
    ({"top_p": math.nan}, re.escape("top_p must be in (0, 1]")),
])
def test_bad_sampling_settings(keys, message):
    with pytest.raises(ValueError, match=message):
        SamplingConfig(**keys)
    vocab = CharVocab(list(ALPHABET))
    with pytest.raises(ValueError, match=message):
        seqlab.generate(make_model(), vocab, prompt="ab", length=3, seed=0, **keys)


def test_bad_lengths_and_prompts():
    model = make_model()
    with pytest.raises(ValueError, match="length must be >= 0, got -1"):
        sample_ids(model, torch.tensor([1]), -1, SamplingConfig())
    with pytest.raises(ValueError, match="the prompt must hold at least one token"):
        sample_ids(model, torch.zeros(0, dtype=torch.long), 3, SamplingConfig())
    with pytest.raises(ValueError, match="num_samples must be >= 1, got 0"):
        seqlab.generate(model, CharVocab(list(ALPHABET)), prompt="a", num_samples=0)


@pytest.mark.parametrize("keys, message", [
    ({"length": "5"}, "length must be an integer, got '5'"),
    ({"length": 2.5}, "length must be an integer, got 2.5"),
    ({"num_samples": True}, "num_samples must be an integer, got True"),
    ({"seed": "1"}, "seed must be an integer, got '1'"),
    ({"temperature": "1"}, "temperature must be a number, got '1'"),
    ({"top_k": 2.5}, "top_k must be an integer, got 2.5"),
    ({"greedy": "yes"}, "greedy must be True or False, got 'yes'"),
])
def test_untyped_api_arguments_are_named(keys, message):
    """The Python API is untyped: a wrong type is a TypeError naming the argument, raised
    before anything reaches torch."""
    with pytest.raises(TypeError, match=re.escape(message)):
        seqlab.generate(make_model(), CharVocab(list(ALPHABET)), prompt="ab",
                        **{"length": 3, **keys})


def test_a_model_vocabulary_or_prompt_of_the_wrong_kind_is_named(tmp_path):
    model, vocab = make_model(), CharVocab(list(ALPHABET))
    for args, message in [((model, vocab, 5), "prompt must be a str or None, got int 5"),
                          (("runs/char", vocab), "model must be a torch.nn.Module "
                                                  "(seqlab.load_run(RUN).model), got str"),
                          ((model, None), "vocab must be a run's vocabulary "
                                          "(seqlab.load_run(RUN).vocab), got NoneType")]:
        with pytest.raises(TypeError, match=re.escape(message)):
            seqlab.generate(*args, length=3)
    for call, message in [(lambda: seqlab.evaluate(5, "t.txt"), "run_dir must be a path"),
                          (lambda: seqlab.evaluate(tmp_path, 5), "source must be a path"),
                          (lambda: seqlab.load_run(None), "path must be a path")]:
        with pytest.raises(TypeError, match=message):
            call()


def test_prompt_with_unknown_characters_names_them():
    vocab = CharVocab(list(ALPHABET))
    with pytest.raises(ValueError, match=re.escape(
            "the prompt has characters outside the vocabulary: 'X', 'z'")):
        seqlab.generate(make_model(), vocab, prompt="abzXa", length=5, seed=0)


def test_prompt_with_unknown_words_names_them():
    vocab = WordVocab.build("the cat sat\n")
    model = make_model(vocab_size=vocab.size)
    with pytest.raises(ValueError, match=re.escape(
            "the prompt has words outside the vocabulary: 'dog'")):
        seqlab.generate(model, vocab, prompt="the dog", length=5, seed=0)


def test_num_samples_strings_start_with_the_prompt():
    vocab = CharVocab(list(ALPHABET))
    samples = seqlab.generate(make_model(), vocab, prompt="bad ", length=9, num_samples=4, seed=1)
    assert len(samples) == 4
    assert all(s.startswith("bad ") and len(s) == 4 + 9 for s in samples)
    assert all(set(s) <= set(ALPHABET) for s in samples)
    assert seqlab.generate(make_model(), vocab, prompt="bad ", length=9, num_samples=4,
                           seed=1) == samples


def test_default_prompt_is_not_echoed():
    vocab = CharVocab(list(ALPHABET))
    samples = seqlab.generate(make_model(), vocab, length=6, num_samples=2, seed=0)
    assert [len(s) for s in samples] == [6, 6]


def test_unseeded_generate_leaves_the_global_rng_reproducible():
    model, vocab = make_model(), CharVocab(list(ALPHABET))
    draws = []
    for _ in range(2):
        torch.manual_seed(0)
        seqlab.generate(model, vocab, prompt="a", length=3)
        draws.append(torch.rand(4))
    assert torch.equal(draws[0], draws[1])


def test_word_vocabulary_never_samples_unk():
    from seqlab.config import ModelConfig
    from seqlab.data.vocab import UNK, WordVocab
    from seqlab.models import build_model

    vocab = WordVocab.build("the cat sat on the mat")
    torch.manual_seed(0)
    model = build_model(ModelConfig(model="gru", embedding_size=4, hidden_size=8,
                                    vocab_size=vocab.size))
    with torch.no_grad():  # make <unk> by far the most likely token
        model.to_logits.bias[vocab.index[UNK]] = 50.0
    text = seqlab.generate(model, vocab, prompt="the", length=200, seed=0)[0]
    assert UNK not in text
