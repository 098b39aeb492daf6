"""The LSTM's and the GRU's sweeps (a layer as one autograd node with a hand-written backward)
against a naive loop of the cell's own step (float64, every gradient), gradcheck, padding;
the workspace they reuse (a block is never handed out while a graph still holds it, so a
retained graph's second backward gives the same gradients); which path fused mode runs on a
CPU (the GRU's sweep, except while traced for export; the LSTM's oneDNN kernel)."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from seqlab.cells import CELLS, replaced_cell
from seqlab.cells.registry import LayerWeights
from seqlab.cells.workspace import SHORT, WORKSPACE, Workspace
from seqlab.recurrent import Recurrent

T, B, I, H = 21, 3, 4, 5  # more steps than the LSTM sweep's ring of 16
LENGTHS = torch.tensor([21, 9, 1])
SWEPT = ["lstm", "gru"]


def inputs(cell: str, seed: int = 0, dtype=torch.float64) -> list[torch.Tensor]:
    """x (T, B, I), w_ih, w_hh, b_ih, b_hh, then the state's tensors, all requiring grad."""
    gen = torch.Generator().manual_seed(seed)
    rows = CELLS[cell].blocks * H
    shapes = [(T, B, I), (rows, I), (rows, H), (rows,), (rows,),
              *((B, H) for _ in CELLS[cell].state)]
    return [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in shapes]


def alive_mask(padded: bool) -> torch.Tensor | None:
    return (torch.arange(T)[:, None] < LENGTHS[None, :]).unsqueeze(-1) if padded else None


def swept(cell: str, args: list[torch.Tensor], alive) -> tuple[torch.Tensor, ...]:
    hs, final = CELLS[cell].sweep(args[0], LayerWeights(*args[1:5]), tuple(args[5:]), alive)
    return (hs, *final)


def stepped(cell: str, args: list[torch.Tensor], alive) -> tuple[torch.Tensor, ...]:
    """The naive loop: the cell's registered step at every step, the state carried past a
    sequence's end."""
    state, hs = tuple(args[5:]), []
    for t in range(T):
        new, _ = CELLS[cell].step(args[0][t], state, *args[1:5])
        if alive is not None:
            new = tuple(torch.where(alive[t], n, s) for n, s in zip(new, state, strict=True))
        state = new
        hs.append(state[0])
    return (torch.stack(hs), *state)


def with_grads(outputs: tuple[torch.Tensor, ...], args: list[torch.Tensor]) -> list[torch.Tensor]:
    weights = [torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o) for o in outputs]
    loss = sum((o * w).sum() + (o ** 2).sum() for o, w in zip(outputs, weights, strict=True))
    return [*(o.detach() for o in outputs), *torch.autograd.grad(loss, args)]


@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("cell", SWEPT)
def test_sweep_equals_the_cells_step_in_a_loop(cell, padded):
    args, alive = inputs(cell), alive_mask(padded)
    want = with_grads(stepped(cell, args, alive), args)
    got = with_grads(swept(cell, args, alive), args)
    assert len(got) == len(want) == len(args) + 1 + len(CELLS[cell].state)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("cell", SWEPT)
def test_sweep_gradcheck(cell, padded):
    args, alive = inputs(cell, seed=1), alive_mask(padded)
    assert torch.autograd.gradcheck(lambda *a: swept(cell, list(a), alive), tuple(args))


@pytest.mark.parametrize("cell", SWEPT)
def test_sweep_without_biases_and_with_frozen_weights(cell):
    """b_ih and b_hh None (a layer without biases), then W_hh frozen: the other gradients are
    unchanged and W_hh gets none."""
    args = inputs(cell, seed=2)
    args[3] = args[4] = None
    leaves = [a for a in args if a is not None]

    def grads(use):
        outputs = use(cell, args, None)
        return with_grads(outputs, leaves)

    for g, w in zip(grads(swept), grads(stepped), strict=True):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    args[2].requires_grad_(False)
    leaves = [a for a in leaves if a is not args[2]]
    for g, w in zip(grads(swept), grads(stepped), strict=True):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", SWEPT)
def test_padded_training_through_the_sweep_equals_the_packed_kernel(cell):
    """Fused mode with unequal lengths: the sweep it now trains through against torch.nn's
    packed kernel (outputs, final state, every gradient)."""
    torch.manual_seed(5)
    model = Recurrent(cell, I, H, num_layers=2).double()
    x = torch.randn(B, T, I, dtype=torch.float64)

    def run(spec):
        model.spec = spec
        inputs = x.clone().requires_grad_()
        out, final = model(inputs, lengths=LENGTHS)
        finals = final if isinstance(final, tuple) else (final,)
        outputs = (out, *finals)
        loss = sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o)).sum()
                   for o in outputs)
        return [*(o.detach() for o in outputs),
                *torch.autograd.grad(loss, [inputs, *model.parameters()])], grad_nodes(out)

    swept, nodes = run(CELLS[cell])
    assert any(name.endswith("SweepBackward") for name in nodes)
    kernel, nodes = run(dataclasses.replace(CELLS[cell], sweep=None, sweep_on_cpu=False))
    assert not any(name.endswith("SweepBackward") for name in nodes)
    for got, want in zip(swept, kernel, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cell", SWEPT)
def test_sweep_without_grad_keeps_nothing(cell, monkeypatch):
    """Under no_grad (evaluation, generation) the outputs are the same and nothing is kept
    for a backward."""
    args = inputs(cell, seed=3)
    want = [o.detach() for o in stepped(cell, args, None)]

    def refuse(*args):
        raise AssertionError("leased workspace without a backward to come")

    monkeypatch.setattr(WORKSPACE, "lease", refuse)
    with torch.no_grad():
        got = swept(cell, args, None)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    with pytest.raises(AssertionError, match="leased"):  # and with grad it does lease
        swept(cell, args, None)


@pytest.mark.parametrize("cell", SWEPT)
def test_retained_graph_backward_twice_while_other_graphs_run(cell):
    """A retained graph's buffers stay its own while other forward and backward passes take
    and return workspace: its second backward equals its first."""
    args = inputs(cell, seed=4)
    outputs = swept(cell, args, None)
    loss = sum((o ** 2).sum() for o in outputs)
    first = torch.autograd.grad(loss, args, retain_graph=True)
    for seed in (5, 6):  # other graphs, with other numbers, through the same workspace
        other = inputs(cell, seed=seed)
        torch.autograd.grad(sum(o.sum() for o in swept(cell, other, None)), other)
    second = torch.autograd.grad(loss, args)
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_workspace_reuses_returned_blocks_and_keeps_its_limits():
    space = Workspace(keep=2, limit=10_000)
    like = torch.zeros(())
    block = space.take(like, 4, 5)
    space.give(block)
    again = space.take(like, 2, 3)  # a smaller shape: a leading slice of the same block
    assert again.shape == (2, 3) and again.data_ptr() == block.data_ptr()
    assert space.take(like, 1, 1).data_ptr() != block.data_ptr()  # handed out: not twice
    space.give(*(space.take(like, 10) for _ in range(3)))
    assert len(space.free) == 2  # keep
    space.clear()
    space.give(space.take(like, 2000), space.take(like, 2000))  # 8,000 bytes each
    assert len(space.free) == 1  # limit
    lease = space.lease(like, (3, 4), (2,))
    assert [t.shape for t in lease.tensors] == [(3, 4), (2,)]
    space.clear()
    del lease
    assert len(space.free) == 2  # back when the lease is freed
    assert space.take(torch.zeros((), dtype=torch.float64), 3).dtype == torch.float64


def grad_nodes(tensor: torch.Tensor) -> set[str]:
    """Names of every node in tensor's autograd graph."""
    seen, todo, names = set(), [tensor.grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        todo.extend(n for n, _ in node.next_functions)
    return names


def test_fused_mode_on_a_cpu_trains_the_gru_and_padded_batches_through_the_sweeps():
    torch.manual_seed(0)
    x = torch.randn(B, T, I, requires_grad=True)
    gru = Recurrent("gru", I, H, num_layers=2)
    assert "_GRUSweepBackward" in grad_nodes(gru(x)[0])
    with torch.no_grad():  # no backward to come: the kernel's forward is the faster
        assert gru._sweep_beats_kernel(x) is False
    assert gru._sweep_beats_kernel(x[:, :SHORT]) is True
    assert gru._sweep_beats_kernel(x[:, :SHORT - 1]) is False  # too short to pay
    gru.requires_grad_(False)
    assert gru._sweep_beats_kernel(x.detach()) is False  # nothing learns
    assert gru._sweep_beats_kernel(x) is True  # x does
    gru.requires_grad_(True)
    gru.spec = dataclasses.replace(gru.spec, sweep_on_cpu=False)
    assert "_GRUSweepBackward" not in grad_nodes(gru(x)[0])
    lstm = Recurrent("lstm", I, H)
    assert "_LSTMSweepBackward" not in grad_nodes(lstm(x)[0])
    # a padded batch of unequal lengths trains through the sweep (the packed kernel's
    # backward is the slow one); equal lengths, or no backward, keep the kernel
    assert "_LSTMSweepBackward" in grad_nodes(lstm(x, lengths=LENGTHS)[0])
    full = torch.full((B,), T)
    assert "_LSTMSweepBackward" not in grad_nodes(lstm(x, lengths=full)[0])
    with torch.no_grad():
        assert lstm._sweep_beats_kernel(x, LENGTHS) is False
    assert lstm._sweep_beats_kernel(x[:, :SHORT - 1], torch.tensor([3, 2, 1])) is False
    lstm.mode = "explicit"
    assert "_LSTMSweepBackward" in grad_nodes(lstm(x)[0])
    gru.spec = CELLS["gru"]
    gru.compiled = True  # a compiled step, an autocast region, a trace: never the sweep
    with torch.no_grad():
        assert gru._sweep_beats_kernel(x) is False
    gru.compiled = False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert gru._sweep_beats_kernel(x) is False
    with warnings.catch_warnings():  # the tracer's notes on shape checks
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(gru, (x.detach(),), check_trace=False)
    assert "aten::gru" in str(traced.inlined_graph)
    torch.testing.assert_close(traced(x.detach())[0], gru(x.detach())[0])


def test_replaced_cell_swaps_a_spec_for_a_block_and_restores_it_after_an_error():
    original = CELLS["gru"]
    with pytest.raises(RuntimeError, match="inside"):
        with replaced_cell("gru", sweep_on_cpu=False) as spec:
            assert CELLS["gru"] is spec and spec.sweep_on_cpu is False
            assert Recurrent("gru", I, H).spec is spec
            raise RuntimeError("inside")
    assert CELLS["gru"] is original and list(CELLS).count("gru") == 1
    order = list(CELLS)
    with replaced_cell("lstm", sweep=None):
        assert list(CELLS) == order  # the model names keep their order
