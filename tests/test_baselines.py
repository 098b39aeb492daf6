"""Feed-forward baselines: what each one can see, its state contract, and the shared commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import seqlab
from seqlab import encoders
from seqlab.cli import main
from seqlab.config import MODEL_NAMES, ModelConfig
from seqlab.encoders import BagEncoder, WindowEncoder
from seqlab.models import MODELS, build_model, count_parameters

pytestmark = pytest.mark.usefixtures("single_thread")
B, T, I, H = 3, 9, 4, 5


def inputs(seed: int = 0, shape=(B, T, I)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def encoder(kind: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "window":
        return WindowEncoder(I, H, **{"window": 3, **kw}).double()
    return BagEncoder(I, H, **kw).double()


ENCODERS = [("window", {}), ("window", {"window": 1}), ("bag", {"mode": "mean"}),
            ("bag", {"mode": "counts"}), ("window", {"num_layers": 2})]
IDS = ["window3", "window1", "bag_mean", "bag_counts", "window3_2layers"]


def test_registry_matches_config_names_and_readme():
    # one registry: the config's choices, the models and the encoders are one object
    assert MODELS is MODEL_NAMES is encoders.ENCODERS
    assert tuple(MODELS) == ("rnn", "irnn", "lstm", "gru", "mingru", "minlstm", "window-mlp",
                             "bow")
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `([\w-]+)` \|", readme, flags=re.M))
    assert set(MODELS) <= listed


@pytest.mark.parametrize("name", ["rnn", "irnn", "lstm", "gru", "window-mlp", "bow"])
def test_state_dict_keys_are_those_runs_were_saved_with(name):
    """One LanguageModel for every name, with the keys of the two classes it replaced."""
    model = build_model(ModelConfig(model=name, vocab_size=5, embedding_size=4, hidden_size=6))
    head = {"embedding.weight", "to_logits.weight", "to_logits.bias"}
    if name in ("window-mlp", "bow"):
        body = {"encoder.to_hidden.0.weight", "encoder.to_hidden.0.bias"}
        assert model.recurrent is None
    else:
        body = {f"recurrent.core.{n}_l0" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    assert set(model.state_dict()) == head | body
    one_hot = build_model(ModelConfig(model="bow", bow_mode="counts", vocab_size=5))
    assert set(one_hot.state_dict()) == {"encoder.to_hidden.0.weight", "encoder.to_hidden.0.bias",
                                         "to_logits.weight", "to_logits.bias"}


def test_window_sees_exactly_the_last_n_inputs():
    model, x = encoder("window", window=3), inputs()
    out, _ = model(x)
    t = 6
    older, inside = x.clone(), x.clone()
    older[:, t - 3] += 1.0  # just outside the window of step t
    inside[:, t - 2] += 1.0  # its oldest input
    assert torch.equal(model(older)[0][:, t], out[:, t])
    assert not torch.allclose(model(inside)[0][:, t], out[:, t])


@pytest.mark.parametrize("mode", ["mean", "counts"])
def test_bag_forgets_order(mode):
    model, x = encoder("bag", mode=mode), inputs()
    shuffled = x[:, torch.randperm(T, generator=torch.Generator().manual_seed(1))]
    torch.testing.assert_close(model(shuffled)[0][:, -1], model(x)[0][:, -1])


def test_bag_features_by_hand():
    """counts mode on one-hots is log(1 + count); mean mode is the running mean."""
    tokens = torch.tensor([[0, 2, 2, 1, 2]])
    x = torch.nn.functional.one_hot(tokens, 3).double()
    for mode, want in (("counts", torch.tensor([1.0, 1.0, 3.0]).log1p()),
                       ("mean", torch.tensor([1.0, 1.0, 3.0]) / 5)):
        model = BagEncoder(3, 2, mode=mode).double()
        out, (total, seen) = model(x)
        layer = model.to_hidden[0]
        torch.testing.assert_close(out[0, -1], torch.tanh(layer(want.double())))
        assert seen.item() == 5 and total[0].tolist() == [1.0, 1.0, 3.0]


@pytest.mark.parametrize(("kind", "kw"), ENCODERS, ids=IDS)
def test_chunks_and_steps_with_carried_state_match_the_full_sequence(kind, kw):
    model, x = encoder(kind, **kw), inputs()
    full, final = model(x)
    for size in (1, 4):
        outs, state = [], None
        for start in range(0, T, size):
            out, state = model(x[:, start:start + size], state)
            outs.append(out)
        torch.testing.assert_close(torch.cat(outs, 1), full)
        for got, want in zip(state if isinstance(state, tuple) else (state,),
                             final if isinstance(final, tuple) else (final,), strict=True):
            torch.testing.assert_close(got, want)


@pytest.mark.parametrize(("kind", "kw"), ENCODERS, ids=IDS)
def test_padding_changes_nothing(kind, kw):
    model, x = encoder(kind, **kw), inputs()
    lengths = torch.tensor([T, 4, 1])
    padded = x.clone()
    padded[1, 4:], padded[2, 1:] = 7.0, -3.0  # garbage past the ends
    out, final = model(padded, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        want, want_final = model(x[b:b + 1, :n])
        torch.testing.assert_close(out[b:b + 1, :n], want)
        assert torch.count_nonzero(out[b, n:]) == 0
        got_final = final if isinstance(final, tuple) else (final,)
        want_final = want_final if isinstance(want_final, tuple) else (want_final,)
        for got, w in zip(got_final, want_final, strict=True):
            torch.testing.assert_close(got[b:b + 1], w)


def test_window_parameters_grow_with_the_window():
    def params(window: int) -> int:
        return count_parameters(build_model(ModelConfig(
            model="window-mlp", window=window, vocab_size=20, embedding_size=8, hidden_size=16)))

    # embedding V E + first layer (n E) H + H + head H V + V: no sharing across positions
    for n in (1, 2, 10):
        assert params(n) == 20 * 8 + n * 8 * 16 + 16 + 16 * 20 + 20
    bow = count_parameters(build_model(ModelConfig(model="bow", vocab_size=20, bow_mode="counts",
                                                   hidden_size=16)))
    assert bow == 20 * 16 + 16 + 16 * 20 + 20  # one-hots, no embedding


def test_errors_name_the_component():
    with pytest.raises(ValueError, match=r"WindowEncoder: expected input of shape \(B, T, 4\)"):
        WindowEncoder(I, H, 2)(torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="WindowEncoder: window must be >= 1"):
        WindowEncoder(I, H, 0)
    with pytest.raises(ValueError, match="BagEncoder: mode must be one of"):
        BagEncoder(I, H, mode="max")
    with pytest.raises(ValueError, match="tie_weights needs an embedding"):
        build_model(ModelConfig(model="bow", bow_mode="counts", tie_weights=True,
                                embedding_size=16, hidden_size=16, vocab_size=5))
    with pytest.raises(ValueError, match="window must be positive"):
        ModelConfig(model="window-mlp", window=0)


@pytest.mark.parametrize("model,extra", [("window-mlp", {"window": 3}), ("bow", {}),
                                         ("bow", {"bow_mode": "counts"})])
def test_baselines_train_and_generate_through_the_api(text_file, tiny_keys, model, extra):
    keys = {**tiny_keys, "model": model, "num_layers": 1, "lr": 1e-2, "eval_every": 30, **extra}
    untrained = seqlab.train(text_file, max_steps=1, **keys).summary.best_val_loss
    result = seqlab.train(text_file, max_steps=30, **keys)
    assert result.summary.best_val_loss < untrained - 0.3  # it learns (from ~ln 13 nats)
    text = seqlab.generate(result.model, result.vocab, prompt="the ", length=30, seed=0)[0]
    assert text.startswith("the ") and len(text) == 34


def test_cli_trains_evaluates_and_generates_a_window_mlp(tmp_path, capsys, tiny_text):
    (tmp_path / "data.txt").write_text(tiny_text, encoding="utf-8")
    run = tmp_path / "run"
    argv = ["train", str(tmp_path / "data.txt"), "--model", "window-mlp", "--window", "2",
            "--hidden-size", "16", "--embedding-size", "8", "--seq-len", "16", "--batch-size", "4",
            "--max-steps", "6", "--eval-every", "3", "--device", "cpu", "--quiet",
            "--out", str(run)]
    assert main(argv) == 0
    assert main(["evaluate", str(run), str(tmp_path / "data.txt"), "--json"]) == 0
    assert main(["info", str(run), "--json"]) == 0
    assert main(["generate", str(run), "--length", "12", "--seed", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert json.loads(out[0])["loss"] > 0
    info = json.loads(out[1])
    assert info["config"]["model"]["window"] == 2
    assert info["parameters"] == count_parameters(seqlab.load_run(run).model)
    assert len(out[2]) == 12
