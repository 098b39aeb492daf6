"""Forecast benchmark: recurrent forecasters against naive, seasonal naive, ETS and ARIMA.

For each bundled set, with its protocol (PROTOCOLS): first each candidate setting of that set
(CANDIDATES: head, context, transform, lag and calendar inputs) is trained once (seed 0) and
scored on the validation windows only (the val MASE at the best validation loss); the best
setting is then trained with every seed and each run scored once on the test windows, beside
the baselines (fitted by statsmodels on the same windows). One CPU thread per training, at most
--jobs trainings at once.

    .venv/bin/python benchmarks/forecast.py --seeds 5 --budget 150 --jobs 2 --out bench-forecast

Prints one markdown table per set (mean and standard deviation over seeds for the model) and
writes results.json into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SEQLAB = str(Path(sys.executable).with_name("seqlab"))
METRICS = ("mae", "rmse", "mape", "smape", "mase", "coverage_80", "coverage_95", "crps")
PROTOCOLS = {  # held-out spans; macrodata stands in for M1 yearly (BENCHMARKS.md)
    "airline": ["--horizon", "36", "--windows", "1"],
    "macrodata": ["--horizon", "8", "--windows", "1"],
    "sunspots": ["--horizon", "11", "--windows", "10"],
}
# settings tried on the validation windows; log only where every value is positive (sunspots
# has zeros, macrodata's infl and realint cross zero)
CANDIDATES = {
    "airline": {
        "direct-c48": ["--head", "direct", "--context", "48"],
        "direct-log-c24-lag12-cal": ["--head", "direct", "--context", "24", "--transform",
                                     "log", "--lags", "12", "--calendar"],
        "t-log-c24-lag12-cal": ["--head", "student-t", "--context", "24", "--transform", "log",
                                "--lags", "12", "--calendar"],
        "t-log-c36-lag12,24-cal": ["--head", "student-t", "--context", "36", "--transform",
                                   "log", "--lags", "12,24", "--calendar"],
    },
    "macrodata": {
        "t-c24": ["--head", "student-t", "--context", "24"],
        "direct-c24": ["--head", "direct", "--context", "24"],
        "t-c12-lag4": ["--head", "student-t", "--context", "12", "--lags", "4"],
        "t-c24-lag4-cal": ["--head", "student-t", "--context", "24", "--lags", "4",
                           "--calendar"],
    },
    "sunspots": {
        "direct-c44": ["--head", "direct", "--context", "44"],
        "t-c44": ["--head", "student-t", "--context", "44"],
        "direct-c22-lag11": ["--head", "direct", "--context", "22", "--lags", "11"],
        "t-c22-lag11": ["--head", "student-t", "--context", "22", "--lags", "11"],
    },
}
COMMON = ["--task", "forecast", "--model", "lstm", "--hidden-size", "32", "--batch-size", "32",
          "--lr", "3e-3",
          "--warmup-steps", "50", "--max-steps", "5000", "--eval-every", "100",
          "--log-every", "100", "--patience", "8", "--samples", "200", "--device", "cpu",
          "--quiet"]


def run(argv: list[str]) -> tuple[str, float]:
    """Run a seqlab command on one thread; (stdout, seconds)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    started = time.perf_counter()
    done = subprocess.run([SEQLAB, *argv], capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"seqlab {' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout, time.perf_counter() - started


def train(name: str, setting: str, seed: int, budget: float, out: Path) -> dict:
    folder = out / name / f"{setting}-seed{seed}"
    if not (folder / "model.safetensors").exists():
        _, seconds = run(["train", name, *PROTOCOLS[name], *CANDIDATES[name][setting], *COMMON,
                          "--seed", str(seed), "--time-budget", str(budget), "--out",
                          str(folder)])
    else:
        seconds = float("nan")  # trained by an earlier invocation
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "val_loss" in r]
    best = min(evals, key=lambda r: r["val_loss"])
    return {"run": str(folder), "setting": setting, "seed": seed, "train_s": seconds,
            "val_mase": best["val_mase"], "steps": max(r["step"] for r in records),
            "train_elapsed_s": max(r.get("elapsed_s", 0) for r in records)}


def evaluate(name: str, folder: str, baselines: bool) -> dict:
    argv = ["evaluate", folder, name, "--json", "--device", "cpu"]
    out, seconds = run(argv + (["--baselines"] if baselines else []))
    return {**json.loads(out), "eval_s": seconds}


def benchmark(name: str, seeds: int, budget: float, jobs: int, out: Path) -> dict:
    with ThreadPoolExecutor(jobs) as pool:
        chosen = list(pool.map(lambda s: train(name, s, 0, budget, out), CANDIDATES[name]))
        best = min(chosen, key=lambda r: r["val_mase"])
        runs = [best] + list(pool.map(lambda seed: train(name, best["setting"], seed, budget,
                                                         out), range(1, seeds)))
        tests = list(pool.map(lambda r: evaluate(name, r["run"], r["seed"] == 0), runs))
    return {"set": name, "selection": chosen, "setting": best["setting"], "runs": runs,
            "tests": tests, "baselines": tests[0]["baselines"]}


def table(result: dict) -> str:
    """Markdown: the model's mean and standard deviation over seeds, then each baseline."""
    lines = ["| forecaster | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    cells = []
    for key in METRICS:
        values = [t[key] for t in result["tests"]]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        cells.append(f"{statistics.mean(values):.4g} ± {spread:.2g}")
    lines.append(f"| {result['setting']} ({len(result['tests'])} seeds) | " + " | ".join(cells)
                 + " |")
    for name, values in result["baselines"].items():
        lines.append(f"| {name} | " + " | ".join(f"{values[k]:.4g}" for k in METRICS) + " |")
    selection = ", ".join(f"{r['setting']} {r['val_mase']:.4f}" for r in result["selection"])
    times = [r["train_s"] for r in result["runs"]]
    steps = [r["steps"] for r in result["runs"]]
    return "\n".join([f"### {result['set']}", "", *lines, "",
                      f"validation MASE of the candidates (seed 0): {selection}; training "
                      f"{min(times):.0f}-{max(times):.0f} s (the command's wall time), "
                      f"{min(steps)}-{max(steps)} steps per seed", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(PROTOCOLS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=150.0, help="seconds per training")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default="bench-forecast")
    args = parser.parse_args()
    out, results = Path(args.out), {}
    out.mkdir(parents=True, exist_ok=True)
    for name in args.sets.split(","):
        started = time.perf_counter()
        results[name] = benchmark(name, args.seeds, args.budget, args.jobs, out)
        results[name]["wall_s"] = time.perf_counter() - started
        print(table(results[name]), flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
