"""seqlab.cells against torch.nn's cells, the naive reference and its own equations (float64)."""

from __future__ import annotations

import itertools
import math
import re

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.testing import assert_close

from reference import GRU_GATES, LSTM_GATES, ref_gru_step, ref_lstm_step, ref_rnn_step
from seqlab.cells import GRUCell, LSTMCell, RNNCell

# tiny tensors: one thread avoids oversubscribing two shared cores (see conftest.py)
pytestmark = pytest.mark.usefixtures("single_thread")

I, H, B = 3, 5, 4

# name -> (seqlab cell, torch.nn twin); both take (input_size, hidden_size, bias=...)
CELLS = {
    "rnn_tanh": (lambda i, h, **kw: RNNCell(i, h, nonlinearity="tanh", **kw),
                 lambda i, h, **kw: nn.RNNCell(i, h, nonlinearity="tanh", **kw)),
    "rnn_relu": (lambda i, h, **kw: RNNCell(i, h, nonlinearity="relu", **kw),
                 lambda i, h, **kw: nn.RNNCell(i, h, nonlinearity="relu", **kw)),
    "irnn": (lambda i, h, **kw: RNNCell(i, h, nonlinearity="relu", identity_init=True, **kw),
             lambda i, h, **kw: nn.RNNCell(i, h, nonlinearity="relu", **kw)),
    "lstm": (LSTMCell, nn.LSTMCell),
    "gru": (GRUCell, nn.GRUCell),
}
NAMES = list(CELLS)


def make(name: str, bias: bool = True, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """A seqlab cell and its torch.nn twin in float64, independently initialised."""
    ours, theirs = CELLS[name]
    torch.manual_seed(seed)
    cell = ours(I, H, bias=bias).double()
    twin = theirs(I, H, bias=bias).double()
    return cell, twin


def random_state(name: str, seed: int = 1, batch: int = B):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(batch, H, generator=g, dtype=torch.float64)
    if name == "lstm":
        return h, torch.randn(batch, H, generator=g, dtype=torch.float64)
    return h


def random_input(seed: int = 2, batch: int = B) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, I, generator=g, dtype=torch.float64)


def torch_step(name: str, twin: nn.Module, x, state):
    """torch.nn's cell call in seqlab's contract: (h_t, state_t)."""
    if name == "lstm":
        h, c = twin(x, state)
        return h, (h, c)
    h = twin(x, state)
    return h, h


@torch.no_grad()
def fill_asymmetric(cell: nn.Module, scale: float = 0.8) -> None:
    """Deterministic, non-symmetric weights: no two entries, rows or gate blocks alike.

    Constant weights would make every unit (and every gate block of one kind) identical and so
    hide a swapped gate order; sin of distinct arguments does not.
    """
    for k, p in enumerate(cell.parameters()):
        idx = torch.arange(p.numel(), dtype=torch.float64)
        p.copy_((scale * torch.sin(0.73 * idx + 1.9 * k + 0.4)).reshape(p.shape))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name", NAMES)
def test_parameter_names_and_shapes_match_torch(name, bias):
    cell, twin = make(name, bias)
    ours = {k: tuple(v.shape) for k, v in cell.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in twin.state_dict().items()}
    assert ours == theirs


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name", NAMES)
def test_parity_seqlab_weights_into_torch(name, bias):
    cell, twin = make(name, bias, seed=3)
    twin.load_state_dict(cell.state_dict(), strict=True)
    x, state = random_input(), random_state(name)
    for s in (state, None):
        h, new_state = cell(x, s)
        h_ref, state_ref = torch_step(name, twin, x, s)
        assert_close(h, h_ref)
        assert_close(new_state, state_ref)


@pytest.mark.parametrize("name", NAMES)
def test_parity_torch_weights_into_seqlab(name):
    cell, twin = make(name, seed=4)
    cell.load_state_dict(twin.state_dict(), strict=True)
    x, state = random_input(5), random_state(name, 6)
    h, new_state = cell(x, state)
    h_ref, state_ref = torch_step(name, twin, x, state)
    assert_close(h, h_ref)
    assert_close(new_state, state_ref)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name", NAMES)
def test_parity_with_reference(name, bias):
    cell, _ = make(name, bias, seed=7)
    fill_asymmetric(cell)  # also covers the identity-initialised IRNN with generic weights
    x, state = random_input(8), random_state(name, 9)
    weights = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    h, new_state = cell(x, state)
    if name == "lstm":
        h_ref, c_ref, _ = ref_lstm_step(x, *state, *weights)
        assert_close(new_state, (h_ref, c_ref))
    elif name == "gru":
        h_ref, _ = ref_gru_step(x, state, *weights)
    else:
        h_ref = ref_rnn_step(x, state, *weights, nonlinearity=cell.nonlinearity)
    assert_close(h, h_ref)


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck(name):
    cell, _ = make(name, seed=10)
    params = {k: v.detach().clone().requires_grad_() for k, v in cell.named_parameters()}
    x = random_input(11, batch=2).requires_grad_()
    state = random_state(name, 12, batch=2)
    state = tuple(s.requires_grad_() for s in state) if name == "lstm" else state.requires_grad_()
    keys = list(params)
    flat_state = state if name == "lstm" else (state,)

    def f(x, *rest):
        p = dict(zip(keys, rest[:len(keys)], strict=True))
        s = rest[len(keys):]
        h, new_state = functional_call(cell, p, (x, s if name == "lstm" else s[0]))
        return new_state if name == "lstm" else h

    assert torch.autograd.gradcheck(f, (x, *params.values(), *flat_state))


def test_irnn_identity_init():
    torch.manual_seed(13)
    cell = RNNCell(I, H, nonlinearity="relu", identity_init=True)
    assert_close(cell.weight_hh, torch.eye(H))
    assert_close(cell.bias_ih, torch.zeros(H))
    assert_close(cell.bias_hh, torch.zeros(H))
    assert cell.weight_ih.abs().max() > 0  # W_ih keeps torch.nn's random init
    fill_asymmetric(cell)
    cell.reset_parameters()  # re-initialising restores the IRNN init
    assert_close(cell.weight_hh, torch.eye(H))
    assert_close(cell.bias_ih, torch.zeros(H))


def test_irnn_carries_state_unchanged_at_init():
    """W_hh = I and zero biases: with a zero input a non-negative state passes through as is."""
    cell = RNNCell(I, H, nonlinearity="relu", identity_init=True).double()
    h_prev = random_state("irnn", 14).abs()
    h, _ = cell(torch.zeros(B, I, dtype=torch.float64), h_prev)
    assert_close(h, h_prev)


def test_irnn_without_bias():
    cell = RNNCell(I, H, bias=False, nonlinearity="relu", identity_init=True)
    assert cell.bias_ih is None and cell.bias_hh is None
    assert_close(cell.weight_hh, torch.eye(H))


def forget_block(b: torch.Tensor) -> torch.Tensor:
    return b[H:2 * H]


@pytest.mark.parametrize("value", [1.0, 2.5, 0.0, -0.5])
def test_lstm_forget_bias(value):
    kwargs = {} if value == 1.0 else {"forget_bias": value}  # 1.0 is the default
    torch.manual_seed(15)
    cell = LSTMCell(I, H, **kwargs)
    assert_close(forget_block(cell.bias_ih) + forget_block(cell.bias_hh),
                 torch.full((H,), value))
    # the other gates' biases and all weights keep torch.nn's init (same seed, same draws)
    torch.manual_seed(15)
    twin = nn.LSTMCell(I, H)
    for k in ("weight_ih", "weight_hh"):
        assert_close(getattr(cell, k), getattr(twin, k))
    for k in ("bias_ih", "bias_hh"):
        keep = torch.ones(4 * H, dtype=torch.bool)
        keep[H:2 * H] = False
        assert_close(getattr(cell, k)[keep], getattr(twin, k)[keep])


def test_lstm_forget_bias_none_keeps_torch_init():
    torch.manual_seed(16)
    cell = LSTMCell(I, H, forget_bias=None)
    torch.manual_seed(16)
    twin = nn.LSTMCell(I, H)
    ours, theirs = cell.state_dict(), twin.state_dict()
    assert ours.keys() == theirs.keys()
    for k in ours:
        assert torch.equal(ours[k], theirs[k]), k


def test_lstm_forget_bias_without_bias_is_ignored():
    cell = LSTMCell(I, H, bias=False, forget_bias=1.0)
    assert cell.bias_ih is None and cell.bias_hh is None


def _swap_blocks(t: torch.Tensor, n: int, a: int, b: int) -> torch.Tensor:
    blocks = list(t.chunk(n, dim=0))
    blocks[a], blocks[b] = blocks[b], blocks[a]
    return torch.cat(blocks, dim=0)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_gate_order(name):
    """Packed order i, f, g, o (LSTM) and r, z, n (GRU), as torch.nn, with asymmetric weights."""
    cell, twin = make(name, seed=17)
    fill_asymmetric(cell)
    twin.load_state_dict(cell.state_dict())
    x, state = random_input(18), random_state(name, 19)
    weights = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    if name == "lstm":
        h, c, gates = cell.step_with_gates(x, state)
        _, _, ref = ref_lstm_step(x, *state, *weights)
        names, out = LSTM_GATES, torch.cat([h, c], dim=1)
    else:
        h, gates = cell.step_with_gates(x, state)
        _, ref = ref_gru_step(x, state, *weights)
        names, out = GRU_GATES, h
    assert gates._fields == names
    for gate in names:
        assert_close(getattr(gates, gate), ref[gate], msg=f"gate {gate}")
    h_torch, s_torch = torch_step(name, twin, x, state)
    assert_close(out, torch.cat(s_torch, dim=1) if name == "lstm" else h_torch)
    # the weights are generic enough that any swap of two gate blocks changes the result, so
    # the agreement above does pin the order
    n = len(names)
    for a, b in itertools.combinations(range(n), 2):
        with torch.no_grad():
            swapped = {k: _swap_blocks(v, n, a, b) for k, v in cell.state_dict().items()}
        h_swapped, s_swapped = functional_call(cell, swapped, (x, state))
        got = torch.cat(s_swapped, dim=1) if name == "lstm" else h_swapped
        assert (got - out).abs().max() > 1e-3, (names[a], names[b])


BIG = 40.0  # sigmoid(40) = 1 and sigmoid(-40) = 0 to within 1e-17


def _set_gate_bias(cell: nn.Module, index: int, value: float) -> None:
    hidden = cell.hidden_size
    with torch.no_grad():
        cell.bias_ih[index * hidden:(index + 1) * hidden] = value
        cell.bias_hh[index * hidden:(index + 1) * hidden] = 0.0


def test_lstm_gate_roles():
    """f open and i shut keep c; f shut and i open replace it with g; o shut silences h."""
    cell, _ = make("lstm", seed=20)
    fill_asymmetric(cell)
    x, (h_prev, c_prev) = random_input(21), random_state("lstm", 22)
    _set_gate_bias(cell, 1, BIG)
    _set_gate_bias(cell, 0, -BIG)
    _, c, gates = cell.step_with_gates(x, (h_prev, c_prev))
    assert_close(c, c_prev)
    _set_gate_bias(cell, 1, -BIG)
    _set_gate_bias(cell, 0, BIG)
    _set_gate_bias(cell, 3, -BIG)
    h, c, gates = cell.step_with_gates(x, (h_prev, c_prev))
    assert_close(c, gates.g)
    assert_close(h, torch.zeros_like(h))


def test_gru_gate_roles():
    """z open keeps h_prev; z and r shut give n computed from the input alone."""
    cell, _ = make("gru", seed=23)
    fill_asymmetric(cell)
    x, h_prev = random_input(24), random_state("gru", 25)
    _set_gate_bias(cell, 1, BIG)
    h, _ = cell(x, h_prev)
    assert_close(h, h_prev)
    _set_gate_bias(cell, 1, -BIG)
    _set_gate_bias(cell, 0, -BIG)
    h, _ = cell(x, h_prev)
    w_in, b_in = cell.weight_ih[2 * H:], cell.bias_ih[2 * H:]
    assert_close(h, torch.tanh(x @ w_in.T + b_in))


@pytest.mark.parametrize("name", NAMES)
def test_initial_state_is_zero(name):
    cell, _ = make(name, seed=26)
    x = random_input(27)
    state = cell.initial_state(B)
    for s in state if name == "lstm" else (state,):
        assert s.shape == (B, H) and s.dtype == torch.float64
        assert not s.any()
    assert_close(cell(x)[0], cell(x, state)[0])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(B, I + 1), (B,), (B, 1, I)])
def test_wrong_input_shape(name, shape):
    cell, _ = make(name)
    kind = type(cell).__name__
    x = torch.zeros(shape, dtype=torch.float64)
    with pytest.raises(ValueError, match=rf"^{kind}: expected input of shape \(B, {I}\), "
                                         rf"got {re.escape(str(shape))}$"):
        cell(x)


@pytest.mark.parametrize("cls", [RNNCell, LSTMCell, GRUCell])
@pytest.mark.parametrize(("field", "value"), [("input_size", 0), ("hidden_size", -2),
                                              ("hidden_size", 2.5), ("input_size", "3")])
def test_bad_sizes(cls, field, value):
    sizes = {"input_size": I, "hidden_size": H, field: value}
    with pytest.raises(ValueError,
                       match=rf"^{cls.__name__}: {field} must be a positive int, got {value!r}$"):
        cls(**sizes)


def test_bad_nonlinearity():
    with pytest.raises(ValueError, match=r"^RNNCell: nonlinearity must be 'tanh' or 'relu', "
                                         r"got 'sigmoid'$"):
        RNNCell(I, H, nonlinearity="sigmoid")


def test_identity_init_needs_relu():
    with pytest.raises(ValueError, match=r"^RNNCell: identity_init \(IRNN\) needs "
                                         r"nonlinearity='relu'$"):
        RNNCell(I, H, identity_init=True)


def test_default_init_bound():
    """torch.nn's U(-1/sqrt(H), 1/sqrt(H)) for every parameter of a plain cell."""
    torch.manual_seed(28)
    cell = GRUCell(I, 16)
    bound = 1.0 / math.sqrt(16)
    for p in cell.parameters():
        assert p.abs().max() <= bound
