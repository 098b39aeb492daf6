"""The classifier's convolutional branch (LSTM-FCN): parity with a naive convolution loop and
with torch.nn's batch norm, padding that changes nothing (in evaluation and, through the
masked batch norm, in training), gradients, and a train / evaluate / predict / diagnose round
trip through the command line with its config keys. Float64 and seeded."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from seqlab.cli import main
from seqlab.config import ModelConfig
from seqlab.families import runner
from seqlab.families.classify import ClassifyConfig
from seqlab.models import Classifier
from seqlab.models.conv_branch import MaskedBatchNorm

pytestmark = pytest.mark.usefixtures("single_thread")
B, T, C, H, K = 4, 9, 3, 5, 3
LENGTHS = torch.tensor([9, 2, 5, 1])  # unsorted, one sequence of a single step
FILTERS, KERNELS = (6, 4, 5), (4, 5, 3)  # an even kernel: "same" pads unevenly


def make(model: str = "lstm", pooling: str = "last", se: bool = False, **options
         ) -> Classifier:
    """A float64 classifier with the branch, its batch norms given running statistics and
    affine weights away from the defaults (so a wrong formula shows), in eval mode."""
    torch.manual_seed(0)
    config = ModelConfig(model=model, hidden_size=H, embedding_size=4, dropout=0.0)
    classifier = Classifier(config, "real", C, K, pooling=pooling, conv_filters=FILTERS,
                            conv_kernels=KERNELS, conv_se=se, **options).double()
    generator = torch.Generator().manual_seed(1)
    for norm in classifier.conv.norms:
        size = norm.num_features
        norm.running_mean.copy_(torch.randn(size, generator=generator, dtype=torch.float64))
        norm.running_var.copy_(torch.rand(size, generator=generator, dtype=torch.float64) + 0.5)
        with torch.no_grad():
            norm.weight.copy_(torch.rand(size, generator=generator) + 0.5)
            norm.bias.copy_(torch.randn(size, generator=generator))
    return classifier.eval()


def series(seed: int = 0, steps: int = T) -> torch.Tensor:
    return torch.randn(B, steps, C, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def naive_branch(classifier: Classifier, x: torch.Tensor) -> torch.Tensor:
    """One sequence x (L, C) alone -> g (F,): every convolution a loop over steps and taps
    with explicit zeros around the sequence, batch norm from its running statistics, squeeze-
    and-excitation and the mean written out."""
    branch = classifier.conv
    u = x.T  # (C, L)
    steps = u.shape[1]
    for n, (conv, norm) in enumerate(zip(branch.convs, branch.norms, strict=True)):
        k = conv.kernel_size[0]
        before = (k - 1) // 2
        padded = torch.cat([u.new_zeros(u.shape[0], before), u,
                            u.new_zeros(u.shape[0], k - 1 - before)], dim=1)
        out = torch.stack([conv.bias + sum(conv.weight[:, :, j] @ padded[:, t + j]
                                           for j in range(k)) for t in range(steps)], dim=1)
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        out = (out - norm.running_mean[:, None]) * scale[:, None] + norm.bias[:, None]
        u = torch.relu(out)
        if branch.excite is not None and n < len(branch.excite):
            excite = branch.excite[n]
            m = u.mean(1)
            u = u * torch.sigmoid(excite.excite.weight @ torch.relu(excite.squeeze.weight @ m)
                                  )[:, None]
    return u.mean(1)


# parity ----------------------------------------------------------------------------------
@pytest.mark.parametrize("se", [False, True])
def test_the_branch_matches_a_naive_convolution_loop_sequence_by_sequence(se):
    classifier = make(se=se)
    x = series()
    with torch.no_grad():
        got = classifier.conv_features(x, LENGTHS)
        want = torch.stack([naive_branch(classifier, x[b, :int(LENGTHS[b])])
                            for b in range(B)])
    torch.testing.assert_close(got, want)


def test_the_head_reads_the_pooled_states_beside_the_branch():
    classifier = make()
    x = series()
    with torch.no_grad():
        z, _ = classifier.pool(classifier.states(x, LENGTHS), LENGTHS)
        g = classifier.conv_features(x, LENGTHS)
        want = torch.cat([z, g], dim=-1) @ classifier.to_logits.weight.T \
            + classifier.to_logits.bias
        torch.testing.assert_close(classifier(x, LENGTHS), want)
    assert classifier.to_logits.weight.shape == (K, H + FILTERS[-1])


def test_masked_batch_norm_is_torch_nn_batch_norm_over_the_valid_steps():
    torch.manual_seed(0)
    ours, twin = MaskedBatchNorm(C).double(), nn.BatchNorm1d(C).double()
    twin.load_state_dict(ours.state_dict())
    h = series().transpose(1, 2)  # (B, C, T)
    mask = torch.arange(T)[None, :] < LENGTHS[:, None]
    got = ours(h, mask)  # training: the statistics of the valid steps
    valid = h.transpose(1, 2)[mask]  # (N, C)
    want = twin(valid.T[None]).squeeze(0).T  # (N, C): torch.nn over (1, C, N)
    torch.testing.assert_close(got.transpose(1, 2)[mask], want)
    assert (got.transpose(1, 2)[~mask] == 0).all()
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ours, key), getattr(twin, key))


def test_a_training_batch_of_one_step_uses_the_running_statistics():
    torch.manual_seed(0)
    norm = MaskedBatchNorm(C).double()
    with torch.no_grad():
        norm.running_mean.fill_(0.5)
        norm.running_var.fill_(4.0)
    h = series().transpose(1, 2)[:1]  # (1, C, T), one valid step
    mask = torch.arange(T)[None, :] < 1
    want = (h[:, :, :1] - 0.5) / math.sqrt(4.0 + norm.eps)
    torch.testing.assert_close(norm(h, mask)[:, :, :1], want)
    assert (norm(h, mask)[:, :, 1:] == 0).all()


# padding ---------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [dict(), dict(pooling="attention", bidirectional=True),
                                     dict(pooling="mean", se=True), dict(model="gru")])
def test_a_padded_batch_gives_each_sequence_its_own_logits(options):
    classifier = make(**options)
    x = series()
    x[torch.arange(T)[None, :] >= LENGTHS[:, None]] = math.nan  # padding is never read
    with torch.no_grad():
        batched = classifier(x, LENGTHS)
        alone = torch.cat([classifier(x[b:b + 1, :int(LENGTHS[b])]) for b in range(B)])
    torch.testing.assert_close(batched, alone)


def test_in_training_more_padding_changes_nothing():
    """Batch norm's training statistics come from the valid steps only: the same batch padded
    to T or to T + 6 steps gives the same logits and the same running statistics."""
    short, long = make().train(), make().train()
    x = series()
    padded = torch.cat([x, torch.randn(B, 6, C, dtype=torch.float64) * 100], dim=1)
    torch.testing.assert_close(short(x, LENGTHS), long(padded, LENGTHS))
    torch.testing.assert_close(short.conv.norms[0].running_mean,
                               long.conv.norms[0].running_mean)
    torch.testing.assert_close(short.conv.norms[2].running_var, long.conv.norms[2].running_var)


# gradients -------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gradients_match_finite_differences(mode):
    classifier = make(se=True, pooling="mean").train(mode == "train")
    x = series()[:, :6].clone().requires_grad_(True)
    lengths = torch.tensor([6, 3, 4, 2])
    weight = torch.randn(B, K, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: (classifier(v, lengths) * weight).sum(), (x,))
    if mode == "eval":
        return
    names = ["conv.convs.1.weight", "conv.norms.0.weight", "conv.excite.0.squeeze.weight"]
    params = [classifier.get_parameter(n).detach().clone().requires_grad_(True) for n in names]
    assert torch.autograd.gradcheck(lambda *values: (torch.func.functional_call(
        classifier, dict(zip(names, values, strict=True)), (x.detach(), lengths))
        * weight).sum(), params)


# errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("filters, kernels, match", [
    ((4, 4), (3,), "one entry per block"), ((0,), (3,), "positive"), ((), (3,), "one entry")])
def test_bad_branch_shapes_are_refused(filters, kernels, match):
    config = ModelConfig(model="lstm", hidden_size=H)
    with pytest.raises(ValueError, match=match):
        Classifier(config, "real", C, K, conv_filters=filters, conv_kernels=kernels)


def test_the_config_parses_and_checks_the_branch():
    assert ClassifyConfig(conv_filters="8,16", conv_kernels="5,3").conv() == ((8, 16), (5, 3))
    assert ClassifyConfig().conv() == ((), ())
    for keys, match in ((dict(conv_filters="8,16"), r"one kernel size per block of "
                         r"conv_filters \(2\), got '8,5,3' \(the default, for three blocks\)"),
                        (dict(conv_filters="8,x", conv_kernels="3,3"), "conv_filters"),
                        (dict(conv_filters="8", conv_kernels="-3"), "conv_kernels"),
                        (dict(conv_se=True), "conv_se needs")):
        with pytest.raises(ValueError, match=match):
            ClassifyConfig(**keys)


# the command line ------------------------------------------------------------------------
KEYS = ["--model", "lstm", "--hidden-size", "8", "--batch-size", "8", "--eval-every", "10",
        "--log-every", "10", "--device", "cpu", "--quiet", "--lr", "0.01", "--warmup-steps",
        "0", "--conv-filters", "8,16,8", "--conv-kernels", "5,4,3", "--conv-se"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def ramps(path, count: int = 40, seed: int = 0):
    """Rising or falling ramps of 8 to 19 steps: variable lengths, padded batches."""
    generator = torch.Generator().manual_seed(seed)
    rows = ["@problemName ramps", "@timeStamps false", "@univariate true",
            "@equalLength false", "@classLabel true up down", "@data"]
    for k in range(count):
        steps = int(torch.randint(8, 20, (1,), generator=generator))
        sign = 1 if k % 2 == 0 else -1
        values = sign * torch.linspace(-1, 1, steps) + 0.1 * torch.randn(steps,
                                                                         generator=generator)
        rows.append(",".join(f"{v:.4f}" for v in values) + (":up" if sign > 0 else ":down"))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_train_evaluate_predict_and_diagnose_with_the_branch(tmp_path, capsys):
    pytest.importorskip("sktime")
    data, run = ramps(tmp_path / "ramps.ts"), tmp_path / "run"
    code, _, err = run_cli(capsys, "train", data, *KEYS, "--max-steps", "30", "--out", run)
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())["classify"]
    assert (config["conv_filters"], config["conv_kernels"], config["conv_se"]) == \
        ("8,16,8", "5,4,3", True)
    loaded = runner.load_run(run)
    assert loaded.model.conv.filters == (8, 16, 8) and loaded.model.conv.kernels == (5, 4, 3)
    assert loaded.model.conv.norms[0].num_batches_tracked > 0  # trained statistics came back
    code, out, err = run_cli(capsys, "info", run)
    assert code == 0 and "conv branch 8,16,8 (kernels 5,4,3, squeeze-excitation)" in out
    code, out, err = run_cli(capsys, "evaluate", run, data, "--json")
    assert code == 0, err
    accuracy = json.loads(out)["accuracy"]
    assert accuracy >= 0.9  # rising against falling: easy
    code, out, err = run_cli(capsys, "predict", run, data, "--format", "jsonl")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 40
    assert sum(r["label"] == r["given"] for r in records) / 40 == pytest.approx(accuracy)
    code, out, err = run_cli(capsys, "diagnose", run, "--batch", "4", "--no-jacobian",
                             "--json")
    assert code == 0, err


@pytest.mark.parametrize("extra, words", [
    (["--conv-filters", "8,16", "--conv-kernels", "3"], "one kernel size per block"),
    (["--conv-filters", "8,a"], "conv_filters"), (["--conv-se"], "conv_se needs")])
def test_bad_branch_options_are_one_line_and_write_nothing(tmp_path, capsys, extra, words):
    pytest.importorskip("sktime")
    data, run = ramps(tmp_path / "ramps.ts"), tmp_path / "run"
    code, _, err = run_cli(capsys, "train", data, *KEYS[:-5], *extra, "--max-steps", "2",
                           "--out", run)
    assert code == 2 and err.startswith("seqlab: error:") and words in err, err
    assert len(err.strip().splitlines()) == 1 and not run.exists()
