"""The explicit loop's fast path and ``--compile``: the loop with every step's input projected
before it and W_hh's gradient made after it against the plain per-step loop, the compiled step
against the uncompiled one (outputs and gradients), and ``seqlab train --compile`` on tiny data,
resumed, and refused in one line where torch.compile cannot run."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

import seqlab
from seqlab.cli import main
from seqlab.recurrent import Recurrent, set_compiled
from seqlab.recurrent_loop import check_compile

B, T, I, H = 3, 5, 4, 6


def outputs_and_grads(model: Recurrent, x: torch.Tensor, state, lengths=None):
    """Output, final state and the gradient of every parameter, of x and of the state."""
    x = x.detach().requires_grad_()
    parts = tuple(s.detach().requires_grad_() for s in state)
    out, final = model(x, parts if model.paired else parts[0], lengths)
    finals = final if isinstance(final, tuple) else (final,)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    loss = (out * weights).sum() + sum((f ** 2).sum() for f in finals)
    leaves = [x, *parts, *(p for p in model.parameters() if p.requires_grad)]
    grads = torch.autograd.grad(loss, leaves)
    return [out.detach(), *(f.detach() for f in finals), *grads]


def make(cell: str, layers: int = 2, dtype=torch.float64) -> tuple[Recurrent, torch.Tensor, tuple]:
    torch.manual_seed(7)
    model = Recurrent(cell, I, H, layers, mode="explicit").to(dtype)
    x = torch.randn(B, T, I, dtype=dtype)
    state = tuple(torch.randn(layers, B, H, dtype=dtype) for _ in model.spec.state)
    return model, x, state


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("padded", [False, True])
def test_projected_loop_equals_the_per_step_loop(cell, padded):
    """The cell's sweep (where it has one), its projected loop of recur, and its own step at
    every step: the same outputs and gradients."""
    model, x, state = make(cell)
    lengths = torch.tensor([5, 2, 4]) if padded else None
    runs = [outputs_and_grads(model, x, state, lengths)]
    model.spec = dataclasses.replace(model.spec, sweep=None, sweep_on_cpu=False)  # recur
    runs.append(outputs_and_grads(model, x, state, lengths))
    model.spec = dataclasses.replace(model.spec, recur=None)  # the cell's step, as it is
    runs.append(outputs_and_grads(model, x, state, lengths))
    for run in runs[:2]:
        for got, want in zip(run, runs[2], strict=True):
            torch.testing.assert_close(got, want)


def test_frozen_recurrent_weights_get_no_gradient_and_the_rest_is_unchanged():
    model, x, state = make("gru", layers=1)
    want = outputs_and_grads(model, x, state)
    model.core.weight_hh_l0.requires_grad_(False)
    got = outputs_and_grads(model, x, state)
    names = [n for n, _ in model.named_parameters()]
    del want[4 + names.index("core.weight_hh_l0")]  # output, final h, x, state, then params
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


@pytest.mark.slow  # about 10-25 s of compilation on two shared cores
def test_compiled_step_equals_the_uncompiled_one(caplog, monkeypatch, single_thread):
    """One tiny case: torch.compile of the LSTM's step, forward and backward (float32)."""
    monkeypatch.setattr("seqlab.recurrent_loop._COMPILED", {})  # its first call logs again
    model, x, state = make("lstm", layers=1, dtype=torch.float32)
    want = outputs_and_grads(model, x, state, torch.tensor([5, 3, 5]))
    model.compiled = True
    with caplog.at_level(logging.INFO, logger="seqlab.recurrent_loop"):
        got = outputs_and_grads(model, x, state, torch.tensor([5, 3, 5]))
    assert "torch.compile: the lstm step compiled in" in caplog.text
    for g, w in zip(got, want, strict=True):
        # float32, and the compiled kernel orders its sums its own way
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def test_set_compiled_reaches_every_stack():
    model = torch.nn.Sequential(Recurrent("lstm", I, H), Recurrent("gru", H, H))
    assert set_compiled(model) == 2 and all(m.compiled for m in model)
    set_compiled(model, False)
    assert not any(m.compiled for m in model)


@pytest.mark.slow  # a compilation, unless an earlier test left one of the same shapes
def test_train_with_compile_runs_and_resumes(text_file, tmp_path, tiny_keys, single_thread,
                                             caplog, monkeypatch):
    # gradient recording traces the explicit loop, which --compile compiles
    monkeypatch.setattr("seqlab.recurrent_loop._COMPILED", {})
    keys = {**tiny_keys, "num_layers": 1, "dropout": 0.0, "record_every": 2}
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="seqlab.recurrent_loop"):
        seqlab.train(text_file, out=run, max_steps=4, compile=True, **keys)
    assert "torch.compile: the lstm step compiled in" in caplog.text
    result = seqlab.resume(run, max_steps=6, compile=True)
    assert result.summary.steps == 6
    assert (run / "gradients.jsonl").read_text().count("\n") == 3  # steps 0, 2, 4
    # compile is a key a resumed run may change: it changes the speed, not the arithmetic
    assert seqlab.resume(run, max_steps=8, compile=False).summary.steps == 8


def test_compile_without_a_cpp_compiler_is_a_one_line_error(text_file, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.setattr("seqlab.recurrent_loop.cpp_compiler", lambda: None)
    with pytest.raises(ValueError, match="needs a C.. compiler"):
        check_compile("cpu")
    out = tmp_path / "run"
    code = main(["train", str(text_file), "--hidden-size", "8", "--embedding-size", "4",
                 "--max-steps", "2", "--device", "cpu", "--compile", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("seqlab: error:") and "C++ compiler" in err
    assert not out.exists()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_projected_loop_under_bf16_autocast(cell):
    """bf16 activations meet the float32 state and weights: the loop runs, its gradients are
    float32, and it follows the fused kernel under the same autocast."""
    model, x, _ = make(cell, layers=2, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        explicit, _ = model(x)
        model.mode = "fused"
        fused, _ = model(x)
    explicit.float().pow(2).sum().backward()
    assert model.core.weight_hh_l0.grad.dtype == torch.float32
    # bfloat16 keeps 8 bits of mantissa: the two paths round differently
    torch.testing.assert_close(explicit.float(), fused.float(), atol=2e-2, rtol=2e-2)
