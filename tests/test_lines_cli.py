"""``--batching lines`` from the command line: train on one example per line, sample new lines,
score a file of lines, resume."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from seqlab.cli import main

KEYS = ["--model", "gru", "--hidden-size", "32", "--embedding-size", "16", "--batch-size", "16",
        "--batching", "lines", "--eval-every", "20", "--log-every", "10", "--lr", "1e-2",
        "--seed", "0", "--device", "cpu"]


def names(count: int = 300, seed: int = 0) -> list[str]:
    """Made-up names, sorted as a list of names would be: neighbours share their prefixes."""
    rng = random.Random(seed)
    syllables = ["an", "el", "ma", "ri", "so", "ta", "lu", "ke", "no", "vi"]
    made = {"".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))
            for _ in range(count)}
    return sorted(made)


@pytest.fixture
def names_file(tmp_path) -> Path:
    path = tmp_path / "names.txt"
    path.write_text("\n".join(names()) + "\n", encoding="utf-8")
    return path


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_generate_evaluate_resume_on_lines(names_file, tmp_path, capsys, single_thread):
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", names_file, *KEYS, "--max-steps", "60", "--out", run)
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    lines = len(names())
    assert config["train"]["batching"] == "lines"
    # every line and its end-of-line token are scored; the split is by whole lines
    scored = config["data"]["train_tokens"] + config["data"]["val_tokens"]
    assert scored == sum(len(n) + 1 for n in names()) + 2  # + the EOL that starts each stream
    assert config["data"]["chars_per_token"] == pytest.approx(1.0, abs=0.02)
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
             if "val_loss" in line]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]

    code, out, err = run_cli(capsys, "generate", run, "--lines", "20", "--seed", "1",
                             "--mark-seen")
    assert code == 0, err
    sampled = out.splitlines()
    assert len(sampled) == 20 and all("\n" not in line for line in sampled)
    assert err.startswith("seqlab: ") and "of 20 lines occur in the training data" in err
    code, again, _ = run_cli(capsys, "generate", run, "--lines", "20", "--seed", "1",
                             "--mark-seen")
    assert again == out  # seeded

    code, out, err = run_cli(capsys, "evaluate", run, names_file, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["tokens"] == sum(len(n) + 1 for n in names())  # each line and its end
    assert lines == len(names())

    code, _, err = run_cli(capsys, "train", names_file, *KEYS, "--max-steps", "80", "--out",
                           run, "--resume")
    assert code == 0, err


def test_lines_are_refused_on_a_run_not_trained_on_lines(trained_run, capsys):
    code, out, err = run_cli(capsys, "generate", trained_run, "--lines", "3")
    assert code == 2 and out == ""
    assert err.splitlines() == [f"seqlab: error: {trained_run} was trained on --batching "
                                "streams, not lines; sample text with --length"]


@pytest.mark.parametrize("argv, message", [
    (["--lines", "0"], "--lines and --max-line-length must be positive"),
    (["--lines", "2", "--tunes", "2"], "--lines and --tunes are two ways to sample"),
    (["--lines", "2", "--prompt", "Fi"], "--prompt does not apply to --lines"),
    (["--mark-seen"], "--mark-seen applies to --lines only"),
])
def test_bad_line_flags_are_one_line(trained_run, capsys, argv, message):
    code, _, err = run_cli(capsys, "generate", trained_run, *argv)
    assert code == 2 and len(err.splitlines()) == 1 and message in err
