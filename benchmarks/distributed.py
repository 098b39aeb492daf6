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

    python benchmarks/distributed.py [--processes 2] [--rounds 5] [--cases text seq2seq]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from seqlab.distributed import World
from seqlab.families import runner

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
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
    whole = runner.whole_batches(configs, World(0, processes))
    return model, family.task(prepared, whole, "cpu")


def timed(evaluate, rounds: int) -> tuple[float, dict]:
    """(median seconds of rounds after the first, the last figures)."""
    seconds, figures = [], {}
    for _ in range(rounds):
        dist.barrier() if dist.is_initialized() else None
        start = time.perf_counter()
        figures = evaluate()
        dist.barrier() if dist.is_initialized() else None
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds[1:]), figures


def one_process(rank: int, size: int, port: int, case: str, rounds: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=size)
    try:
        source, keys = CASES[case]
        model, task = model_and_task(source, size, **keys)
        world = World(rank, size)
        alone = timed(lambda: task.evaluate(model) if rank == 0 else {}, rounds)
        split = timed(lambda: task.evaluate(model, world=world), rounds)
        if rank == 0:
            Path(out).write_text(json.dumps({"alone": alone, "split": split}))
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
    threaded = timed(lambda: task.evaluate(model), rounds)
    return {"alone, 1 thread": apart["alone"], f"alone, {processes} threads": threaded,
            f"split, {processes} x 1 thread": apart["split"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="evaluations each way, the first a warm-up (default 5)")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES),
                        help="families to time (default all)")
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (the first is a warm-up)")
    print(f"{'case':10} {'way':22} {'seconds':>8} {'vs alone':>8}  val_loss")
    for case in args.cases:
        ways = measure(case, args.processes, args.rounds)
        base = ways["alone, 1 thread"][0]
        for way, (seconds, figures) in ways.items():
            print(f"{case:10} {way:22} {seconds:8.3f} {base / seconds:7.2f}x  "
                  f"{figures['val_loss']:.6f}", flush=True)


if __name__ == "__main__":
    main()
