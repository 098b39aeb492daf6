"""Forecast metrics against values computed by hand, sktime's metrics and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seqlab import forecast_metrics as fm

Y = np.array([1.0, 2.0, 3.0, 4.0])
F = np.array([1.5, 2.0, 2.0, 5.0])
HISTORY = np.array([1.0, 3.0, 2.0, 4.0, 5.0, 3.0])


def test_point_metrics_by_hand():
    assert fm.mae(Y, F) == pytest.approx((0.5 + 0 + 1 + 1) / 4)
    assert fm.rmse(Y, F) == pytest.approx(math.sqrt((0.25 + 0 + 1 + 1) / 4))
    assert fm.mape(Y, F) == pytest.approx((0.5 / 1 + 0 + 1 / 3 + 1 / 4) / 4)
    assert fm.smape(Y, F) == pytest.approx((2 * 0.5 / 2.5 + 0 + 2 / 5 + 2 / 9) / 4)
    # seasonal naive errors of the history at m = 2: |2-1|, |4-3|, |5-2|, |3-4| -> mean 1.5
    assert fm.naive_scale(HISTORY, 2) == pytest.approx(1.5)
    assert fm.mase(Y[None], F[None], [1.5]) == pytest.approx(fm.mae(Y, F) / 1.5)


def test_point_metrics_match_sktime():
    metrics = pytest.importorskip("sktime.performance_metrics.forecasting")
    assert fm.mape(Y, F) == pytest.approx(metrics.mean_absolute_percentage_error(Y, F))
    assert fm.smape(Y, F) == pytest.approx(
        metrics.mean_absolute_percentage_error(Y, F, symmetric=True))
    assert fm.rmse(Y, F) == pytest.approx(metrics.mean_squared_error(Y, F, square_root=True))
    for m in (1, 2):
        assert fm.mase(Y[None], F[None], [fm.naive_scale(HISTORY, m)]) == pytest.approx(
            metrics.mean_absolute_scaled_error(Y, F, y_train=HISTORY, sp=m))


def test_mase_gives_each_window_its_own_scale():
    y, f = np.array([[1.0, 1.0], [2.0, 2.0]]), np.array([[2.0, 2.0], [4.0, 4.0]])
    assert fm.mase(y, f, [1.0, 2.0]) == pytest.approx(1.0)


def test_smape_of_two_zeros_is_zero_and_mape_of_a_zero_truth_is_inf():
    assert fm.smape(np.zeros(2), np.zeros(2)) == 0.0
    assert fm.mape(np.array([0.0, 1.0]), np.array([1.0, 1.0])) == math.inf


def test_coverage_counts_the_ends_as_inside():
    assert fm.coverage(np.array([1.0, 2.0, 3.0, 4.0]), np.full(4, 2.0), np.full(4, 3.0)) == 0.5


def test_crps_of_samples_by_hand_and_of_a_point_is_the_absolute_error():
    # samples {0, 2}, y = 1: E|X - y| = 1, E|X - X'| = (0 + 2 + 2 + 0) / 4 = 1 -> 1 - 0.5
    samples = np.array([[0.0], [2.0]])  # (S, H)
    assert fm.crps_samples(np.array([1.0]), samples) == pytest.approx(0.5)
    point = np.full((7, 1), 3.0)
    assert fm.crps_samples(np.array([1.0]), point) == pytest.approx(2.0)


def gaussian_crps(y: float, mu: float, sigma: float) -> float:
    """Gneiting and Raftery (2007), (5): the closed form for a normal forecast."""
    z = (y - mu) / sigma
    pdf, cdf = math.exp(-z * z / 2) / math.sqrt(2 * math.pi), 0.5 * (1 + math.erf(z / 2**0.5))
    return sigma * (z * (2 * cdf - 1) + 2 * pdf - 1 / math.sqrt(math.pi))


def test_crps_from_samples_and_from_dense_quantiles_approach_the_gaussian_closed_form():
    from statistics import NormalDist

    y, mu, sigma = 0.7, 0.2, 1.3
    exact = gaussian_crps(y, mu, sigma)
    draws = np.random.default_rng(0).normal(mu, sigma, size=(200_000, 1))
    assert fm.crps_samples(np.array([y]), draws) == pytest.approx(exact, rel=1e-2)  # MC error
    levels = np.linspace(0.005, 0.995, 199)
    quantiles = np.array([[NormalDist(mu, sigma).inv_cdf(q) for q in levels]])  # (H, Q)
    # the quantile form is a Riemann sum of the integral: close, not equal, at 199 levels
    assert fm.crps_quantiles(np.array([y]), quantiles, levels) == pytest.approx(exact, rel=2e-2)


def test_interval_metrics_read_the_80_and_95_levels():
    levels = np.array([0.025, 0.1, 0.5, 0.9, 0.975])
    quantiles = np.array([[[0.0, 1.0, 2.0, 3.0, 4.0]], [[0.0, 1.0, 2.0, 3.0, 4.0]]])  # (W, H, Q)
    truth = np.array([[0.5], [2.5]])
    result = fm.interval_metrics(truth, levels, quantiles)
    assert result["coverage_80"] == 0.5 and result["coverage_95"] == 1.0
    assert result["crps"] == pytest.approx(fm.crps_quantiles(truth, quantiles, levels))
