"""Parallel-scan cells: minGRU and minLSTM (their log-space scan) against torch.nn's fused GRU.

For each sequence length T, one layer of each (input and hidden size H, batch B, float32, one
thread) runs forward and backward on the same input: ``mingru`` and ``minlstm`` through
:class:`seqlab.recurrent.Recurrent` in fused mode (the scan), ``gru`` through the same class,
whose fused mode is what a seqlab GRU runs: on a CPU its sweep (faster there than
torch.nn.GRU), on a GPU cuDNN's GRU. Rounds alternate between the contestants so that
machine noise hits all alike; the figure is the median time per forward+backward and its
ratio to the GRU's, measured in one run. The minGRU's own sequential loop (explicit mode) is
timed too, at the shorter lengths.

Also reported, per T: how far the float32 scan lies from the float32 sequential step (explicit
mode, same weights, default initialisation): the largest absolute difference of any h_t, and
against the float64 sequential step the largest difference relative to max(|h_t|, 1), for the
scan as it runs (restarted every CHUNK = 512 steps), for one scan over all T steps, and for the
float32 sequential step itself, for scale.

    python benchmarks/scan.py [--lengths 128 512 2048 8192] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from seqlab.recurrent import Recurrent

B, H = 8, 128
CELLS = ("gru", "mingru", "minlstm")
EXPLICIT_UP_TO = 512  # the sequential loop is T Python steps: timed only up to here


def contestant(cell: str, x: torch.Tensor, mode: str = "fused"):
    """A function running one forward and backward of a one-layer stack on x (B, T, H)."""
    torch.manual_seed(0)
    model = Recurrent(cell, H, H, mode=mode)
    weight = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    x = x.clone().requires_grad_()

    def run() -> None:
        output, _ = model(x)
        (output * weight).sum().backward()
    return run


def time_alternating(runners: dict, rounds: int, target_s: float = 0.3) -> dict[str, float]:
    """Median seconds per call, rounds alternating between runners; calls per round sized from
    a first timed call so that each round takes about target_s."""
    calls = {}
    for name, run in runners.items():
        run()  # warm-up
        t0 = time.perf_counter()
        run()
        calls[name] = max(1, round(target_s / (time.perf_counter() - t0)))
    times = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            t0 = time.perf_counter()
            for _ in range(calls[name]):
                run()
            times[name].append((time.perf_counter() - t0) / calls[name])
    return {name: statistics.median(t) for name, t in times.items()}


@torch.no_grad()
def accuracy(cell: str, x: torch.Tensor) -> dict[str, float]:
    """The float32 scan and float32 sequential step against each other and against float64."""
    torch.manual_seed(0)
    model = Recurrent(cell, H, H, mode="explicit").double()
    exact, _ = model(x.double())
    model.float()
    sequential, _ = model(x)
    model.mode = "fused"
    scanned, _ = model(x)
    # one scan over all T steps, without restarting every CHUNK steps
    single = model.spec.scan(x, (model.initial_state(x.shape[0])[0],),
                             *model.layer_weights(0), None, chunk=x.shape[1])
    scale = exact.abs().clamp_min(1.0)
    return {"scan_vs_sequential_abs": (scanned - sequential).abs().max().item(),
            "scan_vs_float64_rel": ((scanned.double() - exact).abs() / scale).max().item(),
            "single_scan_vs_float64_rel": ((single.double() - exact).abs() / scale).max().item(),
            "sequential_vs_float64_rel": ((sequential.double() - exact).abs() / scale).max().item(),
            "max_abs_h": exact.abs().max().item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 2048, 8192],
                        help="sequence lengths T (default 128 512 2048 8192)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = []
    for steps in args.lengths:
        x = torch.randn(B, steps, H, generator=torch.Generator().manual_seed(steps))
        runners = {cell: contestant(cell, x) for cell in CELLS}
        if steps <= EXPLICIT_UP_TO:
            runners["mingru explicit"] = contestant("mingru", x, mode="explicit")
        times = time_alternating(runners, args.rounds)
        row = {"T": steps, "seconds": times,
               "over_gru": {k: v / times["gru"] for k, v in times.items()},
               "float32": {cell: accuracy(cell, x) for cell in ("mingru", "minlstm")}}
        results.append(row)
        print(f"T={steps:5d}  " + "  ".join(f"{k} {1e3 * v:8.2f} ms ({row['over_gru'][k]:.2f}x)"
                                           for k, v in times.items()))
        for cell, acc in row["float32"].items():
            print(f"          {cell} float32: scan vs sequential max |diff| "
                  f"{acc['scan_vs_sequential_abs']:.2e}; vs float64, relative: scan "
                  f"{acc['scan_vs_float64_rel']:.2e} (one scan of all T steps "
                  f"{acc['single_scan_vs_float64_rel']:.2e}), sequential "
                  f"{acc['sequential_vs_float64_rel']:.2e} (max |h| {acc['max_abs_h']:.2f})")
    if args.json:
        meta = {"B": B, "H": H, "threads": torch.get_num_threads(), "torch": torch.__version__,
                "machine": platform.processor() or platform.machine()}
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=1))


if __name__ == "__main__":
    main()
