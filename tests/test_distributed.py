"""Many processes: two training processes (torchrun's environment, gloo on the CPU) with
``--batch-size B`` each train exactly as one process with ``--batch-size 2B``.

Each process is what torchrun starts: ``seqlab train`` with RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT set. They are forked from a server that imported seqlab once
(multiprocessing's forkserver), because a fresh interpreter importing torch costs seconds on
this machine. The reference run with the doubled batch runs in this process.

Tolerance: the processes' gradients are summed in another order than one process sums them
(float32, the only dtype a run has), so losses and weights agree to float32 rounding, not
bitwise: about 1e-7 relative per step; 1e-5 leaves room for a few steps of accumulation and is
still far below what one wrong row, a wrong weighting of the padded items (seq2seq: every
process scores a different number of target tokens) or a lost carried state would change.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from seqlab.cli import main

TINY = ["--hidden-size", "16", "--embedding-size", "8", "--max-steps", "6", "--eval-every", "3",
        "--log-every", "1", "--device", "cpu", "--seed", "3"]
TEXT = [*TINY, "--seq-len", "16", "--batching", "streams"]  # TBPTT: a carried state per row
PAIRS = [*TINY, "--task", "seq2seq", "--num-pairs", "200", "--attention", "dot"]
WORDS = "the quick brown fox jumps over a lazy dog and cat sat on mat by old red barn".split()
RANKS = 2

context = multiprocessing.get_context("forkserver")
context.set_forkserver_preload(["seqlab.cli"])


pytestmark = pytest.mark.usefixtures("single_thread")  # conftest: one intra-op thread


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    import random

    rng = random.Random(0)
    path = tmp_path_factory.mktemp("data") / "data.txt"
    path.write_text("".join(" ".join(rng.choice(WORDS) for _ in range(8)) + "\n"
                            for _ in range(60)), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_rank(rank: int, port: int, cwd: Path, argv: list[str], log: Path) -> None:
    """One process as torchrun starts it (runs in a forked child)."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(RANKS), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    os.chdir(cwd)
    with open(log, "w", encoding="utf-8") as err:
        sys.stderr = err
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code
        err.flush()
    sys.exit(code)


def start(tmp_path: Path, name: str, argv: list[str]) -> list[tuple]:
    """(process, its working folder, its stderr file) of each rank, started."""
    port, ranks = free_port(), []
    for rank in range(RANKS):
        cwd = tmp_path / f"{name}-rank{rank}"
        cwd.mkdir()
        log = tmp_path / f"{name}-rank{rank}.err"
        log.touch()
        process = context.Process(target=one_rank, args=(rank, port, cwd, argv, log))
        process.start()
        ranks.append((process, cwd, log))
    return ranks


def finish(ranks: list[tuple], timeout: float = 60) -> list[tuple[int, str]]:
    for process, _, _ in ranks:
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            pytest.fail("a training process hung")
    return [(process.exitcode, log.read_text(encoding="utf-8")) for process, _, log in ranks]


def one(*argv) -> None:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit:
        code = exit.code
    assert code == 0


def logged(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_training(two: Path, single: Path) -> None:
    """The same logged losses, evaluations and final weights (float32 rounding apart)."""
    a, b = logged(two), logged(single)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b, strict=True):
        for key in ("loss", "grad_norm", "val_loss"):
            if key in y:
                assert x[key] == pytest.approx(y[key], rel=1e-5), (x["step"], key)
    for name in ("last/model.safetensors", "model.safetensors"):
        got, want = load_file(two / name), load_file(single / name)
        assert got.keys() == want.keys()  # the plain model's names, no "module." prefix
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6)


def test_text_streams_train_as_one_process_with_the_doubled_batch(tmp_path, text_file, capsys):
    """Stopped at step 3 and resumed by two processes (each its own rows' carried state), the
    run is the one process's run of 6 steps with twice the batch."""
    run = tmp_path / "two"
    ranks = start(tmp_path, "text", ["train", str(text_file), "--out", str(run), *TEXT,
                                     "--batch-size", "2", "--max-steps", "3"])
    one("train", text_file, "--out", tmp_path / "one", *TEXT, "--batch-size", "4", "--quiet")
    (code0, err0), (code1, err1) = finish(ranks)
    assert (code0, code1) == (0, 0), err0 + err1
    state = torch.load(run / "last" / "trainer_state.pt", weights_only=True)
    assert state["world_size"] == RANKS
    hidden = [rank["carried"] for rank in state["ranks"]]  # each process's rows: (h, c)
    assert [h[0].shape[1] for h in hidden] == [2, 2]
    assert not torch.equal(hidden[0][0], hidden[1][0])
    resumed = start(tmp_path, "resumed", ["train", str(text_file), "--resume", "--out", str(run),
                                          *TEXT, "--batch-size", "2"])
    (code0, again0), (code1, again1) = finish(resumed)
    assert (code0, code1) == (0, 0), again0 + again1
    assert_same_training(run, tmp_path / "one")
    # rank 0 alone writes: the run folder and the console; rank 1 nothing at all
    assert "best validation loss" in again0 and "step      6" in again0
    assert err1 == again1 == ""
    assert not any(any(cwd.iterdir()) for _, cwd, _ in ranks + resumed)
    assert sorted(p.name for p in run.iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir())

    # a run of two processes continues in one (its per-process --batch-size, a fresh state)
    capsys.readouterr()
    code = main(["train", str(text_file), "--resume", "--out", str(run), "--max-steps", "8",
                 "--quiet"])
    assert code == 0
    assert ("seqlab: warning: this run was trained by 2 process(es) and continues with 1"
            in capsys.readouterr().err)
    assert [r["step"] for r in logged(run) if "val_loss" in r] == [3, 6, 8]


def test_seq2seq_padded_pairs_train_as_one_process_with_the_doubled_batch(tmp_path):
    run = tmp_path / "two"
    ranks = start(tmp_path, "pairs", ["train", "reverse", "--out", str(run), *PAIRS,
                                      "--batch-size", "4"])
    one("train", "reverse", "--out", tmp_path / "one", *PAIRS, "--batch-size", "8", "--quiet")
    (code0, err0), (code1, err1) = finish(ranks)
    assert (code0, code1) == (0, 0), err0 + err1
    assert err1 == ""
    assert_same_training(run, tmp_path / "one")


def test_a_weighted_classifier_trains_as_one_process_with_the_doubled_batch(tmp_path):
    """Imbalanced classes (3:1) with --class-weights, texts of unequal lengths: each process's
    rows weigh as many items as they are, whatever their classes' weights."""
    import random

    rng = random.Random(1)
    data = tmp_path / "labelled.tsv"
    texts = [" ".join(rng.sample(WORDS, rng.randint(2, 9))) for _ in range(120)]
    data.write_text("".join(f"{'ab'[k % 4 == 0]}\t{text}\n" for k, text in enumerate(texts)),
                    encoding="utf-8")
    keys = ["train", str(data), "--task", "classify", "--class-weights", "--model", "gru",
            *TINY]
    run = tmp_path / "two"
    ranks = start(tmp_path, "weighted", [*keys, "--out", str(run), "--batch-size", "4"])
    one(*keys, "--out", tmp_path / "one", "--batch-size", "8", "--quiet")
    (code0, err0), (code1, err1) = finish(ranks)
    assert (code0, code1) == (0, 0), err0 + err1
    assert_same_training(run, tmp_path / "one")


def test_a_killed_process_stops_the_other_with_one_line_and_the_run_resumes(tmp_path,
                                                                            text_file):
    run = tmp_path / "run"
    ranks = start(tmp_path, "killed", ["train", str(text_file), "--out", str(run), *TEXT,
                                       "--batch-size", "2", "--max-steps", "100000",
                                       "--eval-every", "2", "--dist-timeout", "20"])
    log = ranks[0][2]
    deadline = time.monotonic() + 60
    while "eval " not in log.read_text(encoding="utf-8"):  # a checkpoint is written
        assert time.monotonic() < deadline and ranks[0][0].exitcode is None, log.read_text()
        time.sleep(0.1)
    os.kill(ranks[1][0].pid, signal.SIGKILL)
    killed = time.monotonic()
    (code0, err0), _ = finish(ranks, timeout=30)
    assert time.monotonic() - killed < 20  # within --dist-timeout: the socket closed
    assert code0 == 1
    last = err0.strip().splitlines()[-1]
    assert last.startswith("seqlab: error: process 0 of 2: lost contact with the other "
                           "training processes ("), err0
    assert "Traceback" not in err0
    step = torch.load(run / "last" / "trainer_state.pt", weights_only=True)["step"]
    code = main(["train", "--resume", "--out", str(run), "--max-steps", str(step + 2),
                 "--quiet"])
    assert code == 0
    assert logged(run)[-1]["step"] == step + 2


@pytest.mark.parametrize(("env", "flags", "message"), [
    ({}, ["--dist-timeout", "0"], "--dist-timeout must be > 0 seconds"),
    ({"WORLD_SIZE": "two"}, [], "WORLD_SIZE='two' in the environment: expected a whole number"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, [], "RANK=2 with WORLD_SIZE=2: a rank must be below"),
])
def test_bad_world_is_one_line_exit_2_and_writes_nothing(tmp_path, text_file, monkeypatch,
                                                         capsys, env, flags, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(["train", str(text_file), "--out", str(tmp_path / "run"), *TEXT, *flags])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("seqlab: error: " + message), err
    assert not (tmp_path / "run").exists()


def test_each_process_takes_its_rows_of_a_batch_and_one_without_rows_borrows_row_0():
    from seqlab.data.pairs import PairBatch
    from seqlab.distributed import World, own_rows

    batch = PairBatch(torch.arange(10).view(5, 2), torch.arange(5), torch.arange(15).view(5, 3),
                      torch.arange(15).view(5, 3), fresh=True)
    first, own0 = own_rows(batch, World(0, 2))
    second, own1 = own_rows(batch, World(1, 2))
    assert own0 and own1 and first.fresh
    assert first.source.tolist() == batch.source[:3].tolist()  # ceil(5 / 2) rows each
    assert torch.equal(torch.cat([first.target_out, second.target_out]), batch.target_out)
    assert torch.equal(second.source_lengths, torch.tensor([3, 4]))
    # a tuple (classify's batches), a tensor without the rows first kept whole
    single = (torch.ones(1, 4), torch.tensor(7), torch.arange(3))
    part, own = own_rows(single, World(1, 2))  # one row for two processes
    assert not own and part[0].shape == (1, 4) and part[1] == 7 and len(part[2]) == 3
    with pytest.raises(TypeError, match="cannot split a batch of str by rows"):
        own_rows("rows", World(0, 2))
