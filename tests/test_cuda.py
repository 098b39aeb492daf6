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
