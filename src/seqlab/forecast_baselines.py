"""Statistical baselines, fitted by statsmodels (the ``series`` extra), never by hand.

Each baseline fits the history before a forecast origin and returns the quantiles of its
forecast distribution at :data:`LEVELS` (the median and the 80% and 95% intervals' ends,
from statsmodels' Gaussian prediction intervals). The orders are fixed, not searched:

    naive           ARIMA(0,1,0): the last value; sigma sqrt(h) intervals
    seasonal_naive  SARIMA(0,0,0)(0,1,0)_m: the value one season back (naive when m = 1)
    ets             ETS(A,Ad,A) with period m (ETS(A,Ad,N) when m = 1 or under 2 seasons of
                    history): additive error, damped additive trend, additive season
    arima           SARIMA(0,1,1)(0,1,1)_m, Box and Jenkins' airline model, when m > 1;
                    ARIMA(2,1,2) when m = 1

Every baseline fits the values as given (no log or Box-Cox transform). A fit that fails falls
back to naive (logged).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

log = logging.getLogger(__name__)
BASELINES = ("naive", "seasonal_naive", "ets", "arima")
LEVELS = np.array([0.025, 0.1, 0.5, 0.9, 0.975])
EXTRA = "pip install 'seqlab[series]'"


def statsmodels_api():
    """statsmodels' SARIMAX and ETSModel; a one-line error naming the extra without it."""
    try:
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel
        from statsmodels.tsa.statespace.sarimax import SARIMAX
    except ImportError:
        raise ValueError(f"baselines need statsmodels, which is not installed: {EXTRA}"
                         ) from None
    return SARIMAX, ETSModel


def quantiles_of(mean: np.ndarray, intervals: dict[float, np.ndarray]) -> np.ndarray:
    """(H, 5) quantiles at LEVELS from the mean and {alpha: (H, 2) interval}."""
    i95, i80 = intervals[0.05], intervals[0.2]
    return np.stack([i95[:, 0], i80[:, 0], mean, i80[:, 1], i95[:, 1]], axis=1)


def sarimax(history: np.ndarray, horizon: int, order, seasonal=(0, 0, 0, 0)) -> np.ndarray:
    SARIMAX, _ = statsmodels_api()
    fit = SARIMAX(history, order=order, seasonal_order=seasonal).fit(disp=False)
    forecast = fit.get_forecast(horizon)
    return quantiles_of(np.asarray(forecast.predicted_mean),
                        {a: np.asarray(forecast.conf_int(alpha=a)) for a in (0.05, 0.2)})


def ets(history: np.ndarray, horizon: int, m: int) -> np.ndarray:
    import pandas as pd  # statsmodels' own dependency; ETS prediction needs an index

    _, ETSModel = statsmodels_api()
    seasonal = "add" if m > 1 and len(history) >= 2 * m + 2 else None
    model = ETSModel(pd.Series(history), error="add", trend="add", damped_trend=True,
                     seasonal=seasonal, seasonal_periods=m if seasonal else None)
    fit = model.fit(disp=False)
    prediction = fit.get_prediction(start=len(history), end=len(history) + horizon - 1)
    frames = {a: prediction.summary_frame(alpha=a) for a in (0.05, 0.2)}
    return quantiles_of(np.asarray(frames[0.05]["mean"]),
                        {a: np.asarray(f[["pi_lower", "pi_upper"]]) for a, f in frames.items()})


def fit_baseline(name: str, history: np.ndarray, horizon: int, m: int) -> np.ndarray:
    """(H, 5) quantiles at :data:`LEVELS` of baseline ``name`` fitted on ``history``."""
    if name == "naive" or (name == "seasonal_naive" and (m <= 1 or len(history) <= m)):
        return sarimax(history, horizon, (0, 1, 0))
    if name == "seasonal_naive":
        return sarimax(history, horizon, (0, 0, 0), (0, 1, 0, m))
    if name == "ets":
        return ets(history, horizon, m)
    if name == "arima":
        if m > 1 and len(history) > 2 * m + 2:
            return sarimax(history, horizon, (0, 1, 1), (0, 1, 1, m))
        return sarimax(history, horizon, (2, 1, 2))
    raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")


def baseline_quantiles(name: str, history: np.ndarray, horizon: int, m: int) -> np.ndarray:
    """:func:`fit_baseline`, sorted; naive when the fit fails or is not finite."""
    series = history
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' convergence and frequency warnings
        try:
            quantiles = fit_baseline(name, series, horizon, m)
        except (ValueError, np.linalg.LinAlgError, IndexError) as err:
            log.info("%s baseline failed (%s); naive instead", name, err)
            quantiles = fit_baseline("naive", series, horizon, m)
    if name != "naive" and not np.all(np.isfinite(quantiles)):
        return baseline_quantiles("naive", history, horizon, m)
    return np.sort(quantiles, axis=1)
