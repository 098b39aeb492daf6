"""A cell defined here and nowhere else gets the whole parity suite by being registered.

Two toys with no fused torch.nn kernel and no torch.nn twin: an Elman cell with a softsign
activation (state h, one block, no gates) and a coupled-gate cell (state (h, c), two blocks, a
sigmoid and a tanh gate). The ``cell`` fixture registers each, with its naive reference, for
the duration of this module; the suites of cell_suite.py and recurrent_suite.py then run on it
unchanged, and it is a model name for the config, the models, training and diagnostics.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import seqlab
from cell_suite import CellModuleSuite, registered
from recurrent_suite import RecurrentSuite
from reference import Reference
from seqlab.cells import CELLS, Cell, CellSpec
from seqlab.cli import main
from seqlab.config import ModelConfig
from seqlab.diagnostics import Probe, gate_statistics, jacobian_norms, spectral_radius
from seqlab.models import MODELS, build_model
from seqlab.models.sequence import SequenceModel
from seqlab.recurrent import Recurrent

pytestmark = pytest.mark.usefixtures("single_thread")


# ----- the toys, from their equations ------------------------------------------------------

def softsign_step(x: Tensor, state: tuple[Tensor], w_ih: Tensor, w_hh: Tensor,
                  b_ih: Tensor | None, b_hh: Tensor | None) -> tuple[tuple[Tensor], tuple]:
    """h_t = softsign(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), softsign(a) = a / (1 + |a|)."""
    pre = nn.functional.linear(x, w_ih, b_ih) + nn.functional.linear(state[0], w_hh, b_hh)
    return (nn.functional.softsign(pre),), ()  # (1)


def coupled_step(x: Tensor, state: tuple[Tensor, Tensor], w_ih: Tensor, w_hh: Tensor,
                 b_ih: Tensor | None, b_hh: Tensor | None
                 ) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """f = sigmoid(W_if x + b_if + W_hf h + b_hf) (1); g = tanh(W_ig x + b_ig + W_hg h + b_hg)
    (2); c_t = f c + (1 - f) g (3); h_t = tanh(c_t) (4). Blocks packed f, g."""
    h_prev, c_prev = state
    pre = nn.functional.linear(x, w_ih, b_ih) + nn.functional.linear(h_prev, w_hh, b_hh)
    pre_f, pre_g = pre.chunk(2, dim=-1)
    f = torch.sigmoid(pre_f)  # (1) keep gate
    g = torch.tanh(pre_g)  # (2) candidate
    c = f * c_prev + (1 - f) * g  # (3) coupled update
    h = torch.tanh(c)  # (4) output
    return (h, c), (f, g)


class ToyCell(Cell):
    """One step of a toy: its step function on its own parameters."""

    step = None  # the toy's step function
    paired = False  # state (h, c) rather than h

    def initial_state(self, batch_size: int, device=None, dtype=None):
        h = super().initial_state(batch_size, device, dtype)
        return (h, torch.zeros_like(h)) if self.paired else h

    def forward(self, x_t: Tensor, state=None):
        self._check_input(x_t)
        state = self.initial_state(x_t.shape[0]) if state is None else state
        parts = state if self.paired else (state,)
        new, _ = type(self).step(x_t, parts, self.weight_ih, self.weight_hh, self.bias_ih,
                                 self.bias_hh)
        return new[0], (new if self.paired else new[0])


class SoftsignCell(ToyCell):
    step = staticmethod(softsign_step)


class CoupledCell(ToyCell):
    num_chunks = 2
    paired = True
    step = staticmethod(coupled_step)


SOFTSIGN = CellSpec(name="softsign", module=SoftsignCell, step=softsign_step)
COUPLED = CellSpec(name="coupled", module=CoupledCell, step=coupled_step, state=("h", "c"),
                   blocks=2, gates=("f", "g"), sigmoid_gates=frozenset({"f"}))


# ----- their naive references: one product per block, elementwise formulas ---------------

def _affine(v: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    return v @ w.T if b is None else v @ w.T + b


def ref_softsign(x, state, w_ih, w_hh, b_ih, b_hh):
    pre = _affine(x, w_ih, b_ih) + _affine(state[0], w_hh, b_hh)
    return (pre / (1 + pre.abs()),), {}


def ref_coupled(x, state, w_ih, w_hh, b_ih, b_hh):
    hidden = w_hh.shape[1]
    rows = {"f": slice(0, hidden), "g": slice(hidden, 2 * hidden)}

    def pre(k: str) -> Tensor:
        r = rows[k]
        return (_affine(x, w_ih[r], None if b_ih is None else b_ih[r])
                + _affine(state[0], w_hh[r], None if b_hh is None else b_hh[r]))

    f = 1 / (1 + torch.exp(-pre("f")))
    g = torch.tanh(pre("g"))
    c = f * state[1] + (1 - f) * g
    return (torch.tanh(c), c), {"f": f, "g": g}


TOYS = {"softsign": (SOFTSIGN, Reference(ref_softsign)),
        "coupled": (COUPLED, Reference(ref_coupled, states=2))}


@pytest.fixture(params=list(TOYS))
def cell(request):
    """Each toy, registered (with its reference) for the one test that asks for it."""
    with registered(*TOYS[request.param]) as name:
        yield name


# ----- the shared suites, not a line of them here ----------------------------------------

class TestToyCellModule(CellModuleSuite):
    """cell_suite.py on the toys."""


class TestToyRecurrent(RecurrentSuite):
    """recurrent_suite.py on the toys."""


# ----- what registering one makes of it -----------------------------------------------------

def test_registered_only_while_the_fixture_holds_it(cell):
    assert cell in CELLS and cell in MODELS
    assert list(CELLS)[:4] == ["rnn", "irnn", "lstm", "gru"]


def test_no_kernel_means_a_plain_core_and_the_loop(cell):
    model = Recurrent(cell, 3, 5, 2)
    assert type(model.core).__name__ == "StackWeights" and not model.fused
    assert model.mode == "fused"  # the default stays; it runs the explicit loop
    rows = CELLS[cell].blocks * 5
    assert model.layer_weights(1).w_ih.shape == (rows, 5)
    bound = 1 / 5 ** 0.5  # torch.nn's uniform init
    assert all(p.abs().max() <= bound for p in model.parameters())


def test_a_model_name_for_config_models_and_diagnostics(cell):
    config = ModelConfig(model=cell, vocab_size=7, embedding_size=4, hidden_size=6)
    torch.manual_seed(0)
    model = build_model(config).double()
    assert model.recurrent.spec is CELLS[cell]
    assert {k for k in model.state_dict() if k.startswith("recurrent.")} == {
        f"recurrent.core.{n}_l0" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    tokens = torch.randint(0, 7, (3, 9), generator=torch.Generator().manual_seed(1))
    logits, _ = model(tokens)
    assert logits.shape == (3, 9, 7)
    probe = Probe.from_tokens(tokens)
    assert tuple(spectral_radius(model)["layer0"]) == CELLS[cell].block_names
    stats = gate_statistics(model, probe)
    assert tuple(stats) == CELLS[cell].gates
    for name, values in stats.items():  # a sigmoid gate in (0, 1), a tanh one in (-1, 1)
        low = 0.0 if name in CELLS[cell].sigmoid_gates else -1.0
        assert all(low < m < 1.0 for m in values["mean"])
    assert jacobian_norms(model, probe).shape == (7,)
    sequence = SequenceModel(config, "real", 2, 1)
    assert sequence.recurrent.spec is CELLS[cell]


def test_trains_and_loads_through_the_api(cell, text_file, tiny_keys, tmp_path):
    keys = tiny_keys | dict(model=cell, max_steps=3, eval_every=3)
    result = seqlab.train(text_file, out=tmp_path / "run", **keys)
    loaded = seqlab.load_run(tmp_path / "run")
    for a, b in zip(result.model.state_dict().values(), loaded.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert loaded.model.recurrent.spec is CELLS[cell]


def test_a_choice_of_the_command_line(cell, text_file, tmp_path):
    argv = ["train", str(text_file), "--model", cell, "--hidden-size", "8", "--embedding-size",
            "4", "--seq-len", "8", "--batch-size", "4", "--max-steps", "2", "--eval-every", "2",
            "--device", "cpu", "--quiet", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    assert seqlab.load_run(tmp_path / "run").model.recurrent.spec is CELLS[cell]


def test_unknown_once_unregistered():
    with registered(*TOYS["softsign"]):
        assert ModelConfig(model="softsign").model == "softsign"
    with pytest.raises(ValueError, match=r"^unknown model 'softsign'; choose from rnn, irnn, "
                                         r"lstm, gru, mingru, minlstm, window-mlp, bow$"):
        ModelConfig(model="softsign")
    assert "softsign" not in MODELS
