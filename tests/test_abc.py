"""ABC data: splitting into tunes, normalisation (faithful to the music), the split by whole
tunes, and the token streams the language model trains on."""

from __future__ import annotations

import contextlib
import io
import random
import warnings
from pathlib import Path

import pytest

import seqlab
from seqlab.data.abc import (
    END,
    body,
    headers,
    is_abc_source,
    join_tunes,
    load_tunes,
    normalise_tune,
    split_train_val,
    split_tunes,
    tunes_from_text,
)
from seqlab.data.text import load_text

IRISH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "irish.abc"

TWO_TUNES = """% a file header comment, before any tune
X: 1
T: First
N: "Slow"  collected by someone
Z: Transcribed by a person <a@b.c>
M: 6/8
L: 1/8
%%scale 0.65
K: G
GAB   c2d |\tefg a3 % a comment at the end of a line
e2d c2B ||

free text after the blank line, not music
X:2\r
T:Second\r
M:4/4\r
K:D\r
DEFG ABcd|]\r
"""


def test_split_tunes_from_x_to_the_first_blank_line():
    tunes = split_tunes(TWO_TUNES)
    assert len(tunes) == 2
    assert tunes[0].startswith("X: 1") and tunes[0].endswith("e2d c2B ||")
    assert "free text" not in "".join(tunes)
    assert tunes[1] == "X:2\nT:Second\nM:4/4\nK:D\nDEFG ABcd|]"


def test_normalise_keeps_music_fields_and_drops_notes_comments_and_spacing():
    tune = normalise_tune(split_tunes(TWO_TUNES)[0])
    assert tune == ("X:1\nT:First\nM:6/8\nL:1/8\nK:G\n"
                    "GAB c2d | efg a3\ne2d c2B ||")
    assert headers(tune) == {"X": "1", "T": "First", "M": "6/8", "L": "1/8", "K": "G"}
    assert body(tune) == "GAB c2d | efg a3\ne2d c2B ||"


def test_tunes_without_a_key_are_dropped():
    assert tunes_from_text("X:1\nT:stub\n\nX:2\nT:real\nK:C\nCDE|\n") == [
        "X:2\nT:real\nK:C\nCDE|"]


def test_normalised_tunes_have_no_blank_line_so_the_end_marker_only_ends_tunes():
    tunes = tunes_from_text(TWO_TUNES)
    text = join_tunes(tunes)
    assert text.count(END) == len(tunes) == 2
    assert text.endswith(END) and all(END not in t for t in tunes)


def _notes(tune: str) -> list[tuple[str, float]]:
    from music21 import converter

    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        score = converter.parseData(tune, format="abc")
    return [(n.fullName, float(n.quarterLength)) for n in score.flatten().notes]


@pytest.mark.parametrize("corpus", ["oneills", "ryans"])
def test_normalisation_keeps_every_note(corpus):
    """music21 reads the same notes, durations included, from raw and normalised tunes."""
    raw = [t for t in split_tunes(load_text(corpus)) if "\nK:" in t]
    for tune in random.Random(1).sample(raw, 4):
        assert _notes(normalise_tune(tune)) == _notes(tune)


def test_bundled_collections_and_the_mit_file_hold_their_tunes():
    oneills, ryans = load_tunes("oneills"), load_tunes("ryans")
    assert len(oneills) == 2009  # O'Neill's 1001 Gems + Music of Ireland, as music21 ships it
    assert len(ryans) == 1059
    assert all(t.startswith("X:") and "\nK:" in t for t in oneills + ryans)
    if IRISH.is_file():
        assert len(load_tunes(IRISH)) == 804


def test_sources(tmp_path):
    folder = tmp_path / "tunes"
    folder.mkdir()
    (folder / "a.abc").write_text("X:1\nT:A\nK:C\nCDEF|\n", encoding="utf-8")
    (folder / "notes.txt").write_text("X:9\nT:not read\nK:C\nC|\n", encoding="utf-8")
    (folder / ".hidden.abc").write_text("X:8\nT:hidden\nK:C\nC|\n", encoding="utf-8")
    assert is_abc_source("oneills") and is_abc_source(folder) and is_abc_source(folder / "a.abc")
    assert not is_abc_source(folder / "notes.txt") and not is_abc_source(tmp_path / "none")
    assert load_tunes(folder) == ["X:1\nT:A\nK:C\nCDEF|"]
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_tunes(tmp_path / "missing.abc")
    (tmp_path / "empty.abc").write_text("just words\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no ABC tunes found"):
        load_tunes(tmp_path / "empty.abc")


def test_split_by_whole_tunes_is_seeded_and_disjoint():
    tunes = [f"X:{k}\nK:C\nC{k}|" for k in range(50)]
    train, val = split_train_val(tunes, 0.1, seed=3)
    assert len(val) == 5 and len(train) == 45
    assert sorted(train + val) == sorted(tunes)
    assert split_train_val(tunes, 0.1, seed=3) == (train, val)
    assert split_train_val(tunes, 0.1, seed=4)[1] != val
    assert len(split_train_val(tunes[:2], 0.01, seed=0)[1]) == 1  # never an empty split
    with pytest.raises(ValueError, match="at least 2 tunes"):
        split_train_val(tunes[:1], 0.1, seed=0)
    with pytest.raises(ValueError, match="val_fraction must be in"):
        split_train_val(tunes, 1.0, seed=0)


def test_load_data_streams_whole_tunes(tmp_path):
    tunes = [f"X:{k}\nT:Tune {k}\nM:4/4\nL:1/8\nK:G\nGABc dBAG|{'ABcd' * (k % 3 + 1)}|]"
             for k in range(20)]
    path = tmp_path / "set.abc"
    path.write_text("\n\n".join(tunes) + "\n", encoding="utf-8")
    data = seqlab.load_data(path, seqlab.TrainConfig(val_fraction=0.2, seed=1))
    train_text = data.vocab.decode(data.train_tokens.tolist())
    val_text = data.vocab.decode(data.val_tokens.tolist())
    train, val = split_train_val(tunes, 0.2, seed=1)
    assert train_text == join_tunes(train) and val_text == join_tunes(val)
    assert len(val) == 4 and val_text.startswith("X:")


def test_a_folder_of_tunes_names_the_files_it_leaves_out(tmp_path, caplog):
    (tmp_path / "a.abc").write_text("X:1\nT:One\nM:4/4\nK:D\nABcd|\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a tune", encoding="utf-8")
    (tmp_path / ".hidden").write_text("skipped silently", encoding="utf-8")
    with caplog.at_level("WARNING"):
        assert len(load_tunes(str(tmp_path))) == 1
    assert f"{tmp_path}: tunes read from its 1 .abc file(s); 1 other file(s) left out " \
           "(notes.txt)" in caplog.text
    (tmp_path / "notes.txt").unlink()
    caplog.clear()
    with caplog.at_level("WARNING"):
        load_tunes(str(tmp_path))
    assert "left out" not in caplog.text
