"""The CUDA path: runs wherever a GPU is present (skipped, with the reason, elsewhere)."""

from __future__ import annotations

import pytest
import torch

import seqlab
from seqlab.recurrent import Recurrent

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


@pytest.mark.parametrize("cell", ["rnn", "irnn", "lstm", "gru"])
def test_cudnn_and_explicit_paths_agree_on_gpu(cell):
    torch.manual_seed(0)
    model = Recurrent(cell, 6, 10, num_layers=2).double().cuda()
    x = torch.randn(4, 9, 6, dtype=torch.float64, device="cuda")
    lengths = torch.tensor([9, 3, 7, 1])
    fused, fused_state = model(x, lengths=lengths)
    model.mode = "explicit"
    explicit, explicit_state = model(x, lengths=lengths)
    torch.testing.assert_close(fused, explicit)
    for a, b in zip(fused_state if cell == "lstm" else (fused_state,),
                    explicit_state if cell == "lstm" else (explicit_state,), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_the_scan_on_gpu_equals_the_sweep_on_cpu(cell):
    """Fused mode runs the log-space scan on a GPU and the sweep on a CPU: the same states and
    gradients, float64, padded."""
    torch.manual_seed(0)
    model = Recurrent(cell, 6, 10, num_layers=2).double()
    x = torch.randn(4, 40, 6, dtype=torch.float64)
    lengths = torch.tensor([40, 3, 27, 1])
    results = []
    for device in ("cpu", "cuda"):
        model.to(device).zero_grad()
        inputs = x.to(device).requires_grad_()
        out, state = model(inputs, lengths=lengths)
        (out * out.detach().cos()).sum().backward()
        results.append([out.cpu(), state.cpu(), inputs.grad.cpu(),
                        *(p.grad.cpu() for p in model.parameters())])
    unpadded = [type(model.to(d)(x.to(d).requires_grad_())[0].grad_fn).__name__
                for d in ("cpu", "cuda")]
    assert "LinearSweep" in unpadded[0] and "LinearSweep" not in unpadded[1]  # the GPU scanned
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b)


def test_train_and_generate_on_gpu(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat\n" * 200)
    result = seqlab.train(str(text), out=tmp_path / "run", hidden_size=32, seq_len=16,
                          batch_size=4, max_steps=20, eval_every=10, device="cuda")
    assert next(result.model.parameters()).is_cuda
    assert result.summary.best_val_loss < 3.0
    loaded = seqlab.load_run(tmp_path / "run", device="cuda")
    sample = seqlab.generate(loaded.model, loaded.vocab, prompt="the", length=20, seed=0)[0]
    assert sample.startswith("the") and len(sample) == 23


@pytest.mark.parametrize("attention", ["none", "additive", "general"])
def test_seq2seq_on_gpu_matches_cpu(attention):
    """The same weights give the same logits and attention on the GPU as on the CPU."""
    from seqlab.models.seq2seq import Seq2Seq, Seq2SeqShape

    torch.manual_seed(0)
    shape = Seq2SeqShape(cell="lstm", source_vocab_size=11, target_vocab_size=9,
                         embedding_size=5, hidden_size=8, attention=attention,
                         bidirectional=True)
    model = Seq2Seq(shape).double().eval()
    source = torch.randint(1, 11, (4, 7))
    lengths = torch.tensor([7, 2, 5, 1])
    target = torch.randint(1, 9, (4, 6))
    cpu_logits, cpu_weights = model(source, lengths, target)
    gpu_logits, gpu_weights = model.cuda()(source.cuda(), lengths, target.cuda())
    torch.testing.assert_close(gpu_logits.cpu(), cpu_logits)
    if attention != "none":
        torch.testing.assert_close(gpu_weights.cpu(), cpu_weights)
        assert (gpu_weights[1, :, 2:] == 0).all()  # nothing read past a source's end


def test_seq2seq_train_translate_and_evaluate_on_gpu(tmp_path):
    from seqlab.families.seq2seq import evaluate, load, translate_texts

    out = tmp_path / "reverse"
    seqlab.train("reverse", out=out, attention="additive", length="3-6", hidden_size=32,
                 embedding_size=16, batch_size=32, max_steps=40, eval_every=20, log_every=20,
                 num_pairs=500, lr=1e-2, seed=0, device="cuda")
    loaded = load(out, "cuda")
    assert next(loaded.model.parameters()).is_cuda
    greedy, beam = (translate_texts(loaded.model, loaded.vocab, ["abcd", "ba"], beam=b)
                    for b in (1, 3))
    for outputs in (greedy, beam):
        assert len(outputs) == 2
        for o in outputs:
            assert o.weights.shape == (len(o.output_tokens), len(o.source_tokens))
            torch.testing.assert_close(o.weights.sum(-1).cpu(),
                                       torch.ones(len(o.output_tokens)))
    result = evaluate(out, "reverse", device="cuda", beam=2)
    assert result["pairs"] > 0 and 0.0 <= result["exact_match"] <= 1.0 and result["beam"] == 2


def test_synthetic_task_trains_on_gpu(tmp_path):
    result = seqlab.train("adding", out=tmp_path / "adding", model="lstm", length="30",
                          hidden_size=16, batch_size=16, max_steps=60, eval_every=30,
                          val_sequences=64, chrono_steps=30, lr=1e-2, warmup_steps=5,
                          device="cuda")
    assert next(result.model.parameters()).is_cuda
    assert result.summary.best_val_loss < 0.3  # MSE; the memoryless baseline is 0.167
