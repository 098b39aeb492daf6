"""Naive reference implementations: the oracle the tests compare seqlab against.

Written straight from the equations in the docstrings of :mod:`seqlab.cells`, with plain torch
ops: every gate has its own weight block, sliced by name from the packed torch.nn layout, and
its own matrix product; padding is handled one sequence at a time. Nothing here imports seqlab
or uses a torch.nn recurrent module, so a shared mistake cannot hide.

:data:`REFERENCES` holds one naive step per cell name, the oracle of the shared suites; a test
that registers a cell of its own registers its reference here beside it
(``cell_suite.registered``).

Shapes: B batch, T time, I input, H hidden, L layers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

LSTM_GATES = ("i", "f", "g", "o")  # packed order of torch.nn.LSTM
GRU_GATES = ("r", "z", "n")  # packed order of torch.nn.GRU


def _affine(v: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """W v + b for a batch of row vectors v (B, K) and W (H, K)."""
    out = v @ w.T
    return out if b is None else out + b


def _blocks(t: Tensor | None, names: tuple[str, ...]) -> dict[str, Tensor | None]:
    """Split a packed weight (nH, K) or bias (nH,) into its named gate blocks."""
    if t is None:
        return dict.fromkeys(names)
    hidden = t.shape[0] // len(names)
    return {name: t[k * hidden:(k + 1) * hidden] for k, name in enumerate(names)}


def ref_rnn_step(x: Tensor, h_prev: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                 b_hh: Tensor | None, nonlinearity: str = "tanh") -> Tensor:
    """h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)."""
    pre = _affine(x, w_ih, b_ih) + _affine(h_prev, w_hh, b_hh)
    if nonlinearity == "tanh":
        return torch.tanh(pre)
    if nonlinearity == "relu":
        return torch.clamp(pre, min=0.0)
    raise ValueError(f"ref_rnn_step: unknown nonlinearity {nonlinearity!r}")


def ref_lstm_step(x: Tensor, h_prev: Tensor, c_prev: Tensor, w_ih: Tensor, w_hh: Tensor,
                  b_ih: Tensor | None, b_hh: Tensor | None
                  ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """One LSTM step, equations (1)-(6) of LSTMCell; returns (h_t, c_t, {i, f, g, o})."""
    wi, wh = _blocks(w_ih, LSTM_GATES), _blocks(w_hh, LSTM_GATES)
    bi, bh = _blocks(b_ih, LSTM_GATES), _blocks(b_hh, LSTM_GATES)

    def pre(k: str) -> Tensor:
        return _affine(x, wi[k], bi[k]) + _affine(h_prev, wh[k], bh[k])

    i = torch.sigmoid(pre("i"))  # (1)
    f = torch.sigmoid(pre("f"))  # (2)
    g = torch.tanh(pre("g"))  # (3)
    o = torch.sigmoid(pre("o"))  # (4)
    c = f * c_prev + i * g  # (5)
    h = o * torch.tanh(c)  # (6)
    return h, c, {"i": i, "f": f, "g": g, "o": o}


def ref_gru_step(x: Tensor, h_prev: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                 b_hh: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
    """One GRU step, equations (1)-(4) of GRUCell; returns (h_t, {r, z, n})."""
    wi, wh = _blocks(w_ih, GRU_GATES), _blocks(w_hh, GRU_GATES)
    bi, bh = _blocks(b_ih, GRU_GATES), _blocks(b_hh, GRU_GATES)
    r = torch.sigmoid(_affine(x, wi["r"], bi["r"]) + _affine(h_prev, wh["r"], bh["r"]))  # (1)
    z = torch.sigmoid(_affine(x, wi["z"], bi["z"]) + _affine(h_prev, wh["z"], bh["z"]))  # (2)
    n = torch.tanh(_affine(x, wi["n"], bi["n"]) + r * _affine(h_prev, wh["n"], bh["n"]))  # (3)
    h = (1 - z) * n + z * h_prev  # (4)
    return h, {"r": r, "z": z, "n": n}


class Reference(NamedTuple):
    """A cell's naive step: step(x, state, w_ih, w_hh, b_ih, b_hh) -> (state, gates); the state a
    tuple of (B, H) tensors, (h,) or (h, c), the gates a dict by name."""

    step: Callable[..., tuple[tuple[Tensor, ...], dict[str, Tensor]]]
    states: int = 1  # tensors in the state: 1 (h) or 2 (h, c)


def elman(nonlinearity: str) -> Reference:
    def step(x, state, *weights):
        return (ref_rnn_step(x, state[0], *weights, nonlinearity=nonlinearity),), {}

    return Reference(step)


def _lstm(x, state, *weights):
    h, c, gates = ref_lstm_step(x, *state, *weights)
    return (h, c), gates


def _gru(x, state, *weights):
    h, gates = ref_gru_step(x, state[0], *weights)
    return (h,), gates


def _positive(v: Tensor) -> Tensor:
    """g(v) of minGRU and minLSTM: v + 1/2 for v >= 0, 1 / (1 + e^-v) below."""
    return torch.where(v >= 0, v + 0.5, 1 / (1 + torch.exp(-v)))


def _mingru(x, state, w_ih, w_hh, b_ih, b_hh):
    """minGRU (Feng et al. 2024): z = sigmoid(W_z x + b_z), h~ = g(W_h x + b_h),
    h_t = (1 - z) h_{t-1} + z h~. No W_hh, no b_hh."""
    assert w_hh is None and b_hh is None
    wi, bi = _blocks(w_ih, ("z", "h_tilde")), _blocks(b_ih, ("z", "h_tilde"))
    z = 1 / (1 + torch.exp(-_affine(x, wi["z"], bi["z"])))
    h_tilde = _positive(_affine(x, wi["h_tilde"], bi["h_tilde"]))
    return ((1 - z) * state[0] + z * h_tilde,), {"z": z, "h_tilde": h_tilde}


def _minlstm(x, state, w_ih, w_hh, b_ih, b_hh):
    """minLSTM (Feng et al. 2024): f, i = sigmoid(W x + b), f' = f / (f + i), i' = i / (f + i),
    h~ = g(W_h x + b_h), h_t = f' h_{t-1} + i' h~; the gates returned are f' and i'."""
    assert w_hh is None and b_hh is None
    names = ("f", "i", "h_tilde")
    wi, bi = _blocks(w_ih, names), _blocks(b_ih, names)
    f = 1 / (1 + torch.exp(-_affine(x, wi["f"], bi["f"])))
    i = 1 / (1 + torch.exp(-_affine(x, wi["i"], bi["i"])))
    h_tilde = _positive(_affine(x, wi["h_tilde"], bi["h_tilde"]))
    h = f / (f + i) * state[0] + i / (f + i) * h_tilde
    return (h,), {"f": f / (f + i), "i": i / (f + i), "h_tilde": h_tilde}


REFERENCES: dict[str, Reference] = {
    "rnn": elman("tanh"),
    "irnn": elman("relu"),
    "lstm": Reference(_lstm, states=2),
    "gru": Reference(_gru),
    "mingru": Reference(_mingru),
    "minlstm": Reference(_minlstm),
}


def ref_run(cell: str, layers_weights, x: Tensor, h0: Tensor, c0: Tensor | None = None,
            lengths: Tensor | None = None):
    """Run a stack of cells over a batch-first sequence, one sequence at a time.

    cell: a name of :data:`REFERENCES`; layers_weights: per layer (W_ih, W_hh, b_ih, b_hh);
    x (B, T, I); h0 and c0 (L, B, H). Sequence b runs for lengths[b] steps (T if no lengths);
    past its end its output is zero and its state is carried unchanged to the final state.
    Returns (output (B, T, H), h_n) or, for a cell whose state is (h, c), (output, (h_n, c_n)).
    """
    if cell not in REFERENCES:
        raise ValueError(f"ref_run: unknown cell {cell!r}")
    reference = REFERENCES[cell]
    if (reference.states == 2) != (c0 is not None):
        raise ValueError(f"ref_run: the {cell} state has {reference.states} tensor(s): "
                         f"{'it needs' if reference.states == 2 else 'no'} c0")
    batch, steps = x.shape[:2]
    hidden = h0.shape[-1]
    initial = (h0,) if c0 is None else (h0, c0)
    outputs, finals = [], []
    for b in range(batch):
        valid = steps if lengths is None else int(lengths[b])
        layer_input = x[b:b + 1, :valid]  # (1, valid, I)
        final_b = []
        for layer, weights in enumerate(layers_weights):
            state = tuple(s[layer, b:b + 1] for s in initial)
            outs = []
            for t in range(valid):
                state, _ = reference.step(layer_input[:, t], state, *weights)
                outs.append(state[0])
            layer_input = torch.stack(outs, dim=1)  # (1, valid, H)
            final_b.append(state)
        pad = layer_input.new_zeros(1, steps - valid, hidden)
        outputs.append(torch.cat([layer_input, pad], dim=1))
        finals.append(tuple(torch.stack(part) for part in zip(*final_b, strict=True)))  # (L, 1, H)
    output = torch.cat(outputs, dim=0)
    final = tuple(torch.cat(part, dim=1) for part in zip(*finals, strict=True))
    return output, (final if c0 is not None else final[0])
