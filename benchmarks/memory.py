"""Peak resident memory of training a character LSTM on a large text file.

Writes a text file of the given size (tiny Shakespeare repeated, or seeded random words when
it is absent) to a temporary folder, trains on it for a few steps in a child process with the
command line, and reports the child's peak resident set size. Goal: under 2 GB for 100 MB.
The data is held as one int16 token tensor, never a Python object per character.

    python benchmarks/memory.py [--megabytes 100]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAKESPEARE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare.txt"


def write_text(path: Path, megabytes: float) -> int:
    target = int(megabytes * 1_000_000)
    if SHAKESPEARE.exists():
        block = SHAKESPEARE.read_text(encoding="utf-8")
    else:
        rng = random.Random(0)
        words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(1, 8)))
                 for _ in range(500)]
        block = " ".join(rng.choice(words) for _ in range(200_000)) + "\n"
    with open(path, "w", encoding="utf-8") as handle:
        written = 0
        while written < target:
            piece = block[: target - written]
            handle.write(piece)
            written += len(piece)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=100.0, help="text size (default 100)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "big.txt"
        chars = write_text(data, args.megabytes)
        command = [sys.executable, "-m", "seqlab", "train", str(data), "--out", f"{tmp}/run",
                   "--hidden-size", "256", "--max-steps", "20", "--eval-every", "20",
                   "--eval-batches", "4", "--log-every", "10", "--quiet"]
        t0 = time.perf_counter()
        subprocess.run(command, check=True)
        wall = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kilobytes on Linux
    result = {"text_chars": chars, "peak_rss_mb": peak_kb / 1024, "wall_s": wall,
              "goal_met": peak_kb / 1024 < 2048}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
