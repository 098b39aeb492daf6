"""Diagnostics on analytic cases, against hand-written backpropagation, and end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch

import seqlab
from seqlab.checkpoint import RunDir
from seqlab.cli import main
from seqlab.config import ModelConfig, TrainConfig
from seqlab.data.synthetic import TaskData, get_task
from seqlab.diagnostics import (
    Probe,
    gate_statistics,
    grad_norm_history,
    gradient_through_time,
    jacobian_norms,
    spectral_radius,
)
from seqlab.families.synthetic import build, probe_of
from seqlab.models import build_model
from seqlab.recording import read_gradients
from seqlab.training import clip_gradients

pytestmark = pytest.mark.usefixtures("single_thread")
T, H = 12, 6


def adding_model(cell: str, **model_keys) -> tuple[torch.nn.Module, Probe]:
    data = TaskData(get_task("adding"), T, T, 1, 0)
    torch.manual_seed(0)
    model = build(ModelConfig(model=cell, hidden_size=H, **model_keys), data).double()
    batch = data.batch(5, 1, 0)
    probe = probe_of(data, batch)
    return model, Probe(probe.inputs.double(), probe.targets.double(), probe.loss, probe.scored)


def linear_rnn(a: float) -> tuple[torch.nn.Module, Probe]:
    """IRNN with W_hh = a I, W_ih > 0, zero biases, inputs >= 0: every pre-activation is
    positive, so ReLU is the identity and h_t = a h_{t-1} + W_ih x_t is linear."""
    model, probe = adding_model("irnn")
    w_ih, w_hh, b_ih, b_hh = model.recurrent.layer_weights(0)
    with torch.no_grad():
        w_ih.abs_().add_(0.1)
        w_hh.copy_(a * torch.eye(H))
        b_ih.zero_()
        b_hh.zero_()
    return model, probe


@pytest.mark.parametrize("a", [0.8, 1.0, 1.25], ids=["vanishing", "flat", "exploding"])
def test_linear_rnn_gradients_go_as_a_to_the_distance(a):
    model, probe = linear_rnn(a)
    norms = torch.as_tensor(gradient_through_time(model, probe, "last"))
    want = norms[-1] * a ** torch.arange(T - 1, -1, -1, dtype=torch.float64)  # a^(T-1-t)
    torch.testing.assert_close(norms, want)
    torch.testing.assert_close(torch.as_tensor(jacobian_norms(model, probe)),
                               a ** torch.arange(1, T, dtype=torch.float64))
    assert spectral_radius(model)["layer0"]["W_hh"] == pytest.approx(a)


def test_tanh_rnn_gradients_match_backpropagation_by_hand():
    """dL/dh_t = J_{t+1}^T dL/dh_{t+1} with J_k = diag(1 - h_k^2) W_hh, and the Jacobian
    product's spectral norm from the same matrices."""
    model, probe = adding_model("rnn")
    with torch.no_grad():
        model.recurrent.layer_weights(0)[1].mul_(2.5)  # a larger W_hh: less trivial products
    _, trace = model.trace(probe.inputs)
    h = torch.stack(trace.h[0], 1).detach()  # (B, T, H)
    w_hh = model.recurrent.layer_weights(0)[1].detach()
    out = model.to_outputs
    final = out(h[:, -1])[:, 0]
    grad = (2 * (final - probe.targets))[:, None] * out.weight.detach()  # (B, H) at T - 1
    want = [grad.norm(dim=-1).mean()]
    for t in range(T - 2, -1, -1):
        grad = (grad * (1 - h[:, t + 1] ** 2)) @ w_hh  # J_{t+1}^T g
        want.append(grad.norm(dim=-1).mean())
    torch.testing.assert_close(torch.as_tensor(gradient_through_time(model, probe, "last")),
                               torch.stack(want[::-1]))
    jac = [torch.diag_embed(1 - h[:4, k] ** 2) @ w_hh for k in range(T)]  # (4, H, H)
    product, norms = None, []
    for k in range(T - 1, 0, -1):
        product = jac[k] if product is None else product @ jac[k]
        norms.append(torch.linalg.matrix_norm(product, ord=2).log().mean().exp())
    torch.testing.assert_close(torch.as_tensor(jacobian_norms(model, probe)), torch.stack(norms))


def test_last_and_summed_losses_agree_at_the_last_step_of_a_language_model():
    torch.manual_seed(0)
    model = build_model(ModelConfig(model="gru", vocab_size=7, embedding_size=4,
                                    hidden_size=H)).double()
    tokens = torch.randint(0, 7, (3, T + 1), generator=torch.Generator().manual_seed(0))
    probe = Probe.from_tokens(tokens)
    last, total = (gradient_through_time(model, probe, r) for r in ("last", "sum"))
    assert last[-1] == pytest.approx(total[-1])  # h_{T-1} feeds only the last prediction
    assert (total[:-1] > last[:-1]).all()  # earlier states also feed their own predictions


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_padded_probe_sees_the_gradient_of_an_unpadded_one(cell):
    """Lengths that cover every step change nothing: dL/dh_t reaches the traced state through
    the output's own path too (the last step's state feeds the loss directly)."""
    model, probe = adding_model(cell)
    full = torch.full((len(probe.inputs),), T)
    padded = Probe(probe.inputs, probe.targets, probe.loss, probe.scored, full)
    plain, masked = gradient_through_time(model, probe), gradient_through_time(model, padded)
    assert masked[-1] > 0
    assert masked == pytest.approx(plain, rel=1e-9)


def test_jacobian_of_a_one_step_sequence_is_empty():
    model, probe = adding_model("lstm")
    one = Probe(probe.inputs, probe.targets, probe.loss, probe.scored,
                torch.tensor([1] + [T] * (len(probe.inputs) - 1)))
    assert len(jacobian_norms(model, one)) == 0


def test_lstm_cell_gradient_and_state_jacobian():
    model, probe = adding_model("lstm")
    c_norms = gradient_through_time(model, probe, "last", of="c")
    assert c_norms.shape == (T,) and (c_norms > 0).all()
    assert len(jacobian_norms(model, probe)) == T - 1
    assert set(spectral_radius(model)["layer0"]) == {"i", "f", "g", "o"}
    with pytest.raises(ValueError, match="of='c' needs an LSTM, got gru"):
        gradient_through_time(adding_model("gru")[0], probe, of="c")


def test_gate_statistics_see_a_remembering_forget_gate():
    model, probe = adding_model("lstm", forget_bias=20.0)
    stats = gate_statistics(model, probe)
    assert set(stats) == {"i", "f", "g", "o"} and len(stats["f"]["mean"]) == T
    assert min(stats["f"]["mean"]) > 0.99 and min(stats["f"]["saturated"]) == 1.0
    assert max(stats["i"]["saturated"]) < 0.5
    assert gate_statistics(adding_model("rnn")[0], probe) == {}
    assert set(gate_statistics(adding_model("gru")[0], probe)) == {"r", "z", "n"}


def test_gate_statistics_measure_no_saturation_of_an_unbounded_candidate():
    """minGRU's h_tilde is positive and unbounded: no saturated fraction, where z has one."""
    model, probe = adding_model("mingru")
    stats = gate_statistics(model, probe)
    assert stats["h_tilde"]["saturated"] is None and len(stats["h_tilde"]["mean"]) == T
    assert len(stats["z"]["saturated"]) == T
    assert min(stats["h_tilde"]["mean"]) > 0


def test_clipping_keeps_the_direction_and_bounds_the_norm():
    grads = [torch.tensor([3.0, -4.0]), torch.tensor([[12.0]])]  # global norm 13
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    before = torch.cat([p.grad.flatten() for p in params])
    assert clip_gradients(params, TrainConfig(clip_norm=1.0)) == pytest.approx(13.0)  # pre-clip
    after = torch.cat([p.grad.flatten() for p in params])
    assert after.norm() <= 1.0 + 1e-6
    torch.testing.assert_close(after / after.norm(), before / before.norm())
    clip_gradients(params, TrainConfig(clip_norm=5.0))  # already below: unchanged
    torch.testing.assert_close(torch.cat([p.grad.flatten() for p in params]), after)


def test_grad_norm_history_post_clip():
    metrics = [{"step": 1, "grad_norm": 3.0}, {"step": 2, "val_loss": 1.0},
               {"step": 3, "grad_norm": 0.5}]
    assert grad_norm_history(metrics, 1.0) == {"step": [1, 3], "pre_clip": [3.0, 0.5],
                                               "post_clip": [1.0, 0.5]}
    assert grad_norm_history(metrics, 0.0, 0.1)["post_clip"] == [None, None]
    assert grad_norm_history(metrics, 0.0)["post_clip"] == [3.0, 0.5]


def test_baselines_have_nothing_to_diagnose():
    model, probe = adding_model("window-mlp")
    with pytest.raises(ValueError, match="window-mlp has no recurrent state"):
        gradient_through_time(model, probe)


# runs -----------------------------------------------------------------------------------------
KEYS = dict(length="10", hidden_size=8, batch_size=8, val_sequences=32, eval_every=10,
            log_every=5, max_steps=20, device="cpu", seed=0)


def test_recording_does_not_change_training(tmp_path):
    seqlab.train("copy", out=tmp_path / "plain", model="gru", **KEYS)
    seqlab.train("copy", out=tmp_path / "rec", model="gru", record_every=5, **KEYS)
    losses = [[r["loss"] for r in RunDir(tmp_path / n).read_metrics() if "loss" in r]
              for n in ("plain", "rec")]
    assert losses[0] == losses[1]
    records = [json.loads(line) for line in (tmp_path / "rec" / "gradients.jsonl").open()]
    assert [r["step"] for r in records] == [0, 5, 10, 15]
    assert all(len(r["last"]) == len(r["sum"]) == 10 + 20 for r in records)


def test_language_model_records_its_gradient_through_time(text_file, tmp_path, tiny_keys,
                                                          capsys):
    """record_every works on text runs too, leaves training unchanged and survives --resume."""
    keys = tiny_keys | dict(max_steps=12, eval_every=6, decay_steps=12)
    seqlab.train(text_file, out=tmp_path / "plain", **keys)
    seqlab.train(text_file, out=tmp_path / "rec", record_every=4, **keys)
    losses = [[r["loss"] for r in RunDir(tmp_path / n).read_metrics() if "loss" in r]
              for n in ("plain", "rec")]
    assert losses[0] == losses[1]
    records = read_gradients(tmp_path / "rec")
    assert [r["step"] for r in records] == [0, 4, 8]
    assert all(len(r["last"]) == len(r["sum"]) == keys["seq_len"] for r in records)
    # stopped at step 6 and resumed: the records are those of the uninterrupted run
    seqlab.train(text_file, out=tmp_path / "part", record_every=4, **keys | dict(max_steps=6))
    seqlab.resume(tmp_path / "part", max_steps=12)
    assert read_gradients(tmp_path / "part") == records
    assert main(["diagnose", str(tmp_path / "rec"), "--batch", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["step"] for r in report["recorded"]] == [0, 4, 8]


def test_runs_written_with_record_every_as_a_synthetic_key_still_load(tmp_path):
    """Before it became a training key, record_every sat among the synthetic keys."""
    seqlab.train("adding", out=tmp_path / "run", model="gru", record_every=5, **KEYS)
    config_path = tmp_path / "run" / "config.json"
    config = json.loads(config_path.read_text())
    config["synthetic"]["record_every"] = config["train"].pop("record_every")
    config_path.write_text(json.dumps(config))
    assert seqlab.evaluate(tmp_path / "run", "adding")["sequences"] == KEYS["val_sequences"]
    seqlab.resume(tmp_path / "run", max_steps=25)
    assert [r["step"] for r in read_gradients(tmp_path / "run")] == [0, 5, 10, 15, 20]


def test_diagnose_command_writes_numbers_and_figures(tmp_path, capsys):
    seqlab.train("adding", out=tmp_path / "run", model="lstm", record_every=10, **KEYS)
    assert main(["diagnose", str(tmp_path / "run"), "--batch", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    saved = json.loads((tmp_path / "run" / "diagnostics" / "diagnostics.json").read_text())
    assert report == saved
    for when in ("init", "trained"):
        assert len(report[when]["grad_last"]) == 10 and len(report[when]["jacobian"]) == 9
        assert len(report[when]["gates"]["f"]["mean"]) == 10
    assert [r["step"] for r in report["recorded"]] == [0, 10]
    assert report["grad_norms"]["step"] == [5, 10, 15, 20]
    names = {p.split("/")[-1] for p in report["files"]}
    assert names == {"gradient_through_time.png", "jacobian.png", "gradient_heatmap.png",
                     "gates.png", "grad_norms.png"}
    for path in report["files"]:
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_diagnose_a_language_model_run(trained_run, tmp_path, capsys):
    out = tmp_path / "diag"
    assert main(["diagnose", str(trained_run), "--out", str(out), "--no-jacobian"]) == 0
    text = capsys.readouterr().out
    assert "init" in text and "trained" in text and "spectral radius" in text
    report = json.loads((out / "diagnostics.json").read_text())
    assert math.isfinite(report["trained"]["grad_sum"][0])
    assert "jacobian" not in report["trained"]
    mine = tmp_path / "in.txt"
    mine.write_text("mine")
    assert main(["diagnose", str(trained_run), "--out", str(mine)]) == 2
    assert capsys.readouterr().err == (f"seqlab: error: --out {mine} is a file; diagnose writes "
                                       "a folder (of diagnostics.json and figures): give a "
                                       "folder\n")
    assert mine.read_text() == "mine"


def test_diagnose_refuses_a_baseline_run(tmp_path, capsys):
    seqlab.train("order", out=tmp_path / "run", model="bow", **KEYS)
    assert main(["diagnose", str(tmp_path / "run")]) == 2
    assert "bow has no recurrent state to diagnose" in capsys.readouterr().err


def test_a_curve_of_one_point_is_drawn(tmp_path, monkeypatch):
    """A series of one value (a run logged once) gets a marker: a line through one point is
    invisible; longer series stay plain lines."""
    from matplotlib.axes import Axes

    from seqlab import plots

    markers, plot = [], Axes.plot
    monkeypatch.setattr(Axes, "plot", lambda ax, *a, **k: markers.append(k.get("marker"))
                        or plot(ax, *a, **k))
    plots.curves(tmp_path / "c.png", {"one": [0.37], "two": [0.3, 0.2]}, "t", "step", "norm",
                 log=False)
    assert markers == ["o", None]
