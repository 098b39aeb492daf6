"""Naive reference implementations: the oracle the tests compare seqlab against.

Written straight from the equations in the docstrings of :mod:`seqlab.cells`, with plain torch
ops: every gate has its own weight block, sliced by name from the packed torch.nn layout, and
its own matrix product; padding is handled one sequence at a time. Nothing here imports seqlab
or uses a torch.nn recurrent module, so a shared mistake cannot hide.

Shapes: B batch, T time, I input, H hidden, L layers.
"""

from __future__ import annotations

import torch
from torch import Tensor

LSTM_GATES = ("i", "f", "g", "o")  # packed order of torch.nn.LSTM
GRU_GATES = ("r", "z", "n")  # packed order of torch.nn.GRU
NONLINEARITY = {"rnn": "tanh", "irnn": "relu"}


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


def _ref_step(cell: str, x: Tensor, h: Tensor, c: Tensor | None, weights
              ) -> tuple[Tensor, Tensor | None]:
    if cell == "lstm":
        h, c, _ = ref_lstm_step(x, h, c, *weights)
        return h, c
    if cell == "gru":
        return ref_gru_step(x, h, *weights)[0], None
    return ref_rnn_step(x, h, *weights, nonlinearity=NONLINEARITY[cell]), None


def ref_run(cell: str, layers_weights, x: Tensor, h0: Tensor, c0: Tensor | None = None,
            lengths: Tensor | None = None):
    """Run a stack of cells over a batch-first sequence, one sequence at a time.

    cell: "rnn", "irnn", "lstm" or "gru"; layers_weights: per layer (W_ih, W_hh, b_ih, b_hh);
    x (B, T, I); h0 and c0 (L, B, H). Sequence b runs for lengths[b] steps (T if no lengths);
    past its end its output is zero and its state is carried unchanged to the final state.
    Returns (output (B, T, H), h_n) or, for "lstm", (output, (h_n, c_n)).
    """
    if cell not in ("rnn", "irnn", "lstm", "gru"):
        raise ValueError(f"ref_run: unknown cell {cell!r}")
    if cell == "lstm" and c0 is None:
        raise ValueError("ref_run: the LSTM needs c0")
    batch, steps = x.shape[:2]
    hidden = h0.shape[-1]
    outputs, h_n, c_n = [], [], []
    for b in range(batch):
        valid = steps if lengths is None else int(lengths[b])
        layer_input = x[b:b + 1, :valid]  # (1, valid, I)
        h_b, c_b = [], []
        for layer, weights in enumerate(layers_weights):
            h = h0[layer, b:b + 1]
            c = None if c0 is None else c0[layer, b:b + 1]
            outs = []
            for t in range(valid):
                h, c = _ref_step(cell, layer_input[:, t], h, c, weights)
                outs.append(h)
            layer_input = torch.stack(outs, dim=1)  # (1, valid, H)
            h_b.append(h)
            c_b.append(c)
        pad = layer_input.new_zeros(1, steps - valid, hidden)
        outputs.append(torch.cat([layer_input, pad], dim=1))
        h_n.append(torch.stack(h_b))  # (L, 1, H)
        c_n.append(None if c0 is None else torch.stack(c_b))
    output = torch.cat(outputs, dim=0)
    h_final = torch.cat(h_n, dim=1)
    if cell == "lstm":
        return output, (h_final, torch.cat(c_n, dim=1))
    return output, h_final
