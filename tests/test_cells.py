"""seqlab.cells: every registered cell module through the shared suite (cell_suite.py) against
torch.nn's cells, the naive reference and autograd (float64), then each cell's own equations,
gate order and initialisation."""

from __future__ import annotations

import itertools
import math
from functools import partial

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.testing import assert_close

from cell_suite import (
    B,
    CellModuleSuite,
    H,
    I,
    fill_asymmetric,
    make,
    random_input,
    random_state,
    registered,
    torch_step,
)
from reference import GRU_GATES, LSTM_GATES, elman, ref_gru_step, ref_lstm_step
from seqlab.cells import CELLS, CellSpec, GRUCell, LSTMCell, RNNCell, register_cell
from seqlab.cells.rnn import elman_step

# tiny tensors: one thread avoids oversubscribing two shared cores (see conftest.py)
pytestmark = pytest.mark.usefixtures("single_thread")

# RNNCell's third setting, ReLU without the identity init, is no registered model; registered
# for the duration of one test, it goes through the same suite
RNN_RELU = CellSpec(name="rnn_relu", module=partial(RNNCell, nonlinearity="relu"),
                    step=partial(elman_step, nonlinearity="relu"),
                    kernel=partial(nn.RNN, nonlinearity="relu"),
                    torch_cell=partial(nn.RNNCell, nonlinearity="relu"))


@pytest.fixture(params=[*CELLS, RNN_RELU.name])
def cell(request):
    if request.param != RNN_RELU.name:
        yield request.param
        return
    with registered(RNN_RELU, elman("relu")) as name:
        yield name


class TestCellModule(CellModuleSuite):
    """The shared suite, once per registered cell (and RNNCell with plain ReLU)."""


def test_registry_names_and_kinds():
    assert list(CELLS) == ["rnn", "irnn", "lstm", "gru", "mingru", "minlstm"]
    assert {n: (s.state, s.blocks, s.gates) for n, s in CELLS.items()} == {
        "rnn": (("h",), 1, ()), "irnn": (("h",), 1, ()),
        "lstm": (("h", "c"), 4, ("i", "f", "g", "o")), "gru": (("h",), 3, ("r", "z", "n")),
        "mingru": (("h",), 2, ("z", "h_tilde")), "minlstm": (("h",), 3, ("f", "i", "h_tilde"))}
    assert [n for n, s in CELLS.items() if s.elman] == ["rnn", "irnn"]
    assert CELLS["lstm"].block_names == ("i", "f", "g", "o")
    assert CELLS["rnn"].block_names == ("W_hh",)


def test_register_errors():
    with pytest.raises(ValueError, match=r"^register_cell: a cell named 'lstm' is already "
                                         r"registered$"):
        register_cell(CELLS["lstm"])
    with pytest.raises(TypeError, match=r"^register_cell: expected a CellSpec, got str$"):
        register_cell("lstm")
    with pytest.raises(ValueError, match=r"^CellSpec x: state must be \('h',\) or \('h', 'c'\), "
                                         r"got \('h', 'c', 'm'\)$"):
        CellSpec(name="x", module=RNNCell, step=elman_step, state=("h", "c", "m"))
    with pytest.raises(ValueError, match=r"^CellSpec x: sigmoid_gates \['q'\] are not all "
                                         r"among its gates \('z',\)$"):
        CellSpec(name="x", module=RNNCell, step=elman_step, gates=("z",),
                 sigmoid_gates=frozenset({"q"}))
    with pytest.raises(ValueError, match=r"^CellSpec x: blocks must be a positive int, got 0$"):
        CellSpec(name="x", module=RNNCell, step=elman_step, blocks=0)
    with registered(RNN_RELU, elman("relu")):
        assert "rnn_relu" in CELLS
    assert "rnn_relu" not in CELLS


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
    assert gates._fields == names == CELLS[name].gates
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
