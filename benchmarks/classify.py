"""Sequence classification: accuracy on official test splits over seeds, beside the baselines.

For each set, every model of ``--models`` is trained once per seed (the validation split drawn
from the training data by the seed; the best weights by validation loss), then scored once on
the official test split (tune-types: its fixed held-out 20%). Prints a table of mean and
standard deviation of accuracy and macro-F1, the majority-class rate and the training time
per seed, and writes every result to OUT/results.json.

    OMP_NUM_THREADS=1 python benchmarks/classify.py japanese-vowels --seeds 0 1 2 3 4 \\
        --out benchmarks/out/classify
    OMP_NUM_THREADS=1 python benchmarks/classify.py gunpoint italy-power --models lstm-fcn
    OMP_NUM_THREADS=1 python benchmarks/classify.py gunpoint --models lstm-fcn --members 3
    python benchmarks/classify.py tune-types --models lstm bow window-mlp --seeds 0 1 2 3 4
    python benchmarks/classify.py japanese-vowels --curve --seeds 0   # last vs attention
    python benchmarks/classify.py japanese-vowels --epoch-time        # against torch.nn

``--curve``: validation accuracy against training steps for last-state and attention pooling
(from metrics.jsonl). ``--epoch-time``: seconds per epoch of seqlab's training loop against a
plain torch.nn.LSTM loop over the same padded batches (same sizes, same optimiser).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

import seqlab
from seqlab.families import runner

# settings per set, chosen on validation loss (seeds 0 and 1, validation a stratified quarter
# of the training data) among a few candidates each, never on the test split
COMMON = dict(device="cpu", patience=0, log_every=50, warmup_steps=50, val_fraction=0.25)
PRESETS = {
    "japanese-vowels": dict(model="lstm", hidden_size=128, bidirectional=True,
                            pooling="attention", dropout=0.3, optimizer="adamw",
                            weight_decay=0.01, batch_size=32, lr=3e-3, max_steps=800,
                            eval_every=50, input_noise=0.3),
    "gunpoint": dict(model="gru", hidden_size=64, bidirectional=True, pooling="mean",
                     batch_size=16, lr=3e-3, max_steps=1000, eval_every=50),
    "italy-power": dict(model="lstm", hidden_size=128, pooling="last", batch_size=16,
                        lr=3e-3, max_steps=600, eval_every=50),
    # not searched: sized to train within ~5 minutes a seed on one core (1.1 s a step at
    # H 128 and 400 tokens was too slow for five seeds of three models)
    "tune-types": dict(model="lstm", hidden_size=64, embedding_size=32, pooling="attention",
                       batch_size=32, lr=3e-3, max_steps=800, eval_every=100,
                       max_tokens=300, val_fraction=0.1),
}
# LSTM-FCN (Karim et al. 2018): a recurrent encoder beside the fully convolutional branch
# (Conv1d blocks of 128, 256, 128 filters, kernels 8, 5, 3, batch norm over the valid steps,
# ReLU, the mean over the valid steps), concatenated before the head. "lstm-fcn" is the
# published training recipe (an LSTM of 8 units, dropout 0.8 after it, Adam at 1e-3), chosen
# on validation loss (seeds 0 and 1, BENCHMARKS.md) over the candidates tried, never on the
# test split (japanese-vowels: 3,200 steps over 800 and 1,600); "mlstm-fcn" the same with
# squeeze-and-excitation after the first two blocks
# (MLSTM-FCN, Karim et al. 2019; chosen on japanese-vowels); "preset-fcn" the set's recurrent
# preset beside the branch
FCN = dict(conv_filters="128,256,128", conv_kernels="8,5,3")
RECIPE = dict(model="lstm", hidden_size=8, dropout=0.8, lr=1e-3, **FCN)
CONV_PRESETS = {
    "japanese-vowels": dict(RECIPE, batch_size=32, max_steps=3200, eval_every=50),
    "gunpoint": dict(RECIPE, batch_size=16, max_steps=600, eval_every=25),
    "italy-power": dict(RECIPE, batch_size=16, max_steps=1000, eval_every=25),
}
# --refit: the whole training split but one series per class (the family needs a validation
# split), the last weights after the setting's steps
REFIT = dict(val_fraction=0.01)
# the feed-forward baselines read what they can: a bag of all steps, a window of the first n
BASELINES = {
    "bow": dict(model="bow", pooling="last", bidirectional=False),
    "window-mlp": dict(model="window-mlp", window=16, pooling="last", window_at="first",
                       bidirectional=False),
}
# "lstm-fcn-noise": lstm-fcn with Gaussian noise on its standardised training inputs (0.3
# chosen for japanese-vowels over 0.1 and none on eight validation quarters, BENCHMARKS.md;
# the other sets take the same, unsearched)
CONV_NOISE = {"japanese-vowels": 0.3, "gunpoint": 0.3, "italy-power": 0.3}
# "lstm-fcn-deltas": lstm-fcn reading each channel's change since the step before beside the
# channels (--deltas; the lowest validation loss on italy-power's eight quarters, not better
# once refit: BENCHMARKS.md)
# "preset-reg": the preset with dropout and decoupled weight decay (chosen for italy-power's
# ensemble on its eight validation quarters, BENCHMARKS.md)
REGULARISED = dict(dropout=0.3, optimizer="adamw", weight_decay=0.01)
# the plain MLP on the flattened (padded) series: window-mlp over the longest length
FLATTEN = {"japanese-vowels": 29, "gunpoint": 150, "italy-power": 24}


def settings(name: str, model: str) -> dict:
    keys = {**COMMON, **PRESETS[name]}
    if model in BASELINES:
        keys.update(BASELINES[model])
    elif model == "lstm-fcn":
        keys = {**COMMON, **CONV_PRESETS[name]}
    elif model == "lstm-fcn-noise":
        keys = {**COMMON, **CONV_PRESETS[name], "input_noise": CONV_NOISE[name]}
    elif model == "lstm-fcn-deltas":
        keys = {**COMMON, **CONV_PRESETS[name], "deltas": True}
    elif model == "mlstm-fcn":
        keys = {**COMMON, **CONV_PRESETS[name], "conv_se": True}
    elif model == "preset-fcn":
        keys.update(FCN)
    elif model == "preset-reg":
        keys.update(REGULARISED)
    elif model == "mlp":
        keys.update(model="window-mlp", window=FLATTEN[name], pooling="last",
                    bidirectional=False)
    elif model != "preset":
        keys["model"] = model
    return keys


def train_and_score(name: str, model: str, seed: int, out: Path, budget: float,
                    members: int = 1, refit: bool = False) -> dict:
    """One seed's model, or with ``members`` > 1 an ensemble of members trained with the
    seeds seed, seed + 1000, ... (each its own validation split and best weights), scored by
    its mean class probabilities on the test split. A ``model`` of kinds joined by "+"
    ("lstm-fcn+preset") is an ensemble of ``members`` of each kind, all weighted alike. With
    ``refit`` each trains on the whole training split but one series per class and is scored
    with its last weights, after the setting's steps (themselves chosen on a validation
    quarter)."""
    label = (model if members == 1 else f"{model} x{members}") + (" refit" if refit else "")
    started, runs = time.perf_counter(), []
    for part in model.split("+"):  # "a+b": members of each, their probabilities averaged
        keys = {**settings(name, part), **(REFIT if refit else {})}
        for m in range(members):
            runs.append(out / f"{name}-{part}{'-refit' if refit else ''}-seed{seed + 1000 * m}")
            seqlab.train(name, out=runs[-1], task="classify", seed=seed + 1000 * m,
                         time_budget=budget, **keys)
    seconds = time.perf_counter() - started
    if len(runs) == 1 and not refit:
        result = runner.evaluate(runs[0], name, device="cpu")
    else:
        result = ensemble_scores(runs, name, last=refit)
    return {"set": name, "model": label, "seed": seed, "accuracy": result["accuracy"],
            "macro_f1": result["macro_f1"], "majority_rate": result["majority_rate"],
            "examples": result["examples"], "train_seconds": seconds,
            "run": ", ".join(map(str, runs))}


def ensemble_scores(runs: list[Path], name: str, last: bool = False) -> dict:
    """Accuracy and macro-F1 of the members' mean class probabilities on the test split (each
    member's best weights, or with ``last`` its last ones), scored as ``evaluate`` scores."""
    from seqlab.families.classify_data import labelled_scores

    total, labels, assets = 0.0, None, None
    for run in runs:
        loaded = runner.load_run(run, device="cpu", last=last)
        probs, found, _ = loaded.family.scored_probabilities(loaded, name)
        total = total + probs
        if assets is None:  # the first member's: its class counts give the majority rate
            labels, assets = found, loaded.vocab
    return labelled_scores(total / len(runs), labels, assets)


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} +- {statistics.stdev(values):.4f}"


def table(results: list[dict]) -> str:
    lines = ["| set | model | seeds | accuracy | macro-F1 | majority | train s / seed |",
             "|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["set"], r["model"]), []).append(r)
    for (name, model), rows in groups.items():
        seconds = [r["train_seconds"] for r in rows]
        lines.append(f"| {name} | {model} | {len(rows)} | {spread([r['accuracy'] for r in rows])}"
                     f" | {spread([r['macro_f1'] for r in rows])} | "
                     f"{rows[0]['majority_rate']:.3f} | {min(seconds):.0f}-{max(seconds):.0f} |")
    return "\n".join(lines)


def curve(name: str, seed: int, out: Path, budget: float) -> dict:
    """Validation accuracy against steps, last-state against attention pooling."""
    curves = {}
    for pooling in ("last", "attention"):
        run = out / f"{name}-curve-{pooling}-seed{seed}"
        seqlab.train(name, out=run, task="classify", seed=seed, time_budget=budget,
                     **{**settings(name, "preset"), "pooling": pooling, "eval_every": 25})
        records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
        curves[pooling] = [(r["step"], r["val_accuracy"]) for r in records
                           if "val_accuracy" in r]
    return curves


def plot_curves(name: str, found: dict, path: Path) -> None:
    from seqlab import plots

    plots.curves(path, {f"{p} pooling": [a for _, a in c] for p, c in found.items()},
                 f"{name}: validation accuracy during training", "training step",
                 "validation accuracy", x={f"{p} pooling": [s for s, _ in c]
                                           for p, c in found.items()}, log=False)
    print(f"figure: {path}", flush=True)


def epoch_time(name: str, out: Path, epochs: int = 10) -> dict:
    """Seconds per epoch in the steady state (after one epoch of warm-up): seqlab's training
    loop (from the elapsed time its metrics.jsonl logs at each epoch's end) against a plain
    torch.nn.LSTM loop over the same padded batches, same sizes, same optimiser."""
    keys = {**settings(name, "lstm"), "bidirectional": False, "pooling": "last",
            "optimizer": "adam", "weight_decay": 0.0, "dropout": 0.0, "input_noise": 0.0,
            "eval_every": 10**6, "warmup_steps": 0}
    family = runner.family_for(name, {"task": "classify"})
    configs = runner.typed_configs(family, {**keys, "task": "classify"})
    prepared = family.prepare(name, configs)
    per_epoch = -(-len(prepared.data[0]) // configs.train.batch_size)
    run = out / f"{name}-epoch-time"
    seqlab.train(name, out=run, task="classify", **{**keys, "log_every": per_epoch,
                                                    "max_steps": (epochs + 1) * per_epoch})
    logs = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    elapsed = [r["elapsed_s"] for r in logs if "loss" in r]
    seqlab_seconds = (elapsed[-1] - elapsed[0]) / (len(elapsed) - 1)
    task = family.task(prepared, configs, torch.device("cpu"))
    lstm = nn.LSTM(prepared.assets.input_size, configs.model.hidden_size, batch_first=True)
    head = nn.Linear(configs.model.hidden_size, len(prepared.assets.classes))
    params = [*lstm.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=configs.train.lr)
    started = 0.0
    for step in range((epochs + 1) * per_epoch):
        if step == per_epoch:
            started = time.perf_counter()  # after one epoch of warm-up, as above
        inputs, lengths, labels = task.train_batch(step)
        packed = nn.utils.rnn.pack_padded_sequence(inputs, lengths, batch_first=True,
                                                   enforce_sorted=False)
        _, (h, _) = lstm(packed)
        loss = nn.functional.cross_entropy(head(h[-1]), labels)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
    plain = (time.perf_counter() - started) / epochs
    return {"set": name, "batches_per_epoch": per_epoch, "epochs": epochs,
            "seqlab_s": seqlab_seconds, "torch_nn_s": plain, "ratio": plain / seqlab_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sets", nargs="+", choices=sorted(PRESETS))
    parser.add_argument("--models", nargs="+", default=["preset"],
                        help="preset (the set's chosen recurrent model), lstm-fcn (an LSTM "
                             "beside the convolutional branch, LSTM-FCN's recipe), lstm-fcn-noise "
                             "(the same with input noise), lstm-fcn-deltas (the same reading each "
                             "channel's change too, --deltas), mlstm-fcn "
                             "(the same with squeeze-and-excitation), preset-fcn (the preset "
                             "beside the branch), preset-reg (the preset with dropout 0.3 "
                             "and weight decay 0.01), lstm, gru, rnn, bow, window-mlp, mlp "
                             "(flattened series); kinds joined by + (lstm-fcn+preset) make one "
                             "ensemble of --members of each")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/classify"))
    parser.add_argument("--time-budget", type=float, default=0.0,
                        help="seconds of training per seed at most (default 0: the preset's "
                             "steps, whatever the machine's load: results that do not depend "
                             "on what else runs)")
    parser.add_argument("--members", type=int, default=1,
                        help="train this many members per seed (seeds s, s + 1000, ...) and "
                             "score their mean class probabilities (default 1: one model)")
    parser.add_argument("--refit", action="store_true",
                        help="train on the whole training split but one series per class and "
                             "score the last weights after the setting's steps (default: a "
                             "validation quarter held out, the best weights by its loss)")
    parser.add_argument("--curve", action="store_true")
    parser.add_argument("--epoch-time", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.epoch_time:
        for name in args.sets:
            print(json.dumps(epoch_time(name, args.out)), flush=True)
        return
    if args.curve:
        for name in args.sets:
            found = curve(name, args.seeds[0], args.out, args.time_budget)
            print(json.dumps({"set": name, "curves": found}), flush=True)
            plot_curves(name, found, args.out / f"{name}-pooling-curve.png")
        return
    results = []
    for name in args.sets:
        for model in args.models:
            for seed in args.seeds:
                results.append(train_and_score(name, model, seed, args.out, args.time_budget,
                                               args.members, args.refit))
                print(json.dumps(results[-1]), flush=True)
    members = (f"-x{args.members}" if args.members > 1 else "") + ("-refit" if args.refit
                                                                     else "")
    path = args.out / f"results-{'-'.join(args.sets)}-{'-'.join(args.models)}{members}.json"
    path.write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
