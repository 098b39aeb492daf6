"""Series from CSV files and bundled sets: every check names file and line; splits by time;
scaling from the past only, inverted exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqlab.data.series import BUNDLED, Split, WindowSet, load, scale_of, series_stats
from seqlab.data.series_csv import fill_gaps, read_csv


def write(tmp_path, text: str, name: str = "s.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_wide_form_with_a_time_column_and_the_season_it_suggests(tmp_path):
    path = write(tmp_path, "month,a,b\n2020-01,1,10\n2020-02,2,20\n2020-03,3,\n")
    with pytest.raises(ValueError, match=r"s.csv:line 4: series 'b' has a missing value"):
        read_csv(path)
    series = read_csv(path, fill="forward")
    assert series.names == ["a", "b"] and series.seasonality == 12
    assert series.values[1].tolist() == [10, 20, 20]
    assert series.times[0] == ["2020-01", "2020-02", "2020-03"]


def test_wide_form_without_a_time_column(tmp_path):
    series = read_csv(write(tmp_path, "x,y\n1,2\n3,4\n"))
    assert series.names == ["x", "y"] and series.values[0].tolist() == [1, 3]
    assert series.seasonality == 1


def test_long_form_keeps_ids_in_order_and_covariates_aside(tmp_path):
    path = write(tmp_path, "id,time,value,price\nb,2001Q1,1,5\nb,2001Q2,2,6\na,1990,7,1\n"
                           "a,1991,8,2\n")
    series = read_csv(path)
    assert series.names == ["b", "a"] and series.values[1].tolist() == [7, 8]
    assert series.covariates["price"][0].tolist() == [5, 6]
    assert series.lines == [[2, 3], [4, 5]]
    # the time column under another of the usual names, covariates beside it
    dated = read_csv(write(tmp_path, "id,Date,value,promo\nx,2023-01-01,3,0\nx,2023-01-02,4,1\n"
                                     "y,2023-01-01,5,1\ny,2023-01-02,6,0\n"))
    assert dated.names == ["x", "y"] and dated.values[1].tolist() == [5, 6]
    assert dated.times[0] == ["2023-01-01", "2023-01-02"] and dated.seasonality == 7
    assert dated.covariates["promo"][0].tolist() == [0, 1]
    # a month number or a row index beside the date: the date is the time, they are covariates
    both = read_csv(write(tmp_path, "index,id,month,date,value\n0,x,1,2023-01-31,3\n"
                                    "1,x,2,2023-02-28,4\n"))
    assert both.times[0] == ["2023-01-31", "2023-02-28"] and set(both.covariates) == {
        "index", "month"}


@pytest.mark.parametrize("text, message", [
    ("t,a\n1,1\n2,x\n", r"s.csv:line 3: column 'a': 'x' is not a number"),
    ("time,a\n1,1\n2,2\n2,3\n", r"s.csv:line 4: duplicated time stamp '2' \(also on line 3\)"),
    ("time,a\n1,1\n3,2\n2,3\n", r"s.csv:line 4: time stamp '2' comes before '3' on line 3"),
    ("time,a\n1,1\n2,2\n4,3\n", r"s.csv:line 4: irregular time stamps: '2' to '4'"),
    ("time,a\n1,1\n2,2\n4,3\n3,4\n5,5\n", r"s.csv:line 5: time stamp '3' comes before '4' on "
                                          r"line 4: sort the rows"),  # two rows swapped
    ("date,a\n2020-01-01,1\n2020-01-02,2\n2020-01-04,3\n", r"s.csv:line 4: irregular"),
    ("date,a\n2020-01,1\nsoon,2\n", r"s.csv:line 3: time stamp 'soon' not understood"),
    ("t,a\n1,1\n2,2,3\n", r"s.csv:line 3: 3 columns, the header has 2"),
    ("t,a\n", r"s.csv: expected a header and at least one row"),
    ("id,time,value\nk,1,1\nk,1,2\n", r"s.csv:line 3: duplicated time stamp '1' of series 'k'"),
    ("t,a\n1,\n2,\n", r"s.csv:line 2: series 'a' has no value"),
])
def test_bad_files_are_one_line_naming_file_and_line(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        read_csv(write(tmp_path, text), fill="linear")


def test_lines_end_where_csv_ends_them_and_bad_bytes_name_their_line(tmp_path):
    # a form feed inside a quoted name is part of it, not the end of the header line
    series = read_csv(write(tmp_path, 'x,"y\x0cnote"\r\n1,2\r\n3,4\r\n'))
    assert series.names == ["x", "y\x0cnote"] and series.values[1].tolist() == [2, 4]
    bad = tmp_path / "b.csv"
    bad.write_bytes(b"\xef\xbb\xbfx,y\n1,2\n3,\xff\n")
    with pytest.raises(ValueError, match=r"b.csv line 3: not UTF-8 text \(invalid byte at "
                                         r"offset 13\)"):
        read_csv(bad)
    bad.write_bytes(b"\xef\xbb\xbfx,y\n1,2\n3,4\n")  # the byte-order mark is not a name
    assert read_csv(bad).names == ["x", "y"]
    with pytest.raises(ValueError, match=r": a folder, not a file"):
        read_csv(tmp_path)
    bad.write_bytes(b"x,y\r1,2\r3,\xff\r")  # lines ended by \r alone count as csv counts them
    with pytest.raises(ValueError, match=r"b.csv line 3: not UTF-8 text"):
        read_csv(bad)
    # a quote left open swallows the rest of the file: past csv's field limit, a one-line error
    bad.write_text('x,y\n1,"2\n' + "3,4\n" * 40000, encoding="utf-8")
    with pytest.raises(ValueError, match=r"b.csv line \d+: not readable as CSV \(field larger"):
        read_csv(bad)


def test_fills():
    values = np.array([np.nan, 1.0, np.nan, 3.0, np.nan])
    assert fill_gaps(values, "forward").tolist() == [1, 1, 1, 3, 3]
    assert fill_gaps(values, "linear").tolist() == [1, 1, 2, 3, 3]
    assert fill_gaps(values, "zero").tolist() == [0, 1, 0, 3, 0]


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_sets_are_read_from_the_installed_packages(name):
    pytest.importorskip(BUNDLED[name].package)
    series = load(name)
    assert series.seasonality == BUNDLED[name].seasonality
    lengths = {"airline": [144], "sunspots": [309], "macrodata": [203] * 12}[name]
    assert [len(v) for v in series.values] == lengths


def test_a_missing_extra_is_named(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"inside sktime, which is not installed: pip install "
                                         r"'seqlab\[series\]'"):
        load("airline")


def test_splits_are_by_time_with_validation_before_the_test():
    split = Split(context=4, horizon=3, windows=2, val_windows=2, step=2)
    n = 30
    assert split.test_origins(n) == [25, 27]  # the last target is y[29]
    assert split.val_origins(n) == [20, 22]  # the last validation target is y[24]
    assert split.train_end(n) == 20
    assert max(split.train_origins(n)) < 20 and min(split.train_origins(n)) == 2


def test_too_short_series_name_their_file_line_and_both_limits(tmp_path):
    series = read_csv(write(tmp_path, "a\n" + "1\n" * 9))
    with pytest.raises(ValueError, match=r"s.csv:line 10: series 'a' has 9 points, shorter "
                                         r"than context 8 \+ horizon 2"):
        Split(8, 2).check(series)
    with pytest.raises(ValueError, match=r"at least 11"):
        Split(4, 3).check(series)  # 2 + 3 training, 3 + 3 held out


def test_windows_pad_a_context_before_the_series_and_mask_targets_past_the_end():
    values = [np.arange(10.0), 100 + np.arange(6.0)]
    windows = WindowSet(values, [[2], [4]], context=3, horizon=3, ends=[4, 6])
    context, targets, observed = windows.gather(torch.arange(2))
    assert context.tolist() == [[0, 0, 1], [101, 102, 103]]
    assert targets.tolist() == [[2, 3, 0], [104, 105, 0]]
    assert observed.tolist() == [[False, True, True, True, True, False],
                                 [True, True, True, True, True, False]]


def test_scaling_inverts_exactly_and_reads_no_future_value():
    torch.manual_seed(0)
    context, later = 50 + 10 * torch.randn(4, 12), torch.randn(4, 5)
    observed = torch.ones(4, 12, dtype=torch.bool)
    observed[0, :3] = False
    for scaling in ("window", "series", "none"):
        stats = torch.tensor([[3.0, 2.0]] * 4)
        scale = scale_of(context, scaling, stats, observed)
        assert torch.allclose(scale.invert(scale.apply(later)), later, atol=1e-5)
    scale = scale_of(context, "window", observed=observed)
    assert scale.loc[0].item() == pytest.approx(context[0, 3:].mean().item())
    assert scale.scale[1].item() == pytest.approx(context[1].std().item(), rel=1e-5)
    # the series statistics stop at the training part's end: later values change nothing
    a, b = np.arange(20.0), np.arange(20.0)
    b[15:] = 1e6
    assert torch.equal(series_stats([a], [15]), series_stats([b], [15]))


def test_paths_and_quantiles_invert_per_window():
    scale = scale_of(torch.tensor([[1.0, 3.0], [10.0, 30.0]]), "window")
    z = torch.ones(2, 4, 3)  # (B, S, H)
    out = scale.invert(z)
    assert torch.allclose(out[0], torch.full((4, 3), 2 + 2**0.5))
    assert torch.allclose(out[1], torch.full((4, 3), 20 + 200**0.5))
