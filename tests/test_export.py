"""seqlab export: every family's inference graphs in onnxruntime against PyTorch, at batch sizes
and lengths other than the traced ones; generation and decoding driven from ONNX, token for
token as seqlab's own; the command's refusals, which write nothing."""

from __future__ import annotations

import copy
import errno
import json
import math
import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
import onnxruntime  # noqa: E402

import seqlab  # noqa: E402
from cell_suite import registered  # noqa: E402
from seqlab.cells.scan import CHUNK  # noqa: E402
from seqlab.cli import main  # noqa: E402
from seqlab.config import ModelConfig  # noqa: E402
from seqlab.data.pairs import BOS, EOS, make_batch  # noqa: E402
from seqlab.export import (  # noqa: E402
    TRACED,
    Graph,
    classifier_graph,
    export,
    outputs_of,
    real_inputs,
    step_graph,
    token_inputs,
)
from seqlab.families import registry, runner  # noqa: E402
from seqlab.families.seq2seq import max_target  # noqa: E402
from seqlab.generate import SamplingConfig, sample_ids  # noqa: E402
from seqlab.models import build_model  # noqa: E402
from seqlab.models.classifier import Classifier  # noqa: E402
from seqlab.seq2seq_eval import encode_sources, translate_texts  # noqa: E402
from test_toy_cell import TOYS  # noqa: E402
from test_toy_family import KEYS as PARITY_KEYS  # noqa: E402
from test_toy_family import ParityFamily  # noqa: E402

SIZES = ((1, 4), (6, 11))  # (batch, length): neither the traced nor the exporter's own check
WORDS = ("the", "cat", "sat", "on", "a", "mat", "dog", "ran", "far", "away")
COMMON = dict(seed=0, device="cpu", log_every=2, eval_every=2, max_steps=2)


pytestmark = pytest.mark.usefixtures("single_thread")  # conftest: one intra-op thread


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Tiny runs, two training steps each, by name."""
    folder = tmp_path_factory.mktemp("export-runs")
    rng = random.Random(0)
    text = folder / "tiny.txt"
    text.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(8))
                              for _ in range(60)) + "\n", encoding="utf-8")
    order = folder / "order.tsv"
    order.write_text("label\ttext\n" + "".join(
        f"{'xy' if k % 2 else 'yx'}\t{'abc'[k % 3] * (k % 4 + 1)}{'xy' if k % 2 else 'yx'}\n"
        for k in range(40)), encoding="utf-8")
    shop = folder / "shop.csv"
    t = np.arange(72)
    values = 100 + t + 10 * np.sin(2 * math.pi * t / 12)
    shop.write_text("month,sales\n" + "".join(f"{2000 + k // 12}-{k % 12 + 1:02d},{v:.3f}\n"
                                              for k, v in zip(t, values, strict=True)),
                    encoding="utf-8")
    rng = np.random.default_rng(0)  # two series in long form with a price covariate
    long = folder / "long.csv"
    long.write_text("id,time,value,price\n" + "".join(
        f"{name},{2000 + k // 12}-{k % 12 + 1:02d},{50 + rng.normal():.3f},{rng.normal(5):.3f}\n"
        for name in "ab" for k in range(40)), encoding="utf-8")
    lm = dict(embedding_size=8, hidden_size=16, seq_len=8, batch_size=4, **COMMON)
    forecast = dict(task="forecast", hidden_size=8, horizon=4, context=10, batch_size=8,
                    samples=5, **COMMON)
    plans = {
        "text": (text, dict(model="lstm", num_layers=2, **lm)),
        "synthetic": ("adding", dict(model="gru", length="10", hidden_size=8, batch_size=8,
                                     val_sequences=16, **COMMON)),
        "seq2seq": ("reverse", dict(attention="additive", length="3-5", num_pairs=100,
                                    hidden_size=16, embedding_size=8, batch_size=16, **COMMON)),
        "seq2seq-dot": ("reverse", dict(attention="dot", model="gru", bidirectional=True,
                                        length="3-5", num_pairs=100, hidden_size=16,
                                        embedding_size=8, batch_size=16, **COMMON)),
        "classify": (order, dict(task="classify", model="gru", pooling="attention",
                                 bidirectional=True, hidden_size=8, embedding_size=8,
                                 batch_size=8, **COMMON)),
        "forecast-direct": (shop, dict(model="lstm", head="direct", lags="1,3", calendar=True,
                                       **forecast)),
        "forecast-student-t": (shop, dict(model="gru", head="student-t", **forecast)),
        "forecast-covariates": (long, dict(model="gru", head="direct", covariates=True,
                                           **forecast)),
    }
    for name, (source, keys) in plans.items():
        seqlab.train(source, out=folder / name, **keys)
    return {name: folder / name for name in plans}


@pytest.fixture(scope="module")
def scan_runs(runs, tmp_path_factory) -> dict[tuple[str, str], Path]:
    """Tiny runs of the parallel-scan cells, every family, by (cell, family)."""
    folder, sources = tmp_path_factory.mktemp("export-scans"), runs["text"].parent
    plans = {
        "text": (sources / "tiny.txt", dict(num_layers=2, embedding_size=8, hidden_size=16,
                                            seq_len=8, batch_size=4)),
        "seq2seq": ("reverse", dict(attention="additive", length="3-5", num_pairs=100,
                                    hidden_size=16, embedding_size=8, batch_size=16)),
        "classify": (sources / "order.tsv", dict(task="classify", pooling="attention",
                                                 bidirectional=True, hidden_size=8,
                                                 embedding_size=8, batch_size=8)),
        "forecast": (sources / "shop.csv", dict(task="forecast", head="student-t",
                                                hidden_size=8, horizon=4, context=10,
                                                batch_size=8, samples=5)),
    }
    made = {}
    for cell in ("mingru", "minlstm"):
        for family, (source, keys) in plans.items():
            made[cell, family] = folder / f"{cell}-{family}"
            seqlab.train(source, out=made[cell, family], model=cell, **keys, **COMMON)
    return made


def session(path: Path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def assert_parity(graph: Graph, path: Path) -> None:
    """onnxruntime's outputs equal PyTorch's within 1e-5 at every size of SIZES."""
    running = session(path)
    assert [i.name for i in running.get_inputs()] == list(graph.example(*TRACED))
    for batch, length in SIZES:
        example = graph.example(batch, length)
        got = running.run(None, {k: v.numpy() for k, v in example.items()})
        want = outputs_of(graph, example)
        assert len(got) == len(want)
        for a, (name, b) in zip(got, want.items(), strict=True):
            assert a.shape == tuple(b.shape), name
            assert np.abs(a.astype(np.float64) - b.double().numpy()).max() < 1e-5, name


def exported(run: Path, out: Path) -> tuple[list[Graph], list[Path]]:
    loaded = runner.load_run(run)
    graphs = loaded.family.exporter(loaded)
    return graphs, [w.path for w in export(graphs, out)]


# every family ------------------------------------------------------------------------------
@pytest.mark.parametrize("name, files", [
    ("text", ["lm.onnx"]), ("synthetic", ["lm.onnx"]),
    ("seq2seq", ["lm-encoder.onnx", "lm-decoder.onnx"]),
    ("seq2seq-dot", ["lm-encoder.onnx", "lm-decoder.onnx"]),
    ("classify", ["lm.onnx"]), ("forecast-direct", ["lm.onnx"]),
    ("forecast-student-t", ["lm.onnx"]), ("forecast-covariates", ["lm.onnx"])])
def test_each_family_matches_pytorch_at_other_batch_sizes_and_lengths(runs, tmp_path, name,
                                                                      files):
    graphs, paths = exported(runs[name], tmp_path / "lm.onnx")
    assert [p.name for p in paths] == files
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)  # no temporaries left
    for graph, path in zip(graphs, paths, strict=True):
        onnx.checker.check_model(onnx.load(str(path)))
        assert_parity(graph, path)


@pytest.mark.parametrize("family", ["text", "seq2seq", "classify", "forecast"])
@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_the_scan_cells_export_with_a_dynamic_length(scan_runs, tmp_path, cell, family):
    """The log-space scan is exported as a loop over time (ONNX has no logcumsumexp): right at
    every size, and past the scan's chunk, where onnxruntime is checked against float64."""
    graphs, paths = exported(scan_runs[cell, family], tmp_path / "m.onnx")
    for graph, path in zip(graphs, paths, strict=True):
        assert_parity(graph, path)
        assert any(node.op_type == "Loop" for node in onnx.load(str(path)).graph.node)
        example = graph.example(2, CHUNK + 40)
        got = session(path).run(None, {k: v.numpy() for k, v in example.items()})
        exact = copy.deepcopy(graph.module).double()
        with torch.no_grad():
            want = exact(*(v.double() if v.is_floating_point() else v
                           for v in example.values()))
        want = want if isinstance(want, tuple) else (want,)
        for name, a, b in zip(graph.outputs, got, want, strict=True):
            assert np.abs(a.astype(np.float64) - b.double().numpy()).max() < 1e-5, name


@pytest.mark.parametrize("keys", [
    dict(model="gru", num_layers=2), dict(model="irnn"), dict(model="rnn", tie_weights=True),
    dict(model="bow", bow_mode="counts"), dict(model="bow"), dict(model="window-mlp", window=3)],
    ids=lambda k: "-".join(str(v) for v in k.values()))
def test_every_language_model_steps_with_its_state(keys, tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=11, embedding_size=8, hidden_size=8,
                                    **keys)).eval()
    graph = step_graph(model, model.initial_state, token_inputs(11), ("tokens", "logits"))
    (written,) = export([graph], tmp_path / "m.onnx")
    assert_parity(graph, written.path)


@pytest.mark.parametrize("keys", [dict(pooling="last"), dict(pooling="mean", bidirectional=True),
                                  dict(pooling="attention"),
                                  dict(conv_filters=(4, 4), conv_kernels=(5, 3), conv_se=True)],
                         ids=lambda k: "-".join(str(v) for v in k.values()))
def test_a_classifier_of_real_channels(keys, tmp_path):
    torch.manual_seed(0)
    model = Classifier(ModelConfig(model="lstm", hidden_size=8, num_layers=2), "real", 3, 4,
                       **keys).eval()
    graph = classifier_graph(model, "channels", real_inputs(3))
    (written,) = export([graph], tmp_path / "c.onnx")
    assert_parity(graph, written.path)
    probabilities = session(written.path).run(
        ["probabilities"], {k: v.numpy() for k, v in graph.example(5, 6).items()})[0]
    assert np.allclose(probabilities.sum(-1), 1.0, atol=1e-6)


def test_the_files_say_what_they_hold(runs, tmp_path):
    _, paths = exported(runs["forecast-direct"], tmp_path / "f.onnx")
    notes = {p.key: p.value for p in onnx.load(str(paths[0])).metadata_props}
    assert notes["seqlab.family"] == "forecast" and notes["seqlab.head"] == "direct"
    assert json.loads(notes["seqlab.levels"]) == sorted(json.loads(notes["seqlab.levels"]))
    inputs = [i.name for i in session(paths[0]).get_inputs()]
    assert inputs == ["context", "observed", "before", "before_seen", "known"]  # no covariates
    _, paths = exported(runs["forecast-covariates"], tmp_path / "c.onnx")
    assert [i.name for i in session(paths[0]).get_inputs()] == ["context", "observed",
                                                                "covariates"]


# driven from ONNX, token by token --------------------------------------------------------
def test_greedy_generation_from_onnx_is_seqlabs_token_for_token(runs, tmp_path):
    loaded = runner.load_run(runs["text"])
    _, (path,) = exported(runs["text"], tmp_path / "lm.onnx")
    prompt = torch.as_tensor(loaded.vocab.encode("the cat").astype("int64"))
    want = sample_ids(loaded.model, prompt, 200, SamplingConfig(greedy=True))[0].tolist()
    running = session(path)
    state = {n: np.zeros((2, 1, 16), np.float32) for n in ("h", "c")}
    tokens, got = prompt[None].numpy(), []
    for _ in range(200):
        logits, h, c = running.run(None, {"tokens": tokens, **state})
        token = int(logits[0, -1].argmax())
        got.append(token)
        tokens, state = np.array([[token]], np.int64), {"h": h, "c": c}
    assert got == want
    assert len(set(got)) > 1  # not a constant stream that any graph would match


@pytest.mark.parametrize("cell, seed", [("mingru", 2), ("minlstm", 1)])
def test_greedy_generation_of_a_scan_cell_from_onnx(cell, seed, tmp_path):
    """A scan cell's language model step, exported and driven token by token with its state
    h, generates seqlab's own greedy tokens (weights scaled up off their init and a seed whose
    greedy stream keeps changing token, so that a wrong state would show)."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(model=cell, vocab_size=11, embedding_size=8, hidden_size=16,
                                    num_layers=2)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    graph = step_graph(model, model.initial_state, token_inputs(11), ("tokens", "logits"))
    (written,) = export([graph], tmp_path / "lm.onnx")
    prompt = torch.tensor([1, 2, 3])
    want = sample_ids(model, prompt, 200, SamplingConfig(greedy=True))[0].tolist()
    running = session(written.path)
    assert [i.name for i in running.get_inputs()] == ["tokens", "h"]
    tokens, h, got = prompt[None].numpy(), np.zeros((2, 1, 16), np.float32), []
    for _ in range(200):
        logits, h = running.run(None, {"tokens": tokens, "h": h})
        got.append(int(logits[0, -1].argmax()))
        tokens = np.array([[got[-1]]], np.int64)
    assert got == want
    assert len(set(got[100:])) > 1


def test_greedy_decoding_from_onnx_is_seqlabs_translation(runs, tmp_path):
    loaded = runner.load_run(runs["seq2seq"])
    _, (encoder, decoder) = exported(runs["seq2seq"], tmp_path / "s.onnx")
    texts = ["abc", "dcba", "bbbad", "e"]
    longest = max_target(loaded.config)
    want = [t.text for t in translate_texts(loaded.model, loaded.vocab, texts,
                                            max_target=longest)]
    sources = encode_sources(loaded.vocab.source, texts)
    batch = make_batch(sources, [[EOS]] * len(texts))
    h, c, keys, prepared, mask = session(encoder).run(
        None, {"source": batch.source.numpy(), "lengths": batch.source_lengths.numpy()})
    running, rows = session(decoder), [[] for _ in texts]
    caps = [max(len(s), 2 * longest) + 10 for s in sources]  # seqlab's cap of each source
    token = np.full(len(texts), BOS, np.int64)
    for _ in range(max(caps)):
        logits, h, c, _ = running.run(None, {"token": token, "h": h, "c": c, "keys": keys,
                                             "prepared": prepared, "mask": mask})
        token = logits.argmax(-1)
        for row, t, cap in zip(rows, token.tolist(), caps, strict=True):
            if EOS not in row and len(row) < cap:
                row.append(t)
    got = [loaded.vocab.target.decode(row[:row.index(EOS)] if EOS in row else row)
           for row in rows]
    assert got == want


# the command -----------------------------------------------------------------------------
def cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_writes_and_says_what(runs, tmp_path, capsys):
    code, out, err = cli(capsys, "export", runs["seq2seq"], "--onnx", tmp_path / "t.onnx")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t-decoder.onnx", "t-encoder.onnx"]
    lines = out.splitlines()
    assert len(lines) == 2 and "source [batch, length]" in lines[0]
    assert "logits [batch," in lines[1] and "onnxruntime matches PyTorch" in lines[1]


def one_line_error(code: int, out: str, err: str, *words: str) -> None:
    assert code == 2 and out == ""
    assert err.startswith("seqlab: error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err


def test_what_is_not_a_run_writes_nothing(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, out, err = cli(capsys, "export", tmp_path / "empty", "--onnx", tmp_path / "x.onnx")
    one_line_error(code, out, err, "empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


@pytest.mark.parametrize("target, words", [("missing/x.onnx", ["missing", "no such folder"]),
                                           ("x.bin", ["must end in .onnx"]),
                                           ("taken.onnx", ["folder is in the way"])])
def test_a_file_that_cannot_be_written_is_refused(runs, tmp_path, capsys, target, words):
    (tmp_path / "taken.onnx").mkdir()
    code, out, err = cli(capsys, "export", runs["text"], "--onnx", tmp_path / target)
    one_line_error(code, out, err, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.onnx"]
    assert not any((tmp_path / "taken.onnx").iterdir())


def test_a_cell_without_a_fused_path_is_refused(tmp_path, capsys):
    with registered(*TOYS["softsign"]) as cell:
        rng = random.Random(1)
        source = tmp_path / "t.txt"
        source.write_text(" ".join(rng.choice(WORDS) for _ in range(200)), encoding="utf-8")
        seqlab.train(source, out=tmp_path / "run", model=cell, hidden_size=8,
                     embedding_size=4, seq_len=8, batch_size=2, **COMMON)
        code, out, err = cli(capsys, "export", tmp_path / "run", "--onnx", tmp_path / "x.onnx")
    one_line_error(code, out, err, "softsign", "no fused", "dynamic length")
    assert not (tmp_path / "x.onnx").exists()


def test_a_family_that_offers_no_export_refuses(tmp_path, capsys):
    with registry.registered(ParityFamily()):
        assert main(["train", "parity-bits", *PARITY_KEYS, "--max-steps", "2", "--out",
                     str(tmp_path / "run")]) == 0
        code, out, err = cli(capsys, "export", tmp_path / "run", "--onnx", tmp_path / "x.onnx")
    one_line_error(code, out, err, "'parity' run has no ONNX export")
    assert not (tmp_path / "x.onnx").exists()


def test_the_missing_extra_is_named(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    code, out, err = cli(capsys, "export", runs["text"], "--onnx", tmp_path / "x.onnx")
    one_line_error(code, out, err, "onnxruntime", "seqlab[export]")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_export_leaves_the_old_file_whole(runs, tmp_path, capsys, monkeypatch):
    old = tmp_path / "x.onnx"
    old.write_bytes(b"the previous file")

    def wrong(graph, data, batch, length):
        raise ValueError("the exported graph differs from PyTorch by 1 at batch 2, length 7")

    monkeypatch.setattr("seqlab.export.difference", wrong)
    code, out, err = cli(capsys, "export", runs["seq2seq"], "--onnx", old)
    one_line_error(code, out, err, "differs from PyTorch")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.onnx"]
    assert old.read_bytes() == b"the previous file"


def test_a_full_disk_at_the_second_file_leaves_both_old_files(runs, tmp_path, capsys,
                                                               monkeypatch):
    """An encoder-decoder is two files: written all or none, so a disk that fills while the
    decoder is written leaves the old encoder too, and no temporary behind."""
    olds = {tmp_path / "lm-encoder.onnx": b"old encoder", tmp_path / "lm-decoder.onnx": b"old"}
    for path, data in olds.items():
        path.write_bytes(data)
    real = Path.write_bytes

    def fills(self, data):
        if self.name.startswith(".lm-decoder.onnx."):
            real(self, data[:10])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", fills)
    code, out, err = cli(capsys, "export", runs["seq2seq"], "--onnx", tmp_path / "lm.onnx")
    one_line_error(code, out, err, "No space left", "lm-decoder.onnx")
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == olds
