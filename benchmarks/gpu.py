"""seqlab on a GPU: the default path against a plain cuDNN loop, bf16 against fp32, and the
parallel-scan cells against the cuDNN GRU over the sequence length.

1. Training speed: seqlab's LSTM language model (its trainer step: Adam, global-norm clipping
   at 1.0, a carried detached state) against a hand-written torch.nn.LSTM loop of the same size
   doing the same work; tokens per second, rounds alternating, median; goal seqlab/plain >= 0.95.
2. The same trainer step at ``--precision bf16`` (and fp16 with its gradient scaler) against
   fp32.
3. One layer's forward and backward, mingru and minlstm (parallel scan) against torch.nn.GRU
   (cuDNN) for T = 128 ... 8192.

The card's name goes into every result. ``--device cpu --quick`` runs a small version anywhere,
to check the script itself.

    python benchmarks/gpu.py [--device cuda] [--rounds 5] [--json FILE] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
from functools import partial
from pathlib import Path

import torch

from rounds import alternate  # alternating rounds, shared by the benchmarks
from seqlab.recurrent import Recurrent
from seqlab.training import check_precision
from speed import plain_loop, seqlab_loop, tokens  # the same two loops as the CPU benchmark


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tokens_per_s(runners: dict, rounds: int, steps: int, items: int, device) -> dict:
    """Median items/s per runner, rounds alternating, one warm-up step each."""
    timed = alternate({name: partial(run, steps) for name, run in runners.items()}, rounds,
                      warm_up={name: partial(run, 1) for name, run in runners.items()},
                      sync=partial(sync, device))
    return {name: statistics.median(steps * items / s for s in w)
            for name, w in timed.wall.items()}


def layer_times(lengths: list[int], batch: int, hidden: int, rounds: int, device) -> list:
    """Forward + backward seconds of one layer per cell, and the ratio to the GRU's."""
    rows = []
    for length in lengths:
        x = torch.randn(batch, length, hidden, device=device,
                        generator=torch.Generator(device).manual_seed(0))
        runners = {}
        for cell in ("gru", "mingru", "minlstm"):
            torch.manual_seed(0)
            layer = Recurrent(cell, hidden, hidden).to(device)
            inputs = x.clone().requires_grad_()

            def run(n: int, layer=layer, inputs=inputs) -> None:
                for _ in range(n):
                    output, _ = layer(inputs)
                    output.square().mean().backward()
            runners[cell] = run
        rates = tokens_per_s(runners, rounds, 2, 1, device)  # calls per second
        row = {"T": length, **{f"{c}_ms": 1e3 / r for c, r in rates.items()}}
        row.update({f"{c}_over_gru": rates["gru"] / rates[c] for c in ("mingru", "minlstm")})
        rows.append(row)
        print(f"T {length:5d}: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items()
                                               if k != "T"), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--steps", type=int, default=10,
                        help="training steps per round (default 10)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, to check the script (e.g. with --device cpu)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu.py: no CUDA GPU here (use --device cpu --quick to check it)")
    card = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"CPU, {torch.get_num_threads()} threads")
    hidden, batch, length = (64, 8, 32) if args.quick else (1024, 64, 128)
    lengths = [64, 256] if args.quick else [128, 512, 2048, 8192]
    steps = 2 if args.quick else args.steps
    result = {"device": card, "torch": torch.__version__, "hidden": hidden, "batch": batch,
              "length": length}
    print(f"{card}, torch {torch.__version__}", flush=True)
    text = tokens(200_000)
    items = batch * length
    sizes = dict(hidden=hidden, batch=batch, length=length, device=device)
    speed = tokens_per_s({"plain": plain_loop(text, **sizes),
                          "seqlab": seqlab_loop(text, **sizes)},
                         args.rounds, steps, items, device)
    result["speed"] = {**speed, "seqlab_over_plain": speed["seqlab"] / speed["plain"]}
    print(f"default path: seqlab {speed['seqlab']:,.0f} tokens/s, plain cuDNN loop "
          f"{speed['plain']:,.0f}: ratio {speed['seqlab'] / speed['plain']:.3f} (goal >= 0.95)",
          flush=True)
    precisions = ["fp32"]
    for name in ("bf16", "fp16"):
        try:
            check_precision(name, device)
            precisions.append(name)
        except ValueError as err:
            print(f"{name}: skipped ({err})", flush=True)
    rates = tokens_per_s({name: seqlab_loop(text, precision=name, **sizes)
                          for name in precisions}, args.rounds, steps, items, device)
    result["precision"] = {**rates, **{f"{n}_over_fp32": r / rates["fp32"]
                                       for n, r in rates.items() if n != "fp32"}}
    print("precision: " + ", ".join(f"{n} {r:,.0f} tokens/s ({r / rates['fp32']:.2f}x)"
                                    for n, r in rates.items()), flush=True)
    result["scan"] = layer_times(lengths, 8, 64 if args.quick else 256, args.rounds, device)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
