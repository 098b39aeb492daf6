"""--precision: bf16 autocast on a CPU with bfloat16 instructions, fp16 only on CUDA; the
weights, the optimiser and the checkpoints stay float32 whatever the precision."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import seqlab
from seqlab.checkpoint import RunDir
from seqlab.cli import main
from seqlab.families import registry
from seqlab.training import check_precision, cpu_has_bf16

needs_bf16 = pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bfloat16 support")


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in read(run) if "loss" in r]


def read(run: Path) -> list[dict]:
    return RunDir(run).read_metrics()


def untimed(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("elapsed_s", "tokens_per_s")}
            for r in records]


def train(text_file, out, tiny_keys, **keys):
    return seqlab.train(text_file, out=out, **(tiny_keys | keys))


def configs(run: Path):
    config = json.loads((run / "config.json").read_text())
    return registry.of_config(config).configs_of(config, run)


@needs_bf16
def test_bf16_trains_and_checkpoints_stay_float32(text_file, tmp_path, tiny_keys, single_thread):
    torch.manual_seed(0)
    run = tmp_path / "bf16"
    result = train(text_file, run, tiny_keys, precision="bf16", max_steps=30, eval_every=10)
    seen = losses(run)
    assert len(seen) == 30 and all(math.isfinite(x) for x in seen)
    assert sum(seen[-5:]) / 5 < sum(seen[:5]) / 5
    assert math.isfinite(result.summary.best_val_loss)
    for folder in (run, run / "last"):
        weights = load_file(folder / "model.safetensors")
        assert weights and all(t.dtype == torch.float32 for t in weights.values())
    state = torch.load(run / "last" / "trainer_state.pt", weights_only=True)
    moments = [t for s in state["optimizer"]["state"].values() for t in s.values()
               if torch.is_tensor(t) and t.is_floating_point()]
    assert moments and all(t.dtype == torch.float32 for t in moments)
    assert "scaler" not in state  # only fp16 scales the loss
    assert all(p.dtype == torch.float32 for p in result.model.parameters())


@needs_bf16
def test_bf16_first_loss_is_close_to_fp32(text_file, tmp_path, tiny_keys, single_thread):
    fp32 = train(text_file, tmp_path / "fp32", tiny_keys, max_steps=3)
    bf16 = train(text_file, tmp_path / "bf16", tiny_keys, precision="bf16", max_steps=3)
    first32, first16 = losses(fp32.run.path)[0], losses(bf16.run.path)[0]
    assert first16 != first32  # autocast really ran in bfloat16
    assert abs(first16 - first32) < 0.05 * first32


def test_fp16_on_a_cpu_is_a_one_line_error(text_file, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", str(text_file), "--hidden-size", "8", "--embedding-size", "4",
                 "--max-steps", "2", "--device", "cpu", "--precision", "fp16", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "fp16 needs a CUDA GPU; use bf16 on a CPU" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_bf16_on_a_cpu_without_it_is_refused(monkeypatch):
    monkeypatch.setattr("seqlab.training.cpu_has_bf16", lambda: False)
    with pytest.raises(ValueError, match="bf16 needs a CPU with bfloat16"):
        check_precision("bf16", "cpu")
    check_precision("fp32", "cpu")


@needs_bf16
def test_resume_of_a_bf16_run(text_file, tmp_path, tiny_keys, single_thread):
    keys = dict(precision="bf16", decay_steps=20)
    run = tmp_path / "run"
    train(text_file, run, tiny_keys, max_steps=10, **keys)
    seqlab.resume(run, max_steps=20)
    whole = train(text_file, tmp_path / "whole", tiny_keys, max_steps=20, **keys)
    assert untimed(read(run)) == untimed(read(whole.run.path))
    assert configs(run).train.precision == "bf16"


@needs_bf16
def test_precision_round_trips_through_config_json(text_file, tmp_path, tiny_keys):
    run = tmp_path / "run"
    train(text_file, run, tiny_keys, precision="bf16", max_steps=2)
    assert json.loads((run / "config.json").read_text())["train"]["precision"] == "bf16"
    assert configs(run).train.precision == "bf16"
    with pytest.raises(ValueError, match="cannot change: precision"):
        seqlab.resume(run, max_steps=4, precision="fp32")


def test_a_run_written_before_the_key_loads_as_fp32(trained_run, tmp_path):
    run = tmp_path / "old"
    shutil.copytree(trained_run, run)
    config = json.loads((run / "config.json").read_text())
    del config["train"]["precision"]
    (run / "config.json").write_text(json.dumps(config))
    assert configs(run).train.precision == "fp32"
    assert seqlab.load_run(run) is not None
    result = seqlab.resume(run, max_steps=12)
    assert result.summary.steps == 12
