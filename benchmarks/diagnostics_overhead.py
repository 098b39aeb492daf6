"""What recording the gradient through time costs during training.

Trains the same model on the adding problem with ``record_every`` 0 (off) and N, alternating
the two so that a slow spell of a shared machine hits both, and reports the median wall time
of the training loop (evaluation excluded: one evaluation at the end, on a few sequences).

    OMP_NUM_THREADS=1 python benchmarks/diagnostics_overhead.py --steps 200 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import seqlab


def one_run(model: str, steps: int, every: int, length: int, hidden: int, batch: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        seqlab.train("adding", out=Path(folder) / "run", model=model, length=str(length),
                     hidden_size=hidden, batch_size=batch, max_steps=steps, eval_every=steps,
                     log_every=50, val_sequences=batch, record_every=every, device="cpu", seed=0)
        return time.perf_counter() - started


def record_cost(model: str, length: int, hidden: int, repeats: int = 5) -> float:
    """Seconds of one recording (both losses) on the trainer's probe batch."""
    from seqlab.config import ModelConfig
    from seqlab.data.synthetic import TaskData, get_task
    from seqlab.diagnostics import gradients_through_time
    from seqlab.families.synthetic import VALIDATION, build, probe_of
    from seqlab.recording import PROBE

    data = TaskData(get_task("adding"), length, length, 1, 0)
    net = build(ModelConfig(model=model, hidden_size=hidden), data)
    probe = probe_of(data, data.batch(PROBE, VALIDATION, 0))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        gradients_through_time(net, probe)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lstm")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shape = (args.model, args.steps)
    sizes = (args.length, args.hidden, args.batch)
    one_run(args.model, 5, 0, *sizes)  # warm-up: imports, allocator, oneDNN kernels
    off, on = [], []
    for _ in range(args.repeats):
        off.append(one_run(*shape, 0, *sizes))
        on.append(one_run(*shape, args.every, *sizes))
    result = {"model": args.model, "steps": args.steps, "record_every": args.every,
              "length": args.length, "hidden": args.hidden, "batch": args.batch,
              "threads": args.threads, "off_s": off, "on_s": on,
              "median_off_s": statistics.median(off), "median_on_s": statistics.median(on)}
    result["overhead"] = result["median_on_s"] / result["median_off_s"] - 1
    result["one_record_s"] = record_cost(args.model, args.length, args.hidden)
    result["step_s"] = result["median_off_s"] / args.steps
    # the cost that recording every N steps adds, from the two medians' ingredients
    result["predicted_overhead"] = result["one_record_s"] / (args.every * result["step_s"])
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
