"""The shared contract of every registered cell run as a :class:`~seqlab.recurrent.Recurrent`
stack: the fused and explicit paths agree with each other, with the naive reference and with
themselves across full, step-by-step, chunked and padded runs (float64).

Agreement covers outputs, final states and the gradients of a scalar loss with respect to every
parameter, the input and the initial state. A test module subclasses :class:`RecurrentSuite` as
``TestSomething`` and provides a ``cell`` fixture yielding a registered cell's name.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from torch.testing import assert_close

from reference import ref_run
from seqlab.cells import CELLS
from seqlab.recurrent import Recurrent, Trace, map_state

B, T, I, H = 4, 10, 3, 5
LAYERS = [1, 3]
LENGTHS = [7, 3, 10, 1]  # unsorted, one full-length sequence, one of length 1
SHORT_LENGTHS = [6, 3, 8, 1]  # no sequence reaches T: the output is padded to T anyway
CHUNK = 4  # T = 10 in chunks of 4 leaves a remainder of 2


def paired(cell: str) -> bool:
    """Whether the cell's state is (h, c) rather than h alone."""
    return len(CELLS[cell].state) == 2


def make(cell: str, layers: int, seed: int = 0, **kwargs) -> Recurrent:
    """A float64 stack; the weights are nudged off their init so that the IRNN's W_hh = I and
    zero biases do not make a special case of it."""
    torch.manual_seed(seed)
    model = Recurrent(cell, I, H, layers, **kwargs).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def asym(shape, offset: float) -> torch.Tensor:
    """Deterministic, non-symmetric values of a given shape (loss weights, inputs)."""
    n = int(torch.Size(shape).numel())
    idx = torch.arange(n, dtype=torch.float64)
    return torch.sin(0.61 * idx + offset).reshape(shape)


def random_input(seed: int = 1, batch: int = B, steps: int = T) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, steps, I, generator=g, dtype=torch.float64)


def random_state(cell: str, layers: int, seed: int = 2, batch: int = B):
    g = torch.Generator().manual_seed(seed)
    h = 0.5 * torch.randn(layers, batch, H, generator=g, dtype=torch.float64)
    if paired(cell):
        return h, 0.5 * torch.randn(layers, batch, H, generator=g, dtype=torch.float64)
    return h


def parts(state) -> tuple[torch.Tensor, ...]:
    if state is None:
        return ()
    return tuple(state) if isinstance(state, tuple) else (state,)


def loss_of(output: torch.Tensor, state, out_weight=None, state_weights=None) -> torch.Tensor:
    """A scalar that depends on every output and every final-state entry, with distinct weights
    (a plain sum would let some gradient errors cancel)."""
    out_weight = asym(output.shape, 0.3) if out_weight is None else out_weight
    state_weights = state_weights or [asym(s.shape, 1.1 + k) for k, s in enumerate(parts(state))]
    loss = (output * out_weight).sum()
    for s, w in zip(parts(state), state_weights, strict=True):
        loss = loss + (s * w).sum()
    return loss


# ----- ways of running a sequence: each returns (output (B, T, H), final state) ---------------

def run_full(model, x, state, lengths=None):
    return model(x, state, lengths)


def run_steps(model, x, state, lengths=None):
    """One T = 1 call per step, carrying the state."""
    return run_chunks(model, x, state, lengths, size=1)


def run_chunks(model, x, state, lengths=None, size=CHUNK):
    assert lengths is None
    outs = []
    for start in range(0, x.shape[1], size):
        out, state = model(x[:, start:start + size], state)
        outs.append(out)
    return torch.cat(outs, dim=1), state


def run_and_grad(model, mode, runner, x, state=None, lengths=None, loss_weights=(None, None)
                 ) -> dict[str, torch.Tensor]:
    """Outputs, final state and the gradients of loss_of with respect to parameters, x, state."""
    model.mode = mode
    x = x.clone().requires_grad_()
    state = None if state is None else map_state(state, lambda s: s.clone().requires_grad_())
    output, final = runner(model, x, state, lengths)
    names, params = zip(*model.named_parameters(), strict=True)
    leaves = [*params, x, *parts(state)]
    grads = torch.autograd.grad(loss_of(output, final, *loss_weights), leaves)
    result = {"output": output}
    result.update({f"state{k}": s for k, s in enumerate(parts(final))})
    result.update({f"grad {n}": g for n, g in zip(names, grads, strict=False)})
    result["grad x"] = grads[len(names)]
    result.update({f"grad state0[{k}]": g for k, g in enumerate(grads[len(names) + 1:])})
    return result


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key in want:
        assert_close(got[key], want[key], msg=lambda m, key=key: f"{key}: {m}")


layers = pytest.mark.parametrize("layers", LAYERS)


class RecurrentSuite:
    """Every cell as a Recurrent stack. Needs a ``cell`` fixture (a registered name). On a cell
    without a fused kernel, ``fused`` runs its scan (mingru, minlstm) or else the explicit
    loop, and then the fused-against-explicit tests hold trivially; the reference and
    carried-state tests still bind it."""

    # ----- fused vs explicit, in every way of running -------------------------------------

    @layers
    @pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "given_state"])
    def test_paths_agree_full_sequence(self, cell, layers, with_state):
        model = make(cell, layers)
        x, state = random_input(), random_state(cell, layers) if with_state else None
        fused = run_and_grad(model, "fused", run_full, x, state)
        explicit = run_and_grad(model, "explicit", run_full, x, state)
        assert_same(explicit, fused)

    @layers
    @pytest.mark.parametrize("runner", [run_steps, run_chunks], ids=["step_by_step", "chunked"])
    def test_paths_agree_carrying_state(self, cell, layers, runner):
        """Step by step and in chunks (with a remainder), each path equals itself run in one
        call, and the two paths agree with each other."""
        model = make(cell, layers, seed=3)
        x, state = random_input(4), random_state(cell, layers, seed=5)
        whole = run_and_grad(model, "fused", run_full, x, state)
        for mode in ("fused", "explicit"):
            assert_same(run_and_grad(model, mode, runner, x, state), whole)

    @layers
    def test_paths_agree_padded(self, cell, layers):
        model = make(cell, layers, seed=6)
        x, state = random_input(7), random_state(cell, layers, seed=8)
        lengths = torch.tensor(LENGTHS)
        fused = run_and_grad(model, "fused", run_full, x, state, lengths)
        explicit = run_and_grad(model, "explicit", run_full, x, state, lengths)
        assert_same(explicit, fused)

    @layers
    @pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
    def test_sweep_agrees_with_the_kernel(self, cell, layers, padded):
        """A cell with both a sweep and a torch.nn kernel: the kernel, the sweep and the loop
        of its recur give the same outputs and gradients (``sweep_on_cpu`` swaps the first
        two in fused mode)."""
        spec = CELLS[cell]
        if spec.sweep is None or spec.kernel is None:
            pytest.skip(f"{cell} has no sweep beside a torch.nn kernel")
        model = make(cell, layers, seed=61)
        x, state = random_input(62), random_state(cell, layers, seed=63)
        lengths = torch.tensor(LENGTHS) if padded else None
        model.spec = dataclasses.replace(spec, sweep=None, sweep_on_cpu=False)  # the kernel
        kernel = run_and_grad(model, "fused", run_full, x, state, lengths)
        model.spec = spec
        swept = run_and_grad(model, "explicit", run_full, x, state, lengths)
        model.spec = dataclasses.replace(spec, sweep=None, sweep_on_cpu=False)
        loop = run_and_grad(model, "explicit", run_full, x, state, lengths)
        assert_same(swept, kernel)
        assert_same(loop, kernel)

    def test_fused_runs_the_kernel_when_there_is_one(self, cell):
        model = make(cell, 1)
        fast = CELLS[cell].kernel is not None or CELLS[cell].scan is not None
        assert model.fused == fast
        model.mode = "explicit"
        assert not model.fused

    @layers
    @pytest.mark.parametrize("mode", ["fused", "explicit"])
    def test_padded_equals_each_sequence_alone(self, cell, layers, mode):
        """Row b of a padded batch gives what sequence b alone, unpadded, gives: its valid
        outputs, zeros past its end, its final state, and the same gradients."""
        model = make(cell, layers, seed=9)
        x, state = random_input(10), random_state(cell, layers, seed=11)
        lengths = torch.tensor(LENGTHS)
        padded = run_and_grad(model, mode, run_full, x, state, lengths)

        param_names = [f"grad {n}" for n, _ in model.named_parameters()]
        param_sum = {k: torch.zeros_like(padded[k]) for k in param_names}
        out_w, state_w = asym(padded["output"].shape, 0.3), [
            asym(s.shape, 1.1 + k) for k, s in enumerate(parts(state))]
        for b, n in enumerate(LENGTHS):
            state_b = map_state(state, lambda s, b=b: s[:, b:b + 1])
            weights_b = (out_w[b:b + 1, :n], [w[:, b:b + 1] for w in state_w])
            alone = run_and_grad(model, mode, run_full, x[b:b + 1, :n], state_b,
                                 loss_weights=weights_b)
            assert_close(padded["output"][b, :n], alone["output"][0])
            assert not padded["output"][b, n:].any()
            assert_close(padded["grad x"][b, :n], alone["grad x"][0])
            assert not padded["grad x"][b, n:].any()
            for k in range(len(parts(state))):
                assert_close(padded[f"state{k}"][:, b], alone[f"state{k}"][:, 0])
                assert_close(padded[f"grad state0[{k}]"][:, b], alone[f"grad state0[{k}]"][:, 0])
            for k in param_names:
                param_sum[k] += alone[k]
        # the padded loss is the sum of the per-sequence losses, so its gradient is their sum
        for k in param_names:
            assert_close(padded[k], param_sum[k], msg=lambda m, k=k: f"{k}: {m}")

    @layers
    @pytest.mark.parametrize("mode", ["fused", "explicit"])
    def test_padding_values_do_not_matter(self, cell, layers, mode):
        model = make(cell, layers, seed=12)
        x, state = random_input(13), random_state(cell, layers, seed=14)
        lengths = torch.tensor(SHORT_LENGTHS)
        valid = (torch.arange(T)[None, :] < lengths[:, None]).unsqueeze(-1)  # (B, T, 1)
        clean = x * valid
        garbage = torch.where(valid, x, 1e3 * random_input(15))  # saturates tanh, explodes relu
        want = run_and_grad(model, mode, run_full, clean, state, lengths)
        got = run_and_grad(model, mode, run_full, garbage, state, lengths)
        assert_same(got, want)
        assert not got["grad x"][~valid.expand_as(x)].any()

    def test_non_finite_padding_does_not_matter_explicit(self, cell):
        model = make(cell, 1, seed=16, mode="explicit")
        x = random_input(17)
        lengths = torch.tensor(SHORT_LENGTHS)
        x[1, SHORT_LENGTHS[1]:] = float("nan")  # e.g. torch.empty padding
        output, state = model(x, lengths=lengths)
        loss_of(output, state).backward()
        for name, p in model.named_parameters():
            assert torch.isfinite(p.grad).all(), name

    # ----- against the naive reference and autograd ----------------------------------------

    @layers
    @pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
    def test_agrees_with_reference(self, cell, layers, padded):
        model = make(cell, layers, seed=18)
        x, state = random_input(19), random_state(cell, layers, seed=20)
        lengths = torch.tensor(LENGTHS) if padded else None
        h0, c0 = state if paired(cell) else (state, None)
        weights = [model.layer_weights(layer) for layer in range(layers)]
        with torch.no_grad():
            want = ref_run(cell, weights, x, h0, c0, lengths)
            for mode in ("fused", "explicit"):
                model.mode = mode
                assert_close(model(x, state, lengths), want)

    @pytest.mark.parametrize("mode", ["fused", "explicit"])
    def test_gradcheck(self, cell, mode):
        """Gradients with respect to the input and the initial state, two layers, padded."""
        model = make(cell, 2, seed=41, mode=mode)
        x = random_input(42, batch=2, steps=3).requires_grad_()
        state = tuple(s.requires_grad_() for s in parts(random_state(cell, 2, seed=43, batch=2)))
        lengths = torch.tensor([3, 2])

        def f(x, *state):
            output, final = model(x, state if paired(cell) else state[0], lengths)
            return output, *parts(final)

        assert torch.autograd.gradcheck(f, (x, *state))

    def test_zero_initial_state_is_default(self, cell):
        model = make(cell, 3, seed=21)
        x = random_input(22)
        zero = model.initial_state(B)
        assert all(s.shape == (3, B, H) and not s.any() for s in parts(zero))
        for mode in ("fused", "explicit"):
            model.mode = mode
            assert_close(model(x), model(x, zero))

    @layers
    def test_state_step_is_one_step_of_the_stack(self, cell, layers):
        """state_step(layer), the function diagnostics differentiate, is one explicit step of
        that layer on one sequence, its state's tensors concatenated."""
        model = make(cell, layers, seed=44, mode="explicit")
        x, state = random_input(45, steps=2), random_state(cell, layers, seed=46)
        trace = model.trace(x, state)
        for layer in range(layers):
            x_layer = x if layer == 0 else Trace.stack(trace.h)[layer - 1]  # (B, T, I or H)
            before = torch.cat([s[layer] for s in parts(state)], dim=-1)  # (B, S)
            after = [trace.h[layer][0]] + ([trace.c[layer][0]] if paired(cell) else [])
            step = model.state_step(layer)
            for b in range(B):
                assert_close(step(before[b], x_layer[b, 0]), torch.cat(after, dim=-1)[b])

    # ----- trace -------------------------------------------------------------------------

    @layers
    @pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
    def test_trace_shapes_and_values(self, cell, layers, padded):
        model = make(cell, layers, seed=23, mode="explicit")
        x, state = random_input(24), random_state(cell, layers, seed=25)
        lengths = torch.tensor(LENGTHS) if padded else None
        trace = model.trace(x, state, lengths)
        assert isinstance(trace, Trace)
        output, final = model(x, state, lengths)
        assert_close(trace.output, output)
        assert_close(trace.state, final)

        assert len(trace.h) == layers and all(len(steps) == T for steps in trace.h)
        assert all(h.shape == (B, H) for steps in trace.h for h in steps)
        assert Trace.stack(trace.h).shape == (layers, B, T, H)
        if paired(cell):
            assert len(trace.c) == layers and Trace.stack(trace.c).shape == (layers, B, T, H)
        else:
            assert trace.c is None
        assert tuple(trace.gates) == CELLS[cell].gates
        for steps in trace.gates.values():
            assert Trace.stack(steps).shape == (layers, B, T, H)

        h_n = final[0] if paired(cell) else final
        for layer in range(layers):  # the last carried state is the final state
            assert_close(trace.h[layer][-1], h_n[layer])
        if not padded:
            assert_close(Trace.stack(trace.h)[-1], output)

    def test_trace_gradient_through_time(self, cell):
        """dL/dh_t from the trace equals the gradient with respect to the initial state of the
        same network run from step t + 1 with h_t as its initial state."""
        model = make(cell, 1, seed=29, mode="explicit")
        x = random_input(30)
        trace = model.trace(x)
        loss = loss_of(trace.output, trace.state)
        grads = torch.autograd.grad(loss, trace.h[-1], retain_graph=True)
        assert len(grads) == T and all(g.shape == (B, H) for g in grads)

        t = 3
        h_t = trace.h[0][t].detach().requires_grad_()
        rest_state = (h_t[None], trace.c[0][t].detach()[None]) if paired(cell) else h_t[None]
        output, final = model(x[:, t + 1:], rest_state)
        # loss_of weights the outputs by position: step t's own output term, then the tail
        out_weight = asym((B, T, H), 0.3)
        tail_loss = (h_t * out_weight[:, t]).sum() + loss_of(output, final, out_weight[:, t + 1:])
        (want,) = torch.autograd.grad(tail_loss, h_t)
        assert_close(grads[t], want)

    # ----- dropout -----------------------------------------------------------------------

    def test_dropout_off_in_eval(self, cell):
        model = make(cell, 3, seed=31, dropout=0.5)
        plain = make(cell, 3, seed=31)  # same weights, no dropout
        x, state = random_input(32), random_state(cell, 3, seed=33)
        model.eval()
        want = run_and_grad(plain, "fused", run_full, x, state)
        for mode in ("fused", "explicit"):
            assert_same(run_and_grad(model, mode, run_full, x, state), want)

    @pytest.mark.parametrize("mode", ["fused", "explicit"])
    def test_dropout_active_in_training(self, cell, mode):
        model = make(cell, 3, seed=34, dropout=0.5, mode=mode)
        x = random_input(35)
        model.eval()
        with torch.no_grad():
            evaluated, _ = model(x)
            model.train()
            torch.manual_seed(36)
            first, _ = model(x)
            torch.manual_seed(36)
            again, _ = model(x)
            torch.manual_seed(37)
            other, _ = model(x)
        assert (first - evaluated).abs().max() > 1e-3
        assert (first - other).abs().max() > 1e-3
        assert_close(first, again)  # seeded, so reproducible
        # dropout sits between layers only: the top layer's output is never zeroed (ReLU zeroes
        # entries by itself, so the IRNN cannot show this)
        if cell != "irnn":
            assert first.ne(0).all()

    # ----- weights -----------------------------------------------------------------------

    @layers
    def test_weights_load_both_ways(self, cell, layers):
        spec = CELLS[cell]
        model = make(cell, layers, seed=40)
        names = {f"core.{n}_l{k}" for k in range(layers) for n in spec.weight_names}
        assert set(model.state_dict()) == names  # torch.nn's names, with or without a kernel
        if spec.kernel is None:
            pytest.skip(f"{cell} has no fused torch.nn kernel to load from or into")
        x, state = random_input(41), random_state(cell, layers, seed=42)
        torch.manual_seed(43)
        twin = spec.kernel(I, H, layers, batch_first=True).double()
        assert set(model.state_dict()) == {f"core.{k}" for k in twin.state_dict()}

        twin.load_state_dict(model.core.state_dict(), strict=True)
        with torch.no_grad():
            want = twin(x, state)
            for mode in ("fused", "explicit"):
                model.mode = mode
                assert_close(model(x, state), want)

        torch.manual_seed(44)
        fresh = spec.kernel(I, H, layers, batch_first=True).double()
        model.core.load_state_dict(fresh.state_dict(), strict=True)
        with torch.no_grad():
            want = fresh(x, state)
            for mode in ("fused", "explicit"):
                model.mode = mode
                assert_close(model(x, state), want)

    # ----- errors ------------------------------------------------------------------------

    @pytest.mark.parametrize("mode", ["fused", "explicit"])
    @pytest.mark.parametrize("shape", [(2, B + 1, H), (3, B, H), (2, B, H + 1), (B, H)])
    def test_wrong_state_shape(self, cell, mode, shape):
        model = Recurrent(cell, I, H, 2, mode=mode).double()
        h = torch.zeros(shape, dtype=torch.float64)
        state = (h, torch.zeros(2, B, H, dtype=torch.float64)) if paired(cell) else h
        with pytest.raises(ValueError, match=rf"^Recurrent: expected a state of shape "
                                             rf"\(2, {B}, {H}\), got {re.escape(str(shape))}$"):
            model(random_input(), state)

    def test_state_kind_is_checked(self, cell):
        """A cell whose state is (h, c) takes a tuple, any other one tensor h."""
        model = Recurrent(cell, I, H, 2).double()
        h = torch.zeros(2, B, H, dtype=torch.float64)
        if paired(cell):
            with pytest.raises(TypeError, match=rf"^Recurrent: a {cell} state is a tuple "
                                                rf"\(h, c\)$"):
                model(random_input(), h)
        else:
            with pytest.raises(TypeError, match=rf"^Recurrent: a {cell} state is one tensor h$"):
                model(random_input(), (h, h))
