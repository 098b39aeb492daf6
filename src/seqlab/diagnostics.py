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

from seqlab.data import IGNORE
from seqlab.recurrent import Recurrent, Trace


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
    """What the recurrent stack reads: (B, T, I) (every model's ``embed``)."""
    return model.embed(inputs)


def traced(model: nn.Module, probe: Probe) -> tuple[Tensor, Trace]:
    """Outputs (B, T, O) and the trace of every state, still in the graph (every model with a
    recurrent encoder offers ``trace(inputs, lengths)``)."""
    recurrent_of(model)
    return model.trace(probe.inputs, probe.lengths)


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
    return recurrent.state_step(layer)


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
    if not norms:  # a one-step sequence: no product to measure
        return np.zeros(0)
    logs = torch.stack(norms).clamp_min(1e-300).log()  # (T - 1, N)
    return logs.mean(1).exp().cpu().numpy()


def spectral_radius(model: nn.Module) -> dict[str, dict[str, float]]:
    """max |eigenvalue| of W_hh per layer; per gate block (i, f, g, o / r, z, n) for gated
    cells. Above 1 a linear recurrence explodes, below 1 it vanishes. Empty for a cell without
    W_hh (mingru, minlstm)."""
    recurrent = recurrent_of(model)
    result = {}
    if recurrent.spec.input_only:
        return result
    for layer in range(recurrent.num_layers):
        w_hh = recurrent.layer_weights(layer)[1].detach().double().cpu()
        names = recurrent.spec.block_names
        blocks = w_hh.chunk(len(names), dim=0)
        result[f"layer{layer}"] = {name: float(torch.linalg.eigvals(block).abs().max())
                                   for name, block in zip(names, blocks, strict=True)}
    return result


@torch.no_grad()
def gate_statistics(model: nn.Module, probe: Probe, layer: int = -1, low: float = 0.1,
                    high: float = 0.9) -> dict[str, dict[str, list[float]]]:
    """Per gate and step: the mean activation and the fraction saturated (sigmoid gates
    below ``low`` or above ``high``; tanh candidates with |value| above ``high``; None for a
    gate with no saturating range, the spec's ``unbounded_gates``: minGRU's positive h_tilde).

    For an LSTM the forget gate f's mean near 1 means the cell keeps its memory; for a GRU the
    update gate z plays that part (h_t = (1 - z) n + z h_{t-1}). Empty for a cell without
    gates (rnn, irnn).
    """
    spec = recurrent_of(model).spec
    if not spec.gates:
        return {}
    was = _eval_mode(model)
    try:
        _, trace = traced(model, probe)
    finally:
        model.train(was)
    stats = {}
    for name, per_layer in trace.gates.items():
        values = torch.stack(per_layer[layer], dim=1)  # (B, T, H)
        if name in spec.unbounded_gates:
            saturated = None
        else:
            beyond = ((values < low) | (values > high) if name in spec.sigmoid_gates
                      else values.abs() > high)
            saturated = beyond.float().mean((0, 2)).tolist()
        stats[name] = {"mean": values.mean((0, 2)).tolist(), "saturated": saturated}
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
