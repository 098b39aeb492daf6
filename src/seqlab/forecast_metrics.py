"""Forecast accuracy: point errors, interval coverage and CRPS, on numpy arrays.

Every function takes the truth y (..., H) and a forecast of the same shape (or with a sample
or quantile axis); means run over every element. Definitions (as sktime's, fractions not
percentages):

    MAE   = mean |y - f|                 RMSE  = sqrt(mean (y - f)^2)
    MAPE  = mean |y - f| / |y|           sMAPE = mean 2 |y - f| / (|y| + |f|)
    MASE  = MAE / mean |x_t - x_{t-m}|   over the series' history x before the forecast (m: the
                                         seasonality; one scale per series)
    coverage(lo, hi) = the share of y in [lo, hi]
    CRPS(F, y) = E|X - y| - E|X - X'| / 2            from samples X, X' ~ F
               = 2 mean_tau rho_tau(y - q_tau)       from quantiles (the pinball loss), which
                                                     approaches the integral as levels densify
"""

from __future__ import annotations

import numpy as np

POINT = ("mae", "rmse", "mape", "smape", "mase")


def mae(y: np.ndarray, f: np.ndarray) -> float:
    return float(np.mean(np.abs(y - f)))


def rmse(y: np.ndarray, f: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y - f) ** 2)))


def mape(y: np.ndarray, f: np.ndarray) -> float:
    """Mean absolute percentage error as a fraction; inf when some y is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.mean(np.abs(y - f) / np.abs(y)))


def smape(y: np.ndarray, f: np.ndarray) -> float:
    """Symmetric MAPE as a fraction in [0, 2]; a point where y and f are both 0 counts 0."""
    denominator = np.abs(y) + np.abs(f)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(denominator > 0, 2 * np.abs(y - f) / denominator, 0.0)
    return float(np.mean(terms))


def naive_scale(history: np.ndarray, m: int = 1) -> float:
    """Mean |x_t - x_{t-m}| of a series' history: MASE's denominator (m falls back to 1 when
    the history is not longer than m)."""
    m = m if len(history) > m else 1
    return float(np.mean(np.abs(history[m:] - history[:-m])))


def mase(y: np.ndarray, f: np.ndarray, scales: np.ndarray) -> float:
    """Mean of |y - f| / scale, each row (a window of one series) with its own scale (rows,)."""
    scales = np.asarray(scales, dtype=float).reshape((-1,) + (1,) * (np.ndim(y) - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.mean(np.abs(y - f) / scales))


def coverage(y: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    """The share of the truth inside [low, high]."""
    return float(np.mean((y >= low) & (y <= high)))


def crps_samples(y: np.ndarray, samples: np.ndarray) -> float:
    """Mean CRPS of samples (..., S, H) against y (..., H): E|X - y| - E|X - X'| / 2, the
    second term in O(S log S) from the sorted samples."""
    x = np.sort(samples, axis=-2)  # (..., S, H)
    s = x.shape[-2]
    first = np.mean(np.abs(x - y[..., None, :]), axis=-2)
    weights = (2 * np.arange(1, s + 1) - s - 1).reshape((s, 1))  # sum_ij |x_i - x_j| = 2 sum
    spread = np.sum(weights * x, axis=-2) / s**2  # E|X - X'| / 2
    return float(np.mean(first - spread))


def crps_quantiles(y: np.ndarray, quantiles: np.ndarray, levels: np.ndarray) -> float:
    """Mean CRPS approximated from quantiles (..., H, Q) at ``levels`` (Q,): twice the mean
    pinball loss over the levels."""
    u = y[..., None] - quantiles
    return float(2 * np.mean(np.maximum(levels * u, (levels - 1) * u)))


def point_metrics(y: np.ndarray, f: np.ndarray, scales: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, MAPE, sMAPE and MASE of point forecasts (W, H)."""
    return {"mae": mae(y, f), "rmse": rmse(y, f), "mape": mape(y, f), "smape": smape(y, f),
            "mase": mase(y, f, scales)}


def interval_metrics(y: np.ndarray, levels: np.ndarray, quantiles: np.ndarray,
                     samples: np.ndarray | None = None) -> dict[str, float]:
    """80% and 95% coverage from the quantiles (W, H, Q) at 0.1/0.9 and 0.025/0.975, and CRPS
    from samples when given, else from the quantiles."""
    at = {round(float(level), 4): k for k, level in enumerate(levels)}
    covered = {f"coverage_{name}": coverage(y, quantiles[..., at[lo]], quantiles[..., at[hi]])
               for name, lo, hi in (("80", 0.1, 0.9), ("95", 0.025, 0.975))}
    crps = (crps_samples(y, samples) if samples is not None
            else crps_quantiles(y, quantiles, levels))
    return {**covered, "crps": crps}
