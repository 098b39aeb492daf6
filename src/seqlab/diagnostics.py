"""Instruments for backpropagation through time: numbers first, plots from them (plots.py).

- :func:`gradient_through_time`: the norm of dL/dh_t for every step t, for the loss at the last
  step or summed over steps. Vanishing gradients show as norms that fall with distance from
  the loss, exploding ones as norms that grow.
- :func:`jacobian_norms`: the spectral norm of prod_k dh_k/dh_{k-1} over distance d (for an
  LSTM the state is (h, c), a 2H vector); :func:`spectral_radius` of W_hh (per gate block for
  gated cells).
- :func:`gate_statistics`: per step, the mean of every gate and the fraction saturated.
- :func:`grad_norm_history`: pre- and post-clip gradient norms from a run's metrics.

The model is any with a recurrent stack: :class:`seqlab.models.sequence.SequenceModel` or
:class:`seqlab.models.lm.RecurrentLM`. What it is probed on is a :class:`Probe`: inputs,
targets and how they are scored. Everything runs in eval mode on the explicit path
(:meth:`Recurrent.trace`), which keeps every h_t in the autograd graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from seqlab.cells import gru_step, lstm_step, rnn_step
from seqlab.data import IGNORE
from seqlab.recurrent import CELLS, GATE_NAMES, Recurrent, Trace

SIGMOID_GATES = {"i", "f", "o", "r", "z"}  # the others (g, n) are tanh candidates


@dataclass(frozen=True)
class Probe:
    """Inputs to probe a model on and how its outputs are scored."""

    inputs: Tensor  # (B, T) ids or (B, T, C) channels
    targets: Tensor  # (B,) for scored == "last", (B, T) with IGNORE for "every"
    loss: str = "ce"  # "ce" or "mse"
    scored: str = "every"  # "last" (one target at each sequence's last step) or "every"
    lengths: Tensor | None = None  # (B,) for padded batches

    @classmethod
    def from_tokens(cls, tokens: Tensor) -> Probe:
        """Language-model probe: (B, T + 1) tokens, each step predicting the next."""
        return cls(tokens[:, :-1], tokens[:, 1:], "ce", "every")


def recurrent_of(model: nn.Module) -> Recurrent:
    recurrent = getattr(model, "recurrent", None)
    if not isinstance(recurrent, Recurrent):
        name = getattr(getattr(model, "config", None), "model", type(model).__name__)
        raise ValueError(f"{name} has no recurrent state to diagnose (a feed-forward baseline?)")
    return recurrent


def encoder_input(model: nn.Module, inputs: Tensor) -> Tensor:
    """What the recurrent stack reads: (B, T, I)."""
    if hasattr(model, "embed"):
        return model.embed(inputs)
    return model.embedding(inputs)


def traced(model: nn.Module, probe: Probe) -> tuple[Tensor, Trace]:
    """Outputs (B, T, O) and the trace of every state, still in the graph."""
    recurrent = recurrent_of(model)
    if hasattr(model, "trace"):
        return model.trace(probe.inputs, probe.lengths)
    trace = recurrent.trace(encoder_input(model, probe.inputs), None, probe.lengths)
    return model.to_logits(trace.output), trace


def sequence_losses(outputs: Tensor, probe: Probe, reduce: str) -> Tensor:
    """(B,) loss of each sequence: at its last scored step, or summed over its steps."""
    if reduce not in ("last", "sum"):
        raise ValueError(f"reduce must be 'last' or 'sum', got {reduce!r}")
    batch, steps = outputs.shape[:2]
    rows = torch.arange(batch, device=outputs.device)
    targets = probe.targets.to(outputs.device)
    if probe.scored == "last":  # one scored step: last and sum coincide
        ends = (probe.lengths.to(outputs.device) - 1 if probe.lengths is not None
                else torch.full((batch,), steps - 1, device=outputs.device))
        final = outputs[rows, ends]  # (B, O)
        if probe.loss == "mse":
            return (final[:, 0] - targets) ** 2
        return nn.functional.cross_entropy(final, targets, reduction="none")
    per_step = nn.functional.cross_entropy(outputs.transpose(1, 2), targets,
                                           ignore_index=IGNORE, reduction="none")  # (B, T)
    if reduce == "sum":
        return per_step.sum(1)
    scored = targets != IGNORE
    last = (scored * torch.arange(1, steps + 1, device=outputs.device)).argmax(1)  # (B,)
    return per_step[rows, last]


def _eval_mode(model: nn.Module):
    was = model.training
    model.eval()
    return was


def gradient_through_time(model: nn.Module, probe: Probe, reduce: str = "last",
                          layer: int = -1, of: str = "h") -> np.ndarray:
    """(T,) mean over the batch of ||dL_b / dh_t|| for every step t of one layer.

    L_b is sequence b's loss (``reduce``: at its last scored step, or summed over steps);
    sequences do not interact, so dL/dh_t of the batch sum is, row by row, each sequence's own
    gradient. ``of="c"`` gives dL/dc_t of an LSTM instead. Zeros past a sequence's end.
    """
    return gradients_through_time(model, probe, (reduce,), layer, of)[reduce]


def gradients_through_time(model: nn.Module, probe: Probe, reduces=("last", "sum"),
                           layer: int = -1, of: str = "h") -> dict[str, np.ndarray]:
    """:func:`gradient_through_time` for several losses from one forward pass."""
    was = _eval_mode(model)
    result = {}
    try:
        with torch.enable_grad():
            outputs, trace = traced(model, probe)
            states = trace.h if of == "h" else trace.c
            if states is None:
                raise ValueError(f"of='c' needs an LSTM, got {recurrent_of(model).cell}")
            for k, reduce in enumerate(reduces):
                loss = sequence_losses(outputs, probe, reduce).sum()
                grads = torch.autograd.grad(loss, states[layer], allow_unused=True,
                                            retain_graph=k < len(reduces) - 1)
                norms = [torch.zeros(()) if g is None else g.norm(dim=-1).mean() for g in grads]
                result[reduce] = torch.stack(norms).detach().cpu().double().numpy()
    finally:
        model.train(was)
    return result


def _step_function(recurrent: Recurrent, layer: int):
    """f(state (S,), x (I,)) -> next state (S,), S = H, or 2H for an LSTM's (h, c)."""
    weights = recurrent.layer_weights(layer)
    hidden = recurrent.hidden_size

    def step(state: Tensor, x: Tensor) -> Tensor:
        if recurrent.cell == "lstm":
            h, c = state[None, :hidden], state[None, hidden:]
            h_new, c_new, _ = lstm_step(x[None], h, c, *weights)
            return torch.cat([h_new, c_new], dim=-1)[0]
        if recurrent.cell == "gru":
            return gru_step(x[None], state[None], *weights)[0][0]
        return rnn_step(x[None], state[None], *weights, nonlinearity=CELLS[recurrent.cell][1])[0]

    return step


@torch.no_grad()
def jacobian_norms(model: nn.Module, probe: Probe, layer: int = -1, samples: int = 4
                   ) -> np.ndarray:
    """(T - 1,) spectral norm of dh_T/dh_{T-d} = prod_k dh_k/dh_{k-1}, for d = 1 .. T - 1.

    T is the probe's (shortest) length; the geometric mean over the first ``samples``
    sequences. Products are accumulated in float64 so that a vanishing product reaches 1e-300
    before it underflows.
    """
    recurrent = recurrent_of(model)
    layer = layer % recurrent.num_layers
    was = _eval_mode(model)
    try:
        count = min(samples, len(probe.inputs))
        sub = Probe(probe.inputs[:count], probe.targets[:count], probe.loss, probe.scored,
                    None if probe.lengths is None else probe.lengths[:count])
        steps = probe.inputs.shape[1] if sub.lengths is None else int(sub.lengths.min())
        _, trace = traced(model, sub)
        x = (encoder_input(model, sub.inputs) if layer == 0
             else torch.stack(trace.h[layer - 1], dim=1))  # (N, T, I)
        h = torch.stack(trace.h[layer], dim=1)  # (N, T, H): state after each step
        state = torch.cat([h, torch.stack(trace.c[layer], dim=1)], -1) if trace.c else h
        jac = torch.func.vmap(torch.func.jacrev(_step_function(recurrent, layer)))
        product = None
        norms = []
        for k in range(steps - 1, 0, -1):  # J_k = d state_k / d state_{k-1}
            j = jac(state[:, k - 1], x[:, k]).double()  # (N, S, S)
            product = j if product is None else product @ j
            norms.append(torch.linalg.matrix_norm(product, ord=2))  # (N,)
    finally:
        model.train(was)
    logs = torch.stack(norms).clamp_min(1e-300).log()  # (T - 1, N)
    return logs.mean(1).exp().cpu().numpy()


def spectral_radius(model: nn.Module) -> dict[str, dict[str, float]]:
    """max |eigenvalue| of W_hh per layer; per gate block (i, f, g, o / r, z, n) for gated
    cells. Above 1 a linear recurrence explodes, below 1 it vanishes."""
    recurrent = recurrent_of(model)
    result = {}
    for layer in range(recurrent.num_layers):
        w_hh = recurrent.layer_weights(layer)[1].detach().double().cpu()
        names = GATE_NAMES.get(recurrent.cell, ("W_hh",))
        blocks = w_hh.chunk(len(names), dim=0)
        result[f"layer{layer}"] = {name: float(torch.linalg.eigvals(block).abs().max())
                                   for name, block in zip(names, blocks, strict=True)}
    return result


@torch.no_grad()
def gate_statistics(model: nn.Module, probe: Probe, layer: int = -1, low: float = 0.1,
                    high: float = 0.9) -> dict[str, dict[str, list[float]]]:
    """Per gate and step: the mean activation and the fraction saturated (sigmoid gates
    below ``low`` or above ``high``; tanh candidates with |value| above ``high``).

    For an LSTM the forget gate f's mean near 1 means the cell keeps its memory; for a GRU the
    update gate z plays that part (h_t = (1 - z) n + z h_{t-1}). Empty for rnn and irnn.
    """
    recurrent = recurrent_of(model)
    if recurrent.cell not in GATE_NAMES:
        return {}
    was = _eval_mode(model)
    try:
        _, trace = traced(model, probe)
    finally:
        model.train(was)
    stats = {}
    for name, per_layer in trace.gates.items():
        values = torch.stack(per_layer[layer], dim=1)  # (B, T, H)
        if name in SIGMOID_GATES:
            saturated = (values < low) | (values > high)
        else:
            saturated = values.abs() > high
        stats[name] = {"mean": values.mean((0, 2)).tolist(),
                       "saturated": saturated.float().mean((0, 2)).tolist()}
    return stats


def grad_norm_history(metrics: list[dict], clip_norm: float, clip_value: float = 0.0
                      ) -> dict[str, list]:
    """Steps, pre-clip norms (as logged: the last step of each log window) and post-clip norms
    (min(norm, clip_norm) with norm clipping; unknown, None, with clipping by value)."""
    logs = [m for m in metrics if "grad_norm" in m]
    pre = [m["grad_norm"] for m in logs]
    if clip_norm > 0:
        post = [min(g, clip_norm) for g in pre]
    elif clip_value > 0:
        post = [None for _ in pre]
    else:
        post = list(pre)
    return {"step": [m["step"] for m in logs], "pre_clip": pre, "post_clip": post}


# a run directory ---------------------------------------------------------------------------
def run_probe(run_dir, batch: int, device) -> tuple[nn.Module, nn.Module, Probe, dict]:
    """(trained model, the same model at initialisation, probe, config) of a run directory.

    The initial weights are rebuilt from the run's seed, as training built them. The probe is
    validation data: the task's first validation sequences, or B windows of the language
    model's validation split, evenly spaced.
    """
    from seqlab.checkpoint import RunDir

    config = RunDir(run_dir).read_config()
    task = config.get("task", "lm")
    if task == "synthetic":
        from seqlab import synthetic_task

        loaded = synthetic_task.load(run_dir, device)
        _, model_config, train_config, synthetic, data = synthetic_task.restore(run_dir)
        probe = synthetic_task.probe_of(data, data.batch(batch, synthetic_task.VALIDATION, 0),
                                        device)
        initial = synthetic_task.initial_model(model_config, train_config, synthetic, data)
    elif task == "lm":
        from seqlab.api import initial_model, load_data
        from seqlab.checkpoint import load_run
        from seqlab.recording import token_probe

        loaded = load_run(run_dir, device)
        train = loaded.run.train_config()
        tokens = load_data(config["data"]["source"], train, vocab=loaded.vocab).val_tokens
        probe = token_probe(tokens, train.seq_len, batch, device)
        initial = initial_model(loaded.run.model_config(), train)
    else:
        raise ValueError(f"diagnose works on language-model and synthetic-task runs; "
                         f"{run_dir} is a {task!r} run")
    recurrent_of(loaded.model)
    return loaded.model, initial.to(device).eval(), probe, config


def measure(model: nn.Module, probe: Probe, jacobian: bool = True) -> dict:
    """Every diagnostic of one model on one probe, as plain numbers.

    Computed on a float64 copy: a tanh RNN's dL/dh_t at T = 200 is ~1e-60, which float32
    flushes to zero.
    """
    model, probe = in_float64(model, probe)
    grads = gradients_through_time(model, probe, ("last", "sum"))
    result = {"grad_last": grads["last"].tolist(), "grad_sum": grads["sum"].tolist(),
              "spectral_radius": spectral_radius(model),
              "gates": gate_statistics(model, probe)}
    if jacobian:
        result["jacobian"] = jacobian_norms(model, probe).tolist()
    return result


def in_float64(model: nn.Module, probe: Probe) -> tuple[nn.Module, Probe]:
    """A float64 copy of the model and of the probe's real-valued tensors."""
    import copy

    probe = Probe(*(x.double() if x.is_floating_point() else x
                    for x in (probe.inputs, probe.targets)), probe.loss, probe.scored,
                  probe.lengths)
    return copy.deepcopy(model).double(), probe


def diagnose_run(run_dir, out=None, batch: int = 16, device: str = "cpu",
                 jacobian: bool = True) -> dict:
    """Measure a run at initialisation and at its best weights, read what training recorded,
    and write diagnostics.json and PNG figures into ``out`` (default RUN/diagnostics)."""
    from pathlib import Path

    from seqlab.checkpoint import RunDir
    from seqlab.io import atomic_write_json
    from seqlab.recording import read_gradients

    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    trained, initial, probe, config = run_probe(run_dir, batch, torch.device(device))
    out = Path(out) if out is not None else Path(run_dir) / "diagnostics"
    train = config["train"]
    report = {"run": str(run_dir), "model": config["model"]["model"],
              "init": measure(initial, probe, jacobian),
              "trained": measure(trained, probe, jacobian),
              "recorded": read_gradients(run_dir),
              "grad_norms": grad_norm_history(RunDir(run_dir).read_metrics(),
                                              train["clip_norm"], train["clip_value"])}
    report["files"] = [str(f) for f in write_figures(report, out)]
    atomic_write_json(out / "diagnostics.json", report)
    return report


def write_figures(report: dict, out) -> list:
    """The PNG figures of a diagnose_run report; returns their paths."""
    from seqlab import plots

    name, history, jacobian = report["model"], report["recorded"], "jacobian" in report["init"]
    # one scored step (adding, order): the two losses are one, and so are their curves
    same = all(report[w]["grad_last"] == report[w]["grad_sum"] for w in ("init", "trained"))
    reduces = ("last",) if same else ("last", "sum")
    files = [plots.curves(out / "gradient_through_time.png",
                          {f"{when}, loss {r}": report[when][f"grad_{r}"]
                           for when in ("init", "trained") for r in reduces},
                          f"{name}: ||dL/dh_t|| through time", "time step t", "norm")]
    if jacobian:
        files.append(plots.curves(out / "jacobian.png",
                                  {w: report[w]["jacobian"] for w in ("init", "trained")},
                                  f"{name}: ||prod dh_k/dh_(k-1)|| over distance",
                                  "distance d (steps back from the last)", "spectral norm",
                                  x={w: list(range(1, len(report[w]["jacobian"]) + 1))
                                     for w in ("init", "trained")}))
    if history:
        files.append(plots.heatmap(out / "gradient_heatmap.png", [r["last"] for r in history],
                                   [r["step"] for r in history],
                                   f"{name}: ||dL/dh_t|| (loss at the last step) in training",
                                   "time step t", "training step"))
    if report["trained"]["gates"]:
        files.append(plots.curves(out / "gates.png",
                                  {f"{g} mean": s["mean"] for g, s in
                                   report["trained"]["gates"].items()},
                                  f"{name}: mean gate value per step (trained)", "time step t",
                                  "mean activation", log=False))
    if report["grad_norms"]["step"]:
        norms = report["grad_norms"]
        files.append(plots.curves(out / "grad_norms.png",
                                  {"pre-clip": norms["pre_clip"], "post-clip": norms["post_clip"]},
                                  f"{name}: global gradient norm in training", "training step",
                                  "norm", x={"pre-clip": norms["step"],
                                             "post-clip": norms["step"]}))
    return files
