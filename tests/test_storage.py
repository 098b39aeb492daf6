"""Disk full, read-only folders, killed writers and runs that diverge before any checkpoint:
one line, exit 2, and a run folder that is either whole or gone."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import SafetensorError

from seqlab.checkpoint import RunDir
from seqlab.cli import main
from seqlab.families import registry
from seqlab.io import atomic_write_text

KEYS = ["--model", "gru", "--hidden-size", "16", "--embedding-size", "8", "--seq-len", "8",
        "--batch-size", "4", "--eval-every", "5", "--log-every", "5", "--device", "cpu",
        "--quiet"]


def run_cli(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def full_disk(*args, **kwargs):
    raise SafetensorError("Error while serializing: I/O error: No space left on device "
                          "(os error 28)")


def test_a_full_disk_at_the_first_checkpoint_is_one_line_and_leaves_nothing(
        text_file, tmp_path, capsys, monkeypatch, single_thread):
    monkeypatch.setattr("seqlab.checkpoint.save_file", full_disk)
    run = tmp_path / "run"
    code, err = run_cli(capsys, "train", text_file, *KEYS, "--max-steps", "10", "--out", run)
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqlab: error: ")
    assert "No space left on device (this write needs about " in lines[0]
    assert "MB free in" in lines[0]
    assert ".tmp" not in lines[0] and "model.safetensors" in lines[0]  # the real file's name
    assert not run.exists()  # nothing to resume: what the run created is gone
    monkeypatch.undo()
    code, err = run_cli(capsys, "train", text_file, *KEYS, "--max-steps", "5", "--out", run)
    assert code == 0, err  # and the same command works once there is room


def test_an_empty_folder_given_as_out_is_left_empty_after_a_failed_start(
        text_file, tmp_path, capsys, monkeypatch, single_thread):
    monkeypatch.setattr("seqlab.checkpoint.save_file", full_disk)
    run = tmp_path / "run"
    run.mkdir()
    assert run_cli(capsys, "train", text_file, *KEYS, "--max-steps", "10", "--out", run)[0] == 2
    assert run.is_dir() and list(run.iterdir()) == []


@contextlib.contextmanager
def tmpfs(mount: Path, options: str):
    """A small tmpfs at ``mount`` for the block, where the machine allows mounting one."""
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_real_small_file_system(text_file, tmp_path, capsys, single_thread):
    with tmpfs(tmp_path / "small", "size=200k") as mount:
        code, err = run_cli(capsys, "train", text_file, "--hidden-size", "256", "--seq-len", "8",
                            "--batch-size", "4", "--max-steps", "10", "--eval-every", "5",
                            "--device", "cpu", "--out", mount / "run")
        assert code == 2 and len(err.splitlines()) == 1
        assert "No space left on device" in err and "/run/" in err
        assert list(mount.iterdir()) == []


def test_a_read_only_file_system_is_one_line(text_file, tmp_path, capsys, single_thread):
    with tmpfs(tmp_path / "ro", "ro,size=100k") as mount:
        code, err = run_cli(capsys, "train", text_file, *KEYS, "--max-steps", "5", "--out",
                            mount / "run")
        assert code == 2 and err.splitlines() == [
            f"seqlab: error: {mount / 'run'}: Read-only file system"]
        # the empty read-only folder itself as the run: named, not the hidden file staged there
        code, err = run_cli(capsys, "train", text_file, *KEYS, "--max-steps", "5", "--out",
                            mount)
        assert code == 2 and err.splitlines() == [
            f"seqlab: error: cannot write in {mount}: Read-only file system"]


def test_a_run_that_diverges_before_any_checkpoint_is_whole(text_file, tmp_path, capsys,
                                                            single_thread):
    run = tmp_path / "run"
    code, err = run_cli(capsys, "train", text_file, *KEYS, "--lr", "3e38", "--clip-norm", "0",
                        "--optimizer", "sgd", "--warmup-steps", "0", "--max-bad-steps", "2",
                        "--max-steps", "50", "--eval-every", "40", "--out", run)
    assert code == 1
    assert "the weights before the non-finite steps are saved" in err
    assert RunDir(run).has_checkpoint()
    assert run_cli(capsys, "info", run)[0] == 0  # not "not a complete run"


def test_a_killed_writers_temporaries_are_cleaned_on_the_next_write(tmp_path):
    stale = tmp_path / ".config.json.k3j2h1.tmp"
    stale.write_text("half a file")
    atomic_write_text(tmp_path / "config.json", "{}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_fifo_as_data_is_refused(tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code, err = run_cli(capsys, "train", fifo, "--out", tmp_path / "run")
    assert code == 2 and err.splitlines() == [
        f"seqlab: error: {fifo}: not a regular file or folder (a pipe or a device?); give a "
        "file, a folder or a bundled corpus"]
    assert not (tmp_path / "run").exists()


def test_stdout_full_or_closed_is_one_line(trained_run):
    env_cmd = ["python", "-m", "seqlab", "info", str(trained_run)]
    src = str(Path(__file__).resolve().parents[1] / "src")

    env = {**os.environ, "PYTHONPATH": src}
    env_cmd[0] = sys.executable
    with open("/dev/full", "w") as full:
        done = subprocess.run(env_cmd, stdout=full, stderr=subprocess.PIPE, text=True, env=env)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["seqlab: error: standard output: No space left on "
                                        "device"]
    done = subprocess.run(env_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, env=env, close_fds=True,
                          preexec_fn=lambda: os.close(1))
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["seqlab: error: standard output is closed: what this "
                                        "command prints would be lost"]


def snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# a tiny training command per task family (the data, then its keys): a new family adds one,
# and the tests below run it through the same damage (test_every_family_has_a_tiny_run)
SHARED_KEYS = ["--model", "gru", "--hidden-size", "16", "--embedding-size", "8",
               "--batch-size", "4", "--eval-every", "5", "--log-every", "5", "--device", "cpu",
               "--quiet"]
TINY_RUNS = {
    "lm": lambda text_file: [text_file, "--seq-len", "8", *SHARED_KEYS],
    "synthetic": lambda text_file: ["adding", "--length", "10", "--val-sequences", "16",
                                    *SHARED_KEYS],
    "seq2seq": lambda text_file: ["reverse", "--length", "3-5", "--num-pairs", "200",
                                  *SHARED_KEYS],
    "classify": lambda text_file: [labelled_lines(text_file), "--task", "classify",
                                   *SHARED_KEYS],
    # bundled airline (the series extra); real-valued inputs have no embedding size
    "forecast": lambda text_file: ["airline", "--horizon", "6", "--context", "12",
                                   "--samples", "10", *SHARED_KEYS[:4], *SHARED_KEYS[6:]],
}


def labelled_lines(text_file: Path) -> Path:
    """The text's lines as a TSV, labelled by whether they are longer than 30 characters."""
    lines = [line for line in text_file.read_text().splitlines() if line.strip()]
    path = text_file.with_suffix(".tsv")
    path.write_text("".join(f"{'long' if len(line) > 30 else 'short'}\t{line}\n"
                            for line in lines * 4), encoding="utf-8")
    return path


def test_every_family_has_a_tiny_run():
    assert set(TINY_RUNS) == set(registry.FAMILIES)


@pytest.fixture(params=sorted(TINY_RUNS))
def stopped_run(request, text_file, tmp_path, capsys, single_thread) -> Path:
    """A run of each family, stopped at step 10."""
    run = tmp_path / "run"
    argv = TINY_RUNS[request.param](text_file)
    code, err = run_cli(capsys, "train", *argv, "--max-steps", "10", "--out", run)
    assert code == 0, err
    return run


def test_a_resume_that_fails_at_its_first_write_leaves_the_run_as_it_was(
        stopped_run, text_file, capsys, monkeypatch):
    before = snapshot(stopped_run)
    appended = []
    real_append = RunDir.append_metrics

    def append_then_full(run, record):  # the resumed run logs a few steps, then the disk fills
        real_append(run, record)
        appended.append(record["step"])
        if len(appended) == 2:  # the evaluation record, just before the checkpoint
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(run.path / "metrics.jsonl"))

    monkeypatch.setattr("seqlab.checkpoint.RunDir.append_metrics", append_then_full)
    code, err = run_cli(capsys, "train", "--max-steps", "20", "--out", stopped_run,
                        "--resume", "--quiet")
    assert code == 2 and len(err.splitlines()) == 1 and "No space left" in err
    assert appended == [15, 15]  # it had truncated, rewritten and appended before failing
    assert snapshot(stopped_run) == before


@pytest.mark.parametrize("damage, message", [
    (lambda m: m.write_bytes(b"\xff\xfe garbage\n" + m.read_bytes()), r"damaged \(not UTF-8"),
    (lambda m: m.write_text("42\n" + m.read_text()), r"line 1: damaged \(not a JSON object\)"),
    (lambda m: m.write_text("{oops\n" + m.read_text()), r"line 1: damaged \(not JSON\)"),
    (lambda m: (m.unlink(), m.mkdir()), r"not a file"),
])
@pytest.mark.parametrize("command", [["train", "--resume", "--quiet", "--max-steps", "20",
                                      "--out"],
                                     ["info"], ["diagnose", "--no-jacobian", "--out", "D"]])
def test_a_damaged_metrics_file_stops_every_command_before_it_writes(
        stopped_run, capsys, tmp_path, damage, message, command):
    import re

    damage(stopped_run / "metrics.jsonl")
    before = snapshot(stopped_run)
    argv = [str(tmp_path / "d") if a == "D" else a for a in command]
    if command[0] in ("info", "diagnose"):
        argv.insert(1, str(stopped_run))
    else:
        argv.append(str(stopped_run))
    code, err = run_cli(capsys, *argv)
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1, err
    assert re.search(f"metrics.jsonl.*{message}", lines[0])
    assert snapshot(stopped_run) == before
    assert not (tmp_path / "d").exists()


def test_a_permuted_vocabulary_is_refused_by_every_command(text_file, tmp_path, capsys,
                                                           single_thread):
    import json

    stopped_run = tmp_path / "run"
    assert run_cli(capsys, "train", *TINY_RUNS["lm"](text_file), "--max-steps", "10", "--out",
                   stopped_run)[0] == 0
    vocab = stopped_run / "vocab.json"
    saved = json.loads(vocab.read_text())
    tokens = saved["tokens"]
    saved["tokens"] = tokens[1:] + tokens[:1]  # the same symbols, other ids
    vocab.write_text(json.dumps(saved))
    config = json.loads((stopped_run / "config.json").read_text())
    assert set(config["checksums"]) == {"vocab.json"}
    before = snapshot(stopped_run)
    for argv in (["generate", stopped_run, "--length", "5"], ["info", stopped_run],
                 ["evaluate", stopped_run, text_file],
                 ["train", "--resume", "--max-steps", "20", "--out", stopped_run]):
        code, err = run_cli(capsys, *argv)
        assert code == 2 and err.splitlines() == [
            f"seqlab: error: {vocab} is not the file this run was trained with (its checksum "
            "differs from the one in config.json); the weights depend on it: put the original "
            "back, or train again"], argv
    assert snapshot(stopped_run) == before


def test_resume_reads_the_file_it_was_trained_on_and_refuses_another(
        text_file, tmp_path, capsys, monkeypatch, single_thread):
    monkeypatch.chdir(text_file.parent)
    run = tmp_path / "run"
    assert run_cli(capsys, "train", text_file.name, *KEYS, "--max-steps", "5", "--out",
                   run)[0] == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # from another folder, with no DATA: the recorded path
    code, err = run_cli(capsys, "train", "--resume", "--out", run, "--max-steps", "10")
    assert code == 0, err
    impostor = elsewhere / text_file.name  # another file by the same name, same alphabet
    impostor.write_text(text_file.read_text()[::-1], encoding="utf-8")
    before = snapshot(run)
    code, err = run_cli(capsys, "train", text_file.name, "--resume", "--out", run,
                        "--max-steps", "15")
    assert code == 2 and err.splitlines() == [
        f"seqlab: error: {text_file.name} is not the data {run} was trained on (it differs "
        f"from {text_file.resolve()} as it was then); resuming on other data would not "
        "continue the same run: put the original back, or train a new run"]
    text_file.write_text(text_file.read_text()[::-1], encoding="utf-8")  # edited in place
    code, err = run_cli(capsys, "train", "--resume", "--out", run, "--max-steps", "15")
    assert code == 2 and "is not the data" in err
    assert snapshot(run) == before


def test_text_the_tools_cannot_read_is_one_line(tmp_path, capsys, monkeypatch):
    import io

    class Bytes(io.StringIO):
        buffer = io.BytesIO(b"abc\n\xff\xfe\n")

    monkeypatch.setattr("sys.stdin", Bytes())
    code, err = run_cli(capsys, "translate", tmp_path / "no-run")
    assert code == 2 and err.splitlines() == [
        "seqlab: error: standard input: not UTF-8 text (invalid byte at offset 4)"]
    code, err = run_cli(capsys, "train", "addition", "--length", "5000", "--out",
                        tmp_path / "r")
    assert code == 2 and err.splitlines() == [
        "seqlab: error: addition: --length is digits per operand, at most 4000 (Python's "
        "limit for turning a number into text), got 5000"]
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("garbage", [b"\xff\xfe", b"{not json", b"[1, 2]"])
def test_a_damaged_lab_note_is_one_line(tmp_path, garbage):
    from seqlab.lab import Run, execute

    folder = tmp_path / "runs" / "adding-rnn"
    folder.mkdir(parents=True)
    (folder / "lab.json").write_bytes(garbage)
    with pytest.raises(ValueError, match=r"lab\.json: damaged .*delete .*adding-rnn to train "
                                         r"that run again"):
        execute(Run("adding-rnn", "adding", {"model": "rnn"}), tmp_path / "runs")


@pytest.mark.parametrize("when", ["building", "training", "evaluating"])
def test_an_allocation_failure_the_estimates_missed_is_one_line(text_file, tmp_path, capsys,
                                                                monkeypatch, single_thread,
                                                                when):
    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 8000000000000 bytes.")

    # evaluating: after the first step's checkpoint, before any evaluation; the run is not
    # kept either (a retry with a smaller batch would find the folder taken)
    target = {"building": "seqlab.families.runner.initial_model",
              "training": "seqlab.training.Trainer._train_step",
              "evaluating": "seqlab.training.Trainer._evaluate_and_save"}[when]
    monkeypatch.setattr(target, no_memory)
    run = tmp_path / "run"
    code, err = run_cli(capsys, "train", text_file, *KEYS, "--hidden-size", "48",
                        "--max-steps", "10", "--out", run)
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("seqlab: error: ")
    assert "hidden_size 48" in lines[0] and "out of memory" in lines[0]
    assert not run.exists()


def test_a_seed_too_large_for_the_generators_is_one_line(text_file, tmp_path, capsys):
    code, err = run_cli(capsys, "train", text_file, *KEYS, "--seed", "99999999999999999999",
                        "--out", tmp_path / "run")
    assert code == 2 and err.splitlines() == [
        "seqlab: error: seed must be in [0, 4294967295], got 99999999999999999999"]
    assert not (tmp_path / "run").exists()


def test_a_folder_without_write_permission_is_named_not_the_file_staged_there(
        tmp_path, capsys, monkeypatch, trained_run):
    """Tests run as root, for whom permissions do not apply: the refusal is made by hand, where
    the staged file is created."""
    import tempfile

    real = tempfile.mkstemp

    def refused(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == tmp_path / "locked":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES),
                                  str(Path(dir) / ".out.csv.abc123.tmp"))
        return real(*args, dir=dir, **kwargs)

    (tmp_path / "locked").mkdir()
    monkeypatch.setattr(tempfile, "mkstemp", refused)
    code = main(["diagnose", str(trained_run), "--no-jacobian", "--out",
                 str(tmp_path / "locked")])
    err = capsys.readouterr().err
    assert code == 2 and err == (f"seqlab: error: cannot write in {tmp_path / 'locked'}: "
                                 "Permission denied\n")
    assert list((tmp_path / "locked").iterdir()) == []
