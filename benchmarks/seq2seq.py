"""Encoder-decoder benchmarks: dates to ISO, and accuracy against length on ``reverse``.

``dates``, ``sort``, ``addition``: train on the built-in task within a time budget, then exact
match on 2,000 held-out pairs (none of whose sources was trained or validated on), greedy
decoding.

``reverse``: accuracy against source length (5 to 60), with attention and with the
final-state-only decoder (``--attention none``), as one plot: the shape of Bahdanau et al.
2014, Figure 2. Each curve point is the exact match on ``--per-length`` held-out strings of that
length. Also writes the attention map of one reversed string (the anti-diagonal).

    OMP_NUM_THREADS=1 python benchmarks/seq2seq.py dates --out benchmarks/out/seq2seq
    OMP_NUM_THREADS=1 python benchmarks/seq2seq.py reverse --out benchmarks/out/seq2seq \\
        [--attention-run RUN --none-run RUN]
    python benchmarks/seq2seq.py reverse --device cuda --attention additive --max-steps 6000

Runs given with ``--attention-run`` / ``--none-run`` are measured as they are; otherwise they
are trained here with the settings below, in one session of ``--time-budget`` seconds each;
both reverse models get the same settings and steps, only ``--attention`` differs.
The figures in BENCHMARKS.md measured runs trained by the ``seqlab train`` commands listed
there (the attentive one in three sessions of at most 450 s, to stay under 8 minutes a job).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import seqlab
from seqlab.families.seq2seq import (
    evaluate,
    exact_match_by_length,
    load,
    save_attention,
    translate_texts,
)

DATES = dict(attention="additive", hidden_size=128, embedding_size=32, batch_size=64, lr=3e-3,
             max_steps=6000, eval_every=500, log_every=250, num_pairs=50000, patience=0)
REVERSE = dict(length="5-60", bidirectional=True, hidden_size=128, embedding_size=32,
               batch_size=64, lr=3e-3, max_steps=1500, eval_every=250, log_every=50,
               num_pairs=50000, patience=0)
# sort: symbol strings of 5 to 20 in alphabetical order; addition: a + b of 1 to 5 digits
EXACT = {
    "sort": dict(length="5-20", attention="additive", bidirectional=True, hidden_size=128,
                 embedding_size=32, batch_size=64, lr=3e-3, max_steps=3000, eval_every=500,
                 log_every=100, num_pairs=50000, patience=0),
    "addition": dict(length="1-5", attention="additive", bidirectional=True, hidden_size=128,
                     embedding_size=32, batch_size=64, lr=3e-3, max_steps=3000, eval_every=500,
                     log_every=100, num_pairs=50000, patience=0),
}
LENGTHS = list(range(5, 61, 5))


def train(source: str, out: Path, budget: float, device: str = "cpu", **keys) -> Path:
    started = time.perf_counter()
    seqlab.train(source, out=out, time_budget=budget, device=device, **keys)
    print(f"trained {out} in {time.perf_counter() - started:.0f} s", flush=True)
    return out


def overrides(args) -> dict:
    """The training keys given on the command line (they replace the preset's)."""
    return {k: v for k, v in (("max_steps", args.max_steps), ("hidden_size", args.hidden_size),
                              ("batch_size", args.batch_size), ("lr", args.lr),
                              ("eval_every", args.eval_every)) if v}


def bench_exact(args) -> dict:
    """Train (unless --run) and measure exact match on 2,000 held-out pairs of a task."""
    preset = DATES if args.task == "dates" else EXACT[args.task]
    run = args.run or train(args.task, args.out / args.task, args.time_budget, args.device,
                            **{**preset, **overrides(args)})
    result = evaluate(run, args.task, device=args.device)
    metrics = [json.loads(line) for line in (Path(run) / "metrics.jsonl").open()]
    result["train_seconds"] = max(m.get("elapsed_s", 0) for m in metrics)
    result["steps"] = max(m["step"] for m in metrics)
    return result


def accuracy_by_length(run: Path, per_length: int, device: str = "cpu") -> dict[int, float]:
    curve = exact_match_by_length(run, LENGTHS, per_length, device)
    for length, exact in curve.items():
        print(f"{run.name}: length {length}: exact match {exact:.4f}", flush=True)
    return curve


def plot(curves: dict[str, dict[int, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, curve in curves.items():
        ax.plot(list(curve), [100 * v for v in curve.values()], marker="o", label=label)
    ax.axhline(99, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("source length (symbols)")
    ax.set_ylabel("exact match (%)")
    ax.set_ylim(-2, 102)
    ax.set_title("reverse: accuracy against source length")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bench_reverse(args) -> dict:
    keys = {**REVERSE, **overrides(args)}
    attention = args.attention
    runs = {
        f"attention ({attention}, bidirectional)": Path(args.attention_run)
        if args.attention_run else train("reverse", args.out / f"reverse-{attention}",
                                         args.time_budget, args.device, attention=attention,
                                         **keys),
        "final state only (none, bidirectional)": Path(args.none_run) if args.none_run
        else train("reverse", args.out / "reverse-none", args.time_budget, args.device,
                   attention="none", **keys),
    }
    curves = {label: accuracy_by_length(run, args.per_length, args.device)
              for label, run in runs.items()}
    plot(curves, args.out / "reverse_accuracy_by_length.png")
    attentive = load(next(iter(runs.values())), args.device)
    example = translate_texts(attentive.model, attentive.vocab, ["seqlabattendsbackwards"])[0]
    save_attention(args.out / "reverse_attention.png", example)
    return {"runs": {k: str(v) for k, v in runs.items()},
            "exact_match_by_length": {k: {str(n): v for n, v in c.items()}
                                      for k, c in curves.items()},
            "example": {"source": example.source, "output": example.text}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=("dates", "sort", "addition", "reverse"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/seq2seq"))
    parser.add_argument("--time-budget", type=float, default=420.0,
                        help="seconds of training per model (default: 420)")
    parser.add_argument("--run", help="dates, sort, addition: measure this run instead of "
                        "training one")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where to train and decode (the figures name the machine)")
    parser.add_argument("--attention", choices=("additive", "dot", "general"),
                        default="general", help="reverse: the attentive model's scorer")
    for flag in ("--max-steps", "--hidden-size", "--batch-size", "--eval-every"):
        parser.add_argument(flag, type=int, default=0, help="override the preset's value")
    parser.add_argument("--lr", type=float, default=0.0, help="override the preset's value")
    parser.add_argument("--attention-run", help="reverse: the attentive run to measure")
    parser.add_argument("--none-run", help="reverse: the final-state-only run to measure")
    parser.add_argument("--per-length", type=int, default=200,
                        help="reverse: held-out strings per length (default: 200)")
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    result = bench_reverse(args) if args.task == "reverse" else bench_exact(args)
    result["machine"] = (torch.cuda.get_device_name() if args.device == "cuda"
                         else f"cpu, {torch.get_num_threads()} threads")
    result["torch"] = torch.__version__
    (args.out / f"{args.task}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
