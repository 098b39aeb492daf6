"""Folk-tune benchmark: the MIT 6.S191 lab's model beside seqlab's default, on the lab's data.

Both train on ../shared/data/irish.abc (804 tunes) with 10% of the tunes held out (seed 0),
then sample tunes at temperature 1.0 and check them (seqlab.music): held-out loss per
character, validity rate, near-copy rate, wall time.

    OMP_NUM_THREADS=1 python benchmarks/tunes.py --preset mit --tunes 100
    OMP_NUM_THREADS=1 python benchmarks/tunes.py --preset default --time-budget 300
    OMP_NUM_THREADS=1 python benchmarks/tunes.py --preset tunes30 --reuse --out runs/bench
    OMP_NUM_THREADS=1 python benchmarks/tunes.py --preset default --reuse --out runs/bench \
        --tunes 300 --temperatures 0.8 1.0 1.2 --meter both

``--reuse`` samples from runs already in ``--out`` (for runs trained in several sessions
with ``seqlab train --resume``, each under a time budget). ``--temperatures`` and ``--meter``
sample a grid (each temperature with and without meter-aware sampling), each setting checked
the same way, with bar fit (repeat-aware, :func:`seqlab.abc_meter.bar_fit`), header
consistency (R: against M:) and the sampling time.

``--max-steps`` / ``--time-budget`` shorten a run (the figures then say so). One JSON object per
preset goes to stdout, and a Markdown table row for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch

import seqlab
from seqlab import music
from seqlab.data.abc import train_val_tunes

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "irish.abc"

PRESETS = {
    # MIT 6.S191 lab 1, part 2: embedding 256 -> LSTM 1024 -> linear; Adam 5e-3, batch 8,
    # sequence 100, 3000 iterations; random windows with a fresh state each batch, a constant
    # learning rate and no clipping, as in the lab.
    "mit": dict(model="lstm", embedding_size=256, hidden_size=1024, num_layers=1,
                batch_size=8, seq_len=100, optimizer="adam", lr=5e-3, max_steps=3000,
                batching="windows", warmup_steps=0, min_lr_ratio=1.0, clip_norm=0.0),
    # seqlab's own defaults (lstm E64 H256, 32 random windows of 128, Adam 2e-3 with warmup
    # and cosine decay, clipping at 1.0, 2000 steps); --batching streams or tunes for the others
    "default": dict(),
    # seqlab's default widened for a 30-minute budget on one CPU thread: H512 with dropout,
    # because at H256 the training loss already runs 0.2 nats below the held-out loss; random
    # windows, which trained tunes better than TBPTT streams (BENCHMARKS.md)
    "tunes30": dict(hidden_size=512, dropout=0.2, max_steps=1800, batching="windows"),
}


def run(preset: str, tunes: int, max_steps: int | None, time_budget: float, seed: int,
        temperatures: list[float], folder: Path, reuse: bool = False, device: str = "cpu",
        train_only: bool = False, batching: str = "", meters: tuple[bool, ...] = (True,),
        timing: int = 0) -> list[dict]:
    keys = dict(PRESETS[preset], val_fraction=0.1, seed=seed, device=device, patience=0,
                eval_every=250, log_every=50)
    if max_steps:
        keys["max_steps"] = max_steps
    if batching:
        keys["batching"] = batching
    if time_budget:
        keys["time_budget"] = time_budget
    if reuse and (folder / preset / "model.safetensors").is_file():
        model, vocab, trained = reuse_run(folder / preset, device)
    else:
        start = time.perf_counter()
        result = seqlab.train(DATA, out=folder / preset, **keys)
        model, vocab = result.model, result.vocab
        trained = {"steps": result.summary.steps, "stop_reason": result.summary.stop_reason,
                   "best_val_loss": result.summary.best_val_loss,
                   "train_s": time.perf_counter() - start}
    if train_only:
        return [{"preset": preset, "device": device, **trained}]
    config = json.loads((folder / preset / "config.json").read_text())
    data = config["data"]
    novelty = music.NoveltyIndex(train_val_tunes(DATA, 0.1, seed)[0])
    loss = trained["best_val_loss"]
    head = {"preset": preset, "steps": trained["steps"], "stop_reason": trained["stop_reason"],
            "parameters": seqlab.models.count_parameters(model),
            "val_loss_per_char": loss / data["chars_per_token"],
            "val_bpc": loss / math.log(2) / data["chars_per_token"],
            "train_s": trained["train_s"]}
    # a model trained on whole tunes (--batching tunes) began each one from an empty state
    fresh = config["train"]["batching"] == "tunes"
    if timing:
        return [{**head, **time_sampling(model, vocab, tunes, seed, t, fresh, timing)}
                for t in temperatures]
    return [{**head, **sample(model, vocab, tunes, seed, t, meter, fresh, novelty)}
            for t in temperatures for meter in meters]


def time_sampling(model, vocab, tunes: int, seed: int, temperature: float, fresh: bool,
                  repeats: int) -> dict:
    """Sampling alone, without and with meter-aware sampling in turn, ``repeats`` times each:
    the median seconds and characters per second of each (the tunes are not checked)."""
    times: dict[bool, list[float]] = {False: [], True: []}
    chars: dict[bool, int] = {}
    for _ in range(repeats):
        for meter in (False, True):
            start = time.perf_counter()
            sampled = music.generate_tunes(model, vocab, tunes, max_length=2000, seed=seed,
                                           fresh_state=fresh, meter=meter,
                                           temperature=temperature)
            times[meter].append(time.perf_counter() - start)
            chars[meter] = sum(len(t.text) for t in sampled)
    median = {m: sorted(ts)[len(ts) // 2] for m, ts in times.items()}
    return {"temperature": temperature, "repeats": repeats, "off_s": median[False],
            "on_s": median[True], "off_chars_per_s": chars[False] / median[False],
            "on_chars_per_s": chars[True] / median[True],
            "slowdown_per_char": chars[False] / median[False] / (chars[True] / median[True]),
            "slowdown_wall": median[True] / median[False]}


def sample(model, vocab, tunes: int, seed: int, temperature: float, meter: bool, fresh: bool,
           novelty: music.NoveltyIndex) -> dict:
    """Sample ``tunes`` tunes at one setting, time it, check them."""
    start = time.perf_counter()
    sampled = music.generate_tunes(model, vocab, tunes, max_length=2000, seed=seed,
                                   fresh_state=fresh, meter=meter, temperature=temperature)
    generate_s = time.perf_counter() - start
    records = music.validate_tunes([t.text for t in sampled], novelty)
    for record, tune in zip(records, sampled, strict=True):
        record["ended"] = tune.ended
    return {"temperature": temperature, "meter": meter, "generate_s": generate_s,
            "chars": sum(len(t.text) for t in sampled),
            "meter_fallbacks": sum(t.meter_fallbacks for t in sampled),
            **music.summarise(records), "examples": [t.text for t in sampled[:2]]}


def real_tunes(seed: int) -> dict:
    """The same checks on the held-out real tunes: what a perfect model would score."""
    train, val = train_val_tunes(DATA, 0.1, seed)
    records = music.validate_tunes(val, music.NoveltyIndex(train))
    return {"preset": "held-out real tunes", **music.summarise(records)}


def reuse_run(path: Path, device: str = "cpu"):
    """Model, vocabulary and training figures of a finished run (its metrics.jsonl)."""
    loaded = seqlab.load_run(path, device=device)
    metrics = loaded.run.read_metrics()
    trained = {"steps": max(m["step"] for m in metrics), "stop_reason": "reused",
               "best_val_loss": min(m["val_loss"] for m in metrics if "val_loss" in m),
               "train_s": max(m["elapsed_s"] for m in metrics)}
    return loaded.model, loaded.vocab, trained


def row(r: dict) -> str:
    def pct(key: str) -> str:
        return "n/a" if r.get(key) is None else f"{r[key]:.0%}"

    rates = " | ".join(pct(k) for k in ("valid_rate", "abc2midi_rate", "mean_bar_fraction",
                                        "near_copy_rate", "ended_rate"))
    if "parameters" not in r:
        return f"| {r['preset']} | | | | | {rates} |"
    return (f"| {r['preset']} | {r['parameters'] / 1e6:.2f}M | {r['steps']} | "
            f"{r['train_s'] / 60:.1f} min | {r['val_loss_per_char']:.3f} | {rates} |")


def meter_row(r: dict) -> str:
    """A row of the meter-aware sampling table."""
    def pct(key: str, digits: int = 0) -> str:
        return "n/a" if r.get(key) is None else f"{r[key]:.{digits}%}"

    setting = (f"{r['preset']} | {r['temperature']} | {'on' if r['meter'] else 'off'}"
               if "meter" in r else f"{r['preset']} | | ")
    speed = (f"{r['generate_s']:.1f} s ({r['chars'] / r['generate_s']:,.0f} chars/s) | "
             f"{r['meter_fallbacks']}" if "generate_s" in r else " | ")
    return (f"| {setting} | {pct('valid_rate')} | {pct('bar_fit', 1)} | {pct('mean_bar_fit', 1)} "
            f"| {pct('all_bars_fit_rate')} | {pct('near_copy_rate')} | "
            f"{pct('header_consistency_rate')} ({r.get('rhythm_tunes', 0)}) | {speed} |")


def main() -> None:
    global DATA
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=[*PRESETS, "all"], default="all")
    parser.add_argument("--tunes", type=int, default=100, help="tunes to sample and check")
    parser.add_argument("--max-steps", type=int, default=0, help="override the preset's steps")
    parser.add_argument("--time-budget", type=float, default=0.0, help="seconds of training")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0])
    parser.add_argument("--meter", choices=("on", "off", "both"), default="on",
                        help="meter-aware sampling (both: each temperature twice)")
    parser.add_argument("--timing", type=int, default=0, metavar="REPEATS",
                        help="only time sampling, without and with meter-aware sampling in "
                        "turn, REPEATS times each (medians; no checks)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="folder for the run directories (default: a temporary one)")
    parser.add_argument("--batching", choices=("windows", "streams", "tunes"),
                        help="override the preset's batching")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where to train and sample (the figures name the machine)")
    parser.add_argument("--data", type=Path, default=DATA,
                        help="the ABC file (default: ../shared/data/irish.abc)")
    parser.add_argument("--train-only", action="store_true",
                        help="train and stop: no sampling or checks (for a machine without "
                        "abc2midi; sample later with --reuse)")
    parser.add_argument("--reuse", action="store_true",
                        help="sample from the runs already in --out instead of training")
    args = parser.parse_args()
    DATA = args.data
    if not DATA.is_file():
        raise SystemExit(f"{DATA}: not found (the shared benchmark data)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    presets = list(PRESETS) if args.preset == "all" else [args.preset]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.out or tmp)
        meters = {"on": (True,), "off": (False,), "both": (False, True)}[args.meter]
        results = [r for p in presets
                   for r in run(p, args.tunes, args.max_steps, args.time_budget, args.seed,
                                args.temperatures, folder, args.reuse, args.device,
                                args.train_only, args.batching or "", meters, args.timing)]
    if args.train_only or args.timing:
        for r in results:
            print(json.dumps(r), flush=True)
        return
    results.append(real_tunes(args.seed))
    for r in results:
        print(json.dumps(r), flush=True)
    print("| preset | params | steps | train time | held-out nats/char | valid | abc2midi "
          "| bars matching meter | near-copies | ended by model |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(row(r))
    print("| preset | temperature | meter-aware | valid | bar fit (all bars) | bar fit (mean "
          "per tune) | tunes whose bars all fit | near-copies | header consistency (tunes with "
          "R:) | sampling time | fallbacks |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(meter_row(r))


if __name__ == "__main__":
    main()
