"""The encoder-decoder: padding, teacher forcing vs stepping, search, a trained tiny model, CLI.

One tiny ``reverse`` model is trained once for the module (a few seconds on one thread) and
read by the tests that need a model that has learnt something.
"""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import pytest
import torch

import seqlab
from seqlab.cli import main
from seqlab.data.pairs import BOS, EOS, generate_pairs, make_batch
from seqlab.families.seq2seq import encode_sources, load, translate, translate_texts
from seqlab.models.seq2seq import Encoder, Seq2Seq, Seq2SeqShape, reverse_padded
from seqlab.search import beam_search, greedy_search

TINY_CLI = ["--hidden-size", "16", "--embedding-size", "8", "--batch-size", "8",
            "--max-steps", "6", "--eval-every", "3", "--log-every", "3", "--device", "cpu",
            "--quiet"]


@pytest.fixture(scope="module")
def reverse_run(tmp_path_factory, single_thread) -> Path:
    """A tiny additive-attention model that has learnt to reverse strings of 3 to 6 letters."""
    out = tmp_path_factory.mktemp("s2s") / "reverse"
    seqlab.train("reverse", out=out, attention="additive", length="3-6", hidden_size=32,
                 embedding_size=16, batch_size=32, max_steps=260, eval_every=260,
                 log_every=260, num_pairs=2000, lr=1e-2, warmup_steps=20, seed=0, device="cpu")
    return out


def shape(**overrides) -> Seq2SeqShape:
    keys = dict(cell="lstm", source_vocab_size=9, target_vocab_size=7, embedding_size=5,
                hidden_size=6, attention="additive", attention_size=4)
    return Seq2SeqShape(**{**keys, **overrides})


def random_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    sources = [torch.randint(3, 9, (n,), generator=g).tolist() for n in (5, 2, 4)]
    targets = [torch.randint(3, 7, (n,), generator=g).tolist() for n in (3, 4, 1)]
    return make_batch(sources, targets)


def test_reverse_padded():
    x = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    assert reverse_padded(x, torch.tensor([3, 2])).tolist() == [[3, 2, 1, 0], [5, 4, 0, 0]]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_bidirectional_encoder_reads_nothing_past_a_source_end(cell):
    torch.manual_seed(0)
    encoder = Encoder(shape(cell=cell, bidirectional=True, num_layers=2)).double()
    x = torch.randn(3, 5, 5, dtype=torch.float64)
    lengths = torch.tensor([5, 2, 4])
    junk = x.clone()
    junk[1, 2:], junk[2, 4:] = 1e3, -1e3
    out, state = encoder(junk, lengths)
    for b, n in enumerate(lengths.tolist()):
        alone, alone_state = encoder(x[b:b + 1, :n], lengths[b:b + 1])
        torch.testing.assert_close(out[b, :n], alone[0])
        assert torch.equal(out[b, n:], torch.zeros_like(out[b, n:]))
        h, h_alone = (state[0], alone_state[0]) if cell == "lstm" else (state, alone_state)
        torch.testing.assert_close(h[:, b], h_alone[:, 0])


@pytest.mark.parametrize("attention, cell, bidirectional", [
    ("none", "gru", False), ("additive", "lstm", True), ("dot", "rnn", False),
    ("general", "lstm", True)])
def test_teacher_forcing_equals_decoding_step_by_step(attention, cell, bidirectional):
    torch.manual_seed(1)
    model = Seq2Seq(shape(attention=attention, cell=cell, bidirectional=bidirectional,
                          num_layers=2)).double().eval()
    batch = random_batch()
    logits, weights = model(batch.source, batch.source_lengths, batch.target_in)
    memory, state = model.encode(batch.source, batch.source_lengths)
    for t in range(batch.target_in.shape[1]):
        step_logits, state, w = model.decode_step(memory, batch.target_in[:, t], state)
        torch.testing.assert_close(logits[:, t], step_logits)
        if attention == "none":
            assert weights is None and w is None
        else:
            torch.testing.assert_close(weights[:, t], w)


@pytest.mark.parametrize("attention", ["additive", "dot", "general"])
def test_padded_batch_equals_each_example_and_padding_gets_zero_weight(attention):
    torch.manual_seed(2)
    model = Seq2Seq(shape(attention=attention, bidirectional=True)).double().eval()
    batch = random_batch(1)
    logits, weights = model(batch.source, batch.source_lengths, batch.target_in)
    for b, n in enumerate(batch.source_lengths.tolist()):
        assert torch.equal(weights[b, :, n:], torch.zeros_like(weights[b, :, n:]))
        alone_logits, alone_weights = model(batch.source[b:b + 1, :n],
                                            batch.source_lengths[b:b + 1], batch.target_in[b:b + 1])
        torch.testing.assert_close(logits[b], alone_logits[0])
        torch.testing.assert_close(weights[b, :, :n], alone_weights[0])


def test_trained_model_reverses_with_an_anti_diagonal_attention(reverse_run):
    """Each output token's attention peaks at its mirror position in the source."""
    loaded = load(reverse_run)
    pairs = generate_pairs("reverse", 100, seed=123, length="3-6")
    outputs = translate_texts(loaded.model, loaded.vocab, [s for s, _ in pairs])
    exact = sum(o.text == t for o, (_, t) in zip(outputs, pairs, strict=True)) / len(pairs)
    assert exact >= 0.9
    hits = total = 0
    for output, (source, _) in zip(outputs, pairs, strict=True):
        n = len(source)
        assert output.weights.shape == (len(output.output_tokens), n)
        peaks = output.weights.argmax(-1).tolist()
        hits += sum(peak == n - 1 - i for i, peak in enumerate(peaks[:n]))
        total += n
    assert hits / total >= 0.95


def test_batched_greedy_equals_one_at_a_time(reverse_run):
    loaded = load(reverse_run)
    texts = ["abc", "qwerty", "zz", "hello", "abcdefghij"]
    together = translate_texts(loaded.model, loaded.vocab, texts, batch_size=len(texts))
    alone = [translate_texts(loaded.model, loaded.vocab, [t])[0] for t in texts]
    for a, b in zip(together, alone, strict=True):
        assert a.text == b.text
        assert a.score == pytest.approx(b.score, abs=1e-5)
        torch.testing.assert_close(a.weights, b.weights)


def test_beam_of_one_is_greedy(reverse_run):
    loaded = load(reverse_run)
    texts = ["abc", "qwerty", "zzyzx", "abcdefghijklmnop"]
    greedy = translate_texts(loaded.model, loaded.vocab, texts)
    beam = translate_texts(loaded.model, loaded.vocab, texts, beam=1, batch_size=1)
    for g, b in zip(greedy, beam, strict=True):
        assert g.text == b.text and g.score == pytest.approx(b.score, abs=1e-5)
    ids = torch.tensor([encode_sources(loaded.vocab.source, ["qwerty"])[0]])
    memory, state = loaded.model.encode(ids, torch.tensor([6]))
    step = loaded.model.step_fn()
    by_greedy = greedy_search(step, (state, memory), 1, BOS, EOS, 20)[0]
    by_beam = beam_search(step, Seq2Seq.select, (state, memory), BOS, EOS, 1, 20)
    assert by_beam.tokens == by_greedy.tokens
    assert by_beam.score == pytest.approx(by_greedy.score, abs=1e-6)
    torch.testing.assert_close(by_beam.weights, by_greedy.weights)


def test_beam_finds_a_higher_scoring_sequence_than_greedy():
    """Greedy takes A (0.5) then must end (0.4): 0.2. B (0.4) then end (0.99) is 0.396."""
    A, B = 3, 4
    table = {BOS: [0.0, 0.0, 0.1, 0.5, 0.4],  # after the begin token
             A: [0.0, 0.0, 0.4, 0.3, 0.3],
             B: [0.0, 0.0, 0.99, 0.005, 0.005]}

    def step(tokens, state):
        probs = torch.tensor([table[int(t)] for t in tokens], dtype=torch.float64)
        return probs.log(), state, None

    def reorder(state, index):
        return state

    greedy = greedy_search(step, None, 1, BOS, EOS, 5)[0]
    best = beam_search(step, reorder, None, BOS, EOS, beam=2, max_len=5)
    assert greedy.tokens == [A] and greedy.score == pytest.approx(torch.tensor(0.2).log().item())
    assert best.tokens == [B] and best.score == pytest.approx(torch.tensor(0.396).log().item())
    assert best.score > greedy.score


def test_beam_length_normalisation_prefers_longer_when_per_token_better():
    """Ending at once: 0.4. X then end: 0.6 * 0.5 = 0.3. X, X then end: 0.6 * 0.5 * 1.0 = 0.3.
    The raw sum prefers ending at once; per token (0.4, 0.3^(1/2), 0.3^(1/3) in the geometric
    mean) the longest wins."""
    X = 3
    table = {BOS: [0.0, 0.0, 0.4, 0.6, 0.0], X: [0.0, 0.0, 0.5, 0.5, 0.0]}

    def step(tokens, state):
        rows = []
        for t, n in zip(tokens.tolist(), state, strict=True):
            rows.append([0.0, 0.0, 1.0, 0.0, 0.0] if n >= 2 else table[t])
        return torch.tensor(rows, dtype=torch.float64).log(), [n + 1 for n in state], None

    def reorder(state, index):
        return [state[i] for i in index.tolist()]

    raw = beam_search(step, reorder, [0], BOS, EOS, beam=3, max_len=6, length_penalty=0.0)
    normalised = beam_search(step, reorder, [0], BOS, EOS, beam=3, max_len=6, length_penalty=1.0)
    assert raw.tokens == []
    assert normalised.tokens == [X, X]


def test_model_errors():
    with pytest.raises(ValueError, match="bidirectional encoder .* must be even, got 7"):
        Seq2Seq(shape(hidden_size=7, bidirectional=True))
    with pytest.raises(ValueError, match="seq2seq: --model must be one of rnn, irnn, lstm, gru"):
        seqlab.train("reverse", model="bow", max_steps=1)
    with pytest.raises(ValueError, match="unknown attention 'luong'"):
        seqlab.train("reverse", attention="luong", max_steps=1)


def test_input_errors(reverse_run):
    vocab = load(reverse_run).vocab.source
    with pytest.raises(ValueError, match=r"input 2 \('aB1'\) has symbols outside the source "
                                         r"vocabulary: '1', 'B'"):
        encode_sources(vocab, ["abc", "aB1"])
    with pytest.raises(ValueError, match="input 1 is empty"):
        encode_sources(vocab, [" "])


def test_longer_input_than_training_warns_and_still_decodes(reverse_run, caplog):
    with caplog.at_level(logging.WARNING):
        out = translate(reverse_run, ["abcdefghijklmno"])
    assert "input 1 is 15 characters long, longer than any source seen in training (6)" \
        in caplog.text
    assert len(out) == 1 and out[0].weights.shape[1] == 15


# command line ------------------------------------------------------------------------------
def run_cli(capsys, *argv, stdin: str | None = None, monkeypatch=None):
    capsys.readouterr()
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def pairs_file(tmp_path) -> Path:
    pairs = generate_pairs("reverse", 60, seed=0, length="2-5")
    path = tmp_path / "pairs.tsv"
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    return path


def test_cli_train_translate_evaluate(capsys, monkeypatch, tmp_path, pairs_file, single_thread):
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", pairs_file, "--task", "seq2seq", "--model", "gru",
                           "--attention", "dot", "--bidirectional", *TINY_CLI, "--out", run)
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "seq2seq" and config["seq2seq"]["attention"] == "dot"
    png = tmp_path / "att.png"
    code, out, err = run_cli(capsys, "translate", run, "abc", "hello", "--beam", "3",
                             "--show-attention", png)
    assert code == 0, err
    assert len(out.splitlines()) == 2
    assert (tmp_path / "att-1.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "att-2.png").exists()
    # never over the data the run learnt from, nor over a file that is no picture
    data_before = pairs_file.read_bytes()
    notes = tmp_path / "notes-2.txt"
    notes.write_text("mine")
    for argv, message in [(["abc", "--show-attention", pairs_file],
                           f"--show-attention {pairs_file} is the data the run {run} was "
                           "trained on"),
                          (["abc", "xyz", "--show-attention", tmp_path / "notes.txt"],
                           f"--show-attention (map 2) {notes} exists and is no .png file")]:
        code, out, err = run_cli(capsys, "translate", run, *argv)
        assert code == 2 and out == "" and err.startswith(f"seqlab: error: {message}"), err
    assert pairs_file.read_bytes() == data_before and notes.read_text() == "mine"
    assert not (tmp_path / "notes-1.txt").exists()
    code, out, err = run_cli(capsys, "translate", run, stdin="abc\nxyz\n", monkeypatch=monkeypatch)
    assert code == 0 and len(out.splitlines()) == 2, err
    # a blank line of a piped file: a blank output line, the lines around it translated
    code, gapped, err = run_cli(capsys, "translate", run, "--show-attention", tmp_path / "g.png",
                                stdin="abc\n\nxyz\n", monkeypatch=monkeypatch)
    assert code == 0, err
    assert gapped.split("\n") == [out.split("\n")[0], "", out.split("\n")[1], ""]
    assert sorted(p.name for p in tmp_path.glob("g-*.png")) == ["g-1.png", "g-3.png"]
    code, _, err = run_cli(capsys, "translate", run, stdin="\n  \n", monkeypatch=monkeypatch)
    assert code == 2 and "no input: stdin holds only blank lines" in err
    # an error names the input by its line of stdin, blank lines counted
    code, _, err = run_cli(capsys, "translate", run, stdin="\n\nabc\na#b\n",
                           monkeypatch=monkeypatch)
    assert code == 2 and "input 4 ('a#b') has symbols outside the source vocabulary" in err
    # one text among blank lines: one map, under the name given
    code, _, err = run_cli(capsys, "translate", run, "--show-attention", tmp_path / "one.png",
                           stdin="abc\n\n", monkeypatch=monkeypatch)
    assert code == 0 and (tmp_path / "one.png").exists(), err
    code, out, err = run_cli(capsys, "evaluate", run, pairs_file, "--json", "--device", "cpu")
    assert code == 0, err
    result = json.loads(out)
    assert result["pairs"] == 60
    for key in ("exact_match", "token_accuracy", "bleu", "chrf"):
        assert key in result
    code, out, _ = run_cli(capsys, "evaluate", run, pairs_file, "--device", "cpu")
    assert code == 0 and out.startswith("exact match ")
    code, out, err = run_cli(capsys, "info", run)
    assert code == 0, err
    assert f"({config['data']['tokenizer']}, {config['data']['train_pairs']:,} train / " \
           f"{config['data']['val_pairs']:,} validation pairs)" in out


def test_cli_trains_a_builtin_task_and_resumes(capsys, tmp_path, single_thread):
    run = tmp_path / "dates"
    code, _, err = run_cli(capsys, "train", "dates", "--num-pairs", "200", *TINY_CLI,
                           "--eval-every", "6", "--out", run)
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["task"] == "seq2seq"
    code, _, err = run_cli(capsys, "train", "dates", "--resume", "--out", run, "--max-steps", "9",
                           "--quiet")
    assert code == 0, err
    assert max(r["step"] for r in map(json.loads, (run / "metrics.jsonl").open())) == 9
    code, out, err = run_cli(capsys, "translate", run, "25th of Nov 2026", "--show-attention",
                             tmp_path / "one.png")
    assert code == 0 and len(out.splitlines()) == 1 and (tmp_path / "one.png").exists(), err
    code, out, err = run_cli(capsys, "evaluate", run, "dates", "--json")
    assert code == 0 and json.loads(out)["pairs"] == 2000, err


def test_cli_evaluate_with_a_beam_records_the_decoding(capsys, reverse_run, pairs_file):
    code, out, err = run_cli(capsys, "evaluate", reverse_run, pairs_file, "--json",
                             "--device", "cpu")
    assert code == 0, err
    greedy = json.loads(out)
    assert (greedy["decoding"], greedy["beam"], greedy["length_penalty"]) == ("greedy", 1, None)
    code, out, err = run_cli(capsys, "evaluate", reverse_run, pairs_file, "--beam", "3",
                             "--json", "--device", "cpu")
    assert code == 0, err
    beam = json.loads(out)
    assert (beam["decoding"], beam["beam"], beam["length_penalty"]) == ("beam search", 3, 1.0)
    assert beam["pairs"] == 60 and 0 <= beam["exact_match"] <= 1
    assert set(beam) == set(greedy)  # the same report, whichever the decoding
    code, out, err = run_cli(capsys, "evaluate", reverse_run, pairs_file, "--beam", "3",
                             "--device", "cpu")
    assert code == 0 and out.rstrip().endswith("(60 pairs, beam search, width 3, length "
                                               "penalty 1)"), out
    code, out, _ = run_cli(capsys, "evaluate", reverse_run, pairs_file, "--device", "cpu")
    assert code == 0 and out.rstrip().endswith("(60 pairs, greedy)"), out


@pytest.mark.parametrize("value, message", [
    ("0", "--beam must be >= 1"), ("-2", "--beam must be >= 1"),
    ("1.5", "argument --beam: invalid int value: '1.5'"),
    ("three", "argument --beam: invalid int value: 'three'")])
def test_cli_evaluate_bad_beam_is_one_line_exit_2(capsys, reverse_run, pairs_file, value,
                                                  message):
    code, out, err = run_cli(capsys, "evaluate", reverse_run, pairs_file, f"--beam={value}")
    assert code == 2 and out == ""
    assert err.splitlines() == [f"seqlab: error: {message}"]


def test_evaluate_api_beam_errors(reverse_run, pairs_file):
    with pytest.raises(ValueError, match="beam must be >= 1, got 0"):
        seqlab.evaluate(reverse_run, pairs_file, device="cpu", beam=0)
    with pytest.raises(TypeError, match="beam must be an integer, got 2.5"):
        seqlab.evaluate(reverse_run, pairs_file, device="cpu", beam=2.5)
    with pytest.raises(ValueError, match="beam must be >= 1, got -1"):
        translate(reverse_run, ["abc"], beam=-1)


def test_names_callers_import_stay_importable_from_seq2seq_task():
    """benchmarks/seq2seq.py and these tests import the decoding and scoring from the family."""
    from seqlab import seq2seq_eval
    from seqlab.families import seq2seq as seq2seq_task

    for name in ("Translation", "encode_sources", "translate_texts", "match_scores",
                 "score_outputs", "save_attention"):
        assert getattr(seq2seq_task, name) is getattr(seq2seq_eval, name), name
    for name in ("evaluate", "load", "max_target", "train_pairs", "translate", "summarize",
                 "info_lines"):
        assert callable(getattr(seq2seq_task, name)), name


def test_cli_warns_of_inputs_longer_than_training(capsys, reverse_run, tmp_path):
    code, out, err = run_cli(capsys, "translate", reverse_run, "abc", "abcdefghijklmno")
    assert code == 0 and len(out.splitlines()) == 2
    assert err.splitlines() == ["seqlab: warning: input 2 is 15 characters long, longer than "
                                "any source seen in training (6); decoding it anyway"]
    few, many = tmp_path / "few.tsv", tmp_path / "many.tsv"
    few.write_text("abc\tcba\nabcdefgh\thgfedcba\n", encoding="utf-8")
    many.write_text("".join(f"{s}\t{s[::-1]}\n" for s in
                            ["abcdefg", "abcdefgh", "abc", "bcdefghij", "qwertyu", "zyxwvut"]),
                    encoding="utf-8")
    code, _, err = run_cli(capsys, "evaluate", reverse_run, few, "--device", "cpu")
    assert code == 0
    assert err.splitlines() == ["seqlab: warning: input 2 is 8 characters long, longer than "
                                "any source seen in training (6); decoding it anyway"]
    code, _, err = run_cli(capsys, "evaluate", reverse_run, many, "--device", "cpu")
    assert code == 0
    assert err.splitlines() == ["seqlab: warning: 5 of 6 inputs are longer than any source "
                                "seen in training (6 characters), up to 9; decoding them anyway"]


@pytest.mark.parametrize("line, message", [
    ("abc", "line 3: expected exactly one tab between source and target, found 0"),
    ("\tabc", "line 3: empty source"),
])
def test_cli_bad_tsv(capsys, tmp_path, line, message):
    path = tmp_path / "bad.tsv"
    path.write_text(f"ab\tba\ncd\tdc\n{line}\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "train", path, "--task", "seq2seq", *TINY_CLI,
                           "--out", tmp_path / "run")
    assert code == 2
    assert err.startswith("seqlab: error: ") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_cli_bad_inputs(capsys, reverse_run):
    code, _, err = run_cli(capsys, "translate", reverse_run, "abC")
    assert code == 2 and "outside the source vocabulary: 'C'" in err
    code, _, err = run_cli(capsys, "translate", reverse_run, "abc", "--beam", "0")
    assert code == 2 and "--beam must be >= 1" in err
    no_attention = reverse_run.parent / "missing"
    code, _, err = run_cli(capsys, "translate", no_attention, "abc")
    assert code == 2 and "no such run directory" in err


@pytest.mark.parametrize("tokenizer", ["word", "bpe"])
def test_word_and_bpe_vocabularies(tmp_path, pairs_file, tokenizer, single_thread):
    words = tmp_path / "words.tsv"
    words.write_text("".join(f"{s} {s[:2]}\t{t} {t[:2]}\n" for s, t in
                             (line.split("\t") for line in pairs_file.read_text().split("\n")
                              if line)), encoding="utf-8")
    out = tmp_path / "run"
    seqlab.train(words, out=out, task="seq2seq", tokenizer=tokenizer, bpe_vocab_size=300,
                 shared_vocab=True, hidden_size=8, embedding_size=4, batch_size=4, max_steps=2,
                 eval_every=2, device="cpu")
    loaded = load(out)
    assert loaded.vocab.source.kind == tokenizer
    assert loaded.vocab.source.size == loaded.vocab.target.size
    assert (out / "source_vocab" / ("tokenizer.json" if tokenizer == "bpe" else "vocab.json")
            ).exists()
    known = words.read_text().split("\t")[0]
    [result] = translate_texts(loaded.model, loaded.vocab, [known], beam=2)
    assert isinstance(result.text, str)


def test_show_attention_without_attention_is_an_error(capsys, tmp_path, pairs_file):
    run = tmp_path / "none"
    seqlab.train(pairs_file, out=run, task="seq2seq", attention="none", hidden_size=8,
                 embedding_size=4, batch_size=4, max_steps=2, eval_every=2, device="cpu")
    code, _, err = run_cli(capsys, "translate", run, "abc", "--show-attention",
                           tmp_path / "a.png")
    assert code == 2 and "this run has no attention (--attention none)" in err
    assert not (tmp_path / "a.png").exists()
    weights = (run / "model.safetensors").read_bytes()  # nor over a file of the run
    code, _, err = run_cli(capsys, "translate", run, "abc", "--show-attention",
                           run / "model.safetensors")
    assert code == 2 and "is model.safetensors of the run" in err
    assert (run / "model.safetensors").read_bytes() == weights


def test_diagnose_refuses_a_seq2seq_run_in_one_line(capsys, reverse_run):
    code, out, err = run_cli(capsys, "diagnose", reverse_run)
    assert code == 2 and out == ""
    assert err.splitlines() == [f"seqlab: error: diagnose needs a run whose task offers a probe "
                                f"of its recurrent state; {reverse_run} is a 'seq2seq' run"]
    assert not (reverse_run / "diagnostics").exists()


def test_translate_takes_options_before_and_after_the_inputs(capsys, reverse_run):
    code, after, err = run_cli(capsys, "translate", reverse_run, "abc", "ba", "--beam", "2")
    assert code == 0, err
    code, before, err = run_cli(capsys, "translate", reverse_run, "--beam", "2", "abc", "ba")
    assert code == 0, err
    assert before == after and len(before.splitlines()) == 2
    code, _, err = run_cli(capsys, "translate", reverse_run, "--beam", "2", "abc", "--bogus")
    assert code == 2 and err.splitlines() == ["seqlab: error: unrecognized arguments: abc "
                                              "--bogus"]


def test_a_run_evaluates_on_another_built_in_task(reverse_run, capsys):
    """Held-out pairs of another task exclude nothing (the run saw none of its sources): the
    reversing model is scored on sorting, where it is much worse than on its own task."""
    own = seqlab.evaluate(reverse_run, "reverse", device="cpu")
    other = seqlab.evaluate(reverse_run, "sort", device="cpu")
    assert other["pairs"] == own["pairs"] == 2000
    assert other["exact_match"] < own["exact_match"]
    code = main(["evaluate", str(reverse_run), "dates"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("seqlab: error:")]
    assert code == 2 and len(errors) == 1 and "outside the source vocabulary" in errors[0]


def test_an_unknown_evaluate_option_is_named(reverse_run):
    with pytest.raises(ValueError, match=r"unknown evaluate option 'bogus'; a 'seq2seq' run "
                                         r"takes beam"):
        seqlab.evaluate(reverse_run, "reverse", bogus=0)


@pytest.mark.parametrize("keys, error, message", [
    ({"device": "gpu"}, ValueError, "unknown device 'gpu'; choose from auto, cpu, cuda"),
    ({"device": 5}, ValueError, "unknown device 5"),
    ({"last": "yes"}, TypeError, "last must be True or False, got 'yes'"),
])
def test_load_run_names_a_bad_device_or_flag(reverse_run, keys, error, message):
    with pytest.raises(error, match=re.escape(message)):
        seqlab.load_run(reverse_run, **keys)
    if "device" in keys:
        with pytest.raises(error, match=re.escape(message)):
            seqlab.evaluate(reverse_run, "reverse", **keys)


def test_length_on_dates_is_said_to_be_ignored(tmp_path, caplog, single_thread):
    with caplog.at_level(logging.WARNING):
        seqlab.train("dates", out=tmp_path / "d", length="5", max_steps=1, hidden_size=8,
                     embedding_size=4, num_pairs=50, device="cpu")
    assert "--length applies to reverse, sort, addition only; ignored for dates" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # a task that takes it says nothing
        seqlab.train("sort", out=tmp_path / "s", length="5", max_steps=1, hidden_size=8,
                     embedding_size=4, num_pairs=50, device="cpu")
    assert "--length" not in caplog.text
