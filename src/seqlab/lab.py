"""``seqlab lab``: the lecture's claims, measured, in one command.

A suite is a list of experiments; an experiment is a few training runs (fixed seeds) and what
to read from them. Every run leaves its own run directory under ``OUT/runs/``; the report
(``OUT/report.md``) and its figures (``OUT/figures/``) are computed from those directories
only, so every number in it can be traced to the run that produced it. Running a suite again
into another folder reproduces the table (wall times aside).

Suites: ``quick`` (about 14 minutes on 2 CPU cores: smaller models and shorter training
than the papers, enough for every claim to show), ``full`` (the papers' sizes; hours on a
CPU) and ``smoke`` (seconds; for tests).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from seqlab.checkpoint import RunDir
from seqlab.families import registry, runner
from seqlab.families.seq2seq import exact_match_by_length
from seqlab.io import atomic_write_json
from seqlab.lab_report import write_report
from seqlab.models import count_parameters
from seqlab.training import TrainingDiverged
from seqlab.version import __version__


@dataclass(frozen=True)
class Run:
    name: str  # its directory under OUT/runs
    source: str  # a synthetic task or a text corpus
    keys: dict[str, Any]  # seqlab.train keys
    per_length: int = 0  # seq2seq: held-out strings per length for exact match by length


@dataclass(frozen=True)
class Experiment:
    key: str
    title: str
    claim: str  # what the lecture says, in one line
    published: str  # the published figure to set ours beside (ANCHORS.md)
    runs: tuple[Run, ...]
    verdict: Callable[[dict[str, dict]], str] = field(default=lambda results: "")


# suites --------------------------------------------------------------------------------------
SIZES = {  # per suite: hidden size, steps, lengths, batch, validation sequences, records
    "smoke": dict(hidden=8, steps=10, adding_steps=10, text_steps=6, adding_t=12, exploding_t=6,
                  copy_t=5, order_t=8, delay_t=8, delay=2, batch=8, val=16, record=5,
                  text_window=4, evals=2, s2s_steps=10, s2s_lengths=(3, 6), s2s_hidden=8,
                  s2s_per_length=5),
    "quick": dict(hidden=64, steps=1500, adding_steps=3000, text_steps=600, adding_t=200,
                  exploding_t=20, copy_t=100, order_t=50, delay_t=60, delay=10, batch=32,
                  val=256, record=100, text_window=20, evals=10, s2s_steps=1000,
                  s2s_lengths=(5, 30), s2s_hidden=64, s2s_per_length=200),
    "full": dict(hidden=128, steps=10000, adding_steps=20000, text_steps=5000, adding_t=200,
                 exploding_t=20, copy_t=100, order_t=200, delay_t=200, delay=20, batch=32,
                 val=1000, record=500, text_window=50, evals=20, s2s_steps=5000,
                 s2s_lengths=(5, 60), s2s_hidden=192, s2s_per_length=1000),
}
SUITES = tuple(SIZES)
LAB_NOTE = "lab.json"  # the lab's note of a finished run, beside its files
TEXT = "oneills"  # bundled with music21: nothing to download


def common(s: dict) -> dict[str, Any]:
    return dict(hidden_size=s["hidden"], batch_size=s["batch"], max_steps=s["steps"],
                val_sequences=s["val"], eval_every=max(1, s["steps"] // s["evals"]),
                log_every=max(1, s["steps"] // 50), patience=0, seed=0, device="cpu")


def adding_runs(s: dict) -> tuple[Run, ...]:
    keys = dict(common(s), length=str(s["adding_t"]), record_every=s["record"],
                max_steps=s["adding_steps"],
                eval_every=max(1, s["adding_steps"] // s["evals"]),
                log_every=max(1, s["adding_steps"] // 50))
    # IRNN at 3e-4: Hu et al. 2018 find 1e-3 unstable at T >= 300, and at 1e-4 it needs about
    # twice the steps here (BENCHMARKS.md). LSTM with chrono initialisation (Tallec & Ollivier
    # 2018): with forget bias 1 it sits at the baseline for thousands of steps first.
    extra = {"rnn": dict(lr=3e-3), "irnn": dict(lr=3e-4), "gru": dict(lr=3e-3),
             "lstm": dict(lr=1e-2, chrono_steps=s["adding_t"])}
    return tuple(Run(f"adding-{m}", "adding", dict(keys, model=m, **extra[m]))
                 for m in ("rnn", "irnn", "lstm", "gru"))


def suite(name: str) -> list[Experiment]:
    if name not in SIZES:
        raise ValueError(f"unknown lab suite {name!r}; choose from {', '.join(SUITES)}")
    s = SIZES[name]
    base = common(s)
    exploding = dict(base, model="rnn", length=str(s["exploding_t"]), optimizer="sgd",
                     lr=0.05, warmup_steps=0, init_radius=3.0)
    copy = dict(base, length=str(s["copy_t"]), lr=3e-3)
    order = dict(base, length=str(s["order_t"]), lr=3e-3)
    delay = dict(base, length=str(s["delay_t"]), delay=s["delay"], lr=3e-3)
    # TBPTT streams for text: the bag of words then sums the whole history, not one window
    text = dict(base, max_steps=s["text_steps"], seq_len=64, lr=2e-3, eval_batches=20,
                batching="streams",
                eval_every=max(1, s["text_steps"] // s["evals"]),
                log_every=max(1, s["text_steps"] // 50))
    text.pop("val_sequences")
    window_big = max(s["text_window"], s["delay"] + 1)
    models = (("window2", "window-mlp", {"window": 2}),
              (f"window{window_big}", "window-mlp", {"window": window_big}),
              ("bow", "bow", {}), ("lstm", "lstm", {}))

    low, high = s["s2s_lengths"]
    reverse = dict(base, model="lstm", length=f"{low}-{high}", bidirectional=True,
                   hidden_size=s["s2s_hidden"], embedding_size=32, batch_size=64, lr=1e-2,
                   max_steps=s["s2s_steps"], num_pairs=20000,
                   eval_every=max(1, s["s2s_steps"] // 4), log_every=max(1, s["s2s_steps"] // 10))
    reverse.pop("val_sequences")

    def baseline_runs(task: str, keys: dict) -> tuple[Run, ...]:
        return tuple(Run(f"{task}-{label}", task, dict(keys, model=model, **extra))
                     for label, model, extra in models)

    return [
        Experiment("adding", f"Adding problem, T = {s['adding_t']}",
                   "a tanh RNN stays near the baseline 0.167; LSTM, GRU and IRNN reach "
                   "MSE < 0.01 (the LSTM with chrono initialisation)",
                   "Le et al. 2015 Fig. 2 (T = 200: IRNN and LSTM near 0, tanh RNN at 0.167); "
                   "TCN paper Table 1 (T = 600): LSTM 0.164, GRU 5.3e-5, RNN 0.177",
                   adding_runs(s), verdict_adding),
        Experiment("gradients", "Gradient through time on the adding problem",
                   "||dL/dh_t|| vanishes with distance for a tanh RNN; IRNN, LSTM and GRU "
                   "keep it",
                   "Le et al. 2015; Pascanu, Mikolov, Bengio 2013 (vanishing and exploding "
                   "gradients)", adding_runs(s)),
        Experiment("exploding", f"Exploding gradients: spectral radius 3, SGD, adding with "
                   f"T = {s['exploding_t']}, with and without clipping",
                   "without clipping training diverges; clipped, it trains below the baseline",
                   "Pascanu, Mikolov, Bengio 2013 (clipping by norm)",
                   (Run("exploding-noclip", "adding", dict(exploding, clip_norm=0.0)),
                    Run("exploding-clip", "adding", dict(exploding, clip_norm=1.0))),
                   verdict_exploding),
        Experiment("copy", f"Copy memory, T = {s['copy_t']}",
                   "an LSTM (chrono initialisation) beats the memoryless baseline; a tanh RNN "
                   "does not",
                   "Arjovsky et al. 2016 (baseline 10 ln 8 / (T + 20) = 0.1733 at T = 100); "
                   "Tallec & Ollivier 2018 (LSTM with forget bias 1 beats it)",
                   (Run("copy-lstm", "copy", dict(copy, model="lstm",
                                                  chrono_steps=s["copy_t"] + 20)),
                    Run("copy-rnn", "copy", dict(copy, model="rnn"))), verdict_copy),
        Experiment("baselines", "Fixed windows and bags of words against an LSTM",
                   "a bag of words cannot order; a window of n cannot reach back more than n "
                   "steps; both fall behind on real text",
                   "makemore (bag of words and MLP behind an RNN on names)",
                   baseline_runs("order", order) + baseline_runs("delay", delay)
                   + baseline_runs(TEXT, text)),
        Experiment("attention", f"Attention: reversing strings of {low} to {high} letters",
                   "a decoder that sees only the encoder's final state loses exact match as "
                   "the source grows; one that attends to every encoder state holds",
                   "Bahdanau et al. 2014 Fig. 2 (BLEU of the plain encoder-decoder falls with "
                   "sentence length, RNNsearch holds)",
                   (Run("reverse-attention", "reverse", dict(reverse, attention="general"),
                        s["s2s_per_length"]),
                    Run("reverse-none", "reverse", dict(reverse, attention="none"),
                        s["s2s_per_length"])),
                   verdict_attention),
    ]


def measured_lengths(spec: str) -> list[int]:
    """The source lengths at which a reverse run's exact match is measured: LOW to HIGH."""
    low, high = (int(v) for v in spec.split("-"))
    step = max(1, (high - low) // 5)
    return sorted({*range(low, high + 1, step), high})


# verdicts ------------------------------------------------------------------------------------
def best(results: dict[str, dict], name: str) -> float:
    return results[name]["best_val_loss"]


def verdict_adding(results: dict[str, dict]) -> str:
    solved = [m for m in ("irnn", "lstm", "gru") if best(results, f"adding-{m}") < 0.01]
    rnn = best(results, "adding-rnn")
    where = "above" if rnn > 0.2 else "at" if rnn > 0.1 else "below"  # 0.1667: predicting 1
    return (f"reached MSE < 0.01: {', '.join(solved) or 'none'}; tanh RNN best {rnn:.4f} "
            f"({where} the baseline 0.1667)")


def verdict_exploding(results: dict[str, dict]) -> str:
    free, clipped = results["exploding-noclip"], results["exploding-clip"]
    free_text = free["note"] or f"{free['stop']}, best {free['best_val_loss']:.4f}"
    mse, base = clipped["best_val_loss"], clipped["baseline"] or 1 / 6
    return (f"without clipping: {free_text}; clipped at 1: {clipped['stop']}, "
            f"{clipped['skipped']} steps skipped, best MSE {mse:.4f} "
            f"({'below' if mse < base else 'not below'} the baseline {base:.4f})")


def verdict_copy(results: dict[str, dict]) -> str:
    lstm, rnn, base = (best(results, "copy-lstm"), best(results, "copy-rnn"),
                       results["copy-lstm"]["baseline"])
    return (f"baseline {base:.4f}; LSTM {lstm:.4f} ({lstm / base:.3f} of it); tanh RNN "
            f"{rnn:.4f} ({rnn / base:.3f} of it)")


def verdict_attention(results: dict[str, dict]) -> str:
    curves = {name.split("-")[-1]: results[name]["by_length"]
              for name in ("reverse-attention", "reverse-none")}
    lengths = list(curves["attention"])
    return "; ".join(f"length {n}: attention {100 * curves['attention'][n]:.1f}%, final state "
                     f"only {100 * curves['none'][n]:.1f}%" for n in (lengths[0], lengths[-1]))


# running -------------------------------------------------------------------------------------
def execute(run: Run, runs_dir: Path) -> dict[str, Any]:
    """Train one run (or read it back when a finished one is already there); its numbers."""
    path = runs_dir / run.name
    started = time.perf_counter()
    stop, note = None, None
    saved = read_lab_json(path)  # a finished run's note, read before anything else
    if (path / "config.json").exists():
        check_same_run(run, path)
    folder = RunDir(path)
    resumable = path.exists() and not saved and folder.has_checkpoint()
    if path.exists() and not saved and not resumable:
        with folder.writing() as held:  # an interrupted lab's, killed before any step
            held.discard(created=False)  # (never one another lab is training)
    state = folder.load_trainer_state() if resumable else {}
    before = float(state.get("elapsed", 0.0))  # training seconds of the interrupted sessions
    if resumable and int(state["step"]) >= run.keys.get("max_steps", math.inf):
        stop = "max_steps"  # trained to the end, stopped before the lab noted it
    elif not saved:
        try:  # a new run, or an interrupted lab's continued from its checkpoint
            stop = (runner.resume(path, source=run.source, **run.keys) if resumable
                    else runner.train(run.source, out=path, **run.keys)).summary.stop_reason
        except TrainingDiverged as err:
            stop = "diverged"
            note = str(err).split(";")[0]  # "training diverged: N consecutive steps ..."
    wall = before + time.perf_counter() - started
    metrics = RunDir(path).read_metrics()
    evals = [m for m in metrics if "val_loss" in m]
    logs = [m for m in metrics if "loss" in m]
    best = min(evals, key=lambda m: m["val_loss"]) if evals else {}
    headline = runner.family_of(path).headline(best)
    result = {"run": f"runs/{run.name}", "source": run.source, "model": run.keys["model"],
              "parameters": count_parameters(runner.untrained(path)),
              "best_val_loss": best.get("val_loss", math.nan),
              "final_val_loss": evals[-1]["val_loss"] if evals else math.nan,
              "baseline": headline.baseline, "accuracy": headline.accuracy,
              "bpc": headline.bpc, "steps": max((m["step"] for m in metrics), default=0),
              "skipped": logs[-1]["skipped"] if logs else 0,
              "stop": stop or saved.get("stop", "done"), "note": note or saved.get("note"),
              "wall_s": round(wall if stop else saved.get("wall_s", wall), 1),
              "val_curve": [[m["step"], m["val_loss"]] for m in evals],
              "grad_curve": [[m["step"], m["grad_norm"]] for m in logs]}
    if run.per_length:  # exact match against source length, on held-out strings
        result["by_length"] = exact_match_by_length(path, measured_lengths(run.keys["length"]),
                                                    run.per_length)
    if stop:
        atomic_write_json(path / LAB_NOTE, {"stop": stop, "wall_s": result["wall_s"],
                                              "note": note})
    return result


def check_same_run(run: Run, path: Path) -> None:
    """A run already in ``path`` must be this suite's (a quick lab's folder holds runs of
    other sizes than a full one): else a one-line error naming what differs."""
    config = RunDir(path).read_config()
    family = registry.of_config(config)
    have = family.configs_of(config, path).flat()
    want = runner.typed_configs(family, run.keys).flat()  # "task" is dropped there
    ignored = config.get("ignored") or {}  # given without effect: the run holds the default
    differ = [f"{k} {have[k]!r} (asked {want[k]!r})" for k in run.keys
              if k in want and k not in ignored and have.get(k) != want[k]]
    if differ:
        raise ValueError(f"{path} holds a run of other settings than this suite's: "
                         f"{'; '.join(differ)}; give another --out, or delete it")


def read_lab_json(path: Path) -> dict[str, Any]:
    """What the lab noted of a finished run ({} for none); a damaged note is a one-line error."""
    note = path / LAB_NOTE
    if not note.exists():
        return {}
    try:
        saved = json.loads(note.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{note}: damaged ({err}); delete {path} to train that run again"
                         ) from None
    if not isinstance(saved, dict):
        raise ValueError(f"{note}: damaged (not a JSON object); delete {path} to train that run "
                         "again")
    return saved


def run_suite(name: str, out: str | Path, on_run: Callable[[str, dict], None] | None = None,
              only: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run a suite's experiments into ``out`` and write report.md, figures/ and results.json.

    ``only`` trains just those experiments; the report then covers every experiment whose
    runs are all finished in ``out`` (so a suite can be run one experiment at a time).
    ``on_run(name, result)`` is called after each run (progress).
    """
    experiments = suite(name)
    if unknown := sorted(set(only) - {e.key for e in experiments}):
        raise ValueError(f"unknown experiment {', '.join(unknown)}; choose from "
                         f"{', '.join(e.key for e in experiments)}")
    out = Path(out)
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, dict] = {}
    done = []
    for experiment in experiments:
        finished = all((runs_dir / r.name / LAB_NOTE).exists() for r in experiment.runs)
        if only and experiment.key not in only and not finished:
            continue
        for run in experiment.runs:
            if run.name not in results:
                results[run.name] = execute(run, runs_dir)
                if on_run is not None:
                    on_run(run.name, results[run.name])
        done.append(experiment)
    summary = {"suite": name, "seqlab_version": __version__, "torch_version": torch.__version__,
               "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M"),
               "wall_s": round(sum(r["wall_s"] for r in results.values()), 1),
               "session_s": round(time.perf_counter() - started, 1), "runs": results,
               "experiments": [e.key for e in done]}
    summary["verdicts"] = {e.key: e.verdict(results) for e in done}
    write_report(done, summary, out)
    atomic_write_json(out / "results.json", summary)
    return summary


def table(results: dict[str, dict]) -> list[dict[str, Any]]:
    """The reproducible part of a suite's results: everything but wall times and dates."""
    keep = ("run", "model", "parameters", "best_val_loss", "final_val_loss", "baseline",
            "accuracy", "steps", "skipped", "stop")
    return [{k: r[k] for k in keep} for r in results.values()]

