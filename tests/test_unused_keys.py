"""A key the user gives that means nothing for the data or the other settings is said to be
ignored (one warning naming it and why), never recorded silently; the same key where it does
mean something, or a key left at its default, says nothing."""

from __future__ import annotations

import math

import pytest
from tests.test_classify import order_tsv, series_ts

from seqlab.cli import main

TINY = ["--hidden-size", "8", "--batch-size", "4", "--max-steps", "1", "--eval-every", "1",
        "--device", "cpu", "--quiet", "--warmup-steps", "0"]


def warnings_of(capsys, tmp_path, *argv) -> str:
    capsys.readouterr()
    out = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    assert main(["train", *map(str, argv), *TINY, "--out", str(out)]) == 0
    return capsys.readouterr().err


@pytest.mark.parametrize("argv, warned", [
    (["adding", "--length", "10", "--embedding-size", "4"],
     "--embedding-size sizes token embeddings, and adding's inputs are numbers; ignored for "
     "adding"),
    (["dates", "--num-pairs", "60", "--length", "5"],
     "--length applies to reverse, sort, addition only; ignored for dates"),
    (["sort", "--num-pairs", "60", "--attention", "dot", "--attention-size", "4"],
     "--attention-size sizes the additive scorer only (--attention additive); ignored for sort"),
])
def test_a_key_without_effect_is_said_to_be_ignored(argv, warned, capsys, tmp_path,
                                                    single_thread):
    err = warnings_of(capsys, tmp_path, *argv)
    assert warned in err and err.count("ignored for") == 1


@pytest.mark.parametrize("argv", [
    ["copy", "--length", "10", "--embedding-size", "4"],  # tokens: the embedding is used
    ["sort", "--num-pairs", "60", "--length", "5", "--attention-size", "4"],
    ["adding", "--length", "10"],  # every other key at its default
    ["sort", "--num-pairs", "60", "--attention", "dot"],
])
def test_a_key_with_effect_or_left_alone_says_nothing(argv, capsys, tmp_path, single_thread):
    assert "ignored for" not in warnings_of(capsys, tmp_path, *argv)


def test_classify_names_the_text_keys_on_series_and_the_series_keys_on_text(
        capsys, tmp_path, single_thread):
    pytest.importorskip("sktime")
    ts = series_ts(tmp_path / "ramps.ts")
    err = warnings_of(capsys, tmp_path, ts, "--tokenizer", "word", "--max-tokens", "5")
    assert "--tokenizer applies to texts only, and these are numeric series" in err
    assert "--max-tokens applies to texts only" in err and err.count("ignored for") == 2
    tsv = order_tsv(tmp_path / "order.tsv")
    err = warnings_of(capsys, tmp_path, tsv, "--task", "classify", "--input-noise", "0.1")
    assert f"--input-noise applies to numeric series only; ignored for {tsv}" in err
    err = warnings_of(capsys, tmp_path, tsv, "--task", "classify", "--deltas")
    assert f"--deltas applies to numeric series only; ignored for {tsv}" in err
    assert "ignored for" not in warnings_of(capsys, tmp_path, ts, "--input-noise", "0.1")


def test_an_ignored_key_is_recorded_at_its_default_and_never_refuses_a_run(capsys, tmp_path,
                                                                          single_thread):
    import json

    # absurd values of keys without effect: warned, dropped, the run trains and records the
    # defaults (a size check read them as if they mattered, and refused the run)
    err = warnings_of(capsys, tmp_path, "dates", "--num-pairs", "60", "--length", "200000000")
    assert "--length applies to" in err and "error" not in err
    err = warnings_of(capsys, tmp_path, "sort", "--num-pairs", "60", "--attention", "dot",
                      "--attention-size", "100000000")
    assert "--attention-size sizes the additive scorer only" in err and "error" not in err
    config = json.loads((tmp_path / "run1" / "config.json").read_text())
    assert config["seq2seq"]["attention_size"] == 0 and config["seq2seq"]["attention"] == "dot"
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"{w}\t{w[::-1]}\n" for w in ("abc", "bca", "cab", "acb")),
                     encoding="utf-8")
    err = warnings_of(capsys, tmp_path, pairs, "--task", "seq2seq", "--num-pairs", "5",
                      "--length", "7")
    assert f"--num-pairs applies to the built-in tasks only; ignored for {pairs}" in err
    assert "--length applies to" in err
    config = json.loads((tmp_path / "run3" / "config.json").read_text())
    # evaluating it on a built-in task draws that task's own lengths, not the ignored 7
    assert config["seq2seq"]["length"] == "" and config["seq2seq"]["num_pairs"] == 20000


def test_the_original_command_with_resume_is_not_a_change(capsys, tmp_path, single_thread):
    # the up arrow and --resume: the ignored key is repeated, warned of again, and the run
    # goes on (config.json holds its default, so it was taken for a change before)
    run = tmp_path / "adding"
    argv = ["train", "adding", "--length", "10", "--embedding-size", "4", *TINY, "--out",
            str(run)]
    assert main(argv) == 0
    capsys.readouterr()
    code = main([*argv[:-4], "--max-steps", "2", *argv[-4:], "--resume"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "--embedding-size sizes token embeddings" in err and "cannot change" not in err
    # a key with effect still may not change
    code = main([*argv, "--hidden-size", "16", "--max-steps", "3", "--resume"])
    assert code == 2 and "cannot change: hidden_size (8 -> 16)" in capsys.readouterr().err
    import json

    config = json.loads((run / "config.json").read_text())
    assert config["model"]["embedding_size"] == 64  # the default, which the run used
    assert config["ignored"]["embedding_size"]["given"] == 4
    capsys.readouterr()
    assert main(["info", str(run)]) == 0  # what the run was given and did not use
    assert "ignored      --embedding-size 4" in capsys.readouterr().out


def test_the_same_keys_from_a_config_file_resume_too(capsys, tmp_path, single_thread):
    toml = tmp_path / "c.toml"
    toml.write_text('embedding_size = 4\nlength = "10"\n', encoding="utf-8")
    run = tmp_path / "adding"
    argv = ["train", "adding", "--config", str(toml), *TINY, "--out", str(run)]
    assert main(argv) == 0
    capsys.readouterr()
    code = main([*argv, "--max-steps", "2", "--resume"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "--embedding-size sizes token embeddings" in err


def test_resume_refuses_what_a_new_run_refuses_and_warns_of_nothing_it_refuses(
        capsys, tmp_path, single_thread):
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat\n" * 40, encoding="utf-8")
    run = tmp_path / "lm"
    argv = ["train", str(text), "--seq-len", "8", *TINY, "--out", str(run)]
    assert main(argv) == 0
    capsys.readouterr()
    # a key not given at first is a change, even one without effect; nothing said ignored
    code = main([*argv, "--max-steps", "2", "--tokenizer", "bpe", "--bpe-vocab-size", "300",
                 "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot change: bpe_vocab_size, tokenizer" in err
    assert "ignored" not in err
    series = tmp_path / "s.csv"  # a key the forecast family never takes
    series.write_text("t,a\n" + "".join(f"{t},{math.sin(t / 3):.4f}\n" for t in range(80)),
                      encoding="utf-8")
    forecast = tmp_path / "f"
    argv = ["train", str(series), "--task", "forecast", *TINY, "--out", str(forecast)]
    assert main(argv) == 0
    capsys.readouterr()
    code = main([*argv, "--max-steps", "2", "--bpe-vocab-size", "300", "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "bpe_vocab_size does not apply to the forecast task" in err


def test_a_bpe_size_without_bpe_is_said_to_be_ignored(capsys, tmp_path, single_thread):
    from seqlab.families.text import TEXT

    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat\n" * 40, encoding="utf-8")
    err = warnings_of(capsys, tmp_path, text, "--seq-len", "8", "--bpe-vocab-size", "300")
    assert f"--bpe-vocab-size applies to --tokenizer bpe only, not char; ignored for {text}" \
        in err
    assert TEXT.unused_keys(str(text), TEXT.configs({"tokenizer": "bpe"}), None) == {}


def test_a_csv_or_tsv_read_as_plain_text_is_said_to_be(capsys, tmp_path, single_thread):
    """A forgotten --task: the language model would learn the file's characters, header and
    commas included; the warning names the tasks that read such files."""
    text = "".join(f"s{k % 7},{k},{k % 3},{'up' if k % 2 else 'down'}\n" for k in range(400))
    for name in ("d.csv", "d.TSV", "d.txt"):
        (tmp_path / name).write_text("id,time,a,label\n" + text, encoding="utf-8")
    err = warnings_of(capsys, tmp_path, tmp_path / "d.csv")
    assert (f"{tmp_path / 'd.csv'} is read as plain text for a language model (--task lm); "
            "labelled examples, series or pairs need --task classify, forecast or seq2seq"
            ) in err
    assert "read as plain text" in warnings_of(capsys, tmp_path, tmp_path / "d.TSV")
    assert "read as plain text" not in warnings_of(capsys, tmp_path, tmp_path / "d.txt")
    assert "read as plain text" not in warnings_of(capsys, tmp_path, tmp_path / "d.csv",
                                                   "--task", "lm")  # asked for
