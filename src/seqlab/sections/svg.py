"""Figures as inline SVG: matplotlib's SVG backend writing to a string, never to a file.

Each function takes numbers and returns an ``<svg>`` element as text, ready to be put in a
page: no XML prolog, no metadata (whose RDF names web addresses), text kept as text. Figures
are :class:`matplotlib.figure.Figure` objects, not pyplot's, so drawing touches no global
state. A series drawn with ``gid`` is an SVG group of that id, its points one ``<use>`` each
(a test counts them).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

STYLE = {"svg.fonttype": "none", "svg.hashsalt": "seqlab", "font.size": 9,
         "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8}
_DROP = (re.compile(r"<\?xml.*?\?>", re.S), re.compile(r"<!DOCTYPE.*?>", re.S),
         re.compile(r"<!--.*?-->", re.S), re.compile(r"<metadata>.*?</metadata>", re.S))


def clean(svg: str) -> str:
    """An SVG document as an element to inline: prolog, doctype, comments, metadata gone."""
    for pattern in _DROP:
        svg = pattern.sub("", svg)
    start = svg.find("<svg")
    if start < 0:
        raise ValueError("not an SVG document (no <svg> element)")
    return svg[start:].strip()


def figure(width: float = 7.0, height: float = 3.6, cols: int = 1, rows: int = 1):
    """(figure, axes as a flat array) of a new figure of ``width`` x ``height`` inches."""
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    return fig, axes


def to_svg(fig: Figure) -> str:
    """The figure as an inline ``<svg>`` element."""
    out = io.StringIO()
    with matplotlib.rc_context(STYLE):
        fig.tight_layout()
        fig.savefig(out, format="svg", metadata={"Date": None})
    return clean(out.getvalue())


def finite(values: Sequence) -> np.ndarray:
    """Floats, with None and non-finite values as NaN (gaps in a line)."""
    array = np.asarray([math.nan if v is None else v for v in values], dtype=float)
    array[~np.isfinite(array)] = math.nan
    return array


def scale_for(values: Sequence[float]) -> str:
    """log when every value is positive and they span more than a factor of 20."""
    array = finite(values)
    array = array[np.isfinite(array)]
    if len(array) and (array > 0).all() and array.max() / array.min() > 20:
        return "log"
    return "linear"


def draw_curves(ax, series: dict[str, tuple[Sequence, Sequence]], title: str, xlabel: str,
                ylabel: str, markers: dict[str, str] | None = None,
                hlines: dict[str, float] | None = None) -> None:
    """Lines on ``ax``: ``series`` maps a label to (x, y); ``markers`` maps a label to the
    gid of its group (those series get a marker per point); ``hlines`` labelled dashed lines."""
    markers = markers or {}
    for label, (x, y) in series.items():
        gid = markers.get(label)
        ax.plot(np.asarray(x, dtype=float), finite(y), label=label, linewidth=1.3,
                marker="o" if gid else None, markersize=3, gid=gid)
    for label, value in (hlines or {}).items():
        ax.axhline(value, linestyle="--", color="grey", linewidth=1, label=label)
    every = [v for _, y in series.values() for v in y] + list((hlines or {}).values())
    ax.set_yscale(scale_for(every))
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    if len(series) + len(hlines or {}) > 1:
        ax.legend()


def curves(series: dict[str, tuple[Sequence, Sequence]], title: str, xlabel: str,
           ylabel: str, markers: dict[str, str] | None = None,
           hlines: dict[str, float] | None = None, width: float = 7.0,
           height: float = 3.4) -> str:
    """One axes of lines (see :func:`draw_curves`) as SVG."""
    fig, (ax,) = figure(width, height)
    draw_curves(ax, series, title, xlabel, ylabel, markers, hlines)
    return to_svg(fig)


def heatmap(matrix, xlabels: Sequence[str], ylabels: Sequence[str], title: str, xlabel: str,
            ylabel: str, vmin: float | None = None, vmax: float | None = None,
            annotate: bool = False, colorbar: str = "", cell: float = 0.3) -> str:
    """A matrix as colours, rows labelled ``ylabels``; ``annotate`` writes each value;
    ``cell``: inches a row or column takes (the figure stays between 2.6 and 9 inches)."""
    matrix = np.asarray(matrix, dtype=float)
    rows, cols = matrix.shape
    fig, (ax,) = figure(min(9.0, max(3.2, cell * cols + 2.0)),
                        min(9.0, max(2.6, cell * rows + 1.6)))
    image = ax.imshow(matrix, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto",
                      interpolation="nearest")
    if len(xlabels) <= 60:
        ax.set_xticks(range(cols), list(xlabels), fontsize=7, rotation=90 if cols > 12 else 0)
    if len(ylabels) <= 60:
        ax.set_yticks(range(rows), list(ylabels), fontsize=7)
    if annotate:
        top = np.nanmax(matrix) if matrix.size else 0
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, f"{value:g}", ha="center", va="center", fontsize=7,
                    color="black" if value > 0.6 * top else "white")
    if colorbar:
        fig.colorbar(image, ax=ax, label=colorbar)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return to_svg(fig)
