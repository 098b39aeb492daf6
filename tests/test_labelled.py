"""Readers of labelled examples for classification: text, tunes, series, splits, scaling."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from seqlab.data import labelled
from seqlab.data.abc import body
from seqlab.data.labelled import (
    BUNDLED,
    FILLS,
    Standardizer,
    is_bundled,
    read_examples,
    stratified_split,
    tune_type,
)


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


# TSV -----------------------------------------------------------------------------------------
def test_tsv_with_header_names_each_line_and_splits_on_the_first_tab(tmp_path):
    src = write(tmp_path / "d.tsv", "Label\tText\npos\tgood film\n\nneg \tbad\tfilm\n")
    ex, test = read_examples(src)
    assert test is None and ex.kind == "text" and ex.features == []
    assert ex.items == ["good film", "bad\tfilm"]
    assert ex.labels == ["pos", "neg"]
    assert ex.names == [f"{src}:2", f"{src}:4"]


def test_tsv_without_header_and_any_text_file_with_tabs(tmp_path):
    src = write(tmp_path / "d.txt", "a\tone\nb\ttwo\na\tthree\n")
    ex, _ = read_examples(src)
    assert ex.labels == ["a", "b", "a"] and ex.items[0] == "one"
    assert ex.names[0] == f"{src}:1"


@pytest.mark.parametrize("text, message", [
    ("a\tone\nno tab here\n", r"d.tsv line 2: no tab"),
    ("a\tone\nb\t  \n", r"d.tsv line 2: empty text"),
    ("a\tone\n\ttwo\n", r"d.tsv line 2: empty label"),
])
def test_tsv_errors_name_file_and_line(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        read_examples(write(tmp_path / "d.tsv", text))


def test_one_class_is_read_for_scoring_and_refused_by_the_training_split(tmp_path):
    src = write(tmp_path / "d.tsv", "a\tone\na\ttwo\n")
    ex, _ = read_examples(src)  # a test batch of one kind is still scored
    assert ex.labels == ["a", "a"]
    with pytest.raises(ValueError, match=r"one class only \('a'\) in .*d.tsv: a classifier "
                                         r"needs at least two"):
        stratified_split(ex.labels, 0.2, seed=0, source=src)


def test_tsv_non_utf8_names_the_line(tmp_path):
    (tmp_path / "d.tsv").write_bytes(b"a\tone\nb\tt\xffwo\n")
    with pytest.raises(ValueError, match=r"d.tsv line 2: not UTF-8"):
        read_examples(str(tmp_path / "d.tsv"))


def test_predict_inputs_may_lack_labels(tmp_path):
    plain, _ = read_examples(write(tmp_path / "p.txt", "one\ntwo\n"), labels=False)
    assert plain.items == ["one", "two"] and plain.labels is None and plain.note == ""
    kept, _ = read_examples(write(tmp_path / "k.tsv", "x\tone\n"), labels=False)
    assert kept.labels == ["x"]  # one class is fine when predicting
    mixed, _ = read_examples(write(tmp_path / "m.tsv", "x\tone\ntwo\n"), labels=False)
    assert mixed.labels is None and "1 of 2 examples carry a label" in mixed.note


def test_a_text_file_without_tabs_is_no_training_source(tmp_path):
    with pytest.raises(ValueError, match="cannot tell its format"):
        read_examples(write(tmp_path / "p.txt", "one\ntwo\n"))


def test_unknown_source_lists_the_bundled_sets_and_a_bad_fill_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder.*tune-types.*gunpoint"):
        read_examples("no-such-set")
    with pytest.raises(FileNotFoundError) as err:
        read_examples(str(tmp_path / "missing.tsv"))
    assert "bundled" not in str(err.value)
    with pytest.raises(ValueError, match="fill must be one of none, forward, linear, zero"):
        read_examples("gunpoint", fill="mean")


# folders -------------------------------------------------------------------------------------
def test_folder_of_label_subfolders(tmp_path):
    write(tmp_path / "f" / "spam" / "1.txt", "buy now")
    write(tmp_path / "f" / "spam" / ".hidden", "")
    write(tmp_path / "f" / "ham" / "a.txt", "hello")
    write(tmp_path / "f" / "ham" / "b.txt", "see you")
    ex, _ = read_examples(str(tmp_path / "f"))
    assert ex.labels == ["ham", "ham", "spam"]
    assert ex.items == ["hello", "see you", "buy now"]
    assert ex.names[2] == str(tmp_path / "f" / "spam" / "1.txt")


def test_folder_errors(tmp_path):
    write(tmp_path / "flat" / "a.txt", "text")
    with pytest.raises(ValueError, match="flat: no subfolders"):
        read_examples(str(tmp_path / "flat"))
    unlabelled, _ = read_examples(str(tmp_path / "flat"), labels=False)
    assert unlabelled.items == ["text"] and unlabelled.labels is None
    write(tmp_path / "f" / "a" / "1.txt", "x")
    write(tmp_path / "f" / "b" / "2.txt", " \n")
    with pytest.raises(ValueError, match=r"2.txt: empty file"):
        read_examples(str(tmp_path / "f"))


# ABC -----------------------------------------------------------------------------------------
ABC = """X:1
T:The Silver Spear Reel
R:Reels
M:4/4
L:1/8
K:D
A|FA (3AAA BAFA|[M:2/4] d2 de|
T:second part
fdfa|

X:2
T:Lilting Jig
R:Double Jig
M:6/8
K:G
GAB dBG|

X:3
T:No type
M:3/4
K:A
ABc|
"""


def test_abc_file_tunes_are_prepared_like_tune_types(tmp_path):
    src = write(tmp_path / "t.abc", ABC)
    ex, _ = read_examples(src, labels=False)
    assert ex.names == ["tune 1: The Silver Spear Reel", "tune 2: Lilting Jig", "tune 3: No type"]
    assert ex.labels is None  # tune 3 has no R:, so the file carries no labels
    assert ex.items[0] == "L:1/8\nK:D\nA|FA (3AAA BAFA| d2 de|\nfdfa|"
    assert ex.items[1] == "K:G\nGAB dBG|"
    with pytest.raises(ValueError, match=r"t.abc line 18: tune 3 has no R: field"):
        read_examples(src)
    two, _ = read_examples(write(tmp_path / "two.abc", ABC.split("\nX:3")[0]))
    assert two.labels == ["reel", "jig"]


def test_tune_type_normal_form():
    assert [tune_type(v) for v in ("Reel", "reel.", "Reels", "REEL", "Double Jig", "slipjig",
                                   "Slip-Jig", "Hornpipes", "set dance", "")] == [
        "reel", "reel", "reel", "reel", "jig", "slip jig", "slip jig", "hornpipe", "set dance", ""]


# .ts -----------------------------------------------------------------------------------------
def ts(tmp_path: Path, data: str, labels: str = "true a b", univariate: bool = True,
       name: str = "s.ts") -> str:
    header = (f"# a comment\n@problemName test\n@timeStamps false\n"
              f"@univariate {str(univariate).lower()}\n@classLabel {labels}\n@data\n")
    return write(tmp_path / name, header + data)  # the first case is on line 7


def test_ts_univariate(tmp_path):
    pytest.importorskip("sktime")
    src = ts(tmp_path, "1,2,3:a\n4,5,6:b\n", labels="true a b")
    ex, test = read_examples(src)
    assert test is None and ex.kind == "series" and ex.features == ["dim_0"]
    assert ex.labels == ["a", "b"] and ex.names == [f"{src}:1", f"{src}:2"]
    assert ex.items[1].dtype == np.float32 and ex.items[1].shape == (3, 1)
    np.testing.assert_array_equal(ex.items[1][:, 0], [4, 5, 6])


def test_ts_multivariate_variable_length_keeps_the_labels_case(tmp_path):
    pytest.importorskip("sktime")
    src = ts(tmp_path, "1,2,3:10,20,30:Up\n1,2,3,4,5:6,7,8,9,10:down\n",
             labels="true Up down", univariate=False)
    ex, _ = read_examples(src)
    assert [x.shape for x in ex.items] == [(3, 2), (5, 2)]
    assert ex.labels == ["Up", "down"]  # sktime lower-cases whole lines; the labels keep theirs
    np.testing.assert_array_equal(ex.items[0][:, 1], [10, 20, 30])


@pytest.mark.parametrize("data, message", [
    ("1,2:3,4:a\n1,2:b\n5,6:7,8:a\n", r"s.ts line 8: 1 dimensions, but the first case \(line 7\)"),
    ("1,2,3:a\n1,?,3:b\n", r"s.ts line 8 \(case 2\): missing value in channel 'dim_0' at step 2;"
                           " gaps need a fill .* chosen when the run is trained"),
    ("1,2,3:a\n1,x,3:b\n", r"s.ts line 8: dimension 1: 'x' is not a number"),
    ("1,2,3:a\n1,2:3,4:b\n", r"s.ts line 8: 2 dimensions"),
])
def test_ts_errors_name_the_line(tmp_path, data, message):
    pytest.importorskip("sktime")
    with pytest.raises(ValueError, match=message):
        read_examples(ts(tmp_path, data, univariate=False))


@pytest.mark.parametrize("fill, first, second", [
    ("forward", [1, 1, 3, 3], [2, 2, 2, 4]),
    ("linear", [1, 2, 3, 3], [2, 2, 3, 4]),
    ("zero", [1, 0, 3, 0], [0, 2, 0, 4]),
])
def test_ts_fills(tmp_path, fill, first, second):
    pytest.importorskip("sktime")
    ex, _ = read_examples(ts(tmp_path, "1,?,3,?:a\n?,2,?,4:b\n"), fill=fill)
    np.testing.assert_array_equal(ex.items[0][:, 0], first)
    np.testing.assert_array_equal(ex.items[1][:, 0], second)


def test_ts_infinity_is_an_error_whatever_the_fill(tmp_path):
    pytest.importorskip("sktime")
    src = ts(tmp_path, "1,2,3:a\n1,inf,?:b\n")
    for fill in FILLS:
        with pytest.raises(ValueError, match=r"line 8 \(case 2\): infinite value"):
            read_examples(src, fill=fill)


def test_series_without_sktime_say_which_extra_to_install(tmp_path, monkeypatch):
    src = ts(tmp_path, "1,2,3:a\n4,5,6:b\n")
    monkeypatch.setitem(sys.modules, "sktime", None)  # import sktime now fails, as if absent
    monkeypatch.setattr(labelled, "_CACHE", {})
    with pytest.raises(ValueError, match=r"^reading .ts files needs the series extra: pip "
                                         r"install 'seqlab\[series\]'$"):
        read_examples(src)
    with pytest.raises(ValueError, match=r"'gunpoint' needs the series extra: pip install "
                                         r"'seqlab\[series\]'"):
        read_examples("gunpoint")


def test_ts_without_labels(tmp_path):
    pytest.importorskip("sktime")
    src = ts(tmp_path, "1,2,3\n4,5,6\n", labels="false")
    ex, _ = read_examples(src, labels=False)
    assert ex.labels is None and len(ex.items) == 2
    with pytest.raises(ValueError, match="no class labels"):
        read_examples(src)


# long-form CSV -------------------------------------------------------------------------------
CSV = "id,time,x,y,label\nu1,0,1,10,walk\nu1,1,2,20,walk\nu1,2,3,30,walk\nu2,0,5,50,run\n" \
      "u2,1,6,60,run\n"


def test_csv_long_form(tmp_path):
    ex, _ = read_examples(write(tmp_path / "d.csv", CSV))
    assert ex.kind == "series" and ex.features == ["x", "y"] and ex.names == ["u1", "u2"]
    assert ex.labels == ["walk", "run"]
    assert [x.shape for x in ex.items] == [(3, 2), (2, 2)]
    np.testing.assert_array_equal(ex.items[1], [[5, 50], [6, 60]])


def test_csv_gaps_and_predict_inputs(tmp_path):
    gappy = CSV.replace("u1,1,2,20", "u1,1,,20")
    with pytest.raises(ValueError, match=r"d.csv line 3 \(id 'u1'\): missing value in channel "
                                         r"'x' at step 2"):
        read_examples(write(tmp_path / "d.csv", gappy))
    ex, _ = read_examples(str(tmp_path / "d.csv"), fill="linear")
    np.testing.assert_array_equal(ex.items[0][:, 0], [1, 2, 3])
    unlabelled = "\n".join(",".join(r.split(",")[:4]) for r in CSV.splitlines())
    ex, _ = read_examples(write(tmp_path / "p.csv", unlabelled), labels=False)
    assert ex.labels is None and len(ex.items) == 2


@pytest.mark.parametrize("old, new, message", [
    ("x,y,label", "x,y,kind", r"d.csv line 1: no 'label' column"),
    ("u2,1,6,60", "u2,1,six,60", r"d.csv line 6: column 'x' is not a number: 'six'"),
    ("u1,2,3,30", "u1,0.5,3,30", r"d.csv line 4: time '0.5' of id 'u1' is not after the time "
                                 r"of line 3"),
    ("u1,1,2", "u1,0,2", r"d.csv line 3: time '0'"),
    ("u2,1,6,60,run", "u2,1,6,60,walk", r"d.csv line 6: id 'u2' has label 'walk' here but 'run'"
                                        r" at line 5"),
    ("u2,1,6,60,run", "u1,3,6,60,walk", r"d.csv line 6: id 'u1' again after other ids"),
    ("u2,1,6,60", "u2,1,-inf,60", r"d.csv line 6 \(id 'u2'\): infinite value in channel 'x' "
                                  r"at step 2"),
])
def test_csv_errors_name_the_line(tmp_path, old, new, message):
    assert old in CSV
    with pytest.raises(ValueError, match=message):
        read_examples(write(tmp_path / "d.csv", CSV.replace(old, new)), fill="zero")


# splits --------------------------------------------------------------------------------------
def test_stratified_split_proportions_and_determinism():
    labels = ["a"] * 10 + ["b"] * 20 + ["c"] * 5
    train, val = stratified_split(labels, 0.2, seed=3)
    assert Counter(labels[i] for i in val) == {"a": 2, "b": 4, "c": 1}
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(labels)))
    again = stratified_split(labels, 0.2, seed=3)
    np.testing.assert_array_equal(again[1], val)
    others = [stratified_split(labels, 0.2, seed=s)[1] for s in range(4, 8)]
    assert any(not np.array_equal(o, val) for o in others)


def test_stratified_split_keeps_one_of_each_class_on_both_sides():
    labels = ["a", "a", "b", "b", "b"]
    for fraction in (0.01, 0.99):
        train, val = stratified_split(labels, fraction, seed=0)
        assert {labels[i] for i in train} == {labels[i] for i in val} == {"a", "b"}


def test_stratified_split_errors():
    with pytest.raises(ValueError, match=r"one class only \('a'\)"):
        stratified_split(["a", "a", "a"], 0.2, seed=0)
    with pytest.raises(ValueError, match=r"class 'b' has 1 example in d.tsv; the validation "
                                         r"split needs at least 2 per class"):
        stratified_split(["a", "a", "b"], 0.2, seed=0, source="d.tsv")


# standardisation -----------------------------------------------------------------------------
def test_standardizer_uses_training_statistics_only():
    train = [np.array([[1.0, 7.0], [3.0, 7.0]], dtype=np.float32),
             np.array([[1.0, 7.0], [3.0, 7.0]], dtype=np.float32)]
    scaler = Standardizer.fit(train)
    np.testing.assert_allclose(scaler.mean, [2.0, 7.0])
    np.testing.assert_allclose(scaler.std, [1.0, 1.0])  # the constant channel divides by 1
    (other,) = scaler.apply([np.array([[5.0, 9.0]], dtype=np.float32)])
    assert other.dtype == np.float32
    np.testing.assert_allclose(other, [[3.0, 2.0]])
    restored = Standardizer.from_dict(json.loads(json.dumps(scaler.to_dict())))
    np.testing.assert_array_equal(restored.apply(train)[0], scaler.apply(train)[0])
    with pytest.raises(ValueError, match=r"expected a series of shape \(T, 2\), got \(1, 3\)"):
        scaler.apply([np.zeros((1, 3))])
    with pytest.raises(ValueError, match="expected keys mean and std"):
        Standardizer.from_dict({"mean": [0.0]})


# bundled sets --------------------------------------------------------------------------------
@pytest.mark.parametrize("name, sizes, channels, lengths, classes", [
    ("japanese-vowels", (270, 370), 12, (7, 29), 9),
    ("gunpoint", (50, 150), 1, (150, 150), 2),
    ("italy-power", (67, 1029), 1, (24, 24), 2),
])
def test_bundled_ucr_sets(name, sizes, channels, lengths, classes):
    pytest.importorskip("sktime")
    train, test = read_examples(name)
    assert (len(train), len(test)) == sizes
    steps = [x.shape[0] for x in train.items + test.items]
    assert (min(steps), max(steps)) == lengths
    assert {x.shape[1] for x in train.items + test.items} == {channels} == {len(train.features)}
    assert len(set(train.labels)) == classes and set(test.labels) <= set(train.labels)
    train.items.clear()  # a copy: the cached set is untouched
    assert len(read_examples(name)[0]) == sizes[0]


def test_tune_types():
    train, test = read_examples("tune-types")
    counts = Counter(train.labels)
    assert len(counts) >= 4 and {"reel", "jig", "hornpipe"} <= set(counts)
    assert set(test.labels) == set(counts)
    assert 0.17 < len(test) / (len(train) + len(test)) < 0.23
    for item in train.items + test.items:
        assert not re.search(r"^[RMTX]:", item, re.MULTILINE) and "[M:" not in item
    assert not {body(t) for t in train.items} & {body(t) for t in test.items}
    assert "dropped" in train.note and "clog" in train.note and "double jig" in train.note
    assert train.names[0].startswith("tune ")


def test_bundled_names(tmp_path, monkeypatch):
    assert set(BUNDLED) == {"tune-types", "japanese-vowels", "gunpoint", "italy-power"}
    assert is_bundled("gunpoint") and not is_bundled("gunpoints")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gunpoint").mkdir()
    assert not is_bundled("gunpoint")  # a path of that name wins


def test_csv_with_some_labels_missing_gives_none_when_predicting(tmp_path):
    src = write(tmp_path / "d.csv", CSV.replace(",run\n", ",\n"))
    ex, _ = read_examples(src, labels=False)
    assert ex.labels is None and "1 of 2 examples carry a label" in ex.note
    with pytest.raises(ValueError, match=r"d.csv line 5: empty label"):
        read_examples(src)


# what editors and spreadsheets write -----------------------------------------------------------
BOM = "\ufeff"


def test_a_byte_order_mark_is_not_part_of_the_first_line(tmp_path):
    """Files saved with a UTF-8 byte-order mark read as without it, in every format."""
    tsv = write(tmp_path / "d.tsv", BOM + "label\ttext\r\npos\tgood film\r\nneg\tbad film\r\n")
    ex, _ = read_examples(tsv)
    assert ex.labels == ["pos", "neg"] and ex.names == [f"{tsv}:2", f"{tsv}:3"]
    ex, _ = read_examples(write(tmp_path / "d.csv", BOM + CSV))
    assert ex.features == ["x", "y"] and ex.labels == ["walk", "run"]
    abc, _ = read_examples(write(tmp_path / "t.abc", BOM + ABC), labels=False)
    assert abc.names[0] == "tune 1: The Silver Spear Reel" and len(abc.items) == 3


def test_a_ts_file_with_a_byte_order_mark(tmp_path):
    pytest.importorskip("sktime")
    plain, _ = read_examples(ts(tmp_path, "1,2,3:a\n4,5,6:b\n"))
    marked = tmp_path / "m.ts"
    text = (tmp_path / "s.ts").read_text(encoding="utf-8").split("\n", 1)[1]  # no comment
    marked.write_text(BOM + text, encoding="utf-8")  # first: the mark, then @problemName
    ex, _ = read_examples(str(marked))
    assert ex.labels == plain.labels == ["a", "b"]
    np.testing.assert_array_equal(np.stack(ex.items), np.stack(plain.items))


@pytest.mark.parametrize("inside", ["\u2028", "\u2029", "\x0c", "\x0b", "\x1c", "\x85"])
def test_tsv_lines_end_only_at_line_ends(tmp_path, inside):
    """A form feed or a Unicode line separator inside a text is part of it, not a new line."""
    src = write(tmp_path / "d.tsv", f"pos\tgood{inside}film\r\nneg\tbad film\rpos\tfine\n")
    ex, _ = read_examples(src)
    assert ex.items == [f"good{inside}film", "bad film", "fine"]
    assert ex.names == [f"{src}:1", f"{src}:2", f"{src}:3"]


@pytest.mark.parametrize("time", ["nan", "inf", "-inf", "NaN"])
def test_csv_times_must_be_finite(tmp_path, time):
    with pytest.raises(ValueError, match=rf"d.csv line 3: time '{time}' is not a finite number"):
        read_examples(write(tmp_path / "d.csv", CSV.replace("u1,1,2,20", f"u1,{time},2,20")))


def test_ts_with_timestamps_keeps_the_labels_as_written(tmp_path):
    pytest.importorskip("sktime")
    header = ("@problemName t\n@timeStamps true\n@univariate true\n@classLabel true Up Down\n"
              "@data\n")
    src = write(tmp_path / "t.ts", header + "(0,1.0),(1,2.0),(2,3.0):Up\n"
                                            "(0,3.0),(1,2.0),(2,1.0):Down\n")
    ex, _ = read_examples(src)
    assert ex.labels == ["Up", "Down"]
    np.testing.assert_array_equal(ex.items[1][:, 0], [3, 2, 1])


def test_ts_labels_take_the_spelling_of_the_declared_classes(tmp_path):
    """sktime matches labels to @classLabel ignoring case; a case written `down` where
    `Down` is declared is that class, not a third one."""
    pytest.importorskip("sktime")
    ex, _ = read_examples(ts(tmp_path, "1,2,3:Up\n3,2,1:down\n4,5,6:Up\n6,5,4:Down\n",
                             labels="true Up Down"))
    assert ex.labels == ["Up", "Down", "Up", "Down"]


def test_ts_comment_lines_among_the_cases_are_skipped(tmp_path):
    """sktime reads a comment among the cases as a case of no dimensions; seqlab skips it, and
    an error after it still names the file's own line."""
    pytest.importorskip("sktime")
    ex, _ = read_examples(ts(tmp_path, "1,2,3:a\n# measured again\n4,5,6:b\n"))
    assert ex.labels == ["a", "b"] and ex.names == [f"{tmp_path / 's.ts'}:1",
                                                   f"{tmp_path / 's.ts'}:2"]
    np.testing.assert_array_equal(ex.items[1][:, 0], [4, 5, 6])
    with pytest.raises(ValueError, match=r"s.ts line 9 \(case 2\): missing value"):
        read_examples(ts(tmp_path, "1,2,3:a\n# measured again\n4,?,6:b\n", name="s.ts"))
