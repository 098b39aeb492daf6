"""Sizes with no upper bound and numbers that overflow (issue 13, classes 1 and 2), driven
through the command line as a user types them: one line ``seqlab: error: ...``, exit code 2,
and nothing on disk changed. The sizes are refused by estimate, before anything is allocated,
so these tests never allocate what they ask for."""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from seqlab import limits
from seqlab.cli import main
from seqlab.families import registry
from seqlab.families.base import Configs
from seqlab.limits import TooLarge

HUGE = "10000000"

# a tiny source per family, so that every shared size key is tried on every family
SOURCES = {"lm": "TEXT", "synthetic": "copy", "seq2seq": "reverse", "classify": "TSV",
           "forecast": "airline"}
SMALL = {"lm": [], "synthetic": ["--length", "10", "--val-sequences", "8"],
         "seq2seq": ["--num-pairs", "60"], "classify": ["--task", "classify"],
         "forecast": ["--horizon", "6", "--context", "12"]}


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by relative path, with its content's hash."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(capsys, argv: list[str], folder: Path, *wanted: str) -> str:
    """Run ``argv``; assert exit 2, one error line holding every ``wanted``, no file changed
    under ``folder``; return the line."""
    before = snapshot(folder)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqlab: error: "), err
    for text in wanted:
        assert text in lines[0], lines[0]
    assert snapshot(folder) == before
    return lines[0]


@pytest.fixture(autouse=True)
def machine(monkeypatch):
    """A 16 GiB machine, whatever runs the tests: a big one must not allocate what is asked."""
    monkeypatch.setattr(limits, "host_memory", lambda: (16 * 2**30, 8 * 2**30))


@pytest.fixture
def work(tmp_path: Path, tiny_text: str) -> Path:
    (tmp_path / "tiny.txt").write_text(tiny_text, encoding="utf-8")
    lines = [line for line in tiny_text.splitlines() if line.strip()] * 4
    (tmp_path / "tiny.tsv").write_text("".join(f"{k % 2}\t{line}\n"
                                               for k, line in enumerate(lines)),
                                       encoding="utf-8")
    return tmp_path


def train_argv(work: Path, family: str, *flags: str) -> list[str]:
    source = SOURCES[family]
    data = {"TEXT": str(work / "tiny.txt"), "TSV": str(work / "tiny.tsv")}.get(source, source)
    return ["train", data, "--out", str(work / "run"), "--max-steps", "1", "--quiet",
            "--device", "cpu", *SMALL[family], *flags]


def families_with(key: str) -> list[str]:
    return [name for name, family in registry.FAMILIES.items()
            if name in SOURCES and key in family.key_names()]


# class 1: sizes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["hidden_size", "embedding_size", "batch_size"])
@pytest.mark.parametrize("family", list(SOURCES))
def test_a_shared_size_too_large_for_the_machine_is_refused_before_allocating(
        capsys, work, family, key):
    if family not in families_with(key):
        pytest.skip(f"{family} has no {key}")
    flag = "--" + key.replace("_", "-")
    line = refused(capsys, train_argv(work, family, flag, HUGE), work,
                   f"{key} {HUGE}", "would need", "this machine has")
    assert "internal error" not in line


def test_every_family_with_a_source_here_is_covered():
    """A new family gets these tests by adding its tiny source to SOURCES."""
    assert set(registry.FAMILIES) <= set(SOURCES)


@pytest.mark.parametrize("family", list(SOURCES))
def test_num_layers_has_a_maximum_so_that_a_stack_is_never_built_for_minutes(
        capsys, work, family):
    refused(capsys, train_argv(work, family, "--num-layers", HUGE), work,
            "num_layers must be in [1, 10000], got 10000000")


def test_window_of_window_mlp_too_large(capsys, work):
    refused(capsys, train_argv(work, "lm", "--model", "window-mlp", "--window", HUGE), work,
            f"window {HUGE}", "would need")


def test_hidden_size_from_a_toml_file(capsys, work):
    (work / "big.toml").write_text("hidden_size = 10000000000\n", encoding="utf-8")
    refused(capsys, train_argv(work, "lm", "--config", str(work / "big.toml")), work,
            "hidden_size 10000000000", "would need")


@pytest.mark.parametrize("length", ["1000000000", "2-100000000"])
def test_synthetic_length_too_long(capsys, work, length):
    argv = ["train", "adding", "--out", str(work / "run"), "--quiet", "--length", length]
    refused(capsys, argv, work, f"length {length}", "validation sequences", "would need")


def test_a_synthetic_batch_too_large_is_named_as_the_batch(capsys, work):
    argv = ["train", "adding", "--out", str(work / "run"), "--quiet", "--batch-size",
            "1000000000"]
    refused(capsys, argv, work, "batch_size 1000000000", "drawing a batch of 1,000,000,000 "
            "and 1,000 validation sequences of up to 100 steps", "would need")


def test_synthetic_val_sequences_too_many(capsys, work):
    argv = ["train", "adding", "--out", str(work / "run"), "--quiet", "--val-sequences",
            "1000000000"]
    refused(capsys, argv, work, "val_sequences 1000000000", "would need")


def test_pair_task_length_too_long(capsys, work):
    argv = ["train", "reverse", "--out", str(work / "run"), "--quiet", "--length", "100000000"]
    refused(capsys, argv, work, "length 100000000", "reverse pairs", "would need")


def test_pair_task_num_pairs_too_many(capsys, work):
    argv = ["train", "dates", "--out", str(work / "run"), "--quiet", "--num-pairs",
            "1000000000"]
    refused(capsys, argv, work, "num_pairs 1000000000", "dates pairs", "would need")


def test_the_limit_is_the_machines_memory_not_a_fixed_number(monkeypatch):
    """The same model is refused on a 1 GiB machine and accepted on a 1 TiB one."""
    family = registry.FAMILIES["lm"]
    configs = family.configs({"hidden_size": 20_000, "device": "cpu"})
    monkeypatch.setattr(limits, "host_memory", lambda: (2**30, 2**30))
    with pytest.raises(TooLarge, match=r"hidden_size 20000: training .* would need"):
        family.check_sizes(configs)
    monkeypatch.setattr(limits, "host_memory", lambda: (2**40, 2**40))
    family.check_sizes(configs)
    assert isinstance(configs, Configs)


def test_machine_memory_is_read(monkeypatch):
    monkeypatch.undo()
    memory = limits.machine_memory("cpu")
    assert 0 < memory.available <= memory.total
    assert "memory" in str(memory)


# using a run: generate, diagnose, translate ---------------------------------------------------
@pytest.mark.parametrize("flags, wanted", [
    (["--length", "1000000000000"], ["--length 1000000000000 with --num-samples 1",
                                     "1 samples of up to 1,000,000,000,000 tokens would need"]),
    (["--num-samples", "1000000000", "--length", "5"], ["--num-samples 1000000000"]),
    (["--tunes", "100000000"], ["--max-tune-length 2000 with --tunes 100000000",
                                "100,000,000 tunes of up to 2,000 tokens would need"]),
    (["--lines", "1000000000"], ["--max-line-length 256 with --lines 1000000000"]),
])
def test_generate_sizes(capsys, trained_run, tmp_path, flags, wanted):
    out = ["--out", str(tmp_path / "tunes")] if "--tunes" in flags else []
    refused(capsys, ["generate", str(trained_run), *flags, *out], trained_run, *wanted)
    assert not (tmp_path / "tunes").exists()


def test_diagnose_batch_too_large(capsys, trained_run, tmp_path):
    refused(capsys, ["diagnose", str(trained_run), "--batch", "1000000000", "--out",
                     str(tmp_path / "d")], trained_run, "batch 1000000000", "would need")
    assert not (tmp_path / "d").exists()


@pytest.fixture(scope="module")
def pair_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pairs")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", "reverse", "--out", str(folder / "run"), "--num-pairs", "60",
                     "--max-steps", "1", "--hidden-size", "8", "--embedding-size", "8",
                     "--quiet", "--device", "cpu"]) == 0
    finally:
        torch.set_num_threads(before)
    return folder / "run"


def test_translate_beam_too_wide(capsys, pair_run):
    refused(capsys, ["translate", str(pair_run), "abc", "--beam", "1000000"], pair_run,
            "beam 1000000", "hypotheses per input", "a beam up to")


def test_evaluate_beam_too_wide(capsys, pair_run):
    refused(capsys, ["evaluate", str(pair_run), "reverse", "--beam", "1000000"], pair_run,
            "beam 1000000")


# an allocation that still fails ------------------------------------------------------------------
def test_an_allocator_failure_becomes_a_usage_error_naming_the_size_flags(
        capsys, trained_run, monkeypatch):
    generate = importlib.import_module("seqlab.generate")  # seqlab.generate is a function

    def fail(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 8000000000000 bytes")

    monkeypatch.setattr(generate, "sample_ids", fail)
    line = refused(capsys, ["generate", str(trained_run), "--length", "7"], trained_run,
                   "--length 7", "out of memory", "tried to allocate 7.3 TiB", "this machine has")
    assert "internal error" not in line


def test_allocation_errors_passes_other_errors_unchanged():
    with pytest.raises(RuntimeError, match="shape mismatch"), \
            limits.allocation_errors({"batch": 3}):
        raise RuntimeError("shape mismatch")
    with pytest.raises(TooLarge, match="batch 3: out of memory"), \
            limits.allocation_errors({"batch": 3}):
        raise MemoryError()


# class 2: numbers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("flag, value, wanted", [
    ("--forget-bias", "1e308", "forget_bias must be in [-100, 100], got 1e+308"),
    ("--forget-bias=-1e308", None, "forget_bias must be in [-100, 100], got -1e+308"),
    ("--lr", "1e300", "lr must be in [1.2e-38, 3.4e+38] (float32: no overflow, no subnormal)"),
    ("--lr", "1e-45", "lr must be in [1.2e-38, 3.4e+38]"),  # a float32 subnormal: no update
    ("--lr", "-0.0", "lr must be positive, got -0.0"),
    ("--min-lr-ratio", "5", "min_lr_ratio must be 0 or in [1.2e-38, 1], got 5.0"),
    ("--clip-norm", "1e-40", "clip_norm must be 0 or in [1.2e-38, 3.4e+38]"),
    ("--weight-decay", "1e39", "weight_decay must be 0 or in [1.2e-38, 3.4e+38]"),
    ("--dropout", "inf", "dropout must be finite, got inf"),
])
@pytest.mark.parametrize("family", list(SOURCES))
def test_a_float_outside_its_meaningful_range_is_refused(capsys, work, family, flag, value,
                                                         wanted):
    if family not in families_with(flag[2:].split("=")[0].replace("-", "_")):
        pytest.skip(f"{family} ignores {flag}")
    given = [flag] if value is None else [flag, value]  # --flag=-1e308: argparse's own form
    refused(capsys, train_argv(work, family, *given), work, wanted)


def test_init_radius_overflowing_float32(capsys, work):
    refused(capsys, train_argv(work, "synthetic", "--model", "rnn", "--init-radius", "1e39"),
            work, "init_radius must be 0 or in [1.2e-38, 3.4e+38]")


def test_length_penalty_beyond_its_range_in_train(capsys, work):
    refused(capsys, train_argv(work, "seq2seq", "--length-penalty", "1000"), work,
            "length_penalty must be 0 or in [1.2e-38, 10], got 1000.0")


@pytest.mark.parametrize("value, wanted", [
    ("1e-45", "temperature must be in [1.2e-38, 3.4e+38]"),
    ("inf", "temperature must be finite, got inf"),
    ("-0.0", "temperature must be positive, got -0.0"),
    ("nan", "temperature must be positive"),
])
def test_generate_temperature(capsys, trained_run, value, wanted):
    refused(capsys, ["generate", str(trained_run), "--length", "5", "--temperature", value],
            trained_run, wanted)


def test_a_tiny_temperature_in_range_samples_the_greedy_choice(capsys, trained_run):
    """1e-37 divided the logits into inf and NaN probabilities before: now it is greedy."""
    args = ["generate", str(trained_run), "--length", "12", "--seed", "1"]
    assert main([*args, "--temperature", "1e-37"]) == 0
    tiny = capsys.readouterr().out
    assert main([*args, "--greedy"]) == 0
    assert tiny == capsys.readouterr().out


@pytest.mark.parametrize("value, wanted", [
    ("nan", "length_penalty must be finite, got nan"),
    ("inf", "length_penalty must be finite, got inf"),
    ("1e308", "length_penalty must be 0 or in [1.2e-38, 10]"),
])
def test_translate_length_penalty(capsys, pair_run, value, wanted):
    refused(capsys, ["translate", str(pair_run), "abc", "--beam", "2", "--length-penalty",
                     value], pair_run, wanted)


def test_bpe_vocab_size_has_a_maximum(capsys, work):
    """tokenizers aborts the process (SIGABRT, no message) on a vocabulary of 1e9."""
    refused(capsys, train_argv(work, "lm", "--tokenizer", "bpe", "--bpe-vocab-size",
                               "1000000000"), work,
            "bpe_vocab_size must be in [256, 16777216], got 1000000000")
    refused(capsys, train_argv(work, "lm", "--tokenizer", "bpe", "--bpe-vocab-size", "100"),
            work, "bpe_vocab_size must be in [256, 16777216], got 100")  # below the bytes


def test_a_run_whose_config_asks_for_a_model_too_large_is_refused_on_load(
        capsys, trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    config["model"]["hidden_size"] = 10_000_000
    (run / "config.json").write_text(json.dumps(config), encoding="utf-8")
    for argv in (["info", str(run)], ["generate", str(run), "--length", "3"]):
        refused(capsys, argv, tmp_path, "hidden_size 10000000: the weights of the model in",
                "config.json would need", "this machine has")


@pytest.mark.parametrize("family", list(SOURCES))
def test_a_familys_allocation_errors_name_its_size_keys(family):
    fam = registry.FAMILIES[family]
    configs = fam.configs({"hidden_size": 48, "batch_size": 3, "device": "cpu"})
    with pytest.raises(TooLarge, match=r"^hidden_size 48, batch_size 3: out of memory"), \
            fam.allocation_errors(configs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_on_a_gpu_the_limit_is_the_gpus_memory(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3 * 2**30, 4 * 2**30))
    memory = limits.machine_memory("cuda:0")
    assert (memory.total, memory.available) == (4 * 2**30, 3 * 2**30)
    with pytest.raises(TooLarge, match=r"^hidden_size 9: x would need 5\.0 GiB; this machine "
                                       r"has 4\.0 GiB of GPU memory \(cuda:0\) \(3\.0 GiB"):
        limits.check_fits(5 * 2**30, "hidden_size 9", "x", "cuda:0")


def test_the_python_api_refuses_samples_too_large_before_sampling(trained_run):
    from seqlab.families.runner import load_run
    from seqlab.line_lm import sample_lines

    generate = importlib.import_module("seqlab.generate")
    loaded = load_run(trained_run)
    with pytest.raises(TooLarge, match="^length 1000000000000 with num_samples 1: "):
        generate.generate(loaded.model, loaded.vocab, "", 10**12)
    with pytest.raises(TooLarge, match="^max_length 256 with num_samples 1000000000: "):
        sample_lines(loaded.model, loaded.vocab, 10**9)


def test_the_edges_of_each_range_are_accepted():
    from seqlab.config import ModelConfig, TrainConfig

    ModelConfig(num_layers=10_000, forget_bias=-100.0)
    ModelConfig(forget_bias=-0.0)  # negative zero is zero
    TrainConfig(min_lr_ratio=1.0, lr=1.2e-38, clip_norm=0.0, clip_value=0.0,
                bpe_vocab_size=2**24, time_budget=1e300)  # a clock compares it, not float32


def test_a_need_of_one_part_is_not_said_twice():
    """The parts are listed with their sizes when several count; one part alone is named
    without repeating the total the message gives beside it."""
    assert limits.describe({"parameters": 3 * 2**40, "activations": 2**20, "layers": 10}) == \
        "weights, gradients and optimiser state"
    assert limits.describe({"parameters": 3 * 2**30, "activations": 2**30, "layers": 10}) == \
        "weights, gradients and optimiser state 3.0 GiB, one batch's activations 1.0 GiB"
