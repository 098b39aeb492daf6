"""Synthetic long-range tasks: generators pinned (shapes, determinism, baselines analytic and
empirical), then training, evaluation and resuming through the same commands as text."""

from __future__ import annotations

import json
import math

import pytest
import torch

import seqlab
from seqlab.cli import main
from seqlab.data.synthetic import (
    DELIMITER,
    IGNORE,
    MARK_A,
    MARK_B,
    TASKS,
    TaskData,
    get_task,
    parse_length,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def data(name: str, low: int = 30, high: int | None = None, delay: int = 3, seed: int = 0):
    return TaskData(get_task(name), low, high or low, delay, seed)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_batches_are_pure_functions_of_seed_stream_and_index(name):
    d = data(name, 20, 40)
    a, b = d.batch(8, 0, 5), d.batch(8, 0, 5)
    for x, y in ((a.inputs, b.inputs), (a.targets, b.targets), (a.lengths, b.lengths)):
        assert torch.equal(x, y)
    assert not torch.equal(d.batch(8, 0, 6).inputs, a.inputs)  # next step: new data
    assert not torch.equal(d.batch(8, 1, 5).inputs, a.inputs)  # validation: another stream
    assert not torch.equal(data(name, 20, 40, seed=1).batch(8, 0, 5).inputs, a.inputs)


def test_adding_shapes_markers_and_target():
    batch = data("adding", 50).batch(256, 0, 0)
    x, y = batch.inputs, batch.targets
    assert x.shape == (256, 50, 2) and y.shape == (256,) and x.dtype == torch.float32
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values <= 1)).all()
    assert torch.equal(markers.sum(1), torch.full((256,), 2.0))
    assert (markers[:, :25].sum(1) == 1).all() and (markers[:, 25:].sum(1) == 1).all()
    torch.testing.assert_close(y, (values * markers).sum(1))


def test_adding_baseline_is_one_sixth_analytically_and_empirically():
    d = data("adding", 20)
    assert d.baseline(d.batch(4, 0, 0)) == pytest.approx(1 / 6)
    targets = torch.cat([d.batch(1000, 0, k).targets for k in range(20)]).double()
    mse = ((targets - 1.0) ** 2).mean().item()
    # Var((s - 1)^2) = 1/15 - 1/36 for a sum of two U[0, 1]: 4 standard errors over 20000 draws
    tolerance = 4 * math.sqrt((1 / 15 - 1 / 36) / len(targets))
    assert abs(mse - 1 / 6) < tolerance


def test_copy_layout_and_baseline():
    blanks = 12
    batch = data("copy", blanks).batch(64, 0, 0)
    x, y = batch.inputs, batch.targets
    assert x.shape == y.shape == (64, blanks + 20)
    symbols = x[:, :10]
    assert ((symbols >= 1) & (symbols <= 8)).all()
    assert (x[:, 10:blanks + 9] == 0).all() and (x[:, blanks + 9] == DELIMITER).all()
    assert (x[:, blanks + 10:] == 0).all()
    assert (y[:, :blanks + 10] == 0).all() and torch.equal(y[:, blanks + 10:], symbols)
    # the memoryless predictor: blank for sure, then uniform over the 8 symbols
    logits = torch.full((64, blanks + 20, 9), -math.inf)
    logits[:, :blanks + 10, 0] = 0.0
    logits[:, blanks + 10:, 1:] = 0.0
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()).item()
    assert ce == pytest.approx(10 * math.log(8) / (blanks + 20))
    assert data("copy", 12).baseline(batch) == pytest.approx(ce)
    published = {100: 0.1733, 200: 0.0945, 500: 0.0400, 1000: 0.0204}  # ANCHORS.md
    for t, value in published.items():
        assert get_task("copy").baseline(torch.tensor([t]), 0) == pytest.approx(value, abs=5e-5)


def test_order_has_one_of_each_mark_and_labels_their_order():
    batch = data("order", 40).batch(500, 0, 0)
    x, y = batch.inputs, batch.targets
    assert ((x == MARK_A).sum(1) == 1).all() and ((x == MARK_B).sum(1) == 1).all()
    a_first = (x == MARK_A).float().argmax(1) < (x == MARK_B).float().argmax(1)
    assert torch.equal(y, (~a_first).long())
    assert 0.4 < y.float().mean() < 0.6
    # a bag of the symbols carries no label information: per-class mean counts agree
    counts = torch.nn.functional.one_hot(x, 11).sum(1).float()
    assert torch.allclose(counts[y == 0].mean(0), counts[y == 1].mean(0), atol=0.5)
    assert get_task("order").baseline(batch.lengths, 0) == pytest.approx(math.log(2))


def test_delay_targets_are_the_inputs_delay_steps_back():
    batch = data("delay", 20, delay=4).batch(16, 0, 0)
    x, y = batch.inputs, batch.targets
    assert (y[:, :4] == IGNORE).all()
    assert torch.equal(y[:, 4:], x[:, :-4] - 1)
    with pytest.raises(ValueError, match="needs more than delay = 4 steps"):
        data("delay", 4, delay=4)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_variable_lengths_are_padded_and_masked(name):
    d = data(name, 10, 30)
    batch = d.batch(200, 0, 0)
    extra = get_task(name).extra_steps
    assert batch.lengths.min() >= 10 + extra and batch.lengths.max() <= 30 + extra
    assert len(set(batch.lengths.tolist())) > 5
    steps = int(batch.lengths.max())
    past = torch.arange(steps)[None, :] >= batch.lengths[:, None]  # (B, T)
    inputs = batch.inputs if batch.inputs.dim() == 2 else batch.inputs.abs().sum(-1)
    assert (inputs[past] == 0).all()
    if batch.targets.dim() == 2:
        assert (batch.targets[past] == IGNORE).all()
    if name == "adding":
        markers = batch.inputs[..., 1]
        assert (markers.sum(1) == 2).all()


def test_parse_length():
    assert parse_length("200") == (200, 200)
    assert parse_length("50-100") == (50, 100)
    assert parse_length("") == (100, 100)
    for bad in ("x", "10-5", "1", "-3"):
        with pytest.raises(ValueError, match="length must be N or MIN-MAX"):
            parse_length(bad)
    with pytest.raises(ValueError, match="unknown synthetic task 'add'"):
        get_task("add")


# training -------------------------------------------------------------------------------------
TINY = dict(hidden_size=16, embedding_size=8, batch_size=16, val_sequences=64, warmup_steps=5,
            eval_every=25, log_every=5, device="cpu", seed=0)


def test_lstm_solves_delay_where_a_short_window_cannot():
    keys = dict(TINY, length="12", delay=2, lr=1e-2, max_steps=200, eval_every=200)
    lstm = seqlab.train("delay", model="lstm", **{**keys, "hidden_size": 32})
    short = seqlab.train("delay", model="window-mlp", window=2, **keys)  # sees t-1, t only
    wide = seqlab.train("delay", model="window-mlp", window=3, **keys)  # sees t-2 as well
    chance = math.log(8)
    assert lstm.summary.best_val_loss < 0.5 * chance
    assert wide.summary.best_val_loss < 0.3 * chance
    assert short.summary.best_val_loss > 0.95 * chance


def test_bag_of_words_stays_at_chance_on_order():
    keys = dict(TINY, length="10", lr=1e-2, max_steps=100, eval_every=100)
    bow = seqlab.train("order", model="bow", **keys)
    assert bow.summary.best_val_loss > 0.95 * math.log(2)


def test_cli_trains_evaluates_and_resumes_a_synthetic_run(tmp_path, capsys):
    flags = ["--model", "gru", "--length", "8-16", "--hidden-size", "8", "--batch-size", "8",
             "--val-sequences", "32", "--eval-every", "5", "--log-every", "5", "--device", "cpu",
             "--quiet"]
    assert main(["train", "adding", "--max-steps", "10", "--out", str(tmp_path / "a"), *flags]) == 0
    assert main(["train", "adding", "--max-steps", "5", "--out", str(tmp_path / "b"), *flags]) == 0
    assert main(["train", "adding", "--max-steps", "10", "--out", str(tmp_path / "b"), "--resume",
                 "--quiet"]) == 0
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["task"] == "synthetic" and config["data"]["length"] == "8-16"
    losses = [[r["loss"] for r in seqlab.checkpoint.RunDir(tmp_path / run).read_metrics()
               if "loss" in r] for run in "ab"]
    assert losses[0] == pytest.approx(losses[1])  # resumed == never stopped
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "a"), "adding", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["baseline"] == pytest.approx(1 / 6)
    assert result["ratio"] == pytest.approx(result["loss"] * 6)
    assert main(["evaluate", str(tmp_path / "a"), "adding"]) == 0
    assert capsys.readouterr().out.startswith("loss ")
    assert main(["evaluate", str(tmp_path / "a"), "copy"]) == 2
    assert "trained on the synthetic task 'adding'" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "a"), "adding", "--beam", "2"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"seqlab: error: --beam applies to seq2seq runs only; {tmp_path / 'a'} is a "
        "'synthetic' run"]
    with pytest.raises(ValueError, match="beam applies to seq2seq runs only"):
        seqlab.evaluate(tmp_path / "a", "adding", beam=2)
    assert main(["info", str(tmp_path / "a")]) == 0
    info = capsys.readouterr().out.splitlines()
    assert info[3:5] == [f"data         adding, length 8-16: {config['data']['summary']}",
                         "steps        10"]
    assert info[5].startswith("best val     ")
    assert main(["generate", str(tmp_path / "a")]) == 2
    assert "is a 'synthetic' run, not a language model" in capsys.readouterr().err
    assert main(["generate", str(tmp_path / "a"), "--tunes", "1", "--out",
                 str(tmp_path / "tunes")]) == 2
    assert "is a 'synthetic' run, not a language model" in capsys.readouterr().err
    assert not (tmp_path / "tunes").exists()


def test_init_radius_rescales_the_recurrent_matrix():
    from seqlab.config import ModelConfig
    from seqlab.diagnostics import spectral_radius
    from seqlab.families.synthetic import build

    d = data("adding", 10)
    model = build(ModelConfig(model="rnn", hidden_size=8), d, init_radius=1.5)
    assert spectral_radius(model)["layer0"]["W_hh"] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="init_radius applies to rnn and irnn, not lstm"):
        build(ModelConfig(model="lstm", hidden_size=8), d, init_radius=1.5)


def test_text_only_keys_are_errors_naming_the_family(tmp_path):
    """A key without meaning for the family is refused before anything is written (it used to
    be ignored with a warning)."""
    with pytest.raises(ValueError, match="seq_len does not apply to the synthetic task"):
        seqlab.train("order", model="gru", seq_len=64, max_steps=1, out=tmp_path / "r", **TINY)
    assert not (tmp_path / "r").exists()
