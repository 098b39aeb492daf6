"""Training on padded batches on a CPU: torch.nn's packed kernels against seqlab's sweeps.

A batch of sequences of unequal lengths runs through torch.nn.LSTM / GRU as a packed sequence,
whose backward pass on a CPU is several times slower than the sweep's (a layer with a
hand-written backward, :mod:`seqlab.cells.lstm_sweep`), so seqlab trains padded batches
through the sweep there. This times whole trainings of the families that pad: a classifier of
multivariate series, an encoder-decoder on padded pairs (its encoder reads them packed), a
classifier of texts by character; each twice, its cell's sweep withheld (the packed kernel)
and as seqlab runs it, with the same seed: the two runs do the same arithmetic, so their losses
agree to float32 rounding (which a long training may amplify). Wall seconds of training (after
a warm-up run of 2 steps that loads the data) and the best validation loss of each, one
thread. (The language models do not pack: they score padded batches with a mask.)

    OMP_NUM_THREADS=1 python benchmarks/padded.py [--steps 200] [--out benchmarks/out/padded]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

import seqlab
from seqlab.cells import replaced_cell

WORDS = "the quick brown fox jumps over the lazy dog and the cat sat on an old red mat".split()
RUNS = {  # name: (data, cell, config keys)
    "classify japanese-vowels (lstm)": ("japanese-vowels", "lstm",
                                        dict(model="lstm", hidden_size=128, bidirectional=True,
                                             pooling="attention", batch_size=32)),
    "seq2seq reverse (lstm, attention)": ("reverse", "lstm",
                                          dict(task="seq2seq", model="lstm", attention="additive",
                                               length="5-30", num_pairs=2000, batch_size=32,
                                               hidden_size=128)),
    "classify texts by character (gru)": ("TEXTS", "gru",
                                          dict(task="classify", model="gru", hidden_size=128,
                                               batch_size=32)),
}


def texts_file(folder: Path) -> Path:
    """label<TAB>text lines of 3 to 40 words, labelled by whether "fox" comes before "dog":
    a batch of them is padded to its longest, and the label needs the order."""
    import random

    rng = random.Random(0)
    rows = []
    for _ in range(3000):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 40))]
        fox = words.index("fox") if "fox" in words else len(words)
        dog = words.index("dog") if "dog" in words else len(words)
        rows.append(f"{'fox' if fox < dog else 'other'}\t{' '.join(words)}\n")
    path = folder / "texts.tsv"
    path.write_text("".join(rows), encoding="utf-8")
    return path


def train(data: str, cell: str, keys: dict, steps: int, out: Path, kernel: bool) -> dict:
    # kernel: the cell without its sweep, so that fused mode runs torch.nn's packed kernel
    with replaced_cell(cell, sweep=None, sweep_on_cpu=False) if kernel else nullcontext():
        started = time.perf_counter()
        result = seqlab.train(data, out=out, seed=0, device="cpu", max_steps=steps,
                              eval_every=steps, log_every=max(1, steps // 4), warmup_steps=0,
                              **keys)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "best_val_loss": result.summary.best_val_loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps (default 200)")
    parser.add_argument("--out", type=Path, default=None,
                        help="keep the run folders here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp()) if args.out is None else args.out
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for name, (data, cell, keys) in RUNS.items():
            data = str(texts_file(folder)) if data == "TEXTS" else data
            train(data, cell, keys, 2, folder / f"{name.split()[0]}-{cell}-warm-up", False)
            found = {}
            for label, kernel in (("packed kernel", True), ("seqlab (sweep)", False)):
                run = folder / f"{name.split()[0]}-{cell}-{'kernel' if kernel else 'sweep'}"
                found[label] = train(data, cell, keys, args.steps, run, kernel)
            ratio = found["packed kernel"]["seconds"] / found["seqlab (sweep)"]["seconds"]
            rows.append({"run": name, **{f"{k} {m}": v for k, f in found.items()
                                         for m, v in f.items()}, "speed-up": ratio})
            print(f"{name:36} packed kernel {found['packed kernel']['seconds']:7.1f} s "
                  f"(val {found['packed kernel']['best_val_loss']:.5f})   seqlab "
                  f"{found['seqlab (sweep)']['seconds']:7.1f} s "
                  f"(val {found['seqlab (sweep)']['best_val_loss']:.5f})   {ratio:.2f}x",
                  flush=True)
    finally:
        if args.out is None:
            shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps({"steps": args.steps, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
