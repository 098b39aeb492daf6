"""The LSTM's whole layer in one autograd node: a forward loop and a hand-written backward
loop, registered as the ``lstm`` cell's ``sweep``.

The explicit loop built from :func:`seqlab.cells.lstm.lstm_recur` records about a dozen autograd
nodes per step, and on a CPU their bookkeeping, not the arithmetic, sets its speed. Here every
step's input projection is one matrix product before the loop; the forward loop runs without a
graph, seven calls a step, writing into a ring of up to 16 steps small enough to stay in cache,
and once per ring makes in a few whole-ring calls what the backward will need of it (the
forget gate and the factors of :func:`_keep`); the backward loop makes per step only what must
wait for step t + 1: the gate pre-activations' gradient and dL/dh_{t-1}, dL/dc_{t-1}. The
weight gradients are one product each after it. A fresh (T, B, 4H) buffer costs a page fault
per page at every step, so they come from :data:`seqlab.cells.workspace.WORKSPACE`. The
arithmetic is equations (1)-(6) of :class:`seqlab.cells.lstm.LSTMCell` and their derivatives;
the parity suites hold it to the per-step loop and to torch.nn.LSTM, and gradcheck to finite
differences.

Shapes: T time, B batch, I input, H hidden; the four gate blocks i, f, g, o along the last axis.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from seqlab.cells.registry import LayerWeights
from seqlab.cells.workspace import SHORT, WORKSPACE, projected, ring_steps


def lstm_sweep(x: Tensor, weights: LayerWeights, state: tuple[Tensor, Tensor],
               alive: Tensor | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Every step of one LSTM layer over x (T, B, I): (h_t for every t (T, B, H), final (h, c)).

    ``alive`` (T, B, 1) bool or None marks the steps before each sequence's end; past its end
    the state is carried unchanged (and h_t is the carried state).
    """
    hs, c_last = _LSTMSweep.apply(x, *weights, *state, alive, torch.is_grad_enabled())
    return hs, (hs[-1], c_last)


class _LSTMSweep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                b_hh: Tensor | None, h0: Tensor, c0: Tensor, alive: Tensor | None,
                grad_enabled: bool) -> tuple[Tensor, Tensor]:
        steps, batch, _ = x.shape
        rows, size = w_hh.shape
        learns = grad_enabled and any(ctx.needs_input_grad)  # (forward runs without grad)
        # every step's W_ih x_t + b_ih + b_hh at once; step t adds W_hh h_{t-1} in place
        pre = projected(x, w_ih, _bias(b_ih, b_hh))
        hs = x.new_empty(steps + 1, batch, size)  # h_0 ... h_T
        hs[0] = h0
        # rings of a chunk of steps, small enough to stay in cache: the gates, c before and after
        # each step, tanh(c_t); what the backward needs of them is made once per ring
        chunk = ring_steps(batch * rows * x.element_size())
        gates = x.new_empty(chunk, batch, rows)
        cs, tanh_cs = x.new_empty(chunk + 1, batch, size), x.new_empty(chunk, batch, size)
        cs[0] = c0
        ring = [(step, *step.split(size, dim=1), step[:, 2 * size:3 * size])
                for step in gates.unbind(0)]
        c_steps, tanh_steps = cs.unbind(0), tanh_cs.unbind(0)
        # a CPU multiplies by a contiguous copy faster than by the view: worth it over SHORT
        to_hidden = w_hh.t().contiguous() if steps >= SHORT else w_hh.t()
        h_steps, pre_steps = hs.unbind(0), pre.unbind(0)
        if learns:  # leased: back to the workspace when the graph is freed
            kept = WORKSPACE.lease(x, (steps, batch, rows), (steps, batch, size),
                                   (steps, batch, size))
        for t in range(steps):
            k = t % chunk
            act, i, f, g, o, g_out = ring[k]
            step_pre = pre_steps[t].addmm_(h_steps[t], to_hidden)
            torch.sigmoid(step_pre, out=act)  # (1) input, (2) forget, (4) output
            torch.tanh(step_pre[:, 2 * size:3 * size], out=g_out)  # (3) candidate
            c_t = torch.mul(f, c_steps[k], out=c_steps[k + 1]).addcmul_(i, g)  # (5)
            torch.mul(o, torch.tanh(c_t, out=tanh_steps[k]), out=h_steps[t + 1])  # (6)
            if alive is not None:  # past a sequence's end the state is carried unchanged
                torch.where(alive[t], h_steps[t + 1], h_steps[t], out=h_steps[t + 1])
                torch.where(alive[t], c_t, c_steps[k], out=c_t)
            if k == chunk - 1 or t == steps - 1:
                if learns:
                    ring_slots = slice(t - k, t + 1)
                    _keep(ring_slots, gates[:k + 1], cs[:k + 1], tanh_cs[:k + 1],
                          *kept.tensors)
                    if alive is not None:  # a step past the end: no factor, f = 1, no tanh
                        dead = ~alive[ring_slots]  # path, so dL/dc passes it unchanged
                        for kept_part, fill in zip(kept.tensors, (0.0, 1.0, 0.0), strict=True):
                            kept_part[ring_slots].masked_fill_(dead, fill)
                cs[0] = c_t
        WORKSPACE.give(pre)
        if learns:
            ctx.save_for_backward(x, w_ih, w_hh, alive)
            ctx.hs, ctx.kept = hs, kept
            ctx.biases = (b_ih is not None, b_hh is not None)
        return hs[1:], cs[0].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_hs: Tensor, grad_c_last: Tensor):
        x, w_ih, w_hh, alive = ctx.saved_tensors
        factor, forget, through_tanh = ctx.kept.tensors
        steps, batch, rows = factor.shape
        size = rows // 4
        grad_pre = WORKSPACE.take(factor, steps, batch, rows)
        grad_h, grad_c = grad_hs[-1], grad_c_last  # dL/dh_t, dL/dc_t: from t + 1 and the output
        # every step's views, made at once: i, f, g (they share dL/dc_t), and o
        three = (factor[..., :3 * size].view(steps, batch, 3, size).unbind(0),
                 grad_pre[..., :3 * size].view(steps, batch, 3, size).unbind(0))
        last = factor[..., 3 * size:].unbind(0), grad_pre[..., 3 * size:].unbind(0)
        pre_steps, out_steps = grad_pre.unbind(0), grad_hs.unbind(0)
        forget, through_tanh = forget.unbind(0), through_tanh.unbind(0)
        # a step past the end (its factor 0, f = 1, no tanh path: see forward) passes dL/dc
        # through unchanged, and dL/dh by this 0/1 mask, since no gate gradient carries it
        dead = None if alive is None else (~alive).to(grad_h.dtype).unbind(0)
        for t in range(steps - 1, -1, -1):
            grad_c = torch.addcmul(grad_c, grad_h, through_tanh[t])
            torch.mul(grad_c.unsqueeze(1), three[0][t], out=three[1][t])  # i, f, g
            torch.mul(grad_h, last[0][t], out=last[1][t])  # o
            grad_c.mul_(forget[t])
            carried = grad_h
            grad_h = (pre_steps[t] @ w_hh if t == 0
                      else torch.addmm(out_steps[t - 1], pre_steps[t], w_hh))
            if dead is not None:
                grad_h.addcmul_(dead[t], carried)
        flat = grad_pre.view(steps * batch, rows)
        grad_x = grad_w_ih = grad_w_hh = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (flat @ w_ih).view(steps, batch, -1)
        if ctx.needs_input_grad[1]:
            grad_w_ih = flat.t() @ x.reshape(steps * batch, -1)  # (4H, I)
        if ctx.needs_input_grad[2]:  # h_{t-1} for every t
            grad_w_hh = flat.t() @ ctx.hs[:-1].reshape(steps * batch, size)  # (4H, H)
        if ctx.needs_input_grad[3] or ctx.needs_input_grad[4]:
            grad_b = flat.sum(0)
        WORKSPACE.give(grad_pre)
        has_ih, has_hh = ctx.biases
        return (grad_x, grad_w_ih, grad_w_hh, grad_b if has_ih else None,
                (grad_b.clone() if has_ih else grad_b) if has_hh else None, grad_h, grad_c, None,
                None)


def _keep(steps: slice, gates: Tensor, c_prev: Tensor, tanh_c: Tensor, factor: Tensor,
          forget: Tensor, through_tanh: Tensor) -> None:
    """What the backward needs of a ring of steps (n, B, ...), in its slots ``steps``:
    dL/dpre = (dc, dc, dc, dh) * factor, with s' = s (1 - s) for the sigmoid gates and 1 - g^2;
    dc_t/dh_t = through_tanh = o tanh'(c_t); the forget gate."""
    size = c_prev.shape[-1]
    i, f, g, o = gates.split(size, dim=-1)
    fi, ff, fg, fo = factor[steps].split(size, dim=-1)
    torch.addcmul(i, i, i, value=-1, out=fi).mul_(g)  # g i (1 - i)
    torch.addcmul(f, f, f, value=-1, out=ff).mul_(c_prev)  # c_prev f (1 - f)
    torch.addcmul(g.new_ones(()), g, g, value=-1, out=fg).mul_(i)  # i (1 - g^2)
    torch.addcmul(o, o, o, value=-1, out=fo).mul_(tanh_c)  # tanh(c_t) o (1 - o)
    torch.addcmul(o, o, tanh_c * tanh_c, value=-1, out=through_tanh[steps])
    forget[steps] = f


def _bias(b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor | None:
    if b_ih is None or b_hh is None:
        return b_ih if b_hh is None else b_hh
    return b_ih + b_hh
