"""The command line, end to end: happy paths, then the bad-input contract.

Most runs go through ``seqlab.cli.main`` in this process (fast); a few start real processes
(``python -m seqlab`` and the ``seqlab`` console script) to prove the entry points work. Every
model is tiny and every text is generated here from a seeded generator.

The bad-input contract: exactly one line on stderr starting with ``seqlab: error: ``, exit code
2, no traceback, and nothing on disk changed (no file rewritten, none created or removed).
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from seqlab.cli import COMMANDS, build_parser, main

TINY = ["--hidden-size", "16", "--embedding-size", "8", "--seq-len", "16", "--batch-size", "4",
        "--max-steps", "6", "--eval-every", "3", "--log-every", "3", "--device", "cpu"]
WORDS = "the quick brown fox jumps over a lazy dog and cat sat on mat by old red barn".split()
ERROR_PREFIX = "seqlab: error: "


def make_text(seed: int = 0, lines: int = 60) -> str:
    """About 2 kB of lowercase words: letters, spaces and newlines only (no capitals)."""
    rng = random.Random(seed)
    return "".join(" ".join(rng.choice(WORDS) for _ in range(8)) + "\n" for _ in range(lines))


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys) -> Callable[..., Result]:
    """Run ``seqlab ARGS`` in this process; argparse's SystemExit becomes an exit code."""

    def run(*argv) -> Result:
        capsys.readouterr()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exit:
            code = exit.code
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


pytestmark = pytest.mark.usefixtures("single_thread")  # conftest: one intra-op thread


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Relative paths (the default run name runs/...) land in the test's folder, not the repo."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny trained run, ``HOME/run``, trained on ``data.txt`` given as a relative path.

    Tests only read it; tests that change a run work on a copy (see ``Workspace``). Because the
    run records its source as ``data.txt``, a copy resumes from any folder holding a data.txt.
    """
    home = tmp_path_factory.mktemp("trained")
    (home / "data.txt").write_text(make_text(), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(home)
        assert main(["train", "data.txt", "--out", "run", *TINY, "--quiet"]) == 0
    return home / "run"


def snapshot(*roots: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (as None) under ``roots``."""
    state: dict[str, bytes | None] = {}
    for root in roots:
        for path in [root, *sorted(root.rglob("*"))]:
            state[str(path)] = path.read_bytes() if path.is_file() else None
    return state


def run_config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text(encoding="utf-8"))


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# happy paths ---------------------------------------------------------------------------------
def test_train_writes_a_complete_run(cli, tmp_path):
    (tmp_path / "data.txt").write_text(make_text(), encoding="utf-8")
    r = cli("train", "data.txt", "--out", "run", *TINY)
    assert r.code == 0, r.err
    run = tmp_path / "run"
    for name in ("config.json", "vocab.json", "model.safetensors", "last/model.safetensors",
                 "last/trainer_state.pt", "metrics.jsonl"):
        assert (run / name).is_file(), name
    config = run_config(run)
    assert config["model"]["hidden_size"] == 16 and config["model"]["model"] == "lstm"
    assert config["train"]["max_steps"] == 6 and config["data"]["source"] == "data.txt"
    assert config["model"]["vocab_size"] == len(set(make_text()))
    evals = [m["step"] for m in metrics(run) if "val_loss" in m]
    assert evals == [3, 6]
    assert r.out == ""  # progress and the summary go to stderr; stdout stays clean
    assert "after 6 steps (max_steps)" in r.err.splitlines()[-1]
    assert "Traceback" not in r.err


def test_train_without_out_names_the_run_after_data_and_model(cli, tmp_path):
    (tmp_path / "tunes.txt").write_text(make_text(), encoding="utf-8")
    r = cli("train", "tunes.txt", *TINY, "--model", "gru", "--quiet")
    assert r.code == 0, r.err
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("tunes-gru-")
    assert (runs[0] / "model.safetensors").is_file()


def test_generate_respects_length_and_echoes_the_prompt(cli, trained):
    r = cli("generate", trained, "--prompt", "the ", "--length", "40", "--seed", "3")
    assert r.code == 0, r.err
    assert r.out.endswith("\n")
    text = r.out[:-1]
    assert text.startswith("the ") and len(text) == len("the ") + 40
    assert set(text) <= set(make_text())


def test_generate_without_prompt_gives_length_characters(cli, trained):
    r = cli("generate", trained, "--length", "25", "--seed", "0")
    assert r.code == 0, r.err
    assert len(r.out) == 25 + 1  # print's newline


def test_generate_seed_repeats_exactly(cli, trained):
    first = cli("generate", trained, "--length", "60", "--seed", "7")
    again = cli("generate", trained, "--length", "60", "--seed", "7")
    other = cli("generate", trained, "--length", "60", "--seed", "8")
    assert first.code == again.code == other.code == 0
    assert first.out == again.out
    assert first.out != other.out


def test_generate_num_samples(cli, trained):
    r = cli("generate", trained, "--prompt", "a", "--length", "30", "--num-samples", "3",
            "--seed", "1")
    assert r.code == 0, r.err
    parts = re.split(r"^--- sample (\d+) ---\n", r.out, flags=re.M)
    assert parts[0] == ""
    assert parts[1::2] == ["1", "2", "3"]
    samples = [p[:-1] for p in parts[2::2]]  # each ends with print's newline
    assert all(s.startswith("a") and len(s) == 1 + 30 for s in samples)
    assert len(set(samples)) == 3


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty", [True, False])
def test_a_long_generation_shows_a_bar_on_a_terminal_only(cli, trained, monkeypatch, tty):
    """--length from BAR_FROM tokens: a progress bar on stderr when it is a terminal (cleared
    at the end), nothing on a pipe; stdout holds the text alone either way."""
    from seqlab import cli_use

    monkeypatch.setattr(cli_use, "BAR_FROM", 50)
    screen = Terminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", screen)
    r = cli("generate", trained, "--length", "80", "--seed", "3")
    assert r.code == 0
    assert len(r.out) == 80 + 1 and "token" not in r.out
    assert ("/80 [" in screen.getvalue() and "token/s" in screen.getvalue()) == tty
    assert tty or screen.getvalue() == ""
    short = Terminal()
    monkeypatch.setattr(sys, "stderr", short)
    assert cli("generate", trained, "--length", "49", "--seed", "3").code == 0
    assert short.getvalue() == ""  # below BAR_FROM: no bar


def test_generate_greedy_is_deterministic(cli, trained):
    outs = {cli("generate", trained, "--greedy", "--length", "30", *seed).out
            for seed in ([], ["--seed", "1"], ["--seed", "2"])}
    assert len(outs) == 1
    assert len(outs.pop()) == 31


def test_evaluate_json(cli, trained, tmp_path):
    data = tmp_path / "held_out.txt"
    data.write_text(make_text(seed=1, lines=10), encoding="utf-8")
    r = cli("evaluate", trained, data, "--json", "--device", "cpu")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert isinstance(result, dict)
    assert 0 < result["loss"] < math.log(run_config(trained)["model"]["vocab_size"]) + 1
    assert result["ppl"] == pytest.approx(math.exp(result["loss"]))
    assert result["bpc"] == pytest.approx(result["loss"] / math.log(2))  # chars: 1 per token
    assert result["tokens"] > 0
    plain = cli("evaluate", trained, data, "--device", "cpu")
    assert plain.code == 0 and "perplexity" in plain.out


def test_info_json(cli, trained):
    r = cli("info", trained, "--json")
    assert r.code == 0, r.err
    info = json.loads(r.out)
    assert info["parameters"] > 0
    assert info["config"] == run_config(trained)
    assert info["steps"] == 6 and info["evaluations"] == 2
    assert info["best_val_loss"] == min(m["val_loss"] for m in metrics(trained) if "val_loss" in m)
    plain = cli("info", trained)
    assert plain.code == 0 and f"{info['parameters']:,}" in plain.out


def test_config_file_sets_keys_and_flags_override_it(cli, tmp_path):
    (tmp_path / "data.txt").write_text(make_text(), encoding="utf-8")
    (tmp_path / "tiny.toml").write_text(
        'model = "gru"\nhidden_size = 12\nnum_layers = 2\nlr = 0.01\nclip_norm = 2\n'
        'embedding_size = 8\nseq_len = 16\nbatch_size = 4\nmax_steps = 6\neval_every = 3\n'
        'device = "cpu"\n', encoding="utf-8")
    r = cli("train", "data.txt", "--config", "tiny.toml", "--hidden-size", "16", "--out", "run",
            "--quiet")
    assert r.code == 0, r.err
    config = run_config(tmp_path / "run")
    assert config["model"]["hidden_size"] == 16  # the flag wins over the file's 12
    assert config["model"]["model"] == "gru" and config["model"]["num_layers"] == 2
    assert config["train"]["lr"] == 0.01
    assert config["train"]["clip_norm"] == 2.0  # a TOML int for a float key


def test_resume_continues_the_run(cli, trained, tmp_path):
    shutil.copy(trained.parent / "data.txt", tmp_path / "data.txt")
    shutil.copytree(trained, tmp_path / "run")
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    r = cli("train", "data.txt", "--resume", "--out", "run", "--max-steps", "12", "--quiet")
    assert r.code == 0, r.err
    assert "after 12 steps" in r.err
    info = json.loads(cli("info", "run", "--json").out)
    assert info["steps"] == 12 and info["config"]["train"]["max_steps"] == 12
    after = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert after.startswith(before)  # the first session's records are kept as they were
    assert [m["step"] for m in metrics(tmp_path / "run") if "val_loss" in m] == [3, 6, 9, 12]
    # stopping at 6 and resuming lands where one uninterrupted 12-step run does
    straight = cli("train", "data.txt", "--out", "straight", *TINY, "--max-steps", "12", "--quiet")
    assert straight.code == 0, straight.err
    resumed_last = [m for m in metrics(tmp_path / "run") if "val_loss" in m][-1]
    straight_last = [m for m in metrics(tmp_path / "straight") if "val_loss" in m][-1]
    assert resumed_last["val_loss"] == pytest.approx(straight_last["val_loss"])


@pytest.mark.parametrize("tokenizer", ["word", "bpe"])
def test_tokenizers_train_and_generate(cli, tmp_path, tokenizer):
    (tmp_path / "data.txt").write_text(make_text(), encoding="utf-8")
    r = cli("train", "data.txt", "--out", "run", *TINY, "--tokenizer", tokenizer, "--quiet")
    assert r.code == 0, r.err
    vocab_file = "vocab.json" if tokenizer == "word" else "tokenizer.json"
    assert (tmp_path / "run" / vocab_file).is_file()
    assert run_config(tmp_path / "run")["data"]["tokenizer"] == tokenizer
    g = cli("generate", "run", "--prompt", "the", "--length", "12", "--seed", "0")
    assert g.code == 0, g.err
    assert g.out.startswith("the") and len(g.out) > len("the\n")
    if tokenizer == "word":
        tokens = json.loads((tmp_path / "run" / "vocab.json").read_text())["tokens"]
        alternatives = "|".join(map(re.escape, sorted(tokens, key=len, reverse=True)))
        assert re.fullmatch(f"(?:{alternatives})+", g.out[:-1])  # whole vocabulary tokens
        unknown = cli("generate", "run", "--prompt", "the zebra")
        assert unknown.code == 2 and "'zebra'" in unknown.err


GATE_BLOCKS = {"rnn": 1, "irnn": 1, "gru": 3, "lstm": 4}


@pytest.mark.parametrize("model", sorted(GATE_BLOCKS))
def test_every_model_trains(cli, tmp_path, model):
    (tmp_path / "data.txt").write_text(make_text(), encoding="utf-8")
    r = cli("train", "data.txt", "--out", "run", *TINY, "--model", model, "--quiet")
    assert r.code == 0, r.err
    info = json.loads(cli("info", "run", "--json").out)
    assert info["config"]["model"]["model"] == model
    v, e, h, k = info["config"]["model"]["vocab_size"], 8, 16, GATE_BLOCKS[model]
    # embedding + packed gate blocks (W_ih, W_hh, b_ih, b_hh) + head
    assert info["parameters"] == v * e + k * (h * e + h * h + 2 * h) + h * v + v


# help ----------------------------------------------------------------------------------------
def test_top_level_help_has_one_example_per_command(cli):
    r = cli("--help")
    assert r.code == 0
    examples = r.out.split("examples:", 1)[1].splitlines()
    for command in ("train", "generate", "evaluate", "info"):
        assert sum(line.strip().startswith(f"seqlab {command} ") for line in examples) == 1


def flags_without_help(text: str) -> list[str]:
    """Argument lines in an argparse help text with no help after them."""
    lines, bare = text.splitlines(), []
    for i, line in enumerate(lines):
        m = re.match(r"^  (\S.*?)(?: {2,}(\S.*))?$", line)
        if not m or m.group(2):
            continue
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if not re.match(r"^ {4,}\S", following):
            bare.append(m.group(1))
    return bare


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_flag_has_help(cli, monkeypatch, command):
    monkeypatch.setenv("COLUMNS", "120")
    r = cli(command, "--help")
    assert r.code == 0
    assert flags_without_help(r.out) == []
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    for action in sub._actions:
        if action.option_strings:
            assert action.option_strings[-1] in r.out
    assert flags_without_help("options:\n  --bare\n  --ok  text\n") == ["--bare"]  # the check bites


def test_no_command_prints_usage_and_fails(cli):
    r = cli()
    assert r.code == 2 and "usage: seqlab" in r.err and r.out == ""


def test_version(cli):
    r = cli("--version")
    assert r.code == 0 and re.fullmatch(r"seqlab \d+\.\d+\.\d+\n", r.out)


# bad input -----------------------------------------------------------------------------------
@dataclass
class Workspace:
    """A test's folder: ``run`` (a copy of the trained run), ``data.txt``, files made here."""

    root: Path

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def data(self) -> Path:
        return self.root / "data.txt"

    def file(self, name: str, content: bytes) -> Path:
        path = self.root / name
        path.write_bytes(content)
        return path

    def train(self, data, *flags) -> list:
        return ["train", data, "--out", self.root / "new-run", *TINY, *flags]

    def toml(self, text: str) -> list:
        return self.train(self.data, "--config", self.file("bad.toml", text.encode()))

    def resume(self, *flags) -> list:
        return ["train", "data.txt", "--resume", "--out", "run", *flags]

    def edit_config(self, **model) -> None:
        config = run_config(self.run)
        config["model"].update(model)
        (self.run / "config.json").write_text(json.dumps(config), encoding="utf-8")

    def damage(self, name: str, content: bytes | None) -> None:
        if content is None:
            (self.run / name).unlink()
        else:
            (self.run / name).write_bytes(content)

    def weights(self) -> bytes:
        return (self.run / "model.safetensors").read_bytes()


def noise(n: int) -> bytes:
    return random.Random(0).randbytes(n)


def then(prepare: Callable, argv: Callable) -> Callable:
    """A case that changes the workspace first, then runs ``argv(ws)``."""

    def setup(ws: Workspace) -> list:
        prepare(ws)
        return argv(ws)

    return setup


def shrink_data(ws: Workspace) -> list:
    ws.data.write_text("the cat\n", encoding="utf-8")
    return ws.resume("--max-steps", "12")


NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")

TRAIN_CASES = [
    ("missing-path", lambda ws: ws.train(ws.root / "no-such.txt"), r"no-such\.txt: no such file"),
    ("empty-file", lambda ws: ws.train(ws.file("empty.txt", b"")), r"empty"),
    ("whitespace-file", lambda ws: ws.train(ws.file("blank.txt", b" \n\n\t\n")), r"empty"),
    ("empty-folder", lambda ws: ws.train(ws.root / "corpus"), r"no files"),
    pytest.param(lambda ws: ws.train(ws.file("short.txt", b"the cat sat\n")),
                 r"too short for one training (chunk|window)", id="too-short"),
    pytest.param(lambda ws: ws.train(ws.file("small.txt", make_text(lines=3).encode()),
                                     "--val-fraction", "0.005"),
                 r"validation split", id="validation-too-short"),
    ("binary-file", lambda ws: ws.train(ws.file("blob.bin", b"abc\x00def\n" * 50)), r"binary"),
    ("latin-1-file", lambda ws: ws.train(ws.file("l1.txt", "café crème\n".encode("latin-1") * 20)),
     r"not UTF-8"),
    ("unknown-model", lambda ws: ws.train(ws.data, "--model", "transformer"),
     r"--model: invalid choice: 'transformer'"),
    ("unknown-corpus", lambda ws: ws.train("oneils"), r"oneils: no such file.*oneills"),
    *[(f"{flag}={value}", lambda ws, flag=flag, value=value: ws.train(ws.data, flag, value),
       rf"{flag[2:].replace('-', '_')} must be positive, got {value}")
      for flag in ("--hidden-size", "--num-layers", "--max-steps", "--seq-len", "--batch-size")
      for value in ("0", "-3")],
    ("lr=0", lambda ws: ws.train(ws.data, "--lr", "0"), r"lr must be positive, got 0\.0"),
    ("chrono-steps=2", lambda ws: ws.train(ws.data, "--chrono-steps", "2"),
     r"chrono_steps must be 0 \(off\) or >= 3, got 2"),
    ("lr=-0.1", lambda ws: ws.train(ws.data, "--lr", "-0.1"), r"lr must be positive, got -0\.1"),
    ("lr=nan", lambda ws: ws.train(ws.data, "--lr", "nan"), r"lr must be finite"),
    ("int-flag-not-a-number", lambda ws: ws.train(ws.data, "--hidden-size", "big"),
     r"--hidden-size: invalid int value: 'big'"),
    ("int-flag-a-float", lambda ws: ws.train(ws.data, "--num-layers", "1.5"),
     r"--num-layers: invalid int value: '1\.5'"),
    ("float-flag-not-a-number", lambda ws: ws.train(ws.data, "--lr", "fast"),
     r"--lr: invalid float value: 'fast'"),
    ("out-exists", lambda ws: ["train", ws.data, "--out", ws.run, *TINY], r"already exists"),
    ("out-is-a-file", lambda ws: ["train", ws.data, "--out", ws.data, *TINY], r"already exists"),
    ("out-under-a-file", lambda ws: ["train", ws.data, "--out", ws.data / "run", *TINY],
     r"data\.txt"),
    pytest.param(lambda ws: ws.train(ws.data, "--device", "cuda"), r"no CUDA GPU",
                 id="device-cuda-absent", marks=NO_GPU),
    ("clip-norm-and-clip-value", lambda ws: ws.train(ws.data, "--clip-norm", "1",
                                                     "--clip-value", "1"),
     r"clip_norm and clip_value"),
    ("tie-weights-sizes", lambda ws: ws.train(ws.data, "--tie-weights"), r"tie_weights"),
    ("toml-unknown-key", lambda ws: ws.toml("hiden_size = 16\n"),
     r"\.toml: unknown config keys: hiden_size \(did you mean hidden_size\?\)"),
    ("toml-wrong-type", lambda ws: ws.toml('num_layers = "two"\n'),
     r"num_layers: expected int"),
    ("toml-syntax", lambda ws: ws.toml("hidden_size = = 3\n"), r"not valid TOML"),
    ("toml-table", lambda ws: ws.toml("[model]\nhidden_size = 3\n"), r"tables: model"),
    ("toml-missing", lambda ws: ws.train(ws.data, "--config", ws.root / "none.toml"),
     r"none\.toml: no such config file"),
    ("resume-different-data", lambda ws: ["train", ws.file("other.txt", make_text(5).encode()),
                                          "--resume", "--out", "run"],
     r"was trained on 'data\.txt'"),
    ("resume-without-out", lambda ws: ["train", "data.txt", "--resume"], r"--resume needs --out"),
    ("resume-with-config", lambda ws: ws.resume("--config", ws.file("c.toml", b"lr = 0.1\n")),
     r"drop --config"),
    ("resume-changes-model", lambda ws: ws.resume("--hidden-size", "32"),
     r"cannot change: hidden_size"),
    ("resume-no-trainer-state", then(lambda ws: ws.damage("last/trainer_state.pt", None),
                                     lambda ws: ws.resume()), r"missing last/trainer_state\.pt"),
    ("resume-corrupt-trainer-state",
     then(lambda ws: ws.damage("last/trainer_state.pt", noise(500)),
          lambda ws: ws.resume("--max-steps", "12")), r"unreadable trainer state"),
    ("resume-corrupt-last-weights",
     then(lambda ws: ws.damage("last/model.safetensors", noise(500)),
          lambda ws: ws.resume("--max-steps", "12")), r"truncated or corrupt"),
    pytest.param(shrink_data, r"too short for one training (chunk|window)",
                 id="resume-data-shrank"),
    ("resume-data-new-characters", then(lambda ws: ws.data.write_text(make_text() + "QZ\n"),
                                        lambda ws: ws.resume("--max-steps", "12")),
     r"outside the vocabulary: 'Q', 'Z'"),
]

RUN_DAMAGE = [
    ("no-run-dir", lambda ws: shutil.rmtree(ws.run), r"no such run directory"),
    ("run-is-a-file", lambda ws: (shutil.rmtree(ws.run), ws.file("run", b"x")),
     r"no such run directory"),
    ("missing-config", lambda ws: ws.damage("config.json", None), r"missing config\.json"),
    ("missing-weights", lambda ws: ws.damage("model.safetensors", None),
     r"missing model\.safetensors"),
    ("missing-vocab", lambda ws: ws.damage("vocab.json", None), r"no vocab\.json"),
    ("empty-weights", lambda ws: ws.damage("model.safetensors", b""), r"truncated or corrupt"),
    ("truncated-weights", lambda ws: ws.damage("model.safetensors",
                                               ws.weights()[:len(ws.weights()) // 2]),
     r"truncated or corrupt"),
    ("corrupt-weights", lambda ws: ws.damage("model.safetensors", noise(len(ws.weights()))),
     r"truncated or corrupt"),
    ("config-hidden-size", lambda ws: ws.edit_config(hidden_size=32), r"do not match config"),
    ("config-num-layers", lambda ws: ws.edit_config(num_layers=2), r"do not match config"),
    ("config-model", lambda ws: ws.edit_config(model="gru"), r"do not match config"),
    ("config-vocab-size", lambda ws: ws.edit_config(vocab_size=3), r"vocab_size 3"),
    ("config-bad-value", lambda ws: ws.edit_config(hidden_size=-1), r"invalid model config"),
    ("config-not-json", lambda ws: ws.damage("config.json", b"{not json"),
     r"not a valid seqlab config"),
    ("vocab-not-json", lambda ws: ws.damage("vocab.json", b"[1, 2"), r"not a valid vocabulary"),
]

RUN_COMMANDS = {
    "generate": lambda ws: ["generate", ws.run, "--length", "5"],
    "evaluate": lambda ws: ["evaluate", ws.run, ws.data, "--device", "cpu"],
    "info": lambda ws: ["info", ws.run],
}


def on_damaged_run(damage: Callable, command: str) -> Callable:
    return then(damage, RUN_COMMANDS[command])


def generate(*flags) -> Callable:
    return lambda ws: ["generate", ws.run, *flags]


def evaluate(name: str, content: bytes | None) -> Callable:
    return lambda ws: ["evaluate", ws.run,
                       ws.root / name if content is None else ws.file(name, content)]


OTHER_CASES = [
    ("prompt-outside-vocabulary", generate("--prompt", "the XYZ"),
     r"characters outside the vocabulary: 'X', 'Y', 'Z'$"),
    ("length-0", generate("--length", "0"), r"--length and --num-samples must be positive"),
    ("length-negative", generate("--length", "-4"), r"must be positive"),
    ("num-samples-0", generate("--num-samples", "0"), r"must be positive"),
    ("temperature-0", generate("--temperature", "0"), r"temperature must be positive"),
    ("top-p-0", generate("--top-p", "0"), r"top_p must be in"),
    ("top-k-negative", generate("--top-k", "-1"), r"top_k must be >= 0"),
    ("length-not-a-number", generate("--length", "ten"), r"invalid int value: 'ten'"),
    pytest.param(generate("--device", "cuda"), r"no CUDA GPU", id="generate-device-cuda-absent",
                 marks=NO_GPU),
    pytest.param(lambda ws: ["evaluate", ws.run, ws.data, "--device", "cuda"], r"no CUDA GPU",
                 id="evaluate-device-cuda-absent", marks=NO_GPU),
    ("evaluate-missing-data", evaluate("absent.txt", None), r"absent\.txt: no such file"),
    ("evaluate-empty-data", evaluate("e.txt", b""), r"empty"),
    ("evaluate-binary-data", evaluate("b.bin", b"\x00\x01" * 64), r"binary"),
    ("evaluate-latin-1-data", evaluate("l.txt", "naïve\n".encode("latin-1")), r"not UTF-8"),
    ("evaluate-one-token", evaluate("one.txt", b"a"), r"at least 2 tokens"),
    ("evaluate-new-characters", evaluate("caps.txt", b"The Cat\n"),
     r"outside the vocabulary: 'C', 'T'"),
    ("evaluate-beam-on-a-language-model", lambda ws: ["evaluate", ws.run, ws.data, "--beam", "3"],
     r"--beam applies to seq2seq runs only; .*run is a 'lm' run$"),
    ("unknown-command", lambda ws: ["trian", ws.data], r"invalid choice: 'trian'"),
    ("missing-argument", lambda ws: ["generate"], r"required: RUN"),
    ("unknown-flag", lambda ws: ["info", ws.run, "--jsn"], r"unrecognized arguments: --jsn"),
]


def as_params(cases) -> list:
    return [case if type(case) is not tuple else pytest.param(case[1], case[2], id=case[0])
            for case in cases]


BAD_INPUT = [
    *as_params(TRAIN_CASES),
    *[pytest.param(on_damaged_run(damage, command), pattern, id=f"{command}-{name}")
      for name, damage, pattern in RUN_DAMAGE for command in RUN_COMMANDS],
    *as_params(OTHER_CASES),
]


@pytest.mark.parametrize(("setup", "pattern"), BAD_INPUT)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(cli, trained, tmp_path, setup,
                                                          pattern):
    shutil.copytree(trained, tmp_path / "run")
    shutil.copy(trained.parent / "data.txt", tmp_path / "data.txt")
    (tmp_path / "corpus").mkdir()
    ws = Workspace(tmp_path)
    argv = setup(ws)
    before = snapshot(tmp_path, trained.parent)
    r = cli(*argv)
    lines = r.err.splitlines()
    assert len(lines) == 1 and r.err.endswith("\n"), r.err
    assert lines[0].startswith(ERROR_PREFIX), r.err
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in r.err
    assert r.code == 2
    assert r.out == ""
    after = snapshot(tmp_path, trained.parent)
    assert sorted(set(after) - set(before)) == [], "created"
    assert sorted(set(before) - set(after)) == [], "removed"
    assert [path for path in before if before[path] != after[path]] == [], "rewritten"


def test_debug_raises_the_real_exception(cli, trained, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        cli("train", tmp_path / "absent.txt", "--debug")
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "model.safetensors").write_bytes(noise(300))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        cli("--debug", "generate", run)


def test_non_debug_bug_is_one_line_exit_1(cli, monkeypatch, trained):
    """An unexpected exception (a bug) is still one line, and says how to see more."""

    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr("seqlab.families.runner.load_run", broken)
    r = cli("info", trained)
    assert r.code == 1
    assert r.err.splitlines() == [f"{ERROR_PREFIX}internal error: KeyError: 'boom' "
                                  "(rerun with --debug)"]


# real processes ------------------------------------------------------------------------------
CONSOLE_SCRIPT = Path(sysconfig.get_path("scripts")) / "seqlab"


def spawn(*argv, cwd: Path) -> subprocess.CompletedProcess:
    # a warning would show up as extra lines; one thread, as in this process (one_thread)
    env = {**os.environ, "PYTHONWARNINGS": "default", "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_python_m_seqlab_generates_what_main_does(cli, trained, tmp_path):
    flags = ["--prompt", "the", "--length", "30", "--seed", "11"]
    proc = spawn(sys.executable, "-m", "seqlab", "generate", trained, *flags, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout == cli("generate", trained, *flags).out


def test_console_script_bad_input_is_one_line(tmp_path):
    assert CONSOLE_SCRIPT.is_file(), CONSOLE_SCRIPT
    data = tmp_path / "blob.bin"
    data.write_bytes(b"\x00" * 100)
    proc = spawn(CONSOLE_SCRIPT, "train", data, "--out", tmp_path / "new", *TINY, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"{ERROR_PREFIX}{data}: looks binary (it contains NUL "
                                        "bytes), expected UTF-8 text"]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "new").exists()


def test_debug_in_a_process_shows_the_traceback(tmp_path):
    proc = spawn(sys.executable, "-m", "seqlab", "--debug", "generate", tmp_path / "absent",
                 cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert "FileNotFoundError" in proc.stderr and "no such run directory" in proc.stderr


def test_a_reader_that_stops_early_is_not_an_error(trained, tmp_path):
    """`seqlab generate ... | head -1`: the closed pipe ends the command quietly."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "seqlab", "generate", str(trained),
                             "--length", "2000", "--num-samples", "60", "--seed", "1"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # the reader goes away with most of the output unread
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == ""


def test_evaluating_a_word_model_counts_the_words_it_never_saw(text_file, tmp_path, capsys):
    run = tmp_path / "words"
    assert main(["train", str(text_file), "--tokenizer", "word", "--hidden-size", "8",
                 "--embedding-size", "4", "--seq-len", "8", "--batch-size", "4", "--max-steps",
                 "2", "--device", "cpu", "--quiet", "--out", str(run)]) == 0
    import seqlab

    assert seqlab.evaluate(run, text_file)["unknown_tokens"] == 0
    other = tmp_path / "other.txt"
    other.write_text("zyzzyva quokka " * 10, encoding="utf-8")
    capsys.readouterr()
    assert main(["evaluate", str(run), str(other)]) == 0
    err = capsys.readouterr().err
    assert "20 of 40 tokens are words the run's vocabulary lacks, all scored as <unk>" in err
    assert seqlab.evaluate(run, other)["unknown_tokens"] == 20
    lines = tmp_path / "lines"  # a model trained line by line counts them the same way
    assert main(["train", str(text_file), "--tokenizer", "word", "--batching", "lines",
                 "--hidden-size", "8", "--embedding-size", "4", "--batch-size", "4",
                 "--max-steps", "2", "--device", "cpu", "--quiet", "--out", str(lines)]) == 0
    assert seqlab.evaluate(lines, text_file)["unknown_tokens"] == 0
    other.write_text("zyzzyva quokka\nquokka\n", encoding="utf-8")
    result = seqlab.evaluate(lines, other)
    assert result["unknown_tokens"] == 3 and result["tokens"] == 6  # a space, two line ends
    capsys.readouterr()
    assert main(["evaluate", str(lines), str(other)]) == 0
    assert "3 of 6 tokens are words the run's vocabulary lacks" in capsys.readouterr().err


def test_an_error_is_one_line_that_keeps_the_spaces_it_quotes(capsys):
    from seqlab.cli import fail

    # a token of two spaces was reported as ' ', one the vocabulary has
    assert fail(ValueError("input 1 ('one  two') has symbols\noutside it: '  '\r\n"), 2) == 2
    assert capsys.readouterr().err == \
        "seqlab: error: input 1 ('one  two') has symbols outside it: '  '\n"
