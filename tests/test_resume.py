"""Resume as people use it: the up arrow, the original command, ``--resume`` added.

After Ctrl-C, a crash or ``kill -9`` a user repeats the command that started the run and adds
``--resume``. Repeating the run's own values continues it; only a key whose value really
differs, and may not change, is an error naming the key with its old and new value.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seqlab.checkpoint import RunDir
from seqlab.cli import build_parser, main

# the command a user typed; --decay-steps fixes the learning-rate schedule, so that a resumed
# run may stop at another --max-steps and still follow the same schedule
ORIGINAL = ["--model", "lstm", "--hidden-size", "16", "--embedding-size", "8", "--num-layers",
            "2", "--dropout", "0.1", "--seq-len", "8", "--batch-size", "4", "--batching",
            "streams", "--eval-every", "5", "--log-every", "1", "--decay-steps", "30",
            "--warmup-steps", "2", "--seed", "0", "--device", "cpu"]


def untimed(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("elapsed_s", "tokens_per_s")}
            for r in records]


def metrics(run: Path) -> list[dict]:
    """The run's records; a kill may leave a torn last line, which readers skip."""
    return RunDir(run).read_metrics()


@pytest.fixture
def data(text_file) -> Path:
    return text_file


def train(*argv) -> int:
    return main(["train", *[str(a) for a in argv]])


def test_the_original_command_plus_resume_continues(data, tmp_path, single_thread, capsys):
    run = tmp_path / "run"
    assert train(data, *ORIGINAL, "--max-steps", "10", "--out", run) == 0
    assert train(data, *ORIGINAL, "--max-steps", "20", "--out", run, "--resume") == 0
    assert "cannot change" not in capsys.readouterr().err
    whole = tmp_path / "whole"
    assert train(data, *ORIGINAL, "--max-steps", "20", "--out", whole) == 0
    assert untimed(metrics(run)) == untimed(metrics(whole))


def test_resume_without_data_continues(data, tmp_path, single_thread):
    run = tmp_path / "run"
    assert train(data, *ORIGINAL, "--max-steps", "10", "--out", run) == 0
    assert main(["train", "--resume", "--out", str(run), "--max-steps", "15"]) == 0
    assert max(r["step"] for r in metrics(run)) == 15


def test_a_changed_key_is_named_with_old_and_new_value(data, tmp_path, single_thread, capsys):
    run = tmp_path / "run"
    assert train(data, *ORIGINAL, "--max-steps", "10", "--out", run) == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    changed = [a if a != "16" else "32" for a in ORIGINAL]  # --hidden-size 32
    assert train(data, *changed, "--max-steps", "12", "--out", run, "--resume") == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(
        "seqlab: error: a resumed run keeps its config; cannot change: hidden_size (16 -> 32)")
    assert "--max-steps" in " ".join(err) or "max_steps" in err[0]  # says what may change
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_help_says_which_keys_a_resumed_run_may_change(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, even in a flag
    assert "onlythesekeysmaychange:--compile,--device,--eval-every,--log-every," \
           "--max-bad-steps,--max-steps,--patience,--time-budget" in text


def test_resume_after_kill_9_gives_the_losses_of_a_run_never_stopped(data, tmp_path,
                                                                      single_thread):
    """A real process, killed with SIGKILL while it trains; then the same command + --resume."""
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    command = [sys.executable, "-m", "seqlab", "train", str(data), *ORIGINAL, "--out", str(run)]
    proc = subprocess.Popen([*command, "--max-steps", "100000"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (run / "last" / "trainer_state.pt").exists():  # its first checkpoint
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.2)  # further into training, perhaps past a second checkpoint
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    stopped = max(r["step"] for r in metrics(run))
    assert stopped < 100000
    resumed = subprocess.run([*command, "--max-steps", str(stopped + 12), "--resume"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    whole = tmp_path / "whole"
    assert train(data, *ORIGINAL, "--max-steps", str(stopped + 12), "--out", whole) == 0
    assert untimed(metrics(run)) == untimed(metrics(whole))


def test_kill_9_before_the_first_evaluation_resumes_too(data, tmp_path, single_thread):
    """last/ is written after the first step, so a run killed long before its first
    evaluation (--eval-every 100000) is resumable, not a folder that neither --resume nor a
    new run accepts."""
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    command = [sys.executable, "-m", "seqlab", "train", str(data), *ORIGINAL, "--eval-every",
               "100000", "--out", str(run)]
    proc = subprocess.Popen([*command, "--max-steps", "100000"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while max((r["step"] for r in metrics(run)), default=0) < 3:  # past the first step
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (run / "model.safetensors").exists()  # no evaluation yet
    # resumed and stopped at once (Ctrl-C during start-up): evaluated, then stopped whole
    import shutil
    import threading

    from seqlab.families import runner

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    halt = threading.Event()
    halt.set()
    assert runner.resume(copy, stop=halt).summary.stop_reason == "interrupted"
    assert (copy / "model.safetensors").is_file()
    resumed = subprocess.run([*command, "--max-steps", "8", "--resume"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    whole = tmp_path / "whole"
    assert train(data, *ORIGINAL, "--eval-every", "100000", "--max-steps", "8", "--out",
                 whole) == 0
    assert untimed(metrics(run)) == untimed(metrics(whole))


def test_the_original_command_with_its_config_file_resumes(data, tmp_path, single_thread,
                                                            capsys):
    toml = tmp_path / "run.toml"
    toml.write_text("hidden_size = 16\nembedding_size = 8\nlr = 0.003\n", encoding="utf-8")
    run = tmp_path / "run"
    keys = ["--seq-len", "8", "--batch-size", "4", "--eval-every", "5", "--device", "cpu"]
    assert train(data, "--config", toml, *keys, "--max-steps", "5", "--out", run) == 0
    assert train(data, "--config", toml, *keys, "--max-steps", "10", "--out", run,
                 "--resume") == 0
    assert max(r["step"] for r in metrics(run)) == 10
    toml.write_text("hidden_size = 16\nembedding_size = 8\nlr = 1\n", encoding="utf-8")
    capsys.readouterr()
    assert train(data, "--config", toml, *keys, "--max-steps", "15", "--out", run,
                 "--resume") == 2
    err = capsys.readouterr().err
    assert "cannot change: lr (0.003 -> 1.0)" in err and "drop --config" in err


@pytest.mark.parametrize("argv, message", [
    (["--out", "RUN"], "train needs DATA"),
    (["DATA", "--task", "seq2seq", "--chrono-steps", "5", "--out", "X"],
     "chrono_steps does not apply to the seq2seq task"),
    (["DATA", "--out", "RUN", "--resume", "--task", "seq2seq"],
     "is a 'lm' run, not 'seq2seq'"),
    (["--out", "RUN", "--resume", "--attention", "dot"],
     "attention does not apply to the lm task"),
    (["--out", "RUN", "--resume", "--hidden-size", "0"], "hidden_size must be positive"),
    (["--out", "nowhere", "--resume"], "no such run directory"),
])
def test_bad_train_and_resume_input_is_one_line(data, tmp_path, single_thread, capsys, argv,
                                                 message):
    run = tmp_path / "run"
    assert train(data, *ORIGINAL, "--max-steps", "5", "--out", run) == 0
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    capsys.readouterr()
    argv = [str(data) if a == "DATA" else str(run) if a == "RUN" else a for a in argv]
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("seqlab: error: ") and message in err[0]
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def spawn_training(data: Path, run: Path, *extra) -> subprocess.Popen:
    """A real `seqlab train` process, long enough to be stopped while it trains."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    return subprocess.Popen([sys.executable, "-m", "seqlab", "train", str(data), *ORIGINAL,
                             "--out", str(run), "--max-steps", "100000", *extra], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(proc: subprocess.Popen, run: Path) -> None:
    deadline = time.monotonic() + 120
    while not (run / "last" / "trainer_state.pt").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)


def test_sigterm_checkpoints_and_exits_143(data, tmp_path, single_thread):
    """`kill`, `timeout` and schedulers send SIGTERM: the step ends, a checkpoint is written at
    that step, and the run resumes from it."""
    run = tmp_path / "run"
    proc = spawn_training(data, run)
    try:
        wait_for_checkpoint(proc, run)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "stopping after this step" in err and "(interrupted)" in err
    stopped = max(r["step"] for r in metrics(run))
    assert RunDir(run).load_trainer_state()["step"] == stopped  # checkpointed where it stopped
    assert train(data, *ORIGINAL, "--max-steps", str(stopped + 3), "--out", run,
                 "--resume") == 0


def test_a_second_writer_is_refused_while_the_first_trains(data, tmp_path, single_thread,
                                                            capsys):
    run = tmp_path / "run"
    proc = spawn_training(data, run)
    try:
        wait_for_checkpoint(proc, run)
        capsys.readouterr()
        code = train(data, *ORIGINAL, "--max-steps", "200000", "--out", run, "--resume")
        err = capsys.readouterr().err.splitlines()
        assert proc.poll() is None  # the first writer is untouched, still training
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"seqlab: error: {run} is being written by process {proc.pid} on ")
    assert not (run / ".seqlab-writer").exists()  # released when the first writer stopped
    assert train(data, *ORIGINAL, "--max-steps", "200000", "--time-budget", "1", "--out", run,
                 "--resume") == 0  # and the run is free again


def test_resume_that_would_train_nothing_changes_nothing(data, tmp_path, single_thread,
                                                          capsys):
    run = tmp_path / "run"
    assert train(data, *ORIGINAL, "--max-steps", "10", "--out", run) == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert train(data, *ORIGINAL, "--max-steps", "8", "--out", run, "--resume") == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"seqlab: error: {run} is at step 10 already and max_steps is 8: nothing to "
                   "train, nothing changed; give a larger --max-steps"]
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_the_same_data_by_another_path_resumes(data, tmp_path, single_thread, monkeypatch):
    monkeypatch.chdir(data.parent)
    run = tmp_path / "run"
    assert train(data.name, *ORIGINAL, "--max-steps", "5", "--out", run) == 0
    assert train(f"./{data.name}", *ORIGINAL, "--max-steps", "8", "--out", run,
                 "--resume") == 0
    assert train(data.resolve(), *ORIGINAL, "--max-steps", "10", "--out", run,
                 "--resume") == 0


def test_a_clip_value_alone_replaces_the_default_norm(data, tmp_path, single_thread):
    run = tmp_path / "run"
    assert train(data, *ORIGINAL, "--max-steps", "3", "--clip-value", "0.5", "--out", run) == 0
    saved = RunDir(run).read_config()["train"]
    assert (saved["clip_value"], saved["clip_norm"]) == (0.5, 0.0)


def test_a_command_line_option_in_the_config_file_is_one_line(data, tmp_path, capsys):
    toml = tmp_path / "c.toml"
    toml.write_text('out = "elsewhere"\nhidden_size = 16\n', encoding="utf-8")
    assert train(data, "--config", toml, "--out", tmp_path / "run") == 2
    assert capsys.readouterr().err.splitlines() == [
        f"seqlab: error: {toml}: out is a command-line option, not a config key; give it as "
        "a flag (--out DIR, ...)"]
    assert not (tmp_path / "run").exists()


def test_no_command_prints_the_short_usage_and_how_to_get_help(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("usage: seqlab ")
    assert err[-1] == ("seqlab: error: no command given; `seqlab --help` lists the commands, "
                       "`seqlab COMMAND --help` describes one")
    assert len(err) <= 3


class FakeBar:
    """tqdm's place in a test: what the progress bar was told."""

    made: list[FakeBar] = []

    def __init__(self, total=None, **kwargs) -> None:
        self.total, self.n = total, 0
        FakeBar.made.append(self)

    def update(self, k: int) -> None:
        self.n += k

    def set_postfix(self, **kwargs) -> None:
        pass

    def write(self, line: str) -> None:
        pass

    def close(self) -> None:
        pass


def test_the_progress_bar_knows_where_a_run_and_a_resumed_run_end(data, tmp_path, single_thread,
                                                                   monkeypatch):
    """On a terminal the bar's total is the step the run stops at: the given --max-steps, the
    family's default without one, and on resume the new --max-steps (not unknown)."""
    import sys

    import tqdm

    from seqlab.cli_train import planned_steps
    from seqlab.config import TrainConfig
    from seqlab.families import runner

    monkeypatch.setattr(tqdm, "tqdm", FakeBar)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    FakeBar.made.clear()
    run = tmp_path / "run"
    assert train(data, *ORIGINAL, "--max-steps", "6", "--out", run) == 0
    assert train(data, *ORIGINAL, "--max-steps", "9", "--out", run, "--resume") == 0
    assert [(bar.total, bar.n) for bar in FakeBar.made] == [(6, 6), (9, 9)]
    family = runner.family_for(str(data), {})
    assert planned_steps(family, {"model": "lstm"}, None) == TrainConfig().max_steps
    assert planned_steps(family, {"hidden_size": -3}, None) is None  # training says why


def test_more_steps_on_resume_keep_the_schedule_the_run_started_with(data, tmp_path,
                                                                       single_thread):
    """Without --decay-steps the cosine ends at the first --max-steps; a resumed run asked
    for more steps trains on at the floor rather than climbing back up a longer cosine, and
    its config.json records the horizon it follows."""
    keys = [k for k in ORIGINAL if k not in ("--decay-steps", "30")] + ["--lr", "0.01"]
    run = tmp_path / "run"
    assert train(data, *keys, "--max-steps", "10", "--out", run) == 0
    first = {r["step"]: r["lr"] for r in metrics(run) if "lr" in r}
    assert RunDir(run).read_config()["train"]["decay_steps"] == 0
    assert train(data, *keys, "--max-steps", "16", "--out", run, "--resume") == 0
    rates = {r["step"]: r["lr"] for r in metrics(run) if "lr" in r}
    assert {s: rates[s] for s in first} == first
    assert all(rates[s] == pytest.approx(0.001) for s in range(11, 17))  # lr x 0.1, the floor
    assert RunDir(run).read_config()["train"]["decay_steps"] == 10
    assert train(data, *keys, "--max-steps", "20", "--out", run, "--resume") == 0
    assert RunDir(run).read_config()["train"]["decay_steps"] == 10  # still the first horizon


def test_a_command_run_from_another_thread_trains(data, tmp_path, single_thread):
    """An application calling the command line from a worker thread: Python lets only the main
    thread install signal handlers, so the run keeps the thread's and trains to its end."""
    import threading

    codes = []
    worker = threading.Thread(target=lambda: codes.append(main(
        ["train", str(data), *ORIGINAL, "--max-steps", "6", "--out", str(tmp_path / "run")])))
    before = signal.getsignal(signal.SIGTERM)
    worker.start()
    worker.join()
    assert codes == [0]
    assert metrics(tmp_path / "run")[-1]["step"] == 6
    assert signal.getsignal(signal.SIGTERM) is before
