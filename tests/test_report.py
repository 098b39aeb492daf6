"""seqlab report: one self-contained page per run of every family, what a run lacks said on
the page, one-line errors, the live page of train --report and TensorBoard's event files."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from seqlab.cli import main
from seqlab.families.text_report import TEMPERATURES
from seqlab.families.tunes_report import COUNT
from seqlab.io import read_jsonl
from seqlab.report import run_report
from seqlab.report.run_report import write_report

pytestmark = pytest.mark.usefixtures("single_thread")

# what each family's own section shows, as the page spells it
FAMILY_MARKS = {
    "text": [f"temperature {t:g}" for t in TEMPERATURES],
    "tunes": ["<audio", "sheet music", "near-copy", "validity and novelty"],
    "synthetic": ["memoryless baseline", "loss beside its baseline", "Task: adding"],
    "seq2seq": ["attention maps", "exact match against source length", "<th>reference</th>"],
    "classify": ["confusion matrix (validation)", "attention pooling weights",
                 "<th>precision</th>"],
    "forecast": ["80%", "95%", "forecasts on the test windows"],
}
ADDRESS = re.compile(r"https?://")
XMLNS = re.compile(r'\sxmlns(:\w+)?="[^"]*"')


def addresses(page: str) -> list[str]:
    """Web addresses outside the SVG namespace declarations."""
    return ADDRESS.findall(XMLNS.sub("", page))


def validation_points(page: str) -> int:
    """The points of the validation loss in the loss figure (one <use> each)."""
    group = page.split('<g id="val-loss">', 1)[1]
    depth, end = 1, 0
    for match in re.finditer(r"<g\b|</g>", group):
        depth += 1 if match.group() == "<g" else -1
        if depth == 0:
            end = match.start()
            break
    return group[:end].count("<use ")


@pytest.mark.parametrize("family", list(FAMILY_MARKS))
def test_every_family_has_its_sections_on_one_offline_page(family, family_runs,
                                                           family_reports):
    run, path = family_runs[family], family_reports[family]
    page = path.read_text(encoding="utf-8")
    for mark in ["What was trained", "loss against training step", "learning rate",
                 "gradient norm", *FAMILY_MARKS[family]]:
        assert mark in page, mark
    assert "could not be drawn" not in page and "Traceback" not in page
    assert addresses(page) == []
    assert "<script" not in page and "src=\"http" not in page
    evaluations = sum("val_loss" in r for r in read_jsonl(run / "metrics.jsonl"))
    assert f'data-evaluations="{evaluations}"' in page
    assert validation_points(page) == evaluations
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temporary


def test_tunes_are_heard_and_seen_and_stay_small(family_reports):
    page = family_reports["tunes"].read_text()
    assert page.count('src="data:audio/ogg;base64,') == 2
    assert page.count("<title>") == 3  # the page's, and abcm2ps's for each tune
    assert len(page) < 2_000_000


def test_the_diagnostics_of_a_diagnosed_run_are_drawn(family_reports):
    page = family_reports["synthetic"].read_text()
    assert "||dL/dh_t|| through time" in page and "gate statistics" in page
    assert "recorded every --record-every steps" in page
    assert "diagnostics.json" not in page.split("Not in this report", 1)[-1].split("</ul>")[0]


def test_the_command_writes_report_html_in_the_run(family_runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(family_runs["text"], run)
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.startswith(f"report: {run / 'report.html'} (")
    assert (run / "report.html").read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("make_out, message", [
    (lambda tmp: tmp / "a-file" / "report.html", "is a file, not a folder"),
    (lambda tmp: tmp, "is a folder; give the HTML file to write"),
])
def test_an_unwritable_out_is_one_line(family_runs, tmp_path, capsys, make_out, message):
    (tmp_path / "a-file").write_text("x")
    before = sorted(tmp_path.rglob("*"))
    assert main(["report", str(family_runs["text"]), "--out", str(make_out(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("seqlab: error: ") and message in err and err.count("\n") == 1
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, not even a temporary


def test_an_out_replaces_an_older_page_never_data(family_runs, tmp_path, capsys):
    """--out data.txt once turned the user's training text into HTML."""
    run = tmp_path / "run"
    shutil.copytree(family_runs["text"], run)
    data = tmp_path / "data.txt"
    data.write_text("the text the run learnt from\n")
    config = json.loads((run / "config.json").read_text())
    config["data"]["source_path"] = str(data)  # as if trained on it there
    (run / "config.json").write_text(json.dumps(config))
    notes = tmp_path / "notes.md"
    notes.write_text("mine")
    for out, message in [(data, f"--out {data} is the data the run {run} was trained on"),
                         (notes, f"--out {notes} exists and is no .html or .htm file")]:
        assert main(["report", str(run), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"seqlab: error: {message}") and err.count("\n") == 1
    assert data.read_text() == "the text the run learnt from\n" and notes.read_text() == "mine"
    old = tmp_path / "old.HTML"
    old.write_text("<p>an older page</p>")
    assert main(["report", str(run), "--out", str(old)]) == 0
    assert "an older page" not in old.read_text()


def test_a_page_written_while_another_process_trains_says_it_is_a_snapshot(family_runs,
                                                                          tmp_path):
    from seqlab.checkpoint import RunDir

    run = tmp_path / "run"
    shutil.copytree(family_runs["text"], run)
    assert not RunDir(run).in_use()
    with RunDir(run).writing():  # as a training process holds it
        assert RunDir(run).in_use()
        page = write_report(run, tmp_path / "during.html").read_text()
    assert "while the run was still being trained" in page
    assert not RunDir(run).in_use()
    assert "still being trained" not in write_report(run, tmp_path / "after.html").read_text()


def test_no_run_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_weights_that_cannot_be_loaded_are_not_called_missing(family_runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(family_runs["seq2seq"], run)
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:300])  # truncated
    page = write_report(run).read_text()
    assert "the weights could not be loaded (see above): no translations" in page
    assert "no weights yet" not in page and "unknown (no weights loaded)" in page


def test_an_out_ending_in_a_slash_is_a_folder(family_runs, tmp_path, capsys):
    target = tmp_path / "newdir"
    assert main(["report", str(family_runs["seq2seq"]), "--out", f"{target}/"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"seqlab: error: {target}/ is a folder; give the HTML file to "
                                "write"]
    assert not target.exists()


def test_a_run_without_weights_or_metrics_says_what_is_missing(family_runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(family_runs["seq2seq"], run)
    (run / "model.safetensors").unlink()
    (run / "metrics.jsonl").unlink()
    page = write_report(run).read_text()
    assert "no metrics yet" in page and "the model could not be loaded" in page
    assert "no weights yet" in page and "unknown (no weights loaded)" in page
    assert 'data-evaluations="0"' in page


def test_a_half_finished_run_shows_what_it_has(family_runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(family_runs["synthetic"], run)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    first_eval = next(k for k, line in enumerate(lines) if "val_loss" in line)
    (run / "metrics.jsonl").write_text("\n".join(lines[:first_eval + 1]) + '\n{"step": 7, "lo')
    page = write_report(run).read_text()
    assert 'data-evaluations="1"' in page and validation_points(page) == 1
    assert "memoryless baseline" in page


def test_tunes_json_naming_missing_files(family_runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(family_runs["tunes"], run)
    for suffix in ("wav", "mid", "svg"):
        (run / "tunes" / f"tune-001.{suffix}").unlink()
    page = write_report(run).read_text()
    assert page.count("data:audio/ogg") == 1
    assert "tune-001.abc: no audio (no WAV and no MIDI file)" in page
    assert "tune-001.svg is missing" in page


def test_tunes_are_sampled_when_the_run_has_none(family_runs, tmp_path, monkeypatch):
    from seqlab.families import tunes_report

    monkeypatch.setattr(tunes_report, "MAX_LENGTH", 60)
    run = tmp_path / "run"
    shutil.copytree(family_runs["tunes"], run)
    shutil.rmtree(run / "tunes")
    page = write_report(run).read_text()
    assert f"{COUNT} tunes sampled now" in page and page.count('<div class="item">') >= COUNT
    live = run_report.render("run.html.j2", **run_report.build(run, live=True))
    assert "no tunes yet: they are sampled when training ends" in live


def tiny_text(tmp_path: Path) -> Path:
    source = tmp_path / "tiny.txt"
    source.write_text("the cat sat on the mat and the dog ran far away\n" * 30)
    return source


TRAIN = ["--model", "gru", "--hidden-size", "8", "--embedding-size", "4", "--seq-len", "8",
         "--batch-size", "4", "--max-steps", "9", "--eval-every", "3", "--log-every", "3",
         "--device", "cpu", "--quiet"]


def test_train_report_refreshes_at_every_evaluation_without_changing_training(
        tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    source, written = tiny_text(tmp_path), []
    real = run_report.write_page
    monkeypatch.setattr(run_report, "write_page",
                        lambda path, page: written.append(page) or real(path, page))
    assert main(["train", str(source), *TRAIN, "--out", str(tmp_path / "plain")]) == 0
    assert main(["train", str(source), *TRAIN, "--out", str(tmp_path / "run"), "--report",
                 "--tensorboard", str(tmp_path / "tb")]) == 0
    assert len(written) == 3 + 1  # every evaluation, then the full page at the end
    assert "during training" in written[0] and "during training" not in written[-1]
    assert "still being trained" not in written[-1]  # the last page: the run is done
    assert (tmp_path / "run" / "report.html").read_text() == written[-1]

    def losses(run):  # the report's model loading leaves torch's random state alone
        return [(r["step"], r.get("loss"), r.get("val_loss"))
                for r in read_jsonl(tmp_path / run / "metrics.jsonl")]

    assert losses("run") == losses("plain")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    assert {"train/loss", "train/lr", "train/grad_norm", "eval/val_loss"} <= set(
        events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("eval/val_loss")] == [3, 6, 9]
    assert any(tag.startswith("Samples/temperature") for tag in events.Tags()["tensors"])


def test_tensorboard_missing_is_one_line_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    out = tmp_path / "run"
    assert main(["train", str(tiny_text(tmp_path)), *TRAIN, "--out", str(out),
                 "--tensorboard", str(tmp_path / "tb")]) == 2
    err = capsys.readouterr().err
    assert "--tensorboard needs the tensorboard package" in err and err.count("\n") == 1
    assert not out.exists() and not (tmp_path / "tb").exists()


def test_a_long_tune_encodes_to_ogg_vorbis(tmp_path):
    """A minute of sound in one piece (libsndfile's Vorbis encoder crashed on one long write:
    ogg_uri hands it blocks); the data: URI decodes back to the same length, ~10x smaller."""
    import base64
    import io

    import numpy as np
    import soundfile

    from seqlab.sections.media import RATE, ogg_uri

    t = np.arange(60 * RATE) / RATE
    wav = tmp_path / "tune.wav"
    soundfile.write(wav, 0.3 * np.sin(2 * np.pi * 440 * t) * np.sin(np.pi * t), RATE,
                    subtype="PCM_16")
    uri = ogg_uri(wav)
    assert uri.startswith("data:audio/ogg;base64,")
    encoded = base64.b64decode(uri.split(",", 1)[1])
    data, rate = soundfile.read(io.BytesIO(encoded))
    assert rate == RATE and abs(len(data) - len(t)) < RATE // 10
    assert len(encoded) < wav.stat().st_size / 8
