"""seqlab.training: schedule, clipping, the non-finite guard, stopping rules, metrics, truncated
BPTT and exact resumption."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.testing import assert_close

import seqlab
from seqlab.checkpoint import RunDir
from seqlab.config import ModelConfig, TrainConfig
from seqlab.models import build_model
from seqlab.tasks import LanguageModelTask
from seqlab.training import Trainer, TrainingDiverged, clip_gradients, learning_rate

pytestmark = pytest.mark.usefixtures("single_thread")

LOG_KEYS = {"step", "loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s"}
EVAL_KEYS = {"step", "val_loss", "val_bpc"}
TIMING_KEYS = {"elapsed_s", "tokens_per_s"}  # wall-clock: the only keys that may differ


def logs(records: list[dict]) -> list[dict]:
    return [r for r in records if "loss" in r]


def evals(records: list[dict]) -> list[dict]:
    return [r for r in records if "val_loss" in r]


def untimed(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def make_parts(text_file: Path, model: str = "gru", dropout: float = 0.0, **train_keys):
    """(model, data, config) for driving a Trainer by hand with a task of the test's choosing."""
    keys = dict(seq_len=8, batch_size=4, warmup_steps=2, log_every=1, eval_every=100,
                device="cpu", seed=0) | train_keys
    config = TrainConfig(**keys)
    data = seqlab.load_data(text_file, config)
    torch.manual_seed(0)
    net = build_model(ModelConfig(model=model, embedding_size=8, hidden_size=16, dropout=dropout,
                                  vocab_size=data.vocab.size))
    return net, data, config


def make_task(cls, data, config, **extra):
    return cls(data.train_tokens, data.val_tokens, config, data.chars_per_token, **extra)


# learning rate ---------------------------------------------------------------------------
def test_learning_rate_warmup_then_cosine():
    config = TrainConfig(lr=1.0, warmup_steps=4, max_steps=30, decay_steps=14, min_lr_ratio=0.1)
    assert [learning_rate(s, config) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert learning_rate(4, config) == 1.0  # the cosine starts at the peak
    assert learning_rate(9, config) == pytest.approx(0.1 + 0.9 * 0.5)  # half way: the mean
    assert learning_rate(14, config) == pytest.approx(0.1)
    assert learning_rate(29, config) == pytest.approx(0.1)  # past the horizon: held at the floor
    decay = [learning_rate(s, config) for s in range(4, 15)]
    assert all(a > b for a, b in itertools.pairwise(decay))


def test_learning_rate_horizon_defaults_to_max_steps():
    config = TrainConfig(lr=2e-3, warmup_steps=0, max_steps=10, min_lr_ratio=0.5)
    assert learning_rate(0, config) == pytest.approx(2e-3)
    assert learning_rate(5, config) == pytest.approx(1e-3 + 1e-3 * 0.5)
    assert learning_rate(10, config) == pytest.approx(1e-3)


# gradient clipping -------------------------------------------------------------------------
def grads_fixture() -> list[torch.nn.Parameter]:
    """Three float64 parameters: squared gradient norms 25 and 25, and one without a gradient."""
    params = [torch.nn.Parameter(torch.zeros(3, dtype=torch.float64)),
              torch.nn.Parameter(torch.zeros(2, 2, dtype=torch.float64)),
              torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))]
    params[0].grad = torch.tensor([3.0, 0.0, -4.0], dtype=torch.float64)
    params[1].grad = torch.tensor([[1.0, -2.0], [2.0, 4.0]], dtype=torch.float64)
    return params


def global_norm(params) -> float:
    return math.sqrt(sum(float((p.grad ** 2).sum()) for p in params if p.grad is not None))


def test_clip_norm_returns_pre_clip_norm_and_keeps_direction():
    params = grads_fixture()
    before = [p.grad.clone() for p in params[:2]]
    norm = clip_gradients(params, TrainConfig(clip_norm=1.0))
    assert norm == pytest.approx(math.sqrt(50.0), rel=1e-12)  # the norm before clipping
    after_norm = global_norm(params)
    # torch divides by (norm + 1e-6), so the clipped norm lands just under the threshold
    assert after_norm <= 1.0 and after_norm == pytest.approx(1.0, rel=1e-5)
    scale = after_norm / math.sqrt(50.0)
    for p, g in zip(params[:2], before, strict=True):
        assert_close(p.grad, g * scale)  # one common factor: the direction is unchanged
    assert params[2].grad is None


def test_clip_norm_leaves_small_gradients_alone():
    params = grads_fixture()
    before = [p.grad.clone() for p in params[:2]]
    assert clip_gradients(params, TrainConfig(clip_norm=100.0)) == pytest.approx(math.sqrt(50.0))
    for p, g in zip(params[:2], before, strict=True):
        assert torch.equal(p.grad, g)


def test_clip_value_bounds_every_element():
    params = grads_fixture()
    norm = clip_gradients(params, TrainConfig(clip_norm=0.0, clip_value=1.5))
    assert norm == pytest.approx(math.sqrt(50.0))  # measured before clipping
    assert torch.equal(params[0].grad, torch.tensor([1.5, 0.0, -1.5], dtype=torch.float64))
    assert torch.equal(params[1].grad, torch.tensor([[1.0, -1.5], [1.5, 1.5]],
                                                    dtype=torch.float64))


def test_no_clipping_when_both_are_off():
    params = grads_fixture()
    assert clip_gradients(params, TrainConfig(clip_norm=0.0)) == pytest.approx(math.sqrt(50.0))
    assert global_norm(params) == pytest.approx(math.sqrt(50.0))


# the non-finite guard ------------------------------------------------------------------------
class FlakyTask(LanguageModelTask):
    """A language model task whose loss is NaN at chosen steps (the graph stays intact, so the
    gradients are NaN as well); ``on_first_bad`` runs once, before the first bad step."""

    def __init__(self, *args, bad_steps=(), on_first_bad=None) -> None:
        super().__init__(*args)
        self.bad_steps, self.on_first_bad, self.current = set(bad_steps), on_first_bad, -1

    def train_batch(self, step):
        self.current = step
        return super().train_batch(step)

    def loss(self, model, chunk, state):
        loss, state, count = super().loss(model, chunk, state)
        if self.current in self.bad_steps:
            if self.on_first_bad is not None:
                self.on_first_bad()
                self.on_first_bad = None
            loss = loss * float("nan")
        return loss, state, count


def test_non_finite_steps_are_skipped_and_counted(text_file, tmp_path):
    net, data, config = make_parts(text_file, max_steps=8, max_bad_steps=3)
    task = make_task(FlakyTask, data, config, bad_steps={3, 4})
    run = RunDir.create(tmp_path / "run")
    trainer = Trainer(net, task, config, run)
    summary = trainer.fit()
    assert (summary.steps, summary.skipped_steps, summary.stop_reason) == (8, 2, "max_steps")
    records = logs(run.read_metrics())
    # no record for a window of skipped steps only; the count shows in every later one
    assert [r["step"] for r in records] == [1, 2, 3, 6, 7, 8]
    assert [r["skipped"] for r in records] == [0, 0, 0, 2, 2, 2]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in records)
    adam_steps = {int(s["step"]) for s in trainer.optimizer.state.values()}
    assert adam_steps == {6}  # the optimiser never stepped on a bad gradient
    assert all(torch.isfinite(p).all() for p in net.parameters())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "metrics.jsonl"}


def test_divergence_raises_and_keeps_the_last_good_checkpoint(text_file, tmp_path):
    net, data, config = make_parts(text_file, max_steps=50, eval_every=4, max_bad_steps=3)
    run = RunDir.create(tmp_path / "run")
    saved = {}
    task = make_task(FlakyTask, data, config, bad_steps=range(4, 50),
                     on_first_bad=lambda: saved.update(snapshot(run.path)))
    with pytest.raises(TrainingDiverged, match="3 consecutive steps with a non-finite loss"):
        Trainer(net, task, config, run).fit()
    assert {"model.safetensors", "last/model.safetensors", "last/trainer_state.pt"} <= set(saved)
    assert snapshot(run.path) == saved  # byte for byte
    assert max(r["step"] for r in run.read_metrics()) == 4
    assert run.load_trainer_state()["step"] == 4


def test_divergence_across_an_eval_boundary_keeps_last(text_file, tmp_path):
    net, data, config = make_parts(text_file, max_steps=50, eval_every=2, max_bad_steps=3)
    run = RunDir.create(tmp_path / "run")
    saved = {}
    task = make_task(FlakyTask, data, config, bad_steps=range(4, 50),
                     on_first_bad=lambda: saved.update(snapshot(run.path)))
    with pytest.raises(TrainingDiverged):
        Trainer(net, task, config, run).fit()
    assert snapshot(run.path) == saved


def test_divergence_is_not_reported_as_early_stop(text_file):
    net, data, config = make_parts(text_file, max_steps=50, eval_every=1, max_bad_steps=3,
                                   patience=1)
    task = make_task(FlakyTask, data, config, bad_steps=range(4, 50))
    with pytest.raises(TrainingDiverged):
        Trainer(net, task, config).fit()


# stopping rules ----------------------------------------------------------------------------
def test_time_budget_stops_training(text_file, tmp_path, tiny_keys):
    result = seqlab.train(text_file, out=tmp_path / "run", max_steps=10_000, time_budget=1e-6,
                          **tiny_keys)
    assert result.summary.stop_reason == "time_budget"
    assert result.summary.steps == 0  # the wall-time budget is checked before each step
    run = RunDir(tmp_path / "run")
    assert run.load_trainer_state()["step"] == 0  # last/ is saved on the way out
    assert evals(run.read_metrics())[-1]["step"] == 0


class ScriptedEval(LanguageModelTask):
    """Validation losses read from a script, so that improvement is under the test's control."""

    def __init__(self, *args, val_losses) -> None:
        super().__init__(*args)
        self.val_losses = iter(val_losses)

    def evaluate(self, model, world=None):
        return {"val_loss": next(self.val_losses)}


def test_early_stopping_with_patience(text_file, tmp_path):
    net, data, config = make_parts(text_file, max_steps=50, eval_every=1, patience=2)
    task = make_task(ScriptedEval, data, config, val_losses=[5.0, 6.0, 4.0, 7.0, 8.0, 1.0])
    run = RunDir.create(tmp_path / "run")
    best_weights = {}

    def on_event(kind, record):
        if kind == "eval" and record["step"] == 3:
            best_weights.update({k: v.clone() for k, v in net.state_dict().items()})

    summary = Trainer(net, task, config, run, on_event=on_event).fit()
    # step 2 is one evaluation without improvement, step 3 improves (the count restarts),
    # steps 4 and 5 make two: stop
    assert (summary.stop_reason, summary.steps, summary.best_val_loss) == ("early_stop", 5, 4.0)
    assert [r["best_val_loss"] for r in evals(run.read_metrics())] == [5.0, 5.0, 4.0, 4.0, 4.0]
    fresh = build_model(net.config)
    run.load_weights(fresh)  # model.safetensors holds the weights of the best evaluation
    for name, value in fresh.state_dict().items():
        assert torch.equal(value, best_weights[name])


def test_patience_zero_never_stops_early(text_file):
    net, data, config = make_parts(text_file, max_steps=6, eval_every=1, patience=0)
    task = make_task(ScriptedEval, data, config, val_losses=[float(v) for v in range(1, 10)])
    summary = Trainer(net, task, config).fit()
    assert (summary.stop_reason, summary.steps, summary.best_val_loss) == ("max_steps", 6, 1.0)


# metrics -----------------------------------------------------------------------------------
def test_metrics_records(text_file, tmp_path, tiny_keys):
    keys = tiny_keys | dict(log_every=2, eval_every=5)
    result = seqlab.train(text_file, out=tmp_path / "run", max_steps=10, **keys)
    records = result.run.read_metrics()
    assert [r["step"] for r in logs(records)] == [2, 4, 6, 8, 10]
    assert [r["step"] for r in evals(records)] == [5, 10]
    config = result.run.train_config()
    for r in logs(records):
        assert LOG_KEYS <= set(r)
        assert math.isfinite(r["loss"]) and r["grad_norm"] > 0 and r["tokens_per_s"] > 0
        assert r["lr"] == pytest.approx(learning_rate(r["step"] - 1, config))  # last step's lr
    for r in evals(records):
        assert EVAL_KEYS <= set(r)
        # a character vocabulary: one token per character, so bits per character = nats / ln 2
        assert r["val_bpc"] == pytest.approx(r["val_loss"] / math.log(2))
    elapsed = [r["elapsed_s"] for r in records]
    assert elapsed == sorted(elapsed)
    assert result.summary.best_val_loss == min(r["val_loss"] for r in evals(records))


def test_same_seed_same_metrics(text_file, tmp_path, tiny_keys):
    runs = [seqlab.train(text_file, out=tmp_path / name, max_steps=8, **(tiny_keys | {"seed": s}))
            for name, s in (("a", 3), ("b", 3), ("c", 4))]
    a, b, c = (untimed(r.run.read_metrics()) for r in runs)
    assert a == b
    assert [r["loss"] for r in logs(a)] != [r["loss"] for r in logs(c)]


# truncated BPTT ---------------------------------------------------------------------------
def test_stream_loss_depends_on_the_carried_state(text_file):
    net, data, config = make_parts(text_file, model="lstm", batching="streams")
    task = make_task(LanguageModelTask, data, config)
    net.eval()  # no dropout here, but the comparison must not depend on it
    first, second = task.train_batch(0), task.train_batch(1)
    assert first.fresh and not second.fresh
    _, state, _ = task.loss(net, first, None)
    assert all(not s.requires_grad for s in state)  # detached: BPTT stops at the chunk edge
    carried, _, _ = task.loss(net, second, state)
    zero, _, _ = task.loss(net, second, None)
    explicit_zero, _, _ = task.loss(net, second, tuple(torch.zeros_like(s) for s in state))
    assert not torch.allclose(carried, zero)
    assert torch.equal(zero, explicit_zero)  # None means a zero state
    # a fresh chunk (a new epoch) ignores whatever state it is handed
    assert torch.equal(task.loss(net, first, state)[0], task.loss(net, first, None)[0])


class StateSpy(LanguageModelTask):
    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.given, self.returned, self.fresh = [], [], []

    def loss(self, model, chunk, state):
        out = super().loss(model, chunk, state)
        self.given.append(state)
        self.returned.append(out[1])
        self.fresh.append(chunk.fresh)
        return out


def test_trainer_carries_the_state_between_chunks(text_file):
    net, data, config = make_parts(text_file, batching="streams")
    task = make_task(StateSpy, data, config)
    epoch = len(task.batches)
    Trainer(net, task, dataclasses.replace(config, max_steps=epoch + 2)).fit()
    assert task.given[0] is None
    for k in range(1, epoch + 2):
        assert task.given[k] is task.returned[k - 1]  # the state of chunk k-1 goes into chunk k
        assert task.returned[k].grad_fn is None
    assert task.fresh[epoch] and not any(task.fresh[1:epoch])


# resuming --------------------------------------------------------------------------------
@pytest.mark.parametrize("batching", ["streams", "windows"])
def test_resume_parity(batching, text_file, tmp_path, tiny_keys):
    keys = tiny_keys | dict(batching=batching, decay_steps=20, eval_every=5, log_every=4)
    whole = seqlab.train(text_file, out=tmp_path / "whole", max_steps=20, **keys)
    seqlab.train(text_file, out=tmp_path / "split", max_steps=10, **keys)
    state = torch.load(tmp_path / "split" / "last" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 10
    split = seqlab.resume(tmp_path / "split", max_steps=20)
    assert split.summary.steps == 20
    a, b = whole.run.read_metrics(), split.run.read_metrics()
    assert [r["step"] for r in logs(a)] == [4, 8, 12, 16, 20]  # the window at 12 spans the resume
    assert [r["loss"] for r in logs(a)] == [r["loss"] for r in logs(b)]
    assert untimed(a) == untimed(b)
    last_a = load_file(tmp_path / "whole" / "last" / "model.safetensors")
    last_b = load_file(tmp_path / "split" / "last" / "model.safetensors")
    assert last_a.keys() == last_b.keys()
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a)


def test_trainer_state_is_plain_data(trained_run):
    state = torch.load(trained_run / "last" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 10
    assert {"optimizer", "rng", "carried", "best_val", "skipped", "elapsed"} <= set(state)
    assert isinstance(state["carried"], list) and len(state["carried"]) == 2  # LSTM (h, c)


def test_resume_truncates_metrics_past_the_checkpoint(text_file, tmp_path, tiny_keys):
    keys = tiny_keys | dict(decay_steps=14, eval_every=5, log_every=1)
    whole = seqlab.train(text_file, out=tmp_path / "whole", max_steps=14, **keys)
    seqlab.train(text_file, out=tmp_path / "split", max_steps=10, **keys)
    # a run killed after logging steps 11 and 12 but before its next checkpoint, mid-line
    with open(tmp_path / "split" / "metrics.jsonl", "a", encoding="utf-8") as handle:
        for step in (11, 12):
            handle.write(json.dumps({"step": step, "loss": 123.0}) + "\n")
        handle.write('{"step": 13, "lo')
    split = seqlab.resume(tmp_path / "split", max_steps=14)
    records = split.run.read_metrics()
    assert all(r.get("loss") != 123.0 for r in records)
    assert [r["step"] for r in logs(records)] == list(range(1, 15))
    assert untimed(records) == untimed(whole.run.read_metrics())


def test_resume_refuses_config_changes(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    with pytest.raises(ValueError, match="cannot change: hidden_size, lr"):
        seqlab.resume(run, lr=1.0, hidden_size=8)
