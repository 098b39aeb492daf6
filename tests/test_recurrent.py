"""seqlab.recurrent: every registered cell through the shared suite (recurrent_suite.py), then
what is particular to one cell (its gates' equations, its initialisation) and the errors.
"""

from __future__ import annotations

import math
import re
import warnings

import pytest
import torch
from torch.testing import assert_close

from recurrent_suite import B, H, I, RecurrentSuite, T, make, random_input, random_state
from seqlab.cells import CELLS, GATE_NAMES
from seqlab.recurrent import MODES, Recurrent

# tiny tensors: one thread avoids oversubscribing two shared cores (see conftest.py)
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(params=list(CELLS))
def cell(request) -> str:
    return request.param


class TestRecurrent(RecurrentSuite):
    """The shared suite, once per registered cell."""


def test_gate_names_follow_the_registry():
    assert dict(GATE_NAMES) == {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"),
                                "mingru": ("z", "h_tilde"), "minlstm": ("f", "i", "h_tilde")}
    assert MODES == ("fused", "explicit")


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


# ----- initialisation ---------------------------------------------------------------------

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


@pytest.mark.parametrize("cell", [name for name, spec in CELLS.items() if spec.kernel])
def test_same_draws_as_the_torch_kernel(cell):
    """Seeded, a stack holds the very numbers torch.nn's module draws, then the cell's own
    init: runs seeded before the registry build the same weights."""
    torch.manual_seed(47)
    model = Recurrent(cell, I, H, 2)
    torch.manual_seed(47)
    kernel = CELLS[cell].kernel(I, H, 2, batch_first=True)
    kernel.reset_parameters()  # Recurrent re-initialises once after construction
    for name, value in kernel.state_dict().items():
        if CELLS[cell].reset is None:
            assert torch.equal(model.core.state_dict()[name], value), name
        elif name.startswith("weight_ih"):  # no cell's own init touches W_ih
            assert torch.equal(model.core.state_dict()[name], value), name


# ----- errors -------------------------------------------------------------------------------

def test_unknown_cell():
    msg = (r"^Recurrent: unknown cell 'lstmx'; choose from rnn, irnn, lstm, gru, mingru, "
           r"minlstm$")
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
def test_wrong_lstm_cell_state_shape(mode):
    model = Recurrent("lstm", I, H, 2, mode=mode).double()
    state = (torch.zeros(2, B, H, dtype=torch.float64), torch.zeros(2, 1, H, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^Recurrent: expected a state of shape"):
        model(random_input(), state)
