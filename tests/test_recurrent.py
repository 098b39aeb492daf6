"""seqlab.recurrent: the fused and explicit paths agree with each other, with the naive reference
and with themselves across full, step-by-step, chunked and padded runs (float64).

Agreement covers outputs, final states and the gradients of a scalar loss with respect to every
parameter, the input and the initial state.
"""

from __future__ import annotations

import math
import re
import warnings

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from reference import ref_run
from seqlab.recurrent import CELLS, GATE_NAMES, Recurrent, Trace, map_state

# tiny tensors: one thread avoids oversubscribing two shared cores (see conftest.py)
pytestmark = pytest.mark.usefixtures("single_thread")

B, T, I, H = 4, 10, 3, 5
CELL_NAMES = ["rnn", "irnn", "lstm", "gru"]
LAYERS = [1, 3]
LENGTHS = [7, 3, 10, 1]  # unsorted, one full-length sequence, one of length 1
SHORT_LENGTHS = [6, 3, 8, 1]  # no sequence reaches T: the output is padded to T anyway
CHUNK = 4  # T = 10 in chunks of 4 leaves a remainder of 2

cell_and_layers = pytest.mark.parametrize(
    ("cell", "layers"), [(c, n) for c in CELL_NAMES for n in LAYERS])


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
    if cell == "lstm":
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


# ----- fused vs explicit, in every way of running -------------------------------------------

@cell_and_layers
@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "given_state"])
def test_paths_agree_full_sequence(cell, layers, with_state):
    model = make(cell, layers)
    x, state = random_input(), random_state(cell, layers) if with_state else None
    fused = run_and_grad(model, "fused", run_full, x, state)
    explicit = run_and_grad(model, "explicit", run_full, x, state)
    assert_same(explicit, fused)


@cell_and_layers
@pytest.mark.parametrize("runner", [run_steps, run_chunks], ids=["step_by_step", "chunked"])
def test_paths_agree_carrying_state(cell, layers, runner):
    """Step by step and in chunks (with a remainder), each path equals itself run in one call,
    and the two paths agree with each other."""
    model = make(cell, layers, seed=3)
    x, state = random_input(4), random_state(cell, layers, seed=5)
    whole = run_and_grad(model, "fused", run_full, x, state)
    for mode in ("fused", "explicit"):
        assert_same(run_and_grad(model, mode, runner, x, state), whole)


@cell_and_layers
def test_paths_agree_padded(cell, layers):
    model = make(cell, layers, seed=6)
    x, state = random_input(7), random_state(cell, layers, seed=8)
    lengths = torch.tensor(LENGTHS)
    fused = run_and_grad(model, "fused", run_full, x, state, lengths)
    explicit = run_and_grad(model, "explicit", run_full, x, state, lengths)
    assert_same(explicit, fused)


@cell_and_layers
@pytest.mark.parametrize("mode", ["fused", "explicit"])
def test_padded_equals_each_sequence_alone(cell, layers, mode):
    """Row b of a padded batch gives what sequence b alone, unpadded, gives: its valid outputs,
    zeros past its end, its final state, and the same gradients."""
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
    # the padded loss is the sum of the per-sequence losses, so its gradient is the sum of theirs
    for k in param_names:
        assert_close(padded[k], param_sum[k], msg=lambda m, k=k: f"{k}: {m}")


@cell_and_layers
@pytest.mark.parametrize("mode", ["fused", "explicit"])
def test_padding_values_do_not_matter(cell, layers, mode):
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


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_non_finite_padding_does_not_matter_explicit(cell):
    model = make(cell, 1, seed=16, mode="explicit")
    x = random_input(17)
    lengths = torch.tensor(SHORT_LENGTHS)
    x[1, SHORT_LENGTHS[1]:] = float("nan")  # e.g. torch.empty padding
    output, state = model(x, lengths=lengths)
    loss_of(output, state).backward()
    for name, p in model.named_parameters():
        assert torch.isfinite(p.grad).all(), name


# ----- against the naive reference -------------------------------------------------------------

@cell_and_layers
@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
def test_agrees_with_reference(cell, layers, padded):
    model = make(cell, layers, seed=18)
    x, state = random_input(19), random_state(cell, layers, seed=20)
    lengths = torch.tensor(LENGTHS) if padded else None
    h0, c0 = state if cell == "lstm" else (state, None)
    weights = [model.layer_weights(layer) for layer in range(layers)]
    with torch.no_grad():
        want = ref_run(cell, weights, x, h0, c0, lengths)
        for mode in ("fused", "explicit"):
            model.mode = mode
            assert_close(model(x, state, lengths), want)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_zero_initial_state_is_default(cell):
    model = make(cell, 3, seed=21)
    x = random_input(22)
    zero = model.initial_state(B)
    assert all(s.shape == (3, B, H) and not s.any() for s in parts(zero))
    for mode in ("fused", "explicit"):
        model.mode = mode
        assert_close(model(x), model(x, zero))


# ----- trace --------------------------------------------------------------------------------

@cell_and_layers
@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
def test_trace_shapes_and_values(cell, layers, padded):
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
    if cell == "lstm":
        assert len(trace.c) == layers and Trace.stack(trace.c).shape == (layers, B, T, H)
    else:
        assert trace.c is None
    assert tuple(trace.gates) == GATE_NAMES.get(cell, ())
    for steps in trace.gates.values():
        assert Trace.stack(steps).shape == (layers, B, T, H)

    h_n = final[0] if cell == "lstm" else final
    for layer in range(layers):  # the last carried state is the final state
        assert_close(trace.h[layer][-1], h_n[layer])
    if not padded:
        assert_close(Trace.stack(trace.h)[-1], output)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_trace_gates_satisfy_the_equations(cell):
    model = make(cell, 2, seed=26, mode="explicit")
    x, state = random_input(27), random_state(cell, 2, seed=28)
    trace = model.trace(x, state)
    h0 = state[0] if cell == "lstm" else state
    for layer in range(2):
        for t in range(T):
            h_prev = h0[layer] if t == 0 else trace.h[layer][t - 1]
            gate = {k: v[layer][t] for k, v in trace.gates.items()}
            if cell == "lstm":
                c_prev = state[1][layer] if t == 0 else trace.c[layer][t - 1]
                c = gate["f"] * c_prev + gate["i"] * gate["g"]  # (5)
                assert_close(trace.c[layer][t], c)
                assert_close(trace.h[layer][t], gate["o"] * torch.tanh(c))  # (6)
            else:
                h = (1 - gate["z"]) * gate["n"] + gate["z"] * h_prev  # (4)
                assert_close(trace.h[layer][t], h)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_trace_gradient_through_time(cell):
    """dL/dh_t from the trace equals the gradient with respect to the initial state of the same
    network run from step t + 1 with h_t as its initial state."""
    model = make(cell, 1, seed=29, mode="explicit")
    x = random_input(30)
    trace = model.trace(x)
    loss = loss_of(trace.output, trace.state)
    grads = torch.autograd.grad(loss, trace.h[-1], retain_graph=True)
    assert len(grads) == T and all(g.shape == (B, H) for g in grads)

    t = 3
    h_t = trace.h[0][t].detach().requires_grad_()
    rest_state = (h_t[None], trace.c[0][t].detach()[None]) if cell == "lstm" else h_t[None]
    output, final = model(x[:, t + 1:], rest_state)
    # loss_of weights the outputs by position: step t's own output term, then the tail
    out_weight = asym((B, T, H), 0.3)
    tail_loss = (h_t * out_weight[:, t]).sum() + loss_of(output, final, out_weight[:, t + 1:])
    (want,) = torch.autograd.grad(tail_loss, h_t)
    assert_close(grads[t], want)


# ----- dropout ------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELL_NAMES)
def test_dropout_off_in_eval(cell):
    model = make(cell, 3, seed=31, dropout=0.5)
    plain = make(cell, 3, seed=31)  # same weights, no dropout
    x, state = random_input(32), random_state(cell, 3, seed=33)
    model.eval()
    want = run_and_grad(plain, "fused", run_full, x, state)
    for mode in ("fused", "explicit"):
        assert_same(run_and_grad(model, mode, run_full, x, state), want)


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("mode", ["fused", "explicit"])
def test_dropout_active_in_training(cell, mode):
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


@pytest.mark.parametrize("mode", ["fused", "explicit"])
def test_dropout_single_layer_is_noop_without_warning(mode):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = make("lstm", 1, seed=38, dropout=0.5, mode=mode)
    x = random_input(39)
    with torch.no_grad():
        model.train()
        trained, _ = model(x)
        model.eval()
        evaluated, _ = model(x)
    assert_close(trained, evaluated)


# ----- weights and initialisation ---------------------------------------------------------

def torch_twin(cell: str, layers: int) -> nn.RNNBase:
    module, nonlinearity = CELLS[cell]
    kwargs = {"nonlinearity": nonlinearity} if nonlinearity else {}
    return module(I, H, layers, batch_first=True, **kwargs).double()


@cell_and_layers
def test_weights_load_both_ways(cell, layers):
    model = make(cell, layers, seed=40)
    x, state = random_input(41), random_state(cell, layers, seed=42)
    torch.manual_seed(43)
    twin = torch_twin(cell, layers)
    assert set(model.state_dict()) == {f"core.{k}" for k in twin.state_dict()}

    twin.load_state_dict(model.core.state_dict(), strict=True)
    with torch.no_grad():
        want = twin(x, state)
        for mode in ("fused", "explicit"):
            model.mode = mode
            assert_close(model(x, state), want)

    torch.manual_seed(44)
    fresh = torch_twin(cell, layers)
    model.core.load_state_dict(fresh.state_dict(), strict=True)
    with torch.no_grad():
        want = fresh(x, state)
        for mode in ("fused", "explicit"):
            model.mode = mode
            assert_close(model(x, state), want)


def test_irnn_init_every_layer():
    model = Recurrent("irnn", I, H, 3)
    for layer in range(3):
        w_ih, w_hh, b_ih, b_hh = model.layer_weights(layer)
        assert_close(w_hh, torch.eye(H))
        assert not b_ih.any() and not b_hh.any()
        assert w_ih.abs().max() > 0


@pytest.mark.parametrize("value", [1.0, 2.0])
def test_lstm_forget_bias_every_layer(value):
    model = Recurrent("lstm", I, H, 3, forget_bias=value)
    for layer in range(3):
        _, _, b_ih, b_hh = model.layer_weights(layer)
        assert_close(b_ih[H:2 * H] + b_hh[H:2 * H], torch.full((H,), value))


def test_lstm_chrono_init_every_layer():
    torch.manual_seed(3)
    t_max = 200
    model = Recurrent("lstm", I, 64, 2, chrono=t_max)
    for layer in range(2):
        _, _, b_ih, b_hh = model.layer_weights(layer)
        forget = b_ih[64:128] + b_hh[64:128]
        # log U[1, t_max - 1], and the input gate's bias is its negative
        assert forget.min() >= 0.0 and forget.max() <= math.log(t_max - 1)
        assert_close(b_ih[:64] + b_hh[:64], -forget)
        # the units' memory spans spread over the range: e^{b_f} is uniform on [1, t_max - 1]
        spans = forget.exp()
        assert spans.min() < 0.25 * t_max and spans.max() > 0.75 * t_max


def test_lstm_chrono_init_draws_from_the_seed_and_leaves_other_cells_alone():
    torch.manual_seed(5)
    a = Recurrent("lstm", I, H, chrono=50)
    torch.manual_seed(5)
    b = Recurrent("lstm", I, H, chrono=50)
    assert_close(a.layer_weights(0)[2], b.layer_weights(0)[2])
    gru = Recurrent("gru", I, H, chrono=50)  # chrono is an LSTM initialisation only
    assert (gru.layer_weights(0)[2].abs() <= 1 / H ** 0.5).all()
    with pytest.raises(ValueError, match="t_max >= 3"):
        Recurrent("lstm", I, H, chrono=2)


def test_lstm_forget_bias_none_keeps_torch_init():
    torch.manual_seed(45)
    model = Recurrent("lstm", I, H, 2, forget_bias=None)
    bound = 1 / H ** 0.5
    for layer in range(2):
        _, _, b_ih, b_hh = model.layer_weights(layer)
        assert b_ih.abs().max() <= bound and b_hh.abs().max() <= bound
        assert (b_ih[H:2 * H] + b_hh[H:2 * H] - 1.0).abs().min() > 1e-6


# ----- errors -------------------------------------------------------------------------------

def test_unknown_cell():
    msg = r"^Recurrent: unknown cell 'lstmx'; choose from rnn, irnn, lstm, gru$"
    with pytest.raises(ValueError, match=msg):
        Recurrent("lstmx", I, H)


def test_bad_mode():
    msg = r"^Recurrent: mode must be one of \('fused', 'explicit'\), got 'fast'$"
    with pytest.raises(ValueError, match=msg):
        Recurrent("gru", I, H, mode="fast")
    model = Recurrent("gru", I, H)
    with pytest.raises(ValueError, match=msg):
        model.mode = "fast"
    assert model.mode == "fused"


@pytest.mark.parametrize(("field", "value"), [("input_size", 0), ("hidden_size", 2.5),
                                              ("num_layers", 0), ("num_layers", -1)])
def test_bad_sizes(field, value):
    sizes = {"input_size": I, "hidden_size": H, "num_layers": 1, field: value}
    with pytest.raises(ValueError, match=rf"^Recurrent: {field} must be a positive int, "
                                         rf"got {value!r}$"):
        Recurrent("rnn", **sizes)


@pytest.mark.parametrize("dropout", [1.0, -0.1])
def test_bad_dropout(dropout):
    msg = rf"^Recurrent: dropout must be in \[0, 1\), got {dropout}$"
    with pytest.raises(ValueError, match=msg):
        Recurrent("lstm", I, H, 2, dropout=dropout)


@pytest.mark.parametrize("mode", ["fused", "explicit"])
@pytest.mark.parametrize("shape", [(B, T, I + 1), (B, T), (T, I), (1, B, T, I)])
def test_wrong_input_shape(mode, shape):
    model = Recurrent("gru", I, H, mode=mode).double()
    with pytest.raises(ValueError, match=rf"^Recurrent: expected input of shape \(B, T, {I}\), "
                                         rf"got {re.escape(str(shape))}$"):
        model(torch.zeros(shape, dtype=torch.float64))


def test_no_time_steps():
    model = Recurrent("gru", I, H).double()
    with pytest.raises(ValueError, match=r"^Recurrent: the input has no time steps \(T = 0\)$"):
        model(torch.zeros(B, 0, I, dtype=torch.float64))


@pytest.mark.parametrize("mode", ["fused", "explicit"])
@pytest.mark.parametrize(("lengths", "got"), [([3, 0, 2, 1], "0..3"),
                                              ([3, T + 1, 2, 1], f"1..{T + 1}"),
                                              ([-1, 2, 2, 2], "-1..2")])
def test_lengths_out_of_range(mode, lengths, got):
    model = Recurrent("lstm", I, H, mode=mode).double()
    msg = rf"^Recurrent: lengths must lie in \[1, {T}\], got {got}$"
    with pytest.raises(ValueError, match=msg):
        model(random_input(), lengths=torch.tensor(lengths))


@pytest.mark.parametrize("lengths", [[3, 2, 1], [[3, 2, 1, 1]]])
def test_lengths_wrong_shape(lengths):
    model = Recurrent("lstm", I, H).double()
    shape = re.escape(str(tuple(torch.tensor(lengths).shape)))
    with pytest.raises(ValueError, match=rf"^Recurrent: expected lengths of shape \({B},\), "
                                         rf"got {shape}$"):
        model(random_input(), lengths=torch.tensor(lengths))


@pytest.mark.parametrize("mode", ["fused", "explicit"])
@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("shape", [(2, B + 1, H), (3, B, H), (2, B, H + 1), (B, H)])
def test_wrong_state_shape(mode, cell, shape):
    model = Recurrent(cell, I, H, 2, mode=mode).double()
    h = torch.zeros(shape, dtype=torch.float64)
    state = (h, torch.zeros(2, B, H, dtype=torch.float64)) if cell == "lstm" else h
    with pytest.raises(ValueError, match=rf"^Recurrent: expected a state of shape "
                                         rf"\(2, {B}, {H}\), got {re.escape(str(shape))}$"):
        model(random_input(), state)


@pytest.mark.parametrize("mode", ["fused", "explicit"])
def test_wrong_lstm_cell_state_shape(mode):
    model = Recurrent("lstm", I, H, 2, mode=mode).double()
    state = (torch.zeros(2, B, H, dtype=torch.float64), torch.zeros(2, 1, H, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^Recurrent: expected a state of shape"):
        model(random_input(), state)


def test_lstm_state_must_be_a_tuple():
    model = Recurrent("lstm", I, H, 2).double()
    with pytest.raises(TypeError, match=r"^Recurrent: a lstm state is a tuple \(h, c\)$"):
        model(random_input(), torch.zeros(2, B, H, dtype=torch.float64))


@pytest.mark.parametrize("cell", ["rnn", "irnn", "gru"])
def test_single_tensor_state_rejects_a_tuple(cell):
    model = Recurrent(cell, I, H, 2).double()
    h = torch.zeros(2, B, H, dtype=torch.float64)
    with pytest.raises(TypeError, match=rf"^Recurrent: a {cell} state is one tensor h$"):
        model(random_input(), (h, h))
