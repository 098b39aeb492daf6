"""Training on whole tunes (``--batching tunes``): shapes, masking against a naive loss computed
tune by tune, the seeded shuffle, every tune once per epoch, exact resumption, and the error for
a source that has no tunes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import seqlab
from seqlab.cli import main
from seqlab.config import ModelConfig, TrainConfig
from seqlab.data.abc import END, START, split_train_val
from seqlab.data.tunes_batches import IGNORE, PAD, TuneBatches, encode_tunes
from seqlab.data.vocab import CharVocab
from seqlab.models import build_model
from seqlab.tasks import LanguageModelTask, evaluate_chunks, token_nll

pytestmark = pytest.mark.usefixtures("single_thread")

# 20 tunes of 5 different lengths (46 to 94 characters with their markers)
TUNES = [f"X:{k}\nT:Tune {k}\nM:4/4\nL:1/8\nK:G\nGABc dBAG|{'ABcd' * (k % 5 + 1)}|]"
         for k in range(20)]


@pytest.fixture
def abc_file(tmp_path: Path) -> Path:
    path = tmp_path / "set.abc"
    path.write_text("\n\n".join(TUNES) + "\n", encoding="utf-8")
    return path


def char_vocab() -> CharVocab:
    return CharVocab(sorted(set("".join(TUNES) + END)))


def batches(tunes: list[str], batch_size: int = 4, seq_len: int = 16, seed: int | None = 0):
    return TuneBatches(encode_tunes(tunes, char_vocab().encode), batch_size, seq_len, seed)


def lstm(vocab_size: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(model="lstm", embedding_size=8, hidden_size=16,
                                   vocab_size=vocab_size)).eval()


def whole_batches(tb: TuneBatches, epoch: int):
    """(inputs, targets) of each batch of an epoch, its chunks joined along time."""
    first = sum(tb.epoch_steps(e) for e in range(epoch))
    chunks = [tb[s] for s in range(first, first + tb.epoch_steps(epoch))]
    starts = [k for k, c in enumerate(chunks) if c.fresh] + [len(chunks)]
    return [(torch.cat([c.inputs for c in chunks[a:b]], 1),
             torch.cat([c.targets for c in chunks[a:b]], 1))
            for a, b in zip(starts[:-1], starts[1:], strict=True)]


# shapes ----------------------------------------------------------------------------------
def test_a_tune_reads_its_start_marker_and_predicts_itself_and_its_end_marker():
    vocab = char_vocab()
    encoded = encode_tunes(TUNES[:2], vocab.encode)
    assert encoded.context == len(START) == 2
    assert vocab.decode(encoded.sequences[0].tolist()) == START + TUNES[0] + END
    assert encoded.chars == len(TUNES[0] + END) + len(TUNES[1] + END)
    chunk = TuneBatches(encoded, 2, 200, seed=None)[0]
    steps = len(TUNES[1]) + len(START + END) - 1  # the longer tune; the last token is not read
    assert chunk.inputs.shape == chunk.targets.shape == (2, steps)
    assert chunk.inputs.dtype == chunk.targets.dtype == torch.int64
    scored = chunk.targets[0][chunk.targets[0] != IGNORE]
    assert vocab.decode(scored.tolist()) == TUNES[0] + END
    assert chunk.targets[0, 0] == IGNORE  # the start marker is read, not predicted
    pad = chunk.targets[0] == IGNORE
    assert pad[len(TUNES[0]) + 3:].all() and (chunk.inputs[0, len(TUNES[0]) + 3:] == PAD).all()


def test_chunks_of_a_batch_carry_the_state_and_the_last_is_cut_to_the_longest_tune():
    tb = batches(TUNES, batch_size=4, seq_len=16, seed=None)
    lengths = [len(t) + 3 for t in TUNES]  # START + tune + END, less the last token
    for batch, (inputs, _) in zip(tb.tunes_of_epoch(0), whole_batches(tb, 0), strict=True):
        assert inputs.shape == (len(batch), max(lengths[i] for i in batch))
    chunks = [tb[s] for s in range(len(tb))]
    assert all(c.inputs.shape[0] == 4 and c.inputs.shape[1] <= 16 for c in chunks)
    first = -(-max(lengths[:4]) // 16)  # chunks of the first batch (tunes 0 to 3, no shuffle)
    assert [c.fresh for c in chunks[:first + 1]] == [True] + [False] * (first - 1) + [True]
    assert chunks[first - 1].inputs.shape[1] == max(lengths[:4]) - 16 * (first - 1)
    assert tb[len(tb)].fresh and torch.equal(tb[len(tb)].inputs, tb[0].inputs)  # epoch 2


def test_a_last_smaller_batch_and_the_errors():
    tb = batches(TUNES, batch_size=6, seed=None)
    assert [len(b) for b in tb.tunes_of_epoch(0)] == [6, 6, 6, 2]
    with pytest.raises(ValueError, match="needs --seq-len of at least 2"):
        batches(TUNES, seq_len=1)
    with pytest.raises(ValueError, match="TuneBatches: no tunes"):
        batches([])
    with pytest.raises(ValueError, match="expected a step >= 0"):
        batches(TUNES)[-1]


# masking ---------------------------------------------------------------------------------
@torch.no_grad()
def naive_nats(model, vocab: CharVocab, tunes: list[str]) -> tuple[float, int]:
    """Tune by tune, unpadded, in one pass each: the start marker read from a zero state, then
    the tune and its end marker scored."""
    nats, count = 0.0, 0
    for tune in tunes:
        seq = torch.as_tensor(vocab.encode(START + tune + END).astype("int64"))[None]
        logits, _ = model(seq[:, :-1])
        targets = seq[:, 1:].clone()
        targets[:, :len(START) - 1] = IGNORE
        total, n = token_nll(logits, targets)
        nats, count = nats + float(total), count + n
    return nats, count


@pytest.mark.parametrize("seq_len", [5, 16, 200])
def test_padded_chunked_loss_equals_the_naive_loss_tune_by_tune(seq_len):
    vocab = char_vocab()
    model = lstm(vocab.size)
    tb = batches(TUNES, batch_size=6, seq_len=seq_len, seed=None)
    nats, count = evaluate_chunks(model, tb)
    want_nats, want_count = naive_nats(model, vocab, TUNES)
    assert count == want_count == sum(len(t + END) for t in TUNES)  # no padding counted
    # float32 sums of ~1,500 terms, batched against one tune at a time: rounding differs
    assert nats == pytest.approx(want_nats, rel=1e-5)


def test_padding_adds_exactly_zero_to_the_loss_and_its_gradient():
    vocab = char_vocab()
    model = lstm(vocab.size).train()
    chunk = batches(TUNES, batch_size=8, seq_len=200, seed=None)[0]
    pad = chunk.targets == IGNORE
    pad[:, :len(START) - 1] = False  # the start marker: read, not predicted, and not padding
    assert pad.any()
    noisy = chunk.inputs.clone()
    noisy[pad] = torch.randint(0, vocab.size, (int(pad.sum()),), generator=torch.Generator()
                               .manual_seed(1))  # other tokens where padding was read

    def loss_and_grads(inputs):
        model.zero_grad()
        total, count = token_nll(model(inputs)[0], chunk.targets)
        total.backward()
        return total.detach(), count, [p.grad.clone() for p in model.parameters()]

    clean, noisy_run = loss_and_grads(chunk.inputs), loss_and_grads(noisy)
    assert clean[1] == noisy_run[1] == sum(len(t + END) for t in TUNES[:8])
    assert torch.equal(clean[0], noisy_run[0])
    assert all(torch.equal(a, b) for a, b in zip(clean[2], noisy_run[2], strict=True))


def test_the_task_counts_real_tokens_only(abc_file):
    config = TrainConfig(batching="tunes", batch_size=4, seq_len=16, val_fraction=0.2, seed=0)
    data = seqlab.load_data(abc_file, config)
    task = LanguageModelTask(data.train_tokens, data.val_tokens, config, data.chars_per_token,
                             data.tunes)
    model = lstm(data.vocab.size)
    train, val = split_train_val(TUNES, 0.2, seed=0)
    counts = [task.loss(model, task.train_batch(s), None)[2]
              for s in range(task.batches.epoch_steps(0))]
    assert sum(counts) == sum(len(t + END) for t in train)
    metrics = task.evaluate(model)
    nats, count = naive_nats(model, data.vocab, val)
    assert metrics["val_tokens"] == count == len(data.val_tokens)  # every held-out character
    # float32 sums of ~300 terms, batched against one tune at a time
    assert metrics["val_loss"] == pytest.approx(nats / count, rel=1e-5)


# order -----------------------------------------------------------------------------------
def test_the_shuffle_is_seeded_and_changes_from_epoch_to_epoch():
    a, b, c = batches(TUNES, seed=3), batches(TUNES, seed=3), batches(TUNES, seed=4)
    steps = range(0, a.epoch_steps(0) + a.epoch_steps(1) + 5)
    assert all(torch.equal(a[s].inputs, b[s].inputs) and a[s].fresh == b[s].fresh for s in steps)
    assert a.tunes_of_epoch(0) != c.tunes_of_epoch(0)
    assert a.tunes_of_epoch(0) != a.tunes_of_epoch(1)
    late = batches(TUNES, seed=3)  # asked for a late step first, as after a resume
    assert torch.equal(late[steps[-1]].inputs, a[steps[-1]].inputs)


def test_every_training_tune_is_read_once_per_epoch():
    vocab = char_vocab()
    tb = batches(TUNES, batch_size=6, seq_len=16, seed=0)
    for epoch in range(3):
        assert sorted(i for b in tb.tunes_of_epoch(epoch) for i in b) == list(range(len(TUNES)))
        read = [vocab.decode(row[row != IGNORE].tolist())
                for _, targets in whole_batches(tb, epoch) for row in targets]
        assert sorted(read) == sorted(t + END for t in TUNES)


def test_batches_hold_tunes_of_similar_length():
    tb = batches(TUNES, batch_size=2, seed=0)  # pools of 16 tunes sorted by length
    for epoch in range(3):
        plan = tb.tunes_of_epoch(epoch)
        padded = sum(len(b) * int(tb.steps[b].max()) for b in plan)
        # a plain shuffle (seed 0) pads 6%; tunes here differ by 2 to 18 tokens
        assert padded - int(tb.steps.sum()) <= 0.03 * padded


# training, resuming, errors --------------------------------------------------------------
def test_resume_parity(abc_file, tmp_path, tiny_keys):
    keys = tiny_keys | dict(batching="tunes", val_fraction=0.2, decay_steps=30, eval_every=5,
                            log_every=4)
    whole = seqlab.train(abc_file, out=tmp_path / "whole", max_steps=30, **keys)
    seqlab.train(abc_file, out=tmp_path / "split", max_steps=15, **keys)
    data = seqlab.load_data(abc_file, TrainConfig(val_fraction=0.2, seed=keys["seed"]))
    tb = TuneBatches(data.tunes[0], keys["batch_size"], keys["seq_len"], keys["seed"])
    assert not tb[15].fresh and tb.epoch_steps(0) > 30  # resumed mid-batch: the state matters
    split = seqlab.resume(tmp_path / "split", max_steps=30)
    assert split.summary.steps == 30
    a, b = whole.run.read_metrics(), split.run.read_metrics()
    untimed = [[{k: v for k, v in r.items() if k not in ("elapsed_s", "tokens_per_s")}
                for r in records] for records in (a, b)]
    assert [r["loss"] for r in a if "loss" in r] == [r["loss"] for r in b if "loss" in r]
    assert untimed[0] == untimed[1]
    last_a = load_file(tmp_path / "whole" / "last" / "model.safetensors")
    last_b = load_file(tmp_path / "split" / "last" / "model.safetensors")
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a)
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["train"]["batching"] \
        == "tunes"


def test_text_sources_have_no_tunes(text_file, capsys):
    code = main(["train", str(text_file), "--batching", "tunes", "--max-steps", "2",
                 "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("seqlab: error: --batching tunes needs ABC tunes")
    assert len(err.splitlines()) == 1
