"""The GRU and the LSTM on a CPU: torch.nn's kernels against seqlab's default and explicit paths.

One layer, input size I = H, T 200 steps, batch 32, one thread; each call is a forward and a
backward pass of the layer alone (sum of squares of the output as the loss). For every H the
contestants run in alternating rounds and the figure is the median of the process's CPU seconds
per call (one thread: on a machine shared with other work, wall time also counts the others'
turns on the cores); tokens/s is B T over those seconds, GFLOP/s counts a GRU step as 6H(I+H)
FLOPs forward per sample, an LSTM step as 8H(I+H), and training as 3x forward (the element-wise
gate arithmetic is left out).

Contestants: torch.nn.GRU / torch.nn.LSTM; seqlab's Recurrent in its default mode (``fused``:
what a seqlab model runs); seqlab's explicit loop (every step's input projected before the loop,
W_hh's gradient after it); with ``--compile`` also that loop with its step through torch.compile
(first call, the compilation, reported apart); with ``--per-step`` also the loop with neither
its input projected before it nor W_hh's gradient made after it (the cell's own step at every
step, W_hh's gradient accumulated step by step).

``--adding STEPS``: instead, the lab's adding runs (``seqlab lab --quick``: T 200, H 64,
batch 32, gradient recording every 100 steps) for STEPS steps, the GRU in its default path (on
a CPU its sweep), the GRU on torch.nn.GRU's kernel, and the LSTM: wall seconds and the best
validation loss of each (the two GRU runs do the same arithmetic, so their losses agree to
float32 rounding).

    python benchmarks/gru_cpu.py [--sizes 64,128,256,512,1024] [--rounds 3] [--compile]
                                 [--per-step] [--adding STEPS]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from rounds import alternate  # alternating rounds, shared by the benchmarks
from seqlab.recurrent import Recurrent

T, B = 200, 32
FLOPS_PER_STEP = {"gru": 6, "lstm": 8}  # x H (I + H), forward, per sample
KERNELS = {"gru": nn.GRU, "lstm": nn.LSTM}


def contestants(cell: str, hidden: int, compile: bool, per_step: bool) -> dict:
    """name -> a function running one forward and backward pass over a fixed batch."""
    torch.manual_seed(0)
    x = torch.randn(B, T, hidden, requires_grad=True)
    kernel = KERNELS[cell](hidden, hidden, batch_first=True)
    stack = Recurrent(cell, hidden, hidden)

    spec, plain = stack.spec, dict(sweep=None, sweep_on_cpu=False)

    def run(module, mode=None, compiled=False, stepwise=False, loop=False):
        chosen = (dataclasses.replace(spec, recur=None, **plain) if stepwise
                  else dataclasses.replace(spec, **plain) if loop else spec)

        def once() -> None:
            if mode is not None:
                module.mode, module.compiled, module.spec = mode, compiled, chosen
            output, _ = module(x)
            output.pow(2).sum().backward()
        return once
    runners = {f"torch.nn.{cell}": run(kernel), f"seqlab {cell} default": run(stack, "fused"),
               f"seqlab {cell} explicit": run(stack, "explicit"),
               f"seqlab {cell} loop": run(stack, "explicit", loop=True)}
    if compile:
        runners[f"seqlab {cell} compiled"] = run(stack, "explicit", compiled=True)
    if per_step:
        runners[f"seqlab {cell} per-step"] = run(stack, "explicit", stepwise=True)
    return runners


def measure(runners: dict, rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """(median CPU seconds per call, wall seconds of the first call) per runner, in alternating
    rounds."""
    timed = alternate(runners, rounds)
    return {name: statistics.median(c) for name, c in timed.cpu.items()}, timed.first


def adding(steps: int, out: Path) -> list[dict]:
    """The lab's quick adding runs of the GRU (sweep, then kernel) and the LSTM, timed."""
    import seqlab
    from seqlab.cells import replaced_cell
    from seqlab.lab import SIZES, adding_runs

    runs = {run.name: run.keys for run in adding_runs(SIZES["quick"])}
    rows = []
    for label, name, kernel in (("gru, default (sweep)", "adding-gru", False),
                                ("gru, torch.nn.GRU", "adding-gru", True),
                                ("lstm, default", "adding-lstm", False)):
        with replaced_cell("gru", sweep_on_cpu=False) if kernel else nullcontext():
            started = time.perf_counter()
            result = seqlab.train("adding", out=out / f"{name}-{'kernel' if kernel else 'default'}",
                                  **{**runs[name], "max_steps": steps})
            seconds = time.perf_counter() - started
        loss = result.summary.best_val_loss
        rows.append({"run": label, "seconds": seconds, "best_val_loss": loss})
        print(f"{label:24} {seconds:8.1f} s  best validation loss {loss:.6f}",
              flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128,256,512,1024",
                        help="hidden sizes H, comma-separated (default 64,128,256,512,1024)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--compile", action="store_true",
                        help="also the explicit loop with its step through torch.compile")
    parser.add_argument("--per-step", action="store_true",
                        help="also the explicit loop running the cell's own step at every step")
    parser.add_argument("--adding", type=int, metavar="STEPS",
                        help="instead, time the lab's adding runs (GRU sweep, GRU kernel, LSTM) "
                             "for this many steps each")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/gru_cpu"),
                        help="run folders of --adding (default benchmarks/out/gru_cpu)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.adding:
        rows = adding(args.adding, args.out)
        if args.json:
            args.json.write_text(json.dumps({"torch": torch.__version__, "adding": rows},
                                            indent=2) + "\n")
        return
    rows = []
    print(f"{'H':>5} {'contestant':26} {'ms/batch':>9} {'tokens/s':>9} {'GFLOP/s':>8} "
          f"{'vs torch.nn':>11} {'first s':>8}")
    for hidden in (int(h) for h in args.sizes.split(",")):
        runners, cell_of = {}, {}
        for cell in KERNELS:
            ran = contestants(cell, hidden, args.compile, args.per_step)
            runners.update(ran)
            cell_of.update(dict.fromkeys(ran, cell))
        seconds, first = measure(runners, args.rounds)
        for name, s in seconds.items():
            cell = cell_of[name]
            flops = 3 * FLOPS_PER_STEP[cell] * hidden * 2 * hidden * B * T
            row = {"H": hidden, "contestant": name, "ms": s * 1e3, "tokens_per_s": B * T / s,
                   "gflops": flops / s / 1e9,
                   "vs_torch_nn": seconds[f"torch.nn.{cell}"] / s, "first_s": first[name]}
            rows.append(row)
            print(f"{hidden:5} {name:26} {row['ms']:9.1f} {row['tokens_per_s']:9.0f} "
                  f"{row['gflops']:8.2f} {row['vs_torch_nn']:11.2f} {row['first_s']:8.1f}",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=2)
                             + "\n")


if __name__ == "__main__":
    main()
