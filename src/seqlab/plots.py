"""Figures as PNG files (matplotlib's Agg backend: never a window, works without a display).

Each function takes numbers (lists or arrays) and a path; none computes anything about a model.
Values that are zero on a log scale (an underflowed gradient) are left out, not clamped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import numpy as np  # noqa: E402

from seqlab.io import atomic_write  # noqa: E402


def _save(fig, path: Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


def _positive(values) -> np.ndarray:
    """Values as floats, with zeros and non-finite entries as NaN (gaps on a log axis)."""
    array = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    array[~np.isfinite(array) | (array <= 0)] = np.nan
    return array


def curves(path: Path, series: dict[str, Sequence[float]], title: str, xlabel: str,
           ylabel: str, x: dict[str, Sequence[float]] | None = None, log: bool = True,
           hlines: dict[str, float] | None = None) -> Path:
    """One line per series (x defaults to 0, 1, ...); optional labelled horizontal lines."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, values in series.items():
        y = _positive(values) if log else np.asarray(values, dtype=float)
        xs = np.asarray(x[label]) if x and label in x else np.arange(len(y))
        ax.plot(xs, y, label=label, linewidth=1.4, marker="o" if len(y) == 1 else None)
    for label, value in (hlines or {}).items():
        ax.axhline(value, linestyle="--", color="grey", linewidth=1)
        ax.annotate(label, (0.01, value), xycoords=("axes fraction", "data"), fontsize=8,
                    va="bottom", color="dimgrey")
    if log:
        ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    return _save(fig, path)


def heatmap(path: Path, rows: Sequence[Sequence[float]], row_values: Sequence[int], title: str,
            xlabel: str, ylabel: str, colorbar: str = "log10 norm") -> Path:
    """rows[k][t] as log10 colours; row k labelled by row_values[k] (a training step)."""
    matrix = np.log10(np.stack([_positive(r) for r in rows]))  # (K, T)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    image = ax.imshow(matrix, aspect="auto", origin="lower", interpolation="nearest",
                      cmap="viridis")
    ticks = np.linspace(0, len(row_values) - 1, min(len(row_values), 8)).round().astype(int)
    ax.set_yticks(ticks, [str(row_values[k]) for k in ticks])
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    fig.colorbar(image, ax=ax, label=colorbar)
    return _save(fig, path)


def confusion(path: Path, matrix: Sequence[Sequence[int]], names: Sequence[str],
              title: str) -> Path:
    """A confusion matrix: rows true class, columns predicted, each cell its count, coloured
    by the share of its row (so a small class reads as clearly as a large one)."""
    counts = np.asarray(matrix, dtype=float)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    size = 3 + 0.45 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, names, rotation=45, ha="right")
    ax.set_yticks(ticks, names)
    if len(names) <= 30:  # beyond that the numbers would not be legible
        for (i, j), count in np.ndenumerate(counts):
            ax.text(j, i, f"{int(count)}", ha="center", va="center", fontsize=7,
                    color="white" if shares[i, j] > 0.6 else "black")
    ax.set(title=title, xlabel="predicted", ylabel="true")
    fig.colorbar(image, ax=ax, label="share of the true class", fraction=0.046)
    return _save(fig, path)


def weights_over_time(path: Path, rows: Sequence[Sequence[float]], labels: Sequence[str],
                      title: str) -> Path:
    """One row per sequence: a weight per time step (attention pooling), blank past its end."""
    width = max(len(r) for r in rows)
    matrix = np.full((len(rows), width), np.nan)
    for k, row in enumerate(rows):
        matrix[k, :len(row)] = row
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.35 * len(rows)))
    image = ax.imshow(matrix, aspect="auto", interpolation="nearest", cmap="magma")
    ax.set_yticks(np.arange(len(rows)), labels, fontsize=7)
    ax.set(title=title, xlabel="time step t")
    fig.colorbar(image, ax=ax, label="weight")
    return _save(fig, path)
