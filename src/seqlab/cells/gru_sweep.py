"""The GRU's whole layer in one autograd node: a forward loop and a hand-written backward
loop, registered as the ``gru`` cell's ``sweep`` (the plan of :mod:`seqlab.cells.lstm_sweep`).

Per step the backward needs dL/dh_t times four factors that the forward makes while its step is
in cache, with A = (1 - z) (1 - n^2) and hid_n = W_hn h_{t-1} + b_hn:

    dL/d(pre-activation of n)  = dh A                          (from the input side)
    dL/d(hid_n)                = dh r A
    dL/d(pre-activation of r)  = dh hid_n r (1 - r) A
    dL/d(pre-activation of z)  = dh (h_{t-1} - n) z (1 - z)

kept side by side as [A, r-factor, z-factor, r A] so that one product gives all four, the last
three of them (r, z, hid_n) contiguous: the row that meets W_hh. dL/dh_{t-1} adds dh z.

Shapes: T time, B batch, I input, H hidden; the gate blocks r, z, n along the last axis of the
weights, as in torch.nn.GRU.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from seqlab.cells.registry import LayerWeights
from seqlab.cells.workspace import SHORT, WORKSPACE, projected, ring_steps


def gru_sweep(x: Tensor, weights: LayerWeights, state: tuple[Tensor], alive: Tensor | None
              ) -> tuple[Tensor, tuple[Tensor]]:
    """Every step of one GRU layer over x (T, B, I): (h_t for every t (T, B, H), final (h,)).

    ``alive`` (T, B, 1) bool or None marks the steps before each sequence's end; past its end
    the state is carried unchanged (and h_t is the carried state).
    """
    hs = _GRUSweep.apply(x, *weights, state[0], alive, torch.is_grad_enabled())
    return hs, (hs[-1],)


class _GRUSweep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                b_hh: Tensor | None, h0: Tensor, alive: Tensor | None, grad_enabled: bool
                ) -> Tensor:
        steps, batch, _ = x.shape
        rows, size = w_hh.shape
        learns = grad_enabled and any(ctx.needs_input_grad)  # (forward runs without grad)
        from_input = projected(x, w_ih, b_ih)  # W_ih x_t + b_ih, every step
        hs = x.new_empty(steps + 1, batch, size)  # h_0 ... h_T
        hs[0] = h0
        # rings of a chunk of steps, small enough to stay in cache: W_hh h_{t-1} + b_hh, n,
        # h_{t-1} - n; what the backward needs of them is made once per ring
        chunk = ring_steps(batch * rows * x.element_size())
        hidden = x.new_empty(chunk, batch, rows)
        ns, diffs = x.new_empty(chunk, batch, size), x.new_empty(chunk, batch, size)
        ring = list(zip(hidden.unbind(0), hidden[..., 2 * size:].unbind(0), ns.unbind(0),
                        diffs.unbind(0), strict=True))
        # a CPU multiplies by a contiguous copy faster than by the view: worth it over SHORT
        to_hidden = w_hh.t().contiguous() if steps >= SHORT else w_hh.t()
        h_steps = hs.unbind(0)
        rz_steps = from_input[..., :2 * size].unbind(0)
        input_n_steps = from_input[..., 2 * size:].unbind(0)
        if learns:  # leased: back to the workspace when the graph is freed
            kept = WORKSPACE.lease(x, (steps, batch, 4 * size), (steps, batch, size))
        for t in range(steps):
            k = t % chunk
            hid, hid_n, n, diff = ring[k]
            if b_hh is None:
                torch.mm(h_steps[t], to_hidden, out=hid)
            else:
                torch.addmm(b_hh, h_steps[t], to_hidden, out=hid)
            rz = rz_steps[t].add_(hid[:, :2 * size]).sigmoid_()  # (1) reset, (2) update
            torch.addcmul(input_n_steps[t], rz[:, :size], hid_n, out=n).tanh_()  # (3)
            torch.sub(h_steps[t], n, out=diff)
            torch.addcmul(n, rz[:, size:], diff, out=h_steps[t + 1])  # (4) n + z (h - n)
            if alive is not None:  # past a sequence's end the state is carried unchanged
                torch.where(alive[t], h_steps[t + 1], h_steps[t], out=h_steps[t + 1])
            if learns and (k == chunk - 1 or t == steps - 1):
                ring_slots = slice(t - k, t + 1)
                _keep(ring_slots, from_input[t - k:t + 1, :, :2 * size],
                      hidden[:k + 1, :, 2 * size:], ns[:k + 1], diffs[:k + 1], *kept.tensors)
                if alive is not None:  # a step past the end: z = 1 and no factor, so the
                    dead = ~alive[ring_slots]  # backward carries its gradient unchanged
                    kept.tensors[0][ring_slots].masked_fill_(dead, 0.0)
                    kept.tensors[1][ring_slots].masked_fill_(dead, 1.0)
        WORKSPACE.give(from_input)
        if learns:
            ctx.save_for_backward(x, w_ih, w_hh)
            ctx.hs, ctx.kept = hs, kept
            ctx.biases = (b_ih is not None, b_hh is not None)
        return hs[1:]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_hs: Tensor):
        x, w_ih, w_hh = ctx.saved_tensors
        factor, update = ctx.kept.tensors
        steps, batch, _ = factor.shape
        size = w_hh.shape[1]
        # [n from the input side, r, z, n from the hidden side]: the last three meet W_hh
        grad_pre = WORKSPACE.take(factor, steps, batch, 4 * size)
        factor_steps = factor.view(steps, batch, 4, size).unbind(0)
        pre_steps = grad_pre.view(steps, batch, 4, size).unbind(0)
        hidden_steps = grad_pre[..., size:].unbind(0)
        out_steps, update_steps = grad_hs.unbind(0), update.unbind(0)
        grad_h = grad_hs[-1]
        for t in range(steps - 1, -1, -1):  # past a sequence's end: z = 1, no factor (forward)
            torch.mul(grad_h.unsqueeze(1), factor_steps[t], out=pre_steps[t])
            direct = (grad_h * update_steps[t] if t == 0
                      else torch.addcmul(out_steps[t - 1], grad_h, update_steps[t]))
            grad_h = torch.addmm(direct, hidden_steps[t], w_hh)
        flat = grad_pre.view(steps * batch, 4 * size)
        from_input_rz, from_input_n, hidden = flat[:, size:3 * size], flat[:, :size], flat[:, size:]
        grad_x = grad_w_ih = grad_w_hh = grad_b_ih = grad_b_hh = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.addmm(from_input_rz @ w_ih[:2 * size], from_input_n,
                                 w_ih[2 * size:]).view(steps, batch, -1)
        if ctx.needs_input_grad[1]:
            inputs = x.reshape(steps * batch, -1)
            grad_w_ih = torch.cat([from_input_rz.t() @ inputs, from_input_n.t() @ inputs])
        if ctx.needs_input_grad[2]:  # h_{t-1} for every t
            grad_w_hh = hidden.t() @ ctx.hs[:-1].reshape(steps * batch, size)
        has_ih, has_hh = ctx.biases
        if has_ih and ctx.needs_input_grad[3]:
            grad_b_ih = torch.cat([from_input_rz.sum(0), from_input_n.sum(0)])
        if has_hh and ctx.needs_input_grad[4]:
            grad_b_hh = hidden.sum(0)
        WORKSPACE.give(grad_pre)
        return grad_x, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, grad_h, None, None


def _keep(steps: slice, rz: Tensor, hidden_n: Tensor, n: Tensor, diff: Tensor, factor: Tensor,
          update: Tensor) -> None:
    """What the backward needs of a ring of steps (k, B, ...), in its slots ``steps``: the
    factors [A, r-factor, z-factor, r A] of the module docstring, and z."""
    size = n.shape[-1]
    r, z = rz[..., :size], rz[..., size:]
    a, fr, fz, fn = factor[steps].split(size, dim=-1)
    torch.addcmul(n.new_ones(()), n, n, value=-1, out=a)
    torch.addcmul(a, a, z, value=-1, out=a)  # A = (1 - n^2)(1 - z)
    torch.addcmul(r, r, r, value=-1, out=fr).mul_(hidden_n).mul_(a)  # hid_n r (1 - r) A
    torch.addcmul(z, z, z, value=-1, out=fz).mul_(diff)  # (h_{t-1} - n) z (1 - z)
    torch.mul(r, a, out=fn)  # r A
    update[steps] = z
