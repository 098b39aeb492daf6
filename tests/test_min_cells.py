"""minGRU and minLSTM: the parallel log-space scan against the sequential step, on sequences
longer than the shared suites use (which run them too, through test_cells.py and
test_recurrent.py), with a carried state of either sign, padded batches and gradchecks; then
the command line: a tiny training run whose loss falls, and generation one step at a time."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from seqlab.cells import CELLS, CellSpec, MinGRUCell
from seqlab.cells.scan import (
    CHUNK,
    HOW,
    g,
    linear_recurrence,
    linear_sweep,
    log_g,
    log_scan,
    recurrence,
    scripted_recurrence,
)
from seqlab.cli import main
from seqlab.config import ModelConfig
from seqlab.models import build_model
from seqlab.recurrent import Recurrent

pytestmark = pytest.mark.usefixtures("single_thread")

CELL_NAMES = ["mingru", "minlstm"]
I, H = 3, 6


def stack(cell: str, layers: int = 2, seed: int = 0, dtype=torch.float64) -> Recurrent:
    """Weights off their init (scaled up) so that gates spread over (0, 1) and candidates
    fall on both branches of g."""
    torch.manual_seed(seed)
    model = Recurrent(cell, I, H, layers).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model


def inputs(batch: int, steps: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(batch, steps, I, generator=torch.Generator().manual_seed(seed),
                       dtype=dtype)


def signed_state(layers: int, batch: int, seed: int) -> torch.Tensor:
    """An initial state with entries of both signs: the log-space scan cannot take log h_0."""
    h = torch.randn(layers, batch, H, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64)
    assert (h < 0).any() and (h > 0).any()
    return h


def both_paths(model: Recurrent, *args, **kwargs):
    model.mode = "fused"
    fused = model(*args, **kwargs)
    model.mode = "explicit"
    explicit = model(*args, **kwargs)
    return fused, explicit


# ----- the scan itself ---------------------------------------------------------------------

def test_log_scan_solves_the_recurrence():
    """Against the loop h_t = a_t h_{t-1} + b_t, h_0 of both signs, a_t near 0 and near 1."""
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(2, 40, 4, generator=gen, dtype=torch.float64) * 0.999 + 0.0005
    b = torch.rand(2, 40, 4, generator=gen, dtype=torch.float64) * 3 + 1e-3
    h0 = torch.randn(2, 4, generator=gen, dtype=torch.float64)
    h, want = h0, []
    for t in range(40):
        h = a[:, t] * h + b[:, t]
        want.append(h)
    assert_close(log_scan(a.log(), b.log(), h0), torch.stack(want, dim=1), rtol=1e-12, atol=1e-12)


def test_log_scan_carries_the_state_past_the_end():
    gen = torch.Generator().manual_seed(1)
    log_a = -torch.rand(3, 9, 2, generator=gen, dtype=torch.float64)
    log_b = torch.randn(3, 9, 2, generator=gen, dtype=torch.float64)
    h0 = torch.randn(3, 2, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([9, 4, 1])
    alive = (torch.arange(9)[None, :] < lengths[:, None]).unsqueeze(-1)
    h = log_scan(log_a, log_b, h0, alive)
    for b, n in enumerate(lengths.tolist()):
        alone = log_scan(log_a[b:b + 1, :n], log_b[b:b + 1, :n], h0[b:b + 1])
        assert_close(h[b, :n], alone[0], rtol=1e-13, atol=1e-13)
        assert_close(h[b, n:], alone[0, -1].expand(9 - n, 2), rtol=1e-13, atol=1e-13)


def test_chunks_of_the_scan_join_exactly():
    """log_scan restarts every ``chunk`` steps from the state reached: any chunk size, padded
    or not, gives one scan's result."""
    gen = torch.Generator().manual_seed(19)
    log_a = -2 * torch.rand(3, 11, 2, generator=gen, dtype=torch.float64)
    log_b = torch.randn(3, 11, 2, generator=gen, dtype=torch.float64)
    h0 = torch.randn(3, 2, generator=gen, dtype=torch.float64)
    alive = (torch.arange(11)[None, :] < torch.tensor([11, 5, 3])[:, None]).unsqueeze(-1)
    for mask in (None, alive):
        whole = log_scan(log_a, log_b, h0, mask, chunk=11)
        for chunk in (1, 3, 4, 10):
            assert_close(log_scan(log_a, log_b, h0, mask, chunk=chunk), whole, rtol=1e-12,
                         atol=1e-12)


def test_the_scripted_loop_that_export_traces_is_the_scan():
    """What ``torch.onnx.export`` records instead of the scan (ONNX has no logcumsumexp): the
    linear-space loop, scripted, gives the scan's states, padded or not, past a chunk too."""
    gen = torch.Generator().manual_seed(23)
    log_a = -2 * torch.rand(3, CHUNK + 9, 2, generator=gen, dtype=torch.float64)
    log_b = torch.randn(3, CHUNK + 9, 2, generator=gen, dtype=torch.float64)
    h0 = torch.randn(3, 2, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([CHUNK + 9, 5, 1])
    alive = (torch.arange(CHUNK + 9)[None, :] < lengths[:, None]).unsqueeze(-1)
    loop = scripted_recurrence()
    for mask in (None, alive):
        a = log_a if mask is None else log_a.masked_fill(~mask, 0.0)
        b = log_b if mask is None else log_b.masked_fill(~mask, float("-inf"))
        assert_close(loop(a.exp(), b.exp(), h0), log_scan(log_a, log_b, h0, mask),
                     rtol=1e-11, atol=1e-11)
    assert loop(log_a[:, :1].exp(), log_b[:, :1].exp(), h0).shape == (3, 1, 2)


def test_g_is_positive_continuous_and_log_g_its_log():
    x = torch.linspace(-30, 30, 601, dtype=torch.float64)
    assert (g(x) > 0).all()
    assert_close(log_g(x), g(x).log(), rtol=1e-13, atol=1e-13)
    assert_close(g(torch.tensor([-1e-12, 0.0, 1e-12], dtype=torch.float64)),
                 torch.full((3,), 0.5, dtype=torch.float64))
    assert_close(g(torch.tensor([2.0, -2.0], dtype=torch.float64)),
                 torch.tensor([2.5, 1 / (1 + torch.e ** 2)], dtype=torch.float64))


def test_gradcheck_log_scan_with_padding():
    gen = torch.Generator().manual_seed(2)
    log_a = (-torch.rand(2, 5, 3, generator=gen, dtype=torch.float64)).requires_grad_()
    log_b = torch.randn(2, 5, 3, generator=gen, dtype=torch.float64).requires_grad_()
    h0 = torch.randn(2, 3, generator=gen, dtype=torch.float64).requires_grad_()
    alive = (torch.arange(5)[None, :] < torch.tensor([5, 2])[:, None]).unsqueeze(-1)
    for chunk in (5, 2):  # one scan, and three joined at the carried state
        assert torch.autograd.gradcheck(lambda a, b, h, c=chunk: log_scan(a, b, h, alive, c),
                                        (log_a, log_b, h0))


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_gradcheck_scan_weights_input_and_state(cell, how):
    """The scan and the sweep of each cell, by every parameter, the input and the initial
    state."""
    spec = CELLS[cell]
    torch.manual_seed(3)
    module = spec.module(I, H).double()
    w_ih = (3 * module.weight_ih.detach()).requires_grad_()
    b_ih = module.bias_ih.detach().clone().requires_grad_()
    x = inputs(2, 4, 4).requires_grad_()
    h0 = signed_state(1, 2, 5)[0].requires_grad_()

    def f(x, h0, w_ih, b_ih):
        return spec.scan(x, (h0,), w_ih, None, b_ih, None, how=how)

    assert torch.autograd.gradcheck(f, (x, h0, w_ih, b_ih))


def test_linear_sweep_solves_the_recurrence_with_its_gradient():
    """The sweep against the loop h_t = a_t h_{t-1} + b_t, and gradcheck of its hand-written
    backward in a, b and h_0 (a_t of any sign: the sweep needs no logs)."""
    gen = torch.Generator().manual_seed(29)
    a = torch.randn(3, 17, 4, generator=gen, dtype=torch.float64)
    b = torch.randn(3, 17, 4, generator=gen, dtype=torch.float64)
    h0 = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    assert_close(linear_sweep(a, b, h0), linear_recurrence(a, b, h0), rtol=1e-13, atol=1e-13)
    args = tuple(t[:, :6].clone().requires_grad_() if t.dim() == 3 else
                 t.clone().requires_grad_() for t in (a, b, h0))
    assert torch.autograd.gradcheck(linear_sweep, args)
    low = linear_sweep(a.bfloat16(), b.bfloat16(), h0.bfloat16())
    assert low.dtype == torch.float32  # bf16 in (autocast): the recurrence runs in float32


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_the_sweep_and_the_scan_agree_padded_with_a_signed_state(cell):
    """What a CPU runs (the sweep) and what other devices run (the log-space scan) give the
    same states and the same gradients, float64, padded, from a state of both signs."""
    spec = CELLS[cell]
    torch.manual_seed(31)
    weights = [(3 * w).requires_grad_() for w in (spec.module(I, H).double().weight_ih.detach(),
                                                  spec.module(I, H).double().bias_ih.detach())]
    x, h0 = inputs(3, 40, 32).requires_grad_(), signed_state(1, 3, 33)[0].requires_grad_()
    alive = (torch.arange(40)[None, :] < torch.tensor([40, 9, 1])[:, None]).unsqueeze(-1)
    found = {}
    for how in HOW:
        out = spec.scan(x, (h0,), weights[0], None, weights[1], None, alive, how=how)
        found[how] = (out, *torch.autograd.grad((out * out.detach().sin()).sum(),
                                                (x, h0, *weights)))
    for sweep, scan in zip(found["sweep"], found["scan"], strict=True):
        assert_close(sweep, scan, rtol=1e-10, atol=1e-12)


def test_fused_mode_on_a_cpu_runs_the_sweep():
    model = stack("mingru", layers=1)
    out, _ = model(inputs(2, 9, 34))
    assert "LinearSweep" in type(out.grad_fn).__name__
    with pytest.raises(ValueError, match="how must be one of sweep, scan or None"):
        recurrence(lambda in_logs: (torch.zeros(1, 2, 1),) * 2, torch.zeros(1, 1), how="loop")


# ----- scan against the sequential step, through Recurrent ----------------------------------

@pytest.mark.parametrize("cell", CELL_NAMES)
def test_parallel_equals_sequential_float64(cell):
    model = stack(cell, layers=2, seed=6)
    x, h0 = inputs(3, 200, 7), signed_state(2, 3, 8)
    assert model.fused
    (out, state), (out_ref, state_ref) = both_paths(model, x, h0)
    # 200 steps of products and sums: the two paths differ only by float64 rounding
    assert_close(out, out_ref, rtol=1e-10, atol=1e-12)
    assert_close(state, state_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("sizes", [[1] * 7, [3, 4], [5, 1, 1]], ids=["steps", "3+4", "5+1+1"])
def test_chunked_with_carried_state_equals_whole(cell, sizes):
    """The scan run in chunks, carrying a signed state, equals one call: h_0 enters exactly."""
    model = stack(cell, layers=2, seed=9)
    x, h0 = inputs(2, sum(sizes), 10), signed_state(2, 2, 11)
    whole, final = model(x, h0)
    outs, state, start = [], h0, 0
    for size in sizes:
        out, state = model(x[:, start:start + size], state)
        outs.append(out)
        start += size
    assert_close(torch.cat(outs, dim=1), whole, rtol=1e-12, atol=1e-12)
    assert_close(state, final, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_padded_batch_equals_each_sequence(cell):
    model = stack(cell, layers=2, seed=12)
    lengths = [30, 7, 1, 19]
    x, h0 = inputs(4, 30, 13), signed_state(2, 4, 14)
    x[1, 7:] = float("nan")  # what lies past an end never enters
    out, state = model(x, h0, torch.tensor(lengths))
    for b, n in enumerate(lengths):
        alone, final = model(x[b:b + 1, :n], h0[:, b:b + 1])
        assert_close(out[b, :n], alone[0], rtol=1e-12, atol=1e-12)
        assert not out[b, n:].any()
        assert_close(state[:, b], final[:, 0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_float32_scan_and_sweep_stay_close_on_long_sequences(cell):
    """float32 against the float64 loop over 2048 steps. Within a scan log A_t grows like -t
    and float32 keeps it to about |log A_t| * 6e-8; restarting every CHUNK steps bounds the
    relative error by about CHUNK * 6e-8 whatever T. The sweep rounds as the one-step
    modules do: about 1e-7 a step, not growing."""
    model = stack(cell, layers=1, seed=15)
    x = inputs(2, 2048, 16)
    model.mode = "explicit"
    with torch.no_grad():
        want, _ = model(x)
        model.float()
        state = (model.initial_state(2)[0],)
        for how, bound in (("scan", 5 * CHUNK * 6e-8), ("sweep", 5e-6)):
            got = model.spec.scan(x.float(), state, *model.layer_weights(0), how=how)
            err = ((got.double() - want).abs() / want.abs().clamp_min(1.0)).max().item()
            assert err < bound, (how, err)  # one scan over all 2048 steps: 2.6e-4 (mingru)


# ----- the spec ----------------------------------------------------------------------------

def test_specs():
    for name, blocks in (("mingru", 2), ("minlstm", 3)):
        spec = CELLS[name]
        assert spec.input_only and spec.scan is not None and spec.kernel is None
        assert spec.blocks == blocks and spec.weight_names == ("weight_ih", "bias_ih")
        assert not spec.elman
    model = Recurrent("minlstm", I, H, 2)
    assert {n for n, _ in model.named_parameters()} == {
        f"core.{n}_l{k}" for k in range(2) for n in ("weight_ih", "bias_ih")}
    assert model.layer_weights(1).w_hh is None and model.layer_weights(1).b_hh is None
    assert MinGRUCell(I, H, bias=False).bias_ih is None


def test_scan_needs_input_only_gates_and_state_h():
    step = CELLS["mingru"].step
    with pytest.raises(ValueError, match=r"^CellSpec x: a scan needs input_only gates and the "
                                         r"state \('h',\)$"):
        CellSpec(name="x", module=MinGRUCell, step=step, scan=CELLS["mingru"].scan)
    with pytest.raises(ValueError, match=r"^CellSpec x: torch.nn's kernels all have W_hh; an "
                                         r"input_only cell has none$"):
        CellSpec(name="x", module=MinGRUCell, step=step, input_only=True, kernel=nn.GRU)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_language_model_generates_step_by_step(cell):
    """A language model fed a prompt, then one token at a time with its state carried (how
    generation runs), gives the logits of one call on the whole sequence."""
    torch.manual_seed(17)
    model = build_model(ModelConfig(model=cell, vocab_size=9, embedding_size=4, hidden_size=8,
                                    num_layers=2)).double().eval()
    tokens = torch.randint(0, 9, (2, 12), generator=torch.Generator().manual_seed(18))
    with torch.no_grad():
        whole, _ = model(tokens)
        logits, state = model(tokens[:, :5])
        steps = [logits]
        for t in range(5, 12):
            logits, state = model(tokens[:, t:t + 1], state)
            steps.append(logits)
    assert_close(torch.cat(steps, dim=1), whole, rtol=1e-12, atol=1e-12)


# ----- the command line ------------------------------------------------------------------------

def test_model_choices_list_them(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["train", "--help"])
    assert exit.value.code == 0
    (choices,) = {line.split("{")[1].split("}")[0] for line in capsys.readouterr().out.splitlines()
                  if line.strip().startswith("--model {")}
    assert choices.split(",")[4:6] == CELL_NAMES


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_trains_through_the_cli_then_generates(cell, text_file, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", str(text_file), "--model", cell, "--hidden-size", "32", "--embedding-size",
            "16", "--seq-len", "32", "--batch-size", "8", "--max-steps", "40", "--eval-every",
            "40", "--log-every", "10", "--seed", "0", "--device", "cpu", "--quiet", "--out",
            str(run)]
    assert main(argv) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 4 and losses[-1] < losses[0] - 0.2, losses
    assert json.loads((run / "config.json").read_text())["model"]["model"] == cell
    capsys.readouterr()
    assert main(["generate", str(run), "--prompt", "the ", "--length", "30", "--seed", "1"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("the ") and len(text.rstrip("\n")) >= 30
