"""The classify family as people use it: train on a TSV, a .ts file or a bundled set, evaluate
(JSON, confusion matrix PNG), predict (TSV, CSV, JSON lines), resume, diagnose; bad input is
one line, exit 2, and nothing written."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from seqlab.class_metrics import confusion, scores
from seqlab.cli import main
from seqlab.families import registry
from seqlab.families.classify import CLASSIFY

KEYS = ["--model", "gru", "--hidden-size", "16", "--embedding-size", "8", "--batch-size", "8",
        "--eval-every", "10", "--log-every", "10", "--device", "cpu", "--quiet", "--lr", "0.02",
        "--warmup-steps", "0"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def order_tsv(path: Path, count: int = 80, seed: int = 0) -> Path:
    """Label 'xy' when the first x comes before the first y, else 'yx': order decides, a bag
    of the same letters cannot."""
    rng = np.random.default_rng(seed)
    lines = ["label\ttext"]
    for _ in range(count):
        letters = list(rng.choice(list("abc"), size=int(rng.integers(3, 9))))
        first, second = ("x", "y") if rng.random() < 0.5 else ("y", "x")
        i = int(rng.integers(0, len(letters) + 1))
        letters.insert(i, first)
        letters.insert(int(rng.integers(i + 1, len(letters) + 1)), second)
        lines.append(f"{first}{second}\t{''.join(letters)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def series_ts(path: Path, count: int = 60, seed: int = 0) -> Path:
    """Two classes of variable-length univariate series: rising or falling ramps with noise."""
    rng = np.random.default_rng(seed)
    rows = ["@problemName ramps", "@timeStamps false", "@univariate true",
            "@equalLength false", "@classLabel true up down", "@data"]
    for k in range(count):
        label = "up" if k % 2 == 0 else "down"
        steps = int(rng.integers(8, 20))
        ramp = np.linspace(-1, 1, steps) * (1 if label == "up" else -1)
        values = ramp + 0.1 * rng.standard_normal(steps)
        rows.append(",".join(f"{v:.4f}" for v in values) + f":{label}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def tsv(tmp_path) -> Path:
    return order_tsv(tmp_path / "order.tsv")


@pytest.fixture
def ts_file(tmp_path) -> Path:
    pytest.importorskip("sktime")
    return series_ts(tmp_path / "ramps.ts")


@pytest.fixture
def text_run(tsv, tmp_path, capsys, single_thread) -> Path:
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", tsv, "--task", "classify", *KEYS, "--max-steps",
                           "30", "--out", run)
    assert code == 0, err
    return run


def test_the_family_is_registered_and_claims_bundled_sets_and_ts_files():
    assert registry.FAMILIES["classify"] is CLASSIFY
    assert registry.choose("gunpoint") is CLASSIFY
    assert registry.choose("data/x.ts") is CLASSIFY
    assert registry.choose("pairs.tsv") is not CLASSIFY  # a TSV needs --task classify


def test_a_text_run_evaluates_to_json_and_a_confusion_matrix(text_run, tsv, capsys):
    code, out, err = run_cli(capsys, "evaluate", text_run, tsv, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["split"] == "all" and result["examples"] == 80
    matrix = np.array(result["confusion"])
    assert matrix.shape == (2, 2) and matrix.sum() == 80
    assert result["accuracy"] == pytest.approx(np.trace(matrix) / 80)
    assert set(result["per_class"]) == {"xy", "yx"}
    saved = json.loads((text_run / "evaluation" / "evaluation.json").read_text())
    assert saved["confusion"] == result["confusion"]
    # the loss is the mean negative log-probability predict gives each line's own label
    code, out, _ = run_cli(capsys, "predict", text_run, tsv, "--format", "jsonl")
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(records) == 80
    nll = -np.mean([np.log(r["probabilities"][r["given"]]) for r in records])
    assert result["loss"] == pytest.approx(nll, rel=1e-4)
    png = (text_run / "evaluation" / "confusion.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, _ = run_cli(capsys, "evaluate", text_run, tsv)  # the line a person reads
    assert code == 0 and out.startswith("accuracy ") and "confusion matrix" in out


def test_evaluate_out_writes_where_asked(text_run, tsv, tmp_path, capsys):
    where = tmp_path / "elsewhere"
    assert run_cli(capsys, "evaluate", text_run, tsv, "--out", where)[0] == 0
    assert (where / "confusion.png").is_file() and (where / "evaluation.json").is_file()


def test_predict_labels_every_line_in_each_format(text_run, tmp_path, capsys):
    new = tmp_path / "new.tsv"
    new.write_text("xy\taxbyc\nyx\tbbyxa\nzz\tcxya\n", encoding="utf-8")  # 'zz': never seen
    code, out, err = run_cli(capsys, "predict", text_run, new)
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out), delimiter="\t"))
    assert rows[0] == ["name", "label", "p_xy", "p_yx", "given"]
    assert len(rows) == 4 and all(r[1] in ("xy", "yx") for r in rows[1:])
    for row in rows[1:]:
        assert sum(map(float, row[2:4])) == pytest.approx(1.0, abs=1e-5)
    assert rows[3][4] == "zz"  # a label the run never saw is fine: it is a prediction
    code, out, _ = run_cli(capsys, "predict", text_run, new, "--format", "csv")
    assert code == 0 and out.splitlines()[0] == "name,label,p_xy,p_yx,given"
    code, out, _ = run_cli(capsys, "predict", text_run, new, "--format", "jsonl")
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["given"] for r in records] == ["xy", "yx", "zz"]
    assert all(r["label"] == max(r["probabilities"], key=r["probabilities"].get)
               for r in records)


def test_predict_unlabelled_lines_to_a_file_with_characters_never_seen(text_run, tmp_path,
                                                                       capsys):
    new = tmp_path / "new.tsv"
    new.write_text("axéby\nbyax\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "predict", text_run, new, "--out", tmp_path / "l.tsv")
    assert code == 0 and out == ""
    assert "warning" in err and "'é'" in err
    rows = (tmp_path / "l.tsv").read_text().splitlines()
    assert len(rows) == 3 and all(row.endswith("\t") for row in rows[1:])  # nothing given


def test_a_stopped_run_resumes_with_the_same_command(tsv, tmp_path, capsys, single_thread):
    run = tmp_path / "run"
    argv = ["train", tsv, "--task", "classify", *KEYS, "--out", run]
    assert run_cli(capsys, *argv, "--max-steps", "10")[0] == 0
    code, _, err = run_cli(capsys, *argv, "--max-steps", "20", "--resume")
    assert code == 0, err
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").open()]
    assert max(steps) == 20


def test_a_resumed_run_sees_the_batches_of_one_that_never_stopped(tsv, tmp_path, capsys,
                                                                    single_thread):
    argv = ["train", tsv, "--task", "classify", *KEYS, "--decay-steps", "20"]  # one schedule
    assert run_cli(capsys, *argv, "--max-steps", "20", "--out", tmp_path / "whole")[0] == 0
    assert run_cli(capsys, *argv, "--max-steps", "10", "--out", tmp_path / "parts")[0] == 0
    assert run_cli(capsys, *argv, "--max-steps", "20", "--out", tmp_path / "parts",
                   "--resume")[0] == 0

    def last_loss(run):
        return [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").open()][-1]

    assert last_loss("parts")["val_loss"] == pytest.approx(last_loss("whole")["val_loss"],
                                                           rel=1e-5)


def test_a_series_run_learns_ramps_and_diagnoses_its_attention(ts_file, tmp_path, capsys,
                                                                single_thread):
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", ts_file, "--model", "lstm", "--pooling",
                             "attention", *KEYS, "--max-steps", "60", "--out", run)
    assert code == 0, err
    code, out, err = run_cli(capsys, "evaluate", run, ts_file, "--json")
    assert code == 0, err
    assert json.loads(out)["accuracy"] >= 0.9  # rising against falling: an easy task
    code, out, err = run_cli(capsys, "diagnose", run, "--batch", "4", "--no-jacobian", "--json")
    assert code == 0, err
    files = json.loads(out)["files"]
    assert any(f.endswith("attention_pooling.png") for f in files)
    grads = json.loads(out)["trained"]["grad_last"]
    assert sum(g > 0 for g in grads) > 1  # attention: the loss reaches more than one step


def test_bidirectional_and_class_weights_train(ts_file, tmp_path, capsys, single_thread):
    code, _, err = run_cli(capsys, "train", ts_file, "--bidirectional", "--class-weights",
                           "--label-smoothing", "0.1", "--pooling", "mean", *KEYS,
                           "--max-steps", "5", "--out", tmp_path / "run")
    assert code == 0, err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["classify"]["bidirectional"] is True
    code, out, err = run_cli(capsys, "info", tmp_path / "run")
    assert code == 0, err
    assert ("classifier   mean pooling, bidirectional, class weights, label smoothing 0.1\n"
            in out)
    assert config["classify"]["class_weights"] is True


def test_baselines_run_through_the_same_family(tsv, tmp_path, capsys, single_thread):
    for model in ("bow", "window-mlp"):
        extra = ["--window", "3", "--window-at", "first"] if model == "window-mlp" else []
        code, _, err = run_cli(capsys, "train", tsv, "--task", "classify", *KEYS, "--model",
                               model, *extra, "--max-steps", "5", "--out", tmp_path / model)
        assert code == 0, err


def test_info_names_the_classes_and_split(text_run, capsys):
    code, out, _ = run_cli(capsys, "info", text_run)
    assert code == 0 and "2 classes" in out and "validation" in out


# bad input: one line naming file and line, exit 2, nothing on disk -------------------------
def bad(capsys, tmp_path, source, *extra) -> str:
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", source, "--task", "classify", *KEYS, *extra,
                           "--out", run)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("seqlab: error:")
    assert not run.exists()
    return err


def test_a_tsv_line_without_a_tab_is_named(tmp_path, capsys):
    path = tmp_path / "d.tsv"
    path.write_text("a\tone\nb\ttwo\nthree\n", encoding="utf-8")
    assert f"{path} line 3" in bad(capsys, tmp_path, path)


def test_an_empty_text_is_named(tmp_path, capsys):
    path = tmp_path / "d.tsv"
    path.write_text("a\tone\nb\t\n", encoding="utf-8")
    assert f"{path} line 2" in bad(capsys, tmp_path, path)


def test_one_class_only_is_refused(tmp_path, capsys):
    path = tmp_path / "d.tsv"
    path.write_text("a\tone\na\ttwo\na\tthree\n", encoding="utf-8")
    assert "one class" in bad(capsys, tmp_path, path)


def test_a_test_file_of_one_class_is_scored(text_run, tmp_path, capsys):
    """Training needs two classes; a batch of one kind to score is a common case."""
    path = tmp_path / "xy_only.tsv"
    path.write_text("xy\taxbyc\nxy\txabcy\nxy\tcxy\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "evaluate", text_run, path, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["examples"] == 3 and sum(map(sum, result["confusion"])) == 3
    assert result["majority_rate"] in (0.0, 1.0)


def test_a_class_too_small_for_the_split_is_refused(tmp_path, capsys):
    path = tmp_path / "d.tsv"
    path.write_text("a\tone\na\ttwo\na\tthree\nb\tfour\n", encoding="utf-8")
    assert "'b'" in bad(capsys, tmp_path, path)


def test_a_ts_file_with_inconsistent_dimensions_is_named(tmp_path, capsys):
    pytest.importorskip("sktime")
    path = tmp_path / "d.ts"
    path.write_text("@problemName d\n@timeStamps false\n@univariate false\n@classLabel true a b\n"
                    "@data\n1,2,3:4,5,6:a\n1,2,3:b\n", encoding="utf-8")
    assert "7" in bad(capsys, tmp_path, path)


def test_missing_values_need_fill(tmp_path, capsys, single_thread):
    pytest.importorskip("sktime")
    path = series_ts(tmp_path / "gaps.ts")
    lines = path.read_text().splitlines()
    lines[8] = "?," + lines[8].split(",", 1)[1]
    path.write_text("\n".join(lines) + "\n")
    assert f"{path}" in bad(capsys, tmp_path, path)
    code, _, err = run_cli(capsys, "train", path, *KEYS, "--fill", "forward", "--max-steps",
                           "2", "--out", tmp_path / "filled")
    assert code == 0, err


def test_a_csv_without_a_label_column_is_refused(tmp_path, capsys):
    path = tmp_path / "d.csv"
    path.write_text("id,time,x\n1,0,0.5\n1,1,0.7\n", encoding="utf-8")
    assert "label" in bad(capsys, tmp_path, path)


def test_evaluating_on_labels_the_run_never_saw_is_refused(text_run, tmp_path, capsys):
    path = tmp_path / "other.tsv"
    path.write_text("xy\taxby\nqq\taybx\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "evaluate", text_run, path)
    assert code == 2 and f"{path}:2" in err and "'qq'" in err


def test_predict_on_a_series_run_with_other_channels_is_refused(ts_file, tmp_path, capsys,
                                                               single_thread):
    run = tmp_path / "run"
    assert run_cli(capsys, "train", ts_file, *KEYS, "--max-steps", "2", "--out", run)[0] == 0
    other = tmp_path / "two.ts"
    other.write_text("@problemName d\n@timeStamps false\n@univariate false\n"
                     "@classLabel true up down\n@data\n1,2,3:4,5,6:up\n1,2,3:4,5,7:down\n")
    code, _, err = run_cli(capsys, "predict", run, other)
    assert code == 2 and "channel" in err


def two_channel_csv(path: Path, columns: tuple[str, str] = ("a", "b"), count: int = 40) -> Path:
    """Long-form series whose class is told by channel a alone (its sign); b is noise on a
    large offset, so that swapping the channels changes the answers."""
    rng = np.random.default_rng(1)
    rows = [f"id,time,{columns[0]},{columns[1]},label"]
    for k in range(count):
        label, sign = ("up", 1.0) if k % 2 else ("down", -1.0)
        for t in range(6):
            a, b = sign * (1 + t) + 0.1 * rng.standard_normal(), 100 + rng.standard_normal()
            values = (a, b) if columns[0] < columns[1] else (b, a)  # a file's own order
            rows.append(f"s{k},{t},{values[0]:.4f},{values[1]:.4f},{label}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("extra", [[], ["--deltas"]])
def test_a_csvs_channels_are_matched_by_name(extra, tmp_path, capsys, single_thread):
    """The same series with the columns in another order get the same predictions (with
    --deltas too: the changes are taken once the channels are in the run's order, a one-step
    series' being 0); columns under other names are refused rather than read by position."""
    run = tmp_path / "run"
    data = two_channel_csv(tmp_path / "ab.csv")
    assert run_cli(capsys, "train", data, "--task", "classify", *KEYS, "--max-steps", "40",
                   "--out", run, *extra)[0] == 0
    swapped = two_channel_csv(tmp_path / "ba.csv", ("b", "a"))
    for path, row in ((data, "one,0,1.5,99.0,up"), (swapped, "one,0,99.0,1.5,up")):
        path.write_text(path.read_text() + row + "\n")  # a series of one step
    assert swapped.read_text().splitlines()[0] == "id,time,b,a,label"
    code, straight, err = run_cli(capsys, "predict", run, data, "--format", "csv")
    assert code == 0, err
    code, crossed, err = run_cli(capsys, "predict", run, swapped, "--format", "csv")
    assert code == 0, err
    assert crossed.replace("ba.csv", "ab.csv") == straight
    one = tmp_path / "a_only.csv"
    one.write_text("id,time,a,label\ns0,0,1.0,up\ns0,1,2.0,up\n")
    code, _, err = run_cli(capsys, "predict", run, one)
    assert code == 2 and err.endswith("trained on 2 (a, b); missing: b\n")
    more = tmp_path / "abc.csv"
    more.write_text("id,time,a,b,c,label\ns0,0,1.0,100,5,up\ns0,1,2.0,100,5,up\n")
    code, _, err = run_cli(capsys, "predict", run, more)
    assert code == 2 and err.endswith("trained on 2 (a, b); not trained on: c\n")
    renamed = two_channel_csv(tmp_path / "xy.csv", ("x", "y"))
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    code, _, err = run_cli(capsys, "evaluate", run, renamed)
    assert code == 2 and "channels x, y, but the run was trained on a, b" in err
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


def test_an_upper_case_ts_suffix_is_a_classify_source(tmp_path):
    assert registry.choose(str(tmp_path / "DATA.TS")) is CLASSIFY


def test_predict_names_a_text_the_vocabulary_cannot_read(text_run, tmp_path, capsys):
    path = tmp_path / "new.tsv"
    path.write_text("axby\n\u2603\u2603\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "predict", text_run, path)
    assert code == 2 and f"{path}:2" in err and "characters the run's vocabulary lacks" in err


def test_predict_refuses_a_run_of_another_family(tmp_path, capsys, text_file, single_thread):
    run = tmp_path / "lm"
    assert run_cli(capsys, "train", text_file, "--seq-len", "8", *KEYS, "--max-steps", "2",
                   "--out", run)[0] == 0
    code, _, err = run_cli(capsys, "predict", run, text_file)
    assert code == 2 and "not a classifier" in err


# scores against scikit-learn -------------------------------------------------------------
def test_scores_match_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    true, predicted = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    predicted[predicted == 3] = 2  # class 3 never predicted: precision 0 by convention
    matrix = confusion(true, predicted, 4)
    np.testing.assert_array_equal(matrix, metrics.confusion_matrix(true, predicted,
                                                                   labels=range(4)))
    result = scores(matrix, ["a", "b", "c", "d"])
    assert result["accuracy"] == pytest.approx(metrics.accuracy_score(true, predicted))
    assert result["macro_f1"] == pytest.approx(
        metrics.f1_score(true, predicted, average="macro", zero_division=0))
    recall = metrics.recall_score(true, predicted, average=None, zero_division=0)
    assert [result["per_class"][c]["recall"] for c in "abcd"] == pytest.approx(list(recall))


def test_class_weights_balance_the_classes():
    from seqlab.families.classify_data import ClassifyAssets

    weights = ClassifyAssets("text", ["a", "b", "c"], [60, 30, 10]).class_weights()
    assert torch.allclose(weights * torch.tensor([60.0, 30.0, 10.0]),
                          torch.full((3,), 100 / 3))


def test_every_epoch_visits_every_training_example_once(tsv, single_thread):
    configs = CLASSIFY.configs({"batch_size": 8, "seed": 3})
    prepared = CLASSIFY.prepare(str(tsv), configs)
    task = CLASSIFY.task(prepared, configs, torch.device("cpu"))
    train = prepared.data[0]
    per_epoch = math.ceil(len(train) / 8)
    seen = torch.cat([task.train_batch(step)[2] for step in range(per_epoch)])
    assert len(seen) == len(train)
    assert sorted(seen.tolist()) == sorted(train.labels.tolist())
    first, again = task.train_batch(per_epoch + 1), task.train_batch(per_epoch + 1)
    assert torch.equal(first[0], again[0])  # a pure function of the step


def test_input_noise_is_a_pure_function_of_the_step_and_spares_text(ts_file, tsv):
    noisy = CLASSIFY.configs({"batch_size": 8, "input_noise": 0.5})
    plain = CLASSIFY.configs({"batch_size": 8})
    tasks = [CLASSIFY.task(CLASSIFY.prepare(str(ts_file), c), c, torch.device("cpu"))
             for c in (noisy, plain)]
    a, b, clean = tasks[0].train_batch(3), tasks[0].train_batch(3), tasks[1].train_batch(3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], clean[2])
    difference = (a[0] - clean[0]).std().item()
    assert 0.4 < difference < 0.6
    text = CLASSIFY.configs({"batch_size": 8, "input_noise": 0.5})
    task = CLASSIFY.task(CLASSIFY.prepare(str(tsv), text), text, torch.device("cpu"))
    assert task.train_batch(0)[0].dtype == torch.long  # token ids stay ids


def test_predict_never_writes_over_the_data_it_labels(text_run, tmp_path, capsys):
    new = tmp_path / "new.tsv"
    new.write_text("xy\taxbyc\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "predict", text_run, new, "--out", new)
    assert code == 2 and err.startswith(f"seqlab: error: --out {new} is the data to label")
    assert new.read_text(encoding="utf-8") == "xy\taxbyc\n"


def test_deltas_are_each_channels_change_standardised_with_the_training_split(tmp_path):
    """--deltas: C more channels, x_t - x_(t-1) of each (0 at the first step), computed per
    series before padding and scaled by statistics of the training split's own deltas."""
    pytest.importorskip("sktime")
    csv_file = two_channel_csv(tmp_path / "two.csv")
    configs = CLASSIFY.configs({"batch_size": 8, "deltas": True})
    prepared = CLASSIFY.prepare(str(csv_file), configs)
    assets = prepared.assets
    assert assets.input_size == 4 and assets.features == ["a", "b"]
    from seqlab.data.labelled import read_examples

    examples, _ = read_examples(str(csv_file))
    train, _ = prepared.data
    by_name = dict(zip(examples.names, examples.items, strict=True))
    raw_deltas = []
    for name, item in zip(train.names, train.items, strict=True):
        x = by_name[name]
        naive = np.zeros(x.shape)
        for t in range(1, len(x)):
            naive[t] = x[t] - x[t - 1]
        raw_deltas.append(naive)
        scaled = item.numpy()[:, 2:] * assets.scaler.std[2:] + assets.scaler.mean[2:]
        np.testing.assert_allclose(scaled, naive, atol=1e-5)
        np.testing.assert_allclose(item.numpy()[:, :2] * assets.scaler.std[:2]
                                   + assets.scaler.mean[:2], x, atol=1e-5)
    steps = np.concatenate(raw_deltas).astype(np.float64)
    np.testing.assert_allclose(assets.scaler.mean[2:], steps.mean(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(assets.scaler.std[2:], steps.std(0), rtol=1e-9)
    plain = CLASSIFY.prepare(str(csv_file), CLASSIFY.configs({"batch_size": 8}))
    assert plain.assets.input_size == 2
    np.testing.assert_allclose(plain.assets.scaler.mean, assets.scaler.mean[:2])


def test_a_run_with_deltas_evaluates_and_predicts_from_its_folder(ts_file, tmp_path, capsys,
                                                                  single_thread):
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", ts_file, *KEYS, "--deltas", "--max-steps", "40",
                           "--out", run)
    assert code == 0, err
    assert json.loads((run / "classes.json").read_text())["deltas"] is True
    code, out, err = run_cli(capsys, "evaluate", run, ts_file, "--json")
    assert code == 0, err
    assert json.loads(out)["accuracy"] > 0.8  # a ramp's slope is its class
    code, out, err = run_cli(capsys, "predict", run, ts_file, "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 60 and {r["label"] for r in rows} <= {"up", "down"}
    code, _, err = run_cli(capsys, "train", ts_file, *KEYS, "--max-steps", "50", "--out", run,
                           "--resume")
    assert code == 0, err  # the run's own keys, deltas among them, carry on
    assert json.loads((run / "classes.json").read_text())["deltas"] is True


def test_a_classes_file_whose_scaler_disagrees_with_its_channels_is_refused(ts_file, tmp_path,
                                                                           capsys,
                                                                           single_thread):
    run = tmp_path / "run"
    assert run_cli(capsys, "train", ts_file, *KEYS, "--max-steps", "2", "--out", run)[0] == 0
    config = json.loads((run / "config.json").read_text())
    config.pop("checksums")  # as a run written before checksums were kept
    (run / "config.json").write_text(json.dumps(config))
    classes = json.loads((run / "classes.json").read_text())
    for deltas in (True, "false"):
        (run / "classes.json").write_text(json.dumps({**classes, "deltas": deltas}))
        code, out, err = run_cli(capsys, "predict", run, ts_file)
        assert code == 2 and out == "" and err.count("\n") == 1
        assert err.startswith(f"seqlab: error: {run / 'classes.json'}: not a valid classes file")


def test_predict_warns_of_sequences_longer_than_any_trained_on(ts_file, tmp_path, capsys,
                                                              single_thread):
    run = tmp_path / "run"
    assert run_cli(capsys, "train", ts_file, *KEYS, "--max-steps", "2", "--out", run)[0] == 0
    longest = json.loads((run / "classes.json").read_text())["max_length"]
    long_file = tmp_path / "long.ts"
    long_file.write_text("@problemName ramps\n@timeStamps false\n@univariate true\n"
                         "@equalLength false\n@classLabel true up down\n@data\n"
                         + ",".join(["0.5"] * 100) + ":up\n1,2,3:down\n")
    code, out, err = run_cli(capsys, "predict", run, long_file)
    assert code == 0 and len(out.splitlines()) == 3  # a header and both labelled
    assert (f"seqlab: warning: 1 of 2 sequences are longer than any the run was trained on "
            f"({longest} steps), up to 100; classifying them anyway") in err
    code, _, err = run_cli(capsys, "predict", run, ts_file)
    assert code == 0 and "longer than any" not in err
