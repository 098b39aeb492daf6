"""Scores of a classifier: accuracy, macro-F1, per-class precision / recall / F1, confusion.

Counts are exact integers from one confusion matrix (rows: true class, columns: predicted), so
every figure is a ratio of counts; a class that is never predicted has precision 0 (and never
true: recall 0), as scikit-learn's ``zero_division=0`` reads them. Written with numpy: a
bincount is all it takes, and the base install has no scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion(true: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """(K, K) counts: row i, column j = examples of class i predicted as j."""
    true, predicted = np.asarray(true, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    return np.bincount(true * classes + predicted, minlength=classes * classes
                       ).reshape(classes, classes)


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)),
                     where=denominator > 0)


def scores(matrix: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class figures of a confusion matrix."""
    matrix = np.asarray(matrix)
    hits = np.diag(matrix).astype(float)
    support, predicted = matrix.sum(1), matrix.sum(0)
    precision, recall = ratio(hits, predicted), ratio(hits, support)
    f1 = ratio(2 * precision * recall, precision + recall)
    total = int(matrix.sum())
    present = support > 0  # macro-F1 over the classes the data holds
    return {"accuracy": float(hits.sum() / max(total, 1)),
            "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
            "examples": total,
            "per_class": {name: {"precision": float(precision[k]), "recall": float(recall[k]),
                                 "f1": float(f1[k]), "support": int(support[k])}
                          for k, name in enumerate(names)},
            "confusion": matrix.tolist()}
