"""One example per line: ``--batching lines`` against random windows over the same lines.

The data is every distinct word of tiny Shakespeare, one per line, sorted alphabetically: the
kind of list (names, words, identifiers) where a window that runs across line boundaries can
copy its neighbour's prefix. Both runs train on the same training lines (a seeded split of
whole lines); both are then scored the same way on the same held-out lines, each line read
from an empty state and its end-of-line prediction counted (bits per character, the figure
character models of names report). The windows run's own validation figure, read from its
stream of neighbouring lines, is printed beside it.

    python benchmarks/lines.py --max-steps 2000 --time-budget 150
"""

from __future__ import annotations

import argparse
import json
import math
import re
import tempfile
import time
from pathlib import Path

import seqlab
from seqlab.data.lines import LineBatches, encode_lines, split_lines
from seqlab.tasks import evaluate_chunks

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
MODEL = dict(model="lstm", hidden_size=128, embedding_size=32, batch_size=32, lr=3e-3,
             eval_every=250, log_every=50, patience=0, seed=0, device="cpu")


def words(path: Path) -> list[str]:
    return sorted(set(re.findall(r"[A-Za-z']+", path.read_text(encoding="utf-8"))))


def held_out_bpc(run: Path, lines: list[str]) -> float:
    """Bits per character of a run on lines, each from an empty state, EOL counted."""
    loaded = seqlab.load_run(run)
    batches = LineBatches(encode_lines(lines, loaded.vocab), 64, None)
    nats, count = evaluate_chunks(loaded.model, batches)
    return nats / count / math.log(2) / batches.chars_per_token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-steps", type=int, default=2000)
    parser.add_argument("--time-budget", type=float, default=150.0, help="seconds per run")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=None, help="folder for the runs")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="seqlab-lines-"))
    out.mkdir(parents=True, exist_ok=True)
    lines = words(args.data)
    train, val = split_lines(lines, 0.1, MODEL["seed"])
    (out / "words.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "train-words.txt").write_text("\n".join(sorted(train)) + "\n", encoding="utf-8")
    keys = dict(MODEL, max_steps=args.max_steps, time_budget=args.time_budget)
    results = {}
    for name, source, extra in (("lines", "words.txt", dict(batching="lines")),
                                ("windows", "train-words.txt", dict(seq_len=64))):
        started = time.perf_counter()
        result = seqlab.train(out / source, out=out / name, **keys, **extra)
        evals = [m for m in result.run.read_metrics() if "val_bpc" in m]
        results[name] = {"steps": result.summary.steps,
                         "train_s": round(time.perf_counter() - started, 1),
                         "own_val_bpc": min(m["val_bpc"] for m in evals),
                         "held_out_lines_bpc": held_out_bpc(out / name, val)}
    print(json.dumps({"lines": len(lines), "train": len(train), "held_out": len(val),
                      "runs": results}, indent=1))


if __name__ == "__main__":
    main()
