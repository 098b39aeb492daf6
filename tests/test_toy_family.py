"""A task family defined entirely in this file, registered once, runs through every command.

The family is the parity of a bit string (one label per sequence). Nothing under src/ knows it:
train, resume, evaluate --json, info --json and diagnose reach it through the registry and the
family contract alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

from seqlab.cli import main
from seqlab.config import opt, validate
from seqlab.diagnostics import Probe
from seqlab.families import registry
from seqlab.families.base import Configs, Family, Headline, LoadedRun, Prepared, Report
from seqlab.models.sequence import SequenceModel

VAL = 64


@dataclass(frozen=True, kw_only=True)
class ParityConfig:
    """Keys of the parity family."""

    bits: int = opt(6, "parity: bits per sequence", positive=True)

    def __post_init__(self) -> None:
        validate(self)


def bit_batch(count: int, bits: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, 2, (count, bits), generator=gen)  # (B, T)
    return inputs, inputs.sum(1) % 2  # (B,)


class ParityTask:
    def __init__(self, configs: Configs) -> None:
        self.configs = configs
        self.val = bit_batch(VAL, configs.own.bits, 10**6 + configs.train.seed)

    def train_batch(self, step: int):
        return bit_batch(self.configs.train.batch_size, self.configs.own.bits,
                         self.configs.train.seed * 1000 + step)

    def loss(self, model: nn.Module, batch, state):
        inputs, labels = batch
        outputs, _ = model(inputs)  # (B, T, 2)
        return nn.functional.cross_entropy(outputs[:, -1], labels), None, len(labels)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, world=None) -> dict[str, float]:
        # 64 validation sequences: every process scores them all rather than its share
        inputs, labels = self.val
        last = model(inputs)[0][:, -1]
        return {"val_loss": float(nn.functional.cross_entropy(last, labels)),
                "val_accuracy": float((last.argmax(-1) == labels).float().mean())}

    def probe(self, batch: int) -> Probe:
        inputs, labels = self.val
        return Probe(inputs[:batch], labels[:batch], "ce", "last")


class ParityFamily(Family):
    name = "parity"
    help = "the parity of random bit strings"
    config_class = ParityConfig
    ignores = frozenset({"tokenizer", "bpe_vocab_size", "val_fraction", "batching", "seq_len",
                         "eval_batches", "tie_weights"})

    def claims(self, source: str) -> bool:
        return source == "parity-bits"

    def prepare(self, source: str, configs: Configs, assets: Any = None) -> Prepared:
        if source != "parity-bits":
            raise ValueError(f"parity trains on 'parity-bits', not {source!r}")
        return Prepared(source, None, None, {"source": source, "bits": configs.own.bits})

    def build(self, configs: Configs, assets: Any) -> nn.Module:
        return SequenceModel(configs.model, "tokens", 2, 2)

    def task(self, prepared: Prepared, configs: Configs, device) -> ParityTask:
        return ParityTask(configs)

    def load_assets(self, run, configs: Configs, config: dict[str, Any]) -> None:
        return None

    def evaluate(self, loaded: LoadedRun, source: str, **options) -> Report:
        metrics = ParityTask(loaded.configs).evaluate(loaded.model)
        return Report({"run": str(loaded.run.path), **metrics},
                      f"parity accuracy {100 * metrics['val_accuracy']:.1f}%")

    def eval_note(self, record: dict[str, Any]) -> str:
        return f"accuracy {record['val_accuracy']:.3f}"

    def headline(self, record: dict[str, Any]) -> Headline:
        return Headline(accuracy=record.get("val_accuracy"))


@pytest.fixture
def parity(single_thread):
    with registry.registered(ParityFamily()) as family:
        yield family


KEYS = ["--model", "gru", "--hidden-size", "8", "--embedding-size", "4", "--batch-size", "16",
        "--eval-every", "5", "--log-every", "5", "--seed", "3", "--device", "cpu", "--bits", "5"]


def test_a_family_registered_in_a_test_runs_through_every_command(parity, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "parity-bits", *KEYS, "--max-steps", "10", "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "parity" and config["parity"] == {"bits": 5}
    assert "accuracy" in capsys.readouterr().err  # the family's own progress figure
    # the up arrow, and --resume: the same keys continue the run
    assert main(["train", "parity-bits", *KEYS, "--max-steps", "15", "--out", str(run),
                 "--resume"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "parity-bits", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["val_accuracy"] <= 1.0
    assert main(["evaluate", str(run), "parity-bits"]) == 0
    assert capsys.readouterr().out.startswith("parity accuracy ")
    assert main(["info", str(run), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["steps"] == 15 and info["config"]["task"] == "parity"
    assert main(["diagnose", str(run), "--out", str(tmp_path / "d"), "--no-jacobian"]) == 0
    report = json.loads((tmp_path / "d" / "diagnostics.json").read_text())
    assert len(report["trained"]["grad_last"]) == 5  # one norm per bit
    assert set(report["trained"]["gates"]) == {"r", "z", "n"}
    # a family without report sections of its own gets the sections every run has
    assert main(["report", str(run), "--out", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "loss against training step" in page and "Diagnostics" in page
    assert "val_accuracy" in page  # its own evaluation figure, drawn generically


def test_a_registered_family_keys_are_checked(parity, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "parity-bits", *KEYS, "--seq-len", "9", "--out", str(run)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "seqlab: error: seq_len does not apply to the parity task (the parity of random bit "
        "strings)"]
    assert not run.exists()
    assert main(["train", "adding", "--bits", "3", "--out", str(run)]) == 2
    assert "bits does not apply to the synthetic task" in capsys.readouterr().err
    assert main(["train", "parity-bits", *KEYS, "--max-steps", "5", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["train", "parity-bits", *KEYS, "--bits", "7", "--out", str(run),
                 "--resume"]) == 2
    assert "cannot change: bits (5 -> 7" in capsys.readouterr().err
    # a misspelt key of the API: the registered family's own keys are among the suggestions
    with pytest.raises(ValueError, match=r"unknown config keys: bitz, hiden_size \(did you "
                                         r"mean bits, hidden_size\?\)"):
        registry.check_keys(registry.get("parity"), {"bitz": 3, "hiden_size": 4})


def test_the_registry_forgets_a_family_after_the_block(tmp_path, capsys):
    with registry.registered(ParityFamily()):
        assert "parity" in registry.FAMILIES
    assert "parity" not in registry.FAMILIES
    with pytest.raises(SystemExit) as exited:  # argparse's own usage error
        main(["train", "parity-bits", "--bits", "3"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --bits 3" in capsys.readouterr().err
