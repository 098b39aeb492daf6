"""Parallel-scan cells: minGRU and minLSTM (their sweep and their log-space scan) against the GRU.

For each sequence length T, one layer of each (input and hidden size H, batch B, float32, one
thread) runs forward and backward on the same input: ``mingru`` and ``minlstm`` through
:class:`seqlab.recurrent.Recurrent` in fused mode (on a CPU their sweep, the recurrence one
step at a time with a hand-written backward), ``mingru scan`` and ``minlstm scan`` through
their log-space parallel scan (what fused mode runs on a GPU), ``gru`` through the same class,
whose fused mode is what a seqlab GRU runs: on a CPU its sweep (faster there than
torch.nn.GRU), on a GPU cuDNN's GRU. Rounds alternate between the contestants so that
machine noise hits all alike; the figure is the median time per forward+backward and its
ratio to the GRU's, measured in one run. The minGRU's own sequential loop (explicit mode) is
timed too, at the shorter lengths.

Also reported, per T: how far float32 lies from the float64 sequential step (explicit mode,
same weights, default initialisation), as the largest difference of any h_t relative to
max(|h_t|, 1): the sweep, the scan as it runs (restarted every CHUNK = 512 steps), one scan
over all T steps, and the float32 sequential step itself, for scale.

    python benchmarks/scan.py [--lengths 128 512 2048 8192] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path

import torch

from rounds import alternate  # alternating rounds, shared by the benchmarks
from seqlab.recurrent import Recurrent

B, H = 8, 128
CELLS = ("gru", "mingru", "minlstm")
EXPLICIT_UP_TO = 512  # the sequential loop is T Python steps: timed only up to here


def contestant(cell: str, x: torch.Tensor, mode: str = "fused", how: str | None = None):
    """A function running one forward and backward of a one-layer stack on x (B, T, H); with
    ``how``, the cell's recurrence that way (``seqlab.cells.scan.recurrence``)."""
    torch.manual_seed(0)
    model = Recurrent(cell, H, H, mode=mode)
    weight = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    x = x.clone().requires_grad_()

    def run() -> None:
        if how is None:
            output, _ = model(x)
        else:
            output = model.spec.scan(x, (model.initial_state(x.shape[0])[0],),
                                     *model.layer_weights(0), how=how)
        (output * weight).sum().backward()
    return run


def time_alternating(runners: dict, rounds: int, target_s: float = 0.3) -> dict[str, float]:
    """Median seconds per call, rounds alternating between runners; calls per round sized from
    a first call after the warm-up, so that each round takes about target_s."""
    once = alternate(runners, 1)
    calls = {name: max(1, round(target_s / w[0])) for name, w in once.wall.items()}

    def repeated(run, n: int):
        return lambda: [run() for _ in range(n)]

    timed = alternate({name: repeated(run, calls[name]) for name, run in runners.items()},
                      rounds, warm_up={})
    return {name: statistics.median(s / calls[name] for s in w)
            for name, w in timed.wall.items()}


@torch.no_grad()
def accuracy(cell: str, x: torch.Tensor) -> dict[str, float]:
    """float32 (the sweep, the scan, one scan over all T, the sequential step) against the
    float64 sequential step, relative to max(|h_t|, 1)."""
    torch.manual_seed(0)
    model = Recurrent(cell, H, H, mode="explicit").double()
    exact, _ = model(x.double())
    model.float()
    state, weights = (model.initial_state(x.shape[0])[0],), model.layer_weights(0)
    found = {"sweep": model.spec.scan(x, state, *weights, how="sweep"),
             "scan": model.spec.scan(x, state, *weights, how="scan"),
             "single_scan": model.spec.scan(x, state, *weights, chunk=x.shape[1], how="scan"),
             "sequential": model(x)[0]}
    scale = exact.abs().clamp_min(1.0)
    return {**{f"{k}_vs_float64_rel": ((v.double() - exact).abs() / scale).max().item()
               for k, v in found.items()}, "max_abs_h": exact.abs().max().item()}


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
        runners.update({f"{cell} scan": contestant(cell, x, how="scan") for cell in CELLS[1:]})
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
            print(f"          {cell} float32 vs float64, relative: sweep "
                  f"{acc['sweep_vs_float64_rel']:.2e}, scan {acc['scan_vs_float64_rel']:.2e} "
                  f"(one scan of all T steps {acc['single_scan_vs_float64_rel']:.2e}), "
                  f"sequential {acc['sequential_vs_float64_rel']:.2e} "
                  f"(max |h| {acc['max_abs_h']:.2f})")
    if args.json:
        meta = {"B": B, "H": H, "threads": torch.get_num_threads(), "torch": torch.__version__,
                "machine": platform.processor() or platform.machine()}
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=1))


if __name__ == "__main__":
    main()
