"""Validation split across processes: seconds per evaluation, one process against several.

Under torchrun every process evaluates its block of the validation rows and the figures are
reduced (:mod:`seqlab.distributed`). This times one evaluation of a family's task three ways,
on the same model and the same validation data (the task built with the global batch of
``--processes`` x ``--batch-size`` rows, as a run of that many processes builds it):

- ``alone, 1 thread``: rank 0 evaluates everything while the others wait, as seqlab did before
  it split validation (the process group is up; only rank 0 works);
- ``alone, N threads``: one process with as many intra-op threads as there are processes;
- ``split, N x 1 thread``: every process its block, the sums reduced over gloo.

Each way runs ``--rounds`` times (the first of each is a warm-up, not counted); the median
is printed with the validation loss each way gives (the same to float32 rounding). The models
are untrained (timing only): an untrained encoder-decoder rarely emits its end token, so its
greedy decoding runs to each source's cap, the slowest case.

``--train STEPS`` times training instead: ``seqlab train`` on tiny Shakespeare (LSTM 256, 128
steps of 64 rows a batch, no evaluation) as one process with N threads, then through
``torchrun --nproc-per-node N`` with one thread each and 64 / N rows each, the same global
batches; tokens per second over the steps after the first logged ten (start-up and warm-up
excluded), and the last logged loss of each (the same to float32 rounding).

    python benchmarks/distributed.py [--processes 2] [--rounds 5] [--cases text seq2seq]
    python benchmarks/distributed.py --train 100
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rounds import alternate  # alternating rounds, shared by the benchmarks
from seqlab.checkpoint import RunDir
from seqlab.distributed import World
from seqlab.families import runner
from speed import SHAKESPEARE  # the same text as the speed benchmark

CASES = {  # name: (source, config keys; batch_size per process)
    "text": (str(SHAKESPEARE), dict(hidden_size=256, embedding_size=64, seq_len=128,
                                    batch_size=32, batching="streams")),
    "seq2seq": ("reverse", dict(task="seq2seq", attention="additive", length="5-30",
                                num_pairs=10000, hidden_size=128, embedding_size=32,
                                batch_size=32)),
    "classify": ("japanese-vowels", dict(task="classify", hidden_size=128, bidirectional=True,
                                         pooling="attention", batch_size=32)),
}


def model_and_task(source: str, processes: int, **keys):
    """The untrained model and the task a run of ``processes`` processes builds."""
    family = runner.family_for(source, keys)
    configs = runner.typed_configs(family, {"seed": 0, "device": "cpu", **keys})
    prepared = family.prepare(source, configs)
    configs = family.complete(configs, prepared.assets)
    model = runner.initial_model(family, configs, prepared.assets)
    return model, runner.checked_task(family, prepared, configs, World(0, processes))


def timed(evaluations: dict, rounds: int) -> dict[str, tuple[float, dict]]:
    """(median seconds of the rounds after the first, the last figures) of each evaluation,
    alternating; the processes meet at a barrier around every call."""
    figures: dict[str, dict] = {}

    def keeping(name: str, evaluate):
        return lambda: figures.__setitem__(name, evaluate())

    barrier = dist.barrier if dist.is_initialized() else (lambda: None)
    timing = alternate({name: keeping(name, f) for name, f in evaluations.items()},
                       rounds - 1, sync=barrier)
    return {name: (statistics.median(w), figures[name]) for name, w in timing.wall.items()}


def one_process(rank: int, size: int, port: int, case: str, rounds: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=size)
    try:
        source, keys = CASES[case]
        model, task = model_and_task(source, size, **keys)
        world = World(rank, size)
        ways = timed({"alone": lambda: task.evaluate(model) if rank == 0 else {},
                      "split": lambda: task.evaluate(model, world=world)}, rounds)
        if rank == 0:
            Path(out).write_text(json.dumps(ways))
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(case: str, processes: int, rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "times.json"
        mp.spawn(one_process, args=(processes, free_port(), case, rounds, str(out)),
                 nprocs=processes)
        apart = json.loads(out.read_text())
    torch.set_num_threads(processes)
    source, keys = CASES[case]
    model, task = model_and_task(source, processes, **keys)
    threaded = timed({"threads": lambda: task.evaluate(model)}, rounds)["threads"]
    return {"alone, 1 thread": apart["alone"], f"alone, {processes} threads": threaded,
            f"split, {processes} x 1 thread": apart["split"]}


def training(steps: int, processes: int, rounds: int) -> None:
    """Tokens per second of one process with ``processes`` threads against ``processes``
    processes of one thread each, alternating, ``rounds`` times."""
    batch, length = 64, 128
    keys = ["--hidden-size", "256", "--seq-len", str(length), "--max-steps", str(steps),
            "--log-every", "10", "--eval-every", str(10 * steps), "--quiet", "--seed", "0"]
    ways = {f"one process, {processes} threads": (
                [sys.executable, "-m", "seqlab"], batch, processes),
            f"torchrun, {processes} x 1 thread": (
                [str(Path(sys.executable).with_name("torchrun")),
                 f"--nproc-per-node={processes}", "-m", "seqlab"], batch // processes, 1)}
    rates: dict[str, list[float]] = {way: [] for way in ways}
    with tempfile.TemporaryDirectory() as folder:
        for k in range(rounds):
            for w, (way, (command, rows, threads)) in enumerate(ways.items()):
                out = Path(folder) / f"round{k}-way{w}"
                env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
                done = subprocess.run([*command, "train", str(SHAKESPEARE), "--batch-size",
                                       str(rows), "--out", str(out), *keys], env=env,
                                      capture_output=True, text=True)
                if done.returncode:
                    raise SystemExit(f"{way} failed:\n{done.stderr}")
                logs = [r for r in RunDir(out).read_metrics() if "loss" in r]
                tokens = (logs[-1]["step"] - logs[0]["step"]) * batch * length
                rates[way].append(tokens / (logs[-1]["elapsed_s"] - logs[0]["elapsed_s"]))
                print(f"{way:26} round {k + 1}: {rates[way][-1]:9.0f} tokens/s, loss "
                      f"{logs[-1]['loss']:.6f}", flush=True)
    base = statistics.median(rates[next(iter(ways))])
    for way, found in rates.items():
        print(f"{way:26} median {statistics.median(found):9.0f} tokens/s "
              f"({statistics.median(found) / base:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="evaluations each way, the first a warm-up (default 5)")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES),
                        help="families to time (default all)")
    parser.add_argument("--train", type=int, metavar="STEPS", default=0,
                        help="time STEPS training steps instead (at least 20), one process "
                             "against torchrun")
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (the first is a warm-up)")
    if not 2 <= args.processes <= 64:
        parser.error("--processes must be in [2, 64]")
    if args.train:
        if args.train < 20:
            parser.error("--train needs at least 20 steps (the first ten are not timed)")
        training(args.train, args.processes, args.rounds)
        return
    print(f"{'case':10} {'way':22} {'seconds':>8} {'vs alone':>8}  val_loss")
    for case in args.cases:
        ways = measure(case, args.processes, args.rounds)
        base = ways["alone, 1 thread"][0]
        for way, (seconds, figures) in ways.items():
            print(f"{case:10} {way:22} {seconds:8.3f} {base / seconds:7.2f}x  "
                  f"{figures['val_loss']:.6f}", flush=True)


if __name__ == "__main__":
    main()
