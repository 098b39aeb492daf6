"""Tunes out of a model: validity checks (on real tunes and on malformed ones), bars against the
meter, novelty, rendering with and without the Debian tools, sampling to an end marker, and the
``seqlab generate --tunes`` command."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from seqlab import music
from seqlab.cli import main
from seqlab.data.abc import load_tunes
from seqlab.data.vocab import CharVocab
from seqlab.generate import sample_until

IRISH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "irish.abc"
HAVE_ABC2MIDI = shutil.which("abc2midi") is not None
needs = {tool: pytest.mark.skipif(shutil.which(tool) is None,
                                  reason=f"{tool} not installed (Debian package "
                                         f"{music.TOOLS[tool]})") for tool in music.TOOLS}

REEL = "X:1\nT:Reel\nR:reel\nM:4/4\nL:1/8\nK:D\nA|:dAFA dAFA|GBdB GBdB|ABcd efge|fdec d3:|"


@pytest.fixture(scope="module")
def real_tunes() -> list[str]:
    """40 tunes chosen by a fixed seed: 15 O'Neill's, 15 Ryan's, 10 of the MIT lab's file."""
    rng = random.Random(0)
    tunes = rng.sample(load_tunes("oneills"), 15) + rng.sample(load_tunes("ryans"), 15)
    if IRISH.is_file():
        tunes += rng.sample(load_tunes(IRISH), 10)
    return tunes


def test_real_tunes_pass_every_check(real_tunes):
    records = music.validate_tunes(real_tunes)
    failed = [(r["title"], r["checks"]) for r in records if not r["valid"]]
    assert failed == []
    summary = music.summarise(records)
    assert summary["headers_rate"] == summary["music21_rate"] == 1.0
    assert summary["mean_bar_fraction"] > 0.9
    if HAVE_ABC2MIDI:
        assert summary["abc2midi_rate"] == 1.0
    else:
        assert summary["abc2midi_rate"] is None


@pytest.mark.parametrize("tune, reason", [
    ("T:no number\nM:4/4\nK:C\nCDEF|", "first line is not X:"),
    ("X:1\nT:t\nL:1/8\nK:C\nCDEF|", "no M: field"),
    ("X:1\nT:t\nM:4/4\nCDEF|", "no K: field"),
    ("X:1\nM:4/x\nK:C\nCDEF|", "M:4/x is not a meter"),
    ("X:1\nM:4/4\nL:1/\nK:C\nCDEF|", "L:1/ is not a unit note length"),
    ("X:1\nM:63/15\nK:C\nCDEF|", "M:63/15: 15 is not a power of two"),
    ("X:1\nM:4/4\nL:1/43\nK:C\nCDEF|", "L:1/43: 43 is not a power of two"),
    ("X:1\nM:4/0\nK:C\nCDEF|", "M:4/0: 0 is not a power of two"),
])
def test_header_check_names_what_is_wrong(tune, reason):
    result = music.check_headers(tune)
    assert result["ok"] is False and reason in result["reason"]


def test_header_check_takes_the_default_unit_length():
    assert music.check_headers("X:3\nT:t\nM:6/8\nK:G\nGAB|")["ok"] is True


def test_malformed_tunes_are_counted_invalid_with_reasons():
    bad = ["", "X:1\nT:empty\nM:4/4\nK:G", "X:1\nK:C\n((((]]]]|||:::", "X:z!i=\nGg2|ie&&&^^^"]
    records = music.validate_tunes(bad)
    assert [r["valid"] for r in records] == [False] * 4
    for r in records:
        assert r["checks"]["music21"]["ok"] is False and r["checks"]["music21"]["reason"]
        if HAVE_ABC2MIDI:
            assert r["checks"]["abc2midi"]["ok"] is False
            assert "abc2midi wrote" in r["checks"]["abc2midi"]["reason"]


@needs["abc2midi"]
def test_abc2midi_exit_status_is_not_trusted():
    """abc2midi exits 0 and writes a MIDI file for a tune without a note: not converted."""
    record = music.validate_tunes(["X:1\nT:t\nM:4/4\nK:G\nz4|"])[0]
    assert record["checks"]["abc2midi"] == {
        "ok": False, "reason": "abc2midi wrote a MIDI file without notes"}


@pytest.mark.parametrize("music_line, fraction", [
    ("CDEF|GABc|CDE|FGAB|]", 0.75),  # the third bar is short
    ("C|DEFG|ABcd|efg|]", 1.0),  # a pickup and a last bar that completes it
    ("CDEF|GA:|BC|DEFG|]", 1.0),  # a bar split by a repeat
])
def test_bar_fraction(music_line, fraction):
    check, score = music.parse_music21(f"X:1\nM:4/4\nL:1/4\nK:C\n{music_line}")
    assert check["ok"] and music.bar_fraction(score) == pytest.approx(fraction)


def test_bar_fraction_without_a_meter_is_unknown():
    check, score = music.parse_music21("X:1\nM:none\nL:1/4\nK:C\nCDEF|GABc|")
    assert check["ok"] and music.bar_fraction(score) is None


def test_bars_and_novelty():
    assert music.tune_bars(REEL) == ["A", "dAFAdAFA", "GBdBGBdB", "ABcdefge", "fdecd3"]
    index = music.NoveltyIndex([REEL, "X:2\nT:Other\nM:4/4\nK:G\nGABc|dAFA|dAFA|"])
    assert index.longest_shared(REEL) == (5, "Reel")
    half = "X:9\nT:x\nM:4/4\nK:D\ncdef|GBdB GBdB|ABcd efge|gfed|"
    assert index.longest_shared(half) == (2, "Reel")
    assert index.longest_shared("X:9\nT:x\nM:4/4\nK:D\nz8|") == (0, None)
    record = music.validate_tunes([REEL], index, near_copy_bars=5)[0]
    assert record["novelty"] == {"longest_shared_bars": 5, "shared_with": "Reel",
                                 "near_copy": True}


def test_missing_tools_name_their_debian_packages():
    lines = music.missing_tool_messages({"abc2midi": None, "timidity": "/x", "abcm2ps": None})
    assert len(lines) == 2
    assert "abc2midi not found (Debian package abcmidi" in lines[0]
    assert "abcm2ps not found (Debian package abcm2ps" in lines[1]


def test_without_tools_music21_writes_the_midi(tmp_path, monkeypatch):
    monkeypatch.setattr(music, "tool_paths", lambda: dict.fromkeys(music.TOOLS))
    tunes = [music.GeneratedTune(REEL, True), music.GeneratedTune("X:1\nnot a tune", False)]
    report = music.write_tunes(tunes, tmp_path / "out", [REEL], near_copy_bars=5)
    first, second = report["tunes"]
    assert first["files"] == {"abc": "tune-001.abc", "midi": "tune-001.mid"}
    assert (tmp_path / "out" / "tune-001.mid").stat().st_size > 0
    assert first["valid"] and first["checks"]["abc2midi"]["ok"] is None
    assert not second["valid"] and second["files"] == {"abc": "tune-002.abc"}
    assert len(report["missing_tools"]) == 3
    saved = json.loads((tmp_path / "out" / "tunes.json").read_text(encoding="utf-8"))
    assert saved["summary"] == report["summary"]
    assert saved["summary"]["valid_rate"] == 0.5 and saved["summary"]["near_copy_rate"] == 0.5
    with pytest.raises(FileExistsError, match="not empty"):
        music.write_tunes(tunes, tmp_path / "out")


@needs["abc2midi"]
@needs["timidity"]
@needs["abcm2ps"]
def test_with_tools_every_format_is_written(tmp_path):
    report = music.write_tunes([music.GeneratedTune(REEL, True)], tmp_path / "out")
    files = report["tunes"][0]["files"]
    assert set(files) == {"abc", "midi", "wav", "svg"}
    for name in files.values():
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert (tmp_path / "out" / files["svg"]).read_text(encoding="utf-8").lstrip().startswith("<")


@needs["abc2midi"]
@needs["timidity"]
@needs["abcm2ps"]
def test_a_relative_output_folder_gets_every_format_too(tmp_path, monkeypatch):
    """The tools run inside the output folder; the paths handed to them must not be relative
    to the folder the user typed the command in."""
    monkeypatch.chdir(tmp_path)
    report = music.write_tunes([music.GeneratedTune(REEL, True)], Path("tunes"))
    assert set(report["tunes"][0]["files"]) == {"abc", "midi", "wav", "svg"}
    assert "render_errors" not in report["tunes"][0]
    assert (tmp_path / "tunes" / "tune-001.wav").stat().st_size > 0


class Scripted(nn.Module):
    """A 'model' that writes a fixed text over and over (greedy), with a dummy parameter."""

    def __init__(self, vocab: CharVocab, text: str) -> None:
        super().__init__()
        self.script = torch.as_tensor(vocab.encode(text).astype("int64"))
        self.size = vocab.size
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, tokens, state=None):
        step = (0 if state is None else state) + tokens.shape[1]  # tokens read so far
        logits = torch.full((tokens.shape[0], tokens.shape[1], self.size), -10.0)
        logits[:, -1, self.script[step % len(self.script)]] = 10.0  # the script's next one
        return logits, step


def test_sample_until_cuts_at_the_end_marker_or_the_cap():
    vocab = CharVocab(list("X:1\nKC abc|"))
    model = Scripted(vocab, "X:1\nK:C\nabc|\n\n")
    (text, ended), = sample_until(model, vocab, "X:", "\n\n", 100, greedy=True)
    assert (text, ended) == ("1\nK:C\nabc|", True)
    (text, ended), = sample_until(model, vocab, "X:", "\n\n", 4, greedy=True)
    assert (text, ended) == ("1\nK:", False)
    with pytest.raises(ValueError, match="end marker"):
        sample_until(model, vocab, "X:", "", 4)


def test_generate_tunes_streams_numbered_tunes_with_a_cap_and_burn_in():
    vocab = CharVocab(list("X:0123456789\naK"))
    # meter=False: a header line "aaaa" is no field, and meter-aware sampling would refuse it
    # always "a": every tune runs to the cap, and the end marker is then forced
    tunes = music.generate_tunes(Scripted(vocab, "a"), vocab, 3, max_length=4, rows=2,
                                 greedy=True, meter=False)
    assert tunes == [music.GeneratedTune(f"X:{k}\naaaa", False) for k in (1, 2, 3)]
    # always a newline: right after "X:n\n" comes a blank line, the end of a tune
    tunes = music.generate_tunes(Scripted(vocab, "\n"), vocab, 2, max_length=9, greedy=True,
                                 meter=False)
    assert tunes == [music.GeneratedTune("X:1", True), music.GeneratedTune("X:2", True)]
    tunes = music.generate_tunes(Scripted(vocab, "a"), vocab, 2, prompt="X:7\nK", max_length=1,
                                 greedy=True, meter=False)
    assert [t.text for t in tunes] == ["X:7\nKa", "X:7\nKa"]
    with pytest.raises(ValueError, match="count, max_length and rows must be"):
        music.generate_tunes(Scripted(vocab, "a"), vocab, 0)


def test_generate_tunes_with_a_fresh_state_for_every_tune():
    vocab = CharVocab(list("X:0123456789\naK"))
    empty = []

    class Spy(Scripted):
        def forward(self, tokens, state=None):
            empty.append(state is None)
            return super().forward(tokens, state)

    tunes = music.generate_tunes(Spy(vocab, "a"), vocab, 3, max_length=4, rows=2, greedy=True,
                                 meter=False, fresh_state=True)
    assert tunes == [music.GeneratedTune(f"X:{k}\naaaa", False) for k in (1, 2, 3)]
    assert sum(empty) == 2  # two rounds (two tunes, then one), each from an empty state
    tunes = music.generate_tunes(Scripted(vocab, "\n"), vocab, 2, max_length=9, greedy=True,
                                 meter=False, fresh_state=True)
    assert tunes == [music.GeneratedTune("X:1", True), music.GeneratedTune("X:2", True)]


def train_tiny_tune_run(tmp_path, *flags: str, hidden: int = 16) -> tuple:
    """(ABC source of 12 short tunes, a run trained on it for a few steps)."""
    tunes = [f"X:{k}\nT:T{k}\nM:4/4\nL:1/8\nK:D\n|:dAFA dAFA|GBdB GBdB|ABcd efge|fdec d4:|"
             for k in range(12)]
    source = tmp_path / "tunes.abc"
    source.write_text("\n\n".join(tunes) + "\n", encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", str(source), "--out", str(run), "--hidden-size", str(hidden),
                 "--embedding-size", "8", "--seq-len", "16", "--batch-size", "4",
                 "--max-steps", "4", "--eval-every", "4", "--device", "cpu", "--quiet",
                 *flags]) == 0
    return source, run


def test_generate_tunes_command(tmp_path, capsys, monkeypatch, single_thread):
    source, run = train_tiny_tune_run(tmp_path)
    capsys.readouterr()
    assert main(["evaluate", str(run), str(source), "--json"]) == 0  # scored as normalised tunes
    assert json.loads(capsys.readouterr().out)["tokens"] > 0
    out = tmp_path / "gen"
    code = main(["generate", str(run), "--tunes", "3", "--out", str(out), "--seed", "0",
                 "--max-tune-length", "120"])
    out_text, err = capsys.readouterr()
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.abc")) == [f"tune-00{k}.abc" for k in (1, 2, 3)]
    report = json.loads((out / "tunes.json").read_text(encoding="utf-8"))
    assert len(report["tunes"]) == 3 and report["novelty_against"] == 11
    for record in report["tunes"]:
        assert {"title", "key", "meter", "length", "checks", "valid", "bar_fraction",
                "novelty", "ended"} <= set(record)
    assert "3 tunes in" in out_text and "valid" in out_text
    assert main(["generate", str(run), "--tunes", "3", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["generate", str(run), "--tunes", "3"]) == 2
    assert "--tunes N and --out DIR go together" in capsys.readouterr().err
    monkeypatch.setattr(music, "tool_paths", lambda: dict.fromkeys(music.TOOLS))
    assert main(["generate", str(run), "--tunes", "1", "--out", str(tmp_path / "bare")]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" not found")[0] for line in lines] == [
        "seqlab: abc2midi", "seqlab: timidity", "seqlab: abcm2ps"]
    assert "Debian package timidity" in lines[1]


@pytest.mark.parametrize("batching", ["tunes", "windows"])
def test_generate_tunes_command_samples_as_the_run_was_trained(tmp_path, monkeypatch, batching,
                                                              single_thread):
    """A run trained on whole tunes samples each tune from an empty state; others as streams."""
    _, run = train_tiny_tune_run(tmp_path, "--batching", batching, hidden=8)
    seen = []
    real = music.generate_tunes
    monkeypatch.setattr(music, "generate_tunes",
                        lambda *a, **k: seen.append(k["fresh_state"]) or real(*a, **k))
    assert main(["generate", str(run), "--tunes", "1", "--out", str(tmp_path / "gen"),
                 "--max-tune-length", "20"]) == 0
    assert seen == [batching == "tunes"]


def test_an_absurd_meter_is_not_handed_to_music21():
    """A sampled "M:86132032/6" made music21 run for minutes and gigabytes."""
    check, score = music.parse_music21("X:1\nM:86132032/6\nL:1/8\nK:D\ndefg|")
    assert score is None and check == {"ok": False, "reason": "meter or unit length out of "
                                                              "range: 86132032/6"}


def test_tunes_from_a_run_that_cannot_write_a_header_is_one_line(tmp_path, capsys,
                                                                  single_thread):
    text = tmp_path / "plain.txt"
    text.write_text("the cat sat on the mat and the dog ran off\n" * 40, encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", str(text), "--hidden-size", "8", "--embedding-size", "4",
                 "--seq-len", "8", "--batch-size", "4", "--max-steps", "2", "--device", "cpu",
                 "--quiet", "--out", str(run)]) == 0
    capsys.readouterr()
    code = main(["generate", str(run), "--tunes", "2", "--out", str(tmp_path / "tunes")])
    err = capsys.readouterr().err
    assert code == 2 and err.splitlines() == [
        f"seqlab: error: {run} cannot write ABC tunes: its vocabulary has no ':' or 'X' (a run "
        "trained on text, not tunes); sample text with --length"]
    assert not (tmp_path / "tunes").exists()
    words = tmp_path / "words"  # a word vocabulary read the header as <unk> and wrote junk
    assert main(["train", str(text), "--tokenizer", "word", "--hidden-size", "8",
                 "--embedding-size", "4", "--seq-len", "8", "--batch-size", "4", "--max-steps",
                 "2", "--device", "cpu", "--quiet", "--out", str(words)]) == 0
    capsys.readouterr()
    code = main(["generate", str(words), "--tunes", "2", "--out", str(tmp_path / "tunes")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"seqlab: error: {words} cannot write ABC tunes: its "
                                        "vocabulary has no ")
    assert not (tmp_path / "tunes").exists()
