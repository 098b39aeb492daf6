"""seqlab.io and seqlab.checkpoint: atomic writes, the run directory and its error messages."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

import seqlab
from seqlab.api import load_run
from seqlab.checkpoint import RunDir
from seqlab.config import ModelConfig
from seqlab.io import atomic_write, atomic_write_json, atomic_write_text
from seqlab.models import build_model

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    """A private copy of the shared trained run, free to damage."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


@pytest.fixture
def umask_022():
    """Pin the umask, so that 'readable by others' does not depend on the caller's shell."""
    before = os.umask(0o022)
    yield
    os.umask(before)


# atomic writes -----------------------------------------------------------------------------
@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failed_write_keeps_the_old_file(tmp_path, error):
    path = tmp_path / "file.json"
    path.write_text("old", encoding="utf-8")

    def write(tmp: str) -> None:
        Path(tmp).write_text("half-writ", encoding="utf-8")
        raise error

    with pytest.raises(type(error)):
        atomic_write(path, write)
    assert path.read_text(encoding="utf-8") == "old"
    assert os.listdir(tmp_path) == ["file.json"]  # no temporary file left behind


def test_successful_write_replaces_and_cleans_up(tmp_path):
    path = tmp_path / "deep" / "er" / "file.json"
    atomic_write_json(path, {"b": 1, "a": [1, 2]})
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": [1, 2], "b": 1}
    atomic_write_text(path, "new\u00e9")
    assert path.read_bytes() == "new\u00e9".encode()
    assert os.listdir(path.parent) == ["file.json"]


def test_atomic_write_respects_umask(tmp_path, umask_022):
    atomic_write_text(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    os.umask(0o077)
    atomic_write_text(tmp_path / "b.txt", "x")
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o600


# the run directory -------------------------------------------------------------------------
def test_create_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(FileExistsError, match="already exists and is not empty"):
        RunDir.create(tmp_path / "used")
    assert (tmp_path / "used" / "notes.txt").read_text(encoding="utf-8") == "mine"
    (tmp_path / "a_file").write_text("x", encoding="utf-8")
    with pytest.raises(FileExistsError, match="already exists"):
        RunDir.create(tmp_path / "a_file")
    (tmp_path / "empty").mkdir()
    assert RunDir.create(tmp_path / "empty").path == tmp_path / "empty"
    assert RunDir.create(tmp_path / "new" / "nested").path.is_dir()


def test_train_refuses_to_overwrite_a_run(trained_run, tiny_keys):
    before = (trained_run / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="not empty"):
        seqlab.train(trained_run.parent / "tiny.txt", out=trained_run, max_steps=1, **tiny_keys)
    assert (trained_run / "model.safetensors").read_bytes() == before


def test_load_run_round_trip(trained_run):
    loaded = load_run(trained_run)
    assert not loaded.model.training
    assert loaded.vocab.kind == "char" and loaded.config["task"] == "lm"
    assert loaded.model.config.hidden_size == 16
    last = load_run(trained_run, last=True)
    tokens = torch.as_tensor(loaded.vocab.encode("the cat")).long()[None]
    assert loaded.model(tokens)[0].shape == (1, 7, loaded.vocab.size)
    # best and last weights are both loadable; they may or may not coincide
    assert last.model(tokens)[0].shape == (1, 7, loaded.vocab.size)


def test_load_run_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run directory"):
        load_run(tmp_path / "nowhere")


@pytest.mark.parametrize(("name", "message"), [
    ("config.json", r"not a complete run \(missing config\.json\)"),
    ("model.safetensors", r"not a complete run \(missing model\.safetensors\)"),
    # says "no vocab.json", not "missing": the one message of the three worded differently
    ("vocab.json", r"not a complete run \(no vocab\.json or tokenizer\.json\)"),
])
def test_load_run_missing_file(run_copy, name, message):
    (run_copy / name).unlink()
    with pytest.raises(ValueError, match=message):
        load_run(run_copy)


def test_load_run_missing_last_weights(run_copy):
    (run_copy / "last" / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"missing last/model\.safetensors"):
        load_run(run_copy, last=True)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "tiny", "empty"])
def test_load_run_damaged_weights(run_copy, damage):
    path = run_copy / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes({"truncate": data[:len(data) // 2],
                      "garbage": b"\x8f garbage bytes \x00" * 40,
                      "tiny": b"abc",
                      "empty": b""}[damage])
    with pytest.raises(ValueError, match=re.escape(str(path)) + ": truncated or corrupt"):
        load_run(run_copy)


def edit_config(run: Path, **model_keys) -> None:
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    config["model"].update(model_keys)
    (run / "config.json").write_text(json.dumps(config), encoding="utf-8")


def test_load_run_config_that_does_not_match_the_weights(run_copy):
    edit_config(run_copy, hidden_size=24)
    with pytest.raises(ValueError, match=r"the weights do not match config\.json"):
        load_run(run_copy)


def test_load_run_config_that_does_not_match_the_vocabulary(run_copy):
    vocab_size = json.loads((run_copy / "config.json").read_text())["model"]["vocab_size"]
    edit_config(run_copy, vocab_size=vocab_size + 1)
    with pytest.raises(ValueError, match=f"says vocab_size {vocab_size + 1} but the vocabulary "
                                         f"has {vocab_size} tokens"):
        load_run(run_copy)


def test_load_run_invalid_config(run_copy):
    (run_copy / "config.json").write_text("{ not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not a valid seqlab config"):
        load_run(run_copy)
    (run_copy / "config.json").write_text('{"model": {"hidden_size": -1}, "train": {}}')
    with pytest.raises(ValueError, match="invalid model config"):
        load_run(run_copy)


def test_load_trainer_state_damaged(run_copy):
    (run_copy / "last" / "trainer_state.pt").write_bytes(b"not a pickle or a zip")
    with pytest.raises(ValueError, match="unreadable trainer state"):
        RunDir(run_copy).load_trainer_state()


# weights -----------------------------------------------------------------------------------
def test_tied_weights_save_and_load(tmp_path):
    config = ModelConfig(model="gru", embedding_size=8, hidden_size=8, vocab_size=7,
                         tie_weights=True)
    torch.manual_seed(0)
    model = build_model(config)
    run = RunDir.create(tmp_path / "run")
    run.save_weights(model)
    torch.manual_seed(1)
    fresh = build_model(config)
    run.load_weights(fresh)
    assert fresh.to_logits.weight is fresh.embedding.weight  # still one matrix
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    untied = build_model(ModelConfig(model="gru", embedding_size=8, hidden_size=8, vocab_size=7))
    with pytest.raises(ValueError, match="do not match"):
        run.load_weights(untied)


def pack_into_one_buffer(module: torch.nn.Module) -> None:
    """Make every parameter a view of one flat buffer, as cuDNN does with a recurrent layer."""
    params = list(module.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    offset = 0
    for p in params:
        p.data = flat[offset:offset + p.numel()].view_as(p)
        offset += p.numel()


def test_weights_packed_in_one_buffer_save_and_load(tmp_path):
    """On a GPU cuDNN packs a layer's weights into one buffer: each is still saved and loaded."""
    config = ModelConfig(model="lstm", embedding_size=6, hidden_size=8, num_layers=2,
                         vocab_size=7, tie_weights=False)
    torch.manual_seed(0)
    model = build_model(config)
    pack_into_one_buffer(model.recurrent.core)
    run = RunDir.create(tmp_path / "run")
    run.save_weights(model)
    torch.manual_seed(1)
    fresh = build_model(config)
    pack_into_one_buffer(fresh.recurrent.core)
    run.load_weights(fresh)
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_tied_run_trains_and_loads(text_file, tmp_path, tiny_keys):
    keys = tiny_keys | dict(embedding_size=16, hidden_size=16, tie_weights=True)
    result = seqlab.train(text_file, out=tmp_path / "run", max_steps=3, **keys)
    loaded = load_run(tmp_path / "run")
    assert loaded.model.to_logits.weight is loaded.model.embedding.weight
    for a, b in zip(result.model.state_dict().values(), loaded.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)


# metrics.jsonl -----------------------------------------------------------------------------
def test_metrics_torn_line_is_ignored_and_truncation_keeps_earlier_steps(tmp_path):
    run = RunDir.create(tmp_path / "run")
    for step in (1, 2, 3, 4):
        run.append_metrics({"step": step, "loss": float(step)})
    with open(run.path / "metrics.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"step": 5, "lo')
    assert [r["step"] for r in run.read_metrics()] == [1, 2, 3, 4]
    run.truncate_metrics(2)
    assert run.read_metrics() == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 2.0}]
    assert RunDir(tmp_path / "elsewhere").read_metrics() == []


# permissions -------------------------------------------------------------------------------
def write_every_file(path: Path) -> RunDir:
    run = RunDir.create(path)
    model = build_model(ModelConfig(model="rnn", embedding_size=4, hidden_size=4, vocab_size=3))
    run.write_config({"model": {}, "train": {}})
    seqlab.data.vocab.CharVocab(["a", "b", "c"]).save(run.path)
    run.save_weights(model)
    run.save_weights(model, last=True)
    run.save_trainer_state({"step": 0})
    run.append_metrics({"step": 0})
    run.truncate_metrics(0)
    return run


def test_run_files_are_readable_by_others(tmp_path, umask_022):
    run = write_every_file(tmp_path / "run")
    for name in ("config.json", "vocab.json", "metrics.jsonl", "last/trainer_state.pt"):
        assert (run.path / name).stat().st_mode & 0o044 == 0o044, name


@pytest.mark.parametrize("name", ["model.safetensors", "last/model.safetensors"])
def test_weights_are_readable_by_others(tmp_path, umask_022, name):
    run = write_every_file(tmp_path / "run")
    assert (run.path / name).stat().st_mode & 0o044 == 0o044


@pytest.mark.parametrize("window", ["writing staging", "after last moved away",
                                    "before old removed"])
def test_a_kill_while_last_is_replaced_leaves_a_matching_pair(tmp_path, window):
    """save_last writes weights and trainer state of one step together; a kill inside any of
    its windows leaves a complete pair of one step where resume finds it."""
    run = RunDir.create(tmp_path / "run")
    old = build_model(ModelConfig(model="gru", vocab_size=5, hidden_size=4, embedding_size=3))
    new = build_model(ModelConfig(model="gru", vocab_size=5, hidden_size=4, embedding_size=3))
    run.save_last(old, {"step": 10})
    run.save_last(new, {"step": 20})
    last, staging, previous = (run.path / n for n in ("last", "last.new", "last.old"))
    if window == "writing staging":  # step 30 half written: its weights, no state yet
        shutil.copytree(last, staging)
        (staging / "trainer_state.pt").unlink()
        want, weights = 20, new
    elif window == "after last moved away":  # last -> last.old done, last.new -> last not yet
        os.replace(last, previous)
        shutil.copytree(previous, staging)
        want, weights = 20, new
    else:  # last.new -> last done, last.old still there (holding step 10)
        shutil.copytree(last, previous)
        torch.save({"step": 10}, previous / "trainer_state.pt")
        want, weights = 20, new
    assert run.load_trainer_state()["step"] == want
    loaded = build_model(ModelConfig(model="gru", vocab_size=5, hidden_size=4, embedding_size=3))
    run.load_weights(loaded, last=True)
    for name, tensor in weights.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    run.save_last(old, {"step": 30})  # the next save cleans up whatever was left
    assert sorted(p.name for p in run.path.iterdir()) == ["last"]
    assert run.load_trainer_state()["step"] == 30
