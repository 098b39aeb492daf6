"""Classifier (many-to-one): parity with torch.nn, padding, pooling, the window, trace() for the
diagnostics, gradients and the documented errors. Everything float64 and seeded, so the default
tolerances of torch.testing.assert_close hold."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from reference import ref_lstm_step
from seqlab.cells import CELLS
from seqlab.config import ModelConfig
from seqlab.diagnostics import Probe, gradient_through_time, measure, sequence_losses
from seqlab.models import Classifier
from seqlab.models.classifier import POOLINGS

pytestmark = pytest.mark.usefixtures("single_thread")
B, T, C, H, K = 4, 6, 3, 5, 4
LENGTHS = torch.tensor([6, 2, 4, 1])  # unsorted, with a sequence of one step
KERNEL_CELLS = [name for name, spec in CELLS.items() if spec.kernel is not None]


def make(model: str = "lstm", inputs: str = "real", pooling: str = "last", **keys) -> Classifier:
    """A float64 classifier in eval mode, seeded."""
    options = {k: keys.pop(k) for k in ("bidirectional", "window_at") if k in keys}
    config = ModelConfig(**{"model": model, "embedding_size": 4, "hidden_size": H, "window": 3,
                            **keys})
    torch.manual_seed(0)
    size = 7 if inputs == "tokens" else C
    return Classifier(config, inputs, size, K, pooling=pooling, **options).double().eval()


def series(seed: int = 0, steps: int = T) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(B, steps, C, generator=generator, dtype=torch.float64)


def padding() -> torch.Tensor:
    """(B, T) True past each end."""
    return torch.arange(T)[None, :] >= LENGTHS[:, None]


def alone(model: Classifier, x: torch.Tensor) -> torch.Tensor:
    """Each sequence run by itself, no padding and no lengths: (B, K)."""
    return torch.cat([model(x[b:b + 1, :int(LENGTHS[b])]) for b in range(B)])


# parity with torch.nn ------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["fused", "explicit"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", KERNEL_CELLS)
def test_last_pooling_matches_torch_nn_run_sequence_by_sequence(cell, layers, mode):
    model = make(cell, num_layers=layers)
    model.encoder.mode = mode
    twin = CELLS[cell].kernel(C, H, layers, batch_first=True).double()
    twin.load_state_dict(model.encoder.core.state_dict())
    head = nn.Linear(H, K).double()
    head.load_state_dict(model.to_logits.state_dict())
    x = series()
    want = torch.cat([head(twin(x[b:b + 1, :int(LENGTHS[b])])[0][:, -1]) for b in range(B)])
    torch.testing.assert_close(model(x, LENGTHS), want)
    torch.testing.assert_close(model(x), head(twin(x)[0][:, -1]))


def test_token_inputs_are_read_through_the_embedding():
    model = make("lstm", inputs="tokens", pooling="mean")
    twin = nn.LSTM(4, H, batch_first=True).double()
    twin.load_state_dict(model.encoder.core.state_dict())
    ids = torch.randint(0, 7, (B, T), generator=torch.Generator().manual_seed(1))
    states = twin(model.embedding.weight[ids])[0]  # (B, T, H)
    torch.testing.assert_close(model(ids), model.to_logits(states.mean(1)))


@pytest.mark.parametrize("layers", [1, 2])
def test_bidirectional_matches_torch_nn_on_a_packed_batch(layers):
    model = make("lstm", bidirectional=True, num_layers=layers)
    x = series()
    if layers == 1:  # one layer: torch.nn's bidirectional LSTM itself
        twin = nn.LSTM(C, H, 1, batch_first=True, bidirectional=True).double()
        forward = model.encoder.core.state_dict()
        backward = model.backward_encoder.core.state_dict()
        twin.load_state_dict({**forward, **{f"{k}_reverse": v for k, v in backward.items()}})
        out, (h_n, _) = twin(pack_padded_sequence(x, LENGTHS, batch_first=True,
                                                  enforce_sorted=False))
        want = pad_packed_sequence(out, batch_first=True, total_length=T)[0]
        last = torch.cat([h_n[0], h_n[1]], dim=-1)  # forward at L, backward at step 1
    else:  # deeper: each direction its own stack (documented), as two torch.nn stacks
        twins = []
        for stack in (model.encoder, model.backward_encoder):
            twins.append(nn.LSTM(C, H, layers, batch_first=True).double())
            twins[-1].load_state_dict(stack.core.state_dict())
        rows, ends = [], []
        for b in range(B):
            seq = x[b:b + 1, :int(LENGTHS[b])]
            ahead = twins[0](seq)[0][0]  # (L, H)
            back = twins[1](seq.flip(1))[0][0].flip(0)  # (L, H) at the original positions
            rows.append(nn.functional.pad(torch.cat([ahead, back], -1), (0, 0, 0, T - len(seq[0]))))
            ends.append(torch.cat([ahead[-1], back[0]]))
        want, last = torch.stack(rows), torch.stack(ends)
    states = model.states(x, LENGTHS)
    torch.testing.assert_close(states, want)
    torch.testing.assert_close(model.pool(states, LENGTHS)[0], last)
    torch.testing.assert_close(model(x, LENGTHS), model.to_logits(last))


# padding and pooling -------------------------------------------------------------------
CASES = [("lstm", {}), ("gru", {}), ("bow", {}), ("window-mlp", {}),
         ("lstm", {"bidirectional": True}), ("gru", {"bidirectional": True, "num_layers": 2})]


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("name, keys", CASES, ids=["lstm", "gru", "bow", "window-mlp",
                                                     "lstm-bi", "gru-bi-2layers"])
def test_a_padded_batch_equals_each_sequence_alone_whatever_the_padding_holds(name, keys,
                                                                            pooling):
    model = make(name, pooling=pooling, **keys)
    x = series()
    got = model(x, LENGTHS)
    torch.testing.assert_close(got, alone(model, x))
    garbage = x.masked_fill(padding()[..., None], float("nan"))
    assert torch.equal(model(garbage, LENGTHS), got)


def test_token_padding_never_reaches_the_model_even_out_of_range_ids():
    model = make("lstm", inputs="tokens", pooling="attention", bidirectional=True)
    ids = torch.randint(0, 7, (B, T), generator=torch.Generator().manual_seed(2))
    got = model(ids, LENGTHS)
    torch.testing.assert_close(got, alone(model, ids))
    assert torch.equal(model(ids.masked_fill(padding(), 10**6), LENGTHS), got)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_attention_weights_sum_to_one_over_valid_steps_and_are_zero_on_padding(bidirectional):
    model = make("gru", pooling="attention", bidirectional=bidirectional)
    x = series()
    weights = model.attention_weights(x, LENGTHS)  # (B, T)
    assert weights.shape == (B, T)
    torch.testing.assert_close(weights.sum(1), torch.ones(B, dtype=torch.float64))
    assert (weights[padding()] == 0).all()
    assert (weights[~padding()] > 0).all()
    assert torch.equal(model.pool(model.states(x, LENGTHS), LENGTHS)[1], weights)


def test_attention_pooling_is_the_written_equations():
    model = make("lstm", pooling="attention")
    x, states = series(), model.states(series(), LENGTHS)
    w, b = model.attention.to_key.weight, model.attention.to_key.bias
    v = model.attention.to_score.weight[0]
    for row in range(B):
        s = states[row, :int(LENGTHS[row])]  # (L, H)
        a = torch.softmax(torch.tanh(s @ w.T + b) @ v, dim=0)  # (3), (4)
        torch.testing.assert_close(model.pool(states, LENGTHS)[0][row], a @ s)  # (5)
    assert model(x, LENGTHS).shape == (B, K)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_mean_pooling_is_the_average_over_valid_steps(bidirectional):
    model = make("lstm", pooling="mean", bidirectional=bidirectional)
    x = series()
    states = model.states(x, LENGTHS)
    assert (states[padding()] == 0).all()
    naive = torch.stack([sum(states[b, t] for t in range(int(LENGTHS[b]))) / int(LENGTHS[b])
                         for b in range(B)])
    torch.testing.assert_close(model.pool(states, LENGTHS)[0], naive)
    torch.testing.assert_close(model(x, LENGTHS), model.to_logits(naive))


# the window ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["lstm", "window-mlp"])
@pytest.mark.parametrize("pooling", POOLINGS)
def test_window_at_first_reads_only_the_first_n_steps(name, pooling):
    first = make(name, pooling=pooling, window_at="first")
    whole = make(name, pooling=pooling)
    whole.load_state_dict(first.state_dict())
    x, n = series(), first.config.window
    torch.testing.assert_close(first(x, LENGTHS), whole(x[:, :n], LENGTHS.clamp(max=n)))
    torch.testing.assert_close(first(x), whole(x[:, :n]))
    changed = x.clone()
    changed[:, n:] = 1e3
    assert torch.equal(first(changed, LENGTHS), first(x, LENGTHS))
    assert first.states(x, LENGTHS).shape[1] == n


def test_window_mlp_over_the_longest_length_is_a_plain_mlp_on_the_flattened_series():
    model = make("window-mlp", window=T)
    x = series()
    mlp = model.encoder.to_hidden  # first layer (H, T C): a weight per position
    torch.testing.assert_close(model(x), model.to_logits(mlp(x.reshape(B, T * C))))


def test_bow_counts_reads_one_hot_tokens():
    model = make("bow", inputs="tokens", pooling="last", bow_mode="counts")
    assert "embedding.weight" not in model.state_dict()
    ids = torch.randint(0, 7, (B, T), generator=torch.Generator().manual_seed(3))
    counts = nn.functional.one_hot(ids, 7).double().sum(1)  # (B, V)
    torch.testing.assert_close(model(ids), model.to_logits(model.encoder.to_hidden(
        counts.log1p())))


# trace() for the diagnostics -------------------------------------------------------------
@pytest.mark.parametrize("keys", [{"pooling": p} for p in POOLINGS]
                         + [{"pooling": "attention", "bidirectional": True, "num_layers": 2},
                            {"pooling": "mean", "window_at": "first"}],
                         ids=[*POOLINGS, "attention-bi-2layers", "mean-window-first"])
def test_trace_holds_the_logits_at_each_last_step_and_a_last_probe_scores_the_loss(keys):
    model = make("lstm", **keys)
    x = series()
    outputs, trace = model.trace(x, LENGTHS)
    assert outputs.shape == (B, T, K)
    rows = torch.arange(B)
    torch.testing.assert_close(outputs[rows, LENGTHS - 1], model(x, LENGTHS))
    assert (outputs.abs().sum(-1) != 0).sum() == B  # zeros elsewhere
    targets = torch.tensor([0, 3, 1, 2])
    probe = Probe(x, targets, "ce", "last", LENGTHS)
    want = nn.functional.cross_entropy(model(x, LENGTHS), targets, reduction="none")
    torch.testing.assert_close(sequence_losses(outputs, probe, "last"), want)
    assert len(trace.h[-1]) == (model.config.window if "window_at" in keys else T)


def naive_gradients(model: Classifier, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """dL_b/dh_t (B, T, H), each sequence alone through a naive LSTM loop (tests/reference.py)
    and the pooling written from its equations; zeros past each end."""
    weights = model.encoder.layer_weights(0)
    head, grads = model.to_logits, torch.zeros(B, T, H, dtype=torch.float64)
    for b in range(B):
        h = c = torch.zeros(1, H, dtype=torch.float64)
        hs = []
        for t in range(int(LENGTHS[b])):
            h, c, _ = ref_lstm_step(x[b:b + 1, t], h, c, *weights)
            h.retain_grad()
            hs.append(h)
        s = torch.cat(hs)  # (L, H)
        if model.pooling == "last":
            z = s[-1]
        elif model.pooling == "mean":
            z = s.mean(0)
        else:
            pool = model.attention
            e = torch.tanh(s @ pool.to_key.weight.T + pool.to_key.bias) @ pool.to_score.weight[0]
            z = torch.softmax(e, 0) @ s
        loss = nn.functional.cross_entropy(head(z)[None], targets[b:b + 1])
        loss.backward()
        grads[b, :len(hs)] = torch.cat([g.grad for g in hs])
    return grads


@pytest.mark.parametrize("pooling", POOLINGS)
def test_gradient_through_trace_equals_a_naive_recomputation(pooling):
    model = make("lstm", pooling=pooling)
    x, targets = series(), torch.tensor([0, 3, 1, 2])
    want = naive_gradients(model, x, targets)
    outputs, trace = model.trace(x, LENGTHS)
    probe = Probe(x, targets, "ce", "last", LENGTHS)
    loss = sequence_losses(outputs, probe, "last").sum()
    got = torch.stack(torch.autograd.grad(loss, trace.h[-1]), dim=1)  # (B, T, H)
    torch.testing.assert_close(got, want)
    assert (got[padding()] == 0).all()
    if pooling == "attention":  # every valid step feeds the pooled vector directly
        assert (got[~padding()].norm(dim=-1) > 0).all()
    norms = gradient_through_time(model, probe, "last")  # (T,) the diagnostics' own path
    torch.testing.assert_close(torch.from_numpy(norms), want.norm(dim=-1).mean(0))


def test_the_diagnostics_measure_a_classifier():
    model = make("gru", pooling="attention", num_layers=2)
    lengths = torch.tensor([6, 2, 4, 3])  # jacobian_norms needs two steps in every sequence
    probe = Probe(series(), torch.tensor([0, 3, 1, 2]), "ce", "last", lengths)
    result = measure(model, probe)
    assert len(result["grad_last"]) == T and len(result["jacobian"]) == 1
    assert set(result["gates"]) == {"r", "z", "n"}


@pytest.mark.parametrize("mode", ["fused", "explicit"])
def test_gradcheck_lstm_attention_bidirectional(mode):
    model = make("lstm", pooling="attention", bidirectional=True)
    for stack in (model.encoder, model.backward_encoder):
        stack.mode = mode
    x = series()[:3, :3].requires_grad_()
    lengths = torch.tensor([3, 1, 2])
    names = [name for name, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in model.parameters())

    def logits(x, *values):
        state = dict(zip(names, values, strict=True))
        return torch.func.functional_call(model, state, (x, lengths))

    assert torch.autograd.gradcheck(logits, (x, *params))


# keys and errors -------------------------------------------------------------------------
def test_state_dict_keys_are_the_documented_ones():
    stack = [f"core.{w}_l0" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    model = make("lstm", inputs="tokens", pooling="attention", bidirectional=True)
    assert list(model.state_dict()) == [
        "embedding.weight", *(f"encoder.{k}" for k in stack),
        *(f"backward_encoder.{k}" for k in stack), "attention.to_key.weight",
        "attention.to_key.bias", "attention.to_score.weight", "to_logits.weight",
        "to_logits.bias"]
    assert list(make("bow").state_dict()) == ["encoder.to_hidden.0.weight",
                                              "encoder.to_hidden.0.bias", "to_logits.weight",
                                              "to_logits.bias"]
    assert model.recurrent is model.encoder and make("bow").recurrent is None
    assert model.embed(torch.zeros(B, T, dtype=torch.long)).shape == (B, T, 4)


@pytest.mark.parametrize("name", ["bow", "window-mlp"])
def test_bidirectional_needs_a_recurrent_cell(name):
    with pytest.raises(ValueError, match=f"bidirectional applies to recurrent cells, not {name}"):
        make(name, bidirectional=True)


@pytest.mark.parametrize("keys, message", [
    ({"pooling": "max"}, "pooling must be one of last, mean, attention, got 'max'"),
    ({"window_at": "middle"}, "window_at must be one of last, first"),
    ({"inputs": "images"}, "inputs must be one of tokens, real"),
    ({"model": "transformer"}, "unknown model 'transformer'"),
])
def test_unknown_choices_are_refused(keys, message):
    with pytest.raises(ValueError, match=message):
        make(**keys)


def test_bad_batches_are_refused():
    model, x = make("lstm", pooling="mean"), series()
    with pytest.raises(ValueError, match="every sequence needs at least one step"):
        model(x, torch.tensor([6, 0, 4, 1]))
    with pytest.raises(ValueError, match="every sequence needs at least one step"):
        model(x[:, :0])
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 6\]"):
        model(x, torch.tensor([7, 1, 1, 1]))
    with pytest.raises(ValueError, match=r"expected lengths of shape \(4,\)"):
        model(x, LENGTHS[:2])
    with pytest.raises(TypeError, match="lengths must be integers"):
        model(x, LENGTHS.double())
    with pytest.raises(ValueError, match=r"expected real inputs of shape \(B, T, 3\)"):
        model(x[..., :2])
    with pytest.raises(ValueError, match="attention weights need pooling 'attention'"):
        model.attention_weights(x)
    with pytest.raises(ValueError, match="bow has no recurrent state to trace"):
        make("bow").trace(x)
    with pytest.raises(TypeError, match="token ids must be integers"):
        make(inputs="tokens")(x[..., 0])
