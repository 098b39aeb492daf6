"""Series to forecast: a CSV file or a bundled set, split by time into windows, scaled.

Bundled sets are read from files inside installed packages (the ``series`` extra), never
downloaded: ``airline`` (monthly passengers 1949-1960, sktime's Airline.csv), ``sunspots``
(yearly sunspot numbers 1700-2008, statsmodels) and ``macrodata`` (12 quarterly US
macroeconomic series 1959-2009, statsmodels: the multi-series set for one global model).

A window at origin ``o`` of a series y reads the context y[o - C : o] and predicts the targets
y[o : o + H]. Splits are by time only (:class:`Split`): the test windows are the last ones,
the validation windows end where the first test target starts, and training windows end where
the first validation target starts. Scaling statistics come from a window's own context or a
series' training part, never from later values.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from seqlab.data.series_csv import FILLS, Series, finished, read_csv, read_rows, wide_series

EXTRA = "pip install 'seqlab[series]'"
SCALINGS = ("window", "series", "none")
TRANSFORMS = ("none", "log")
__all__ = ["BUNDLED", "FILLS", "SCALINGS", "TRANSFORMS", "Inputs", "Series", "Split", "WindowSet",
           "load", "read_csv"]


@dataclass(frozen=True)
class Bundled:
    """A set shipped inside an installed package."""

    package: str
    path: str  # inside the package
    summary: str
    seasonality: int
    time_columns: int = 1  # columns that hold the time stamp (year, quarter: 2)


BUNDLED = {
    "airline": Bundled("sktime", "datasets/data/Airline/Airline.csv",
                       "monthly airline passengers 1949-1960 (Box & Jenkins), from sktime", 12),
    "sunspots": Bundled("statsmodels", "datasets/sunspots/sunspots.csv",
                        "yearly sunspot numbers 1700-2008, from statsmodels", 1),
    "macrodata": Bundled("statsmodels", "datasets/macrodata/macrodata.csv",
                         "12 quarterly US macroeconomic series 1959-2009, from statsmodels", 4,
                         time_columns=2),
}


def bundled_file(name: str) -> Path:
    """The file of a bundled set inside its package; a one-line error naming the extra when
    the package is missing."""
    entry = BUNDLED[name]
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"the bundled set {name!r} ships inside {entry.package}, which is not "
                         f"installed: {EXTRA}")
    path = Path(list(spec.submodule_search_locations)[0]) / entry.path
    if not path.is_file():
        raise ValueError(f"the bundled set {name!r}: {path} is missing from the installed "
                         f"{entry.package}")
    return path


def load(source: str, fill: str = "none") -> Series:
    """A bundled set by name (when no file of that name exists), else a CSV file."""
    if source in BUNDLED and not Path(source).exists():
        entry, path = BUNDLED[source], bundled_file(source)
        header, rows = read_rows(path)
        stamp_of = None if entry.time_columns == 1 else (lambda c: f"{c[0]}-Q{c[1]}")
        series = wide_series(path, header, rows, entry.time_columns, stamp_of)
        series.source, series.seasonality = source, entry.seasonality
        return finished(series, fill)
    if not Path(source).exists():
        raise ValueError(f"{source}: no such file, and not a bundled set "
                         f"({', '.join(BUNDLED)})")
    return read_csv(source, fill)


@dataclass(frozen=True)
class Split:
    """Window origins by time: K test windows ``step`` apart ending at the series' end, then
    K_v validation windows ending where the first test target starts; training windows hold
    their targets before the first validation target."""

    context: int
    horizon: int
    windows: int = 1
    val_windows: int = 1
    step: int = 1

    def test_origins(self, n: int) -> list[int]:
        return [n - self.horizon - (self.windows - 1 - k) * self.step
                for k in range(self.windows)]

    def val_origins(self, n: int) -> list[int]:
        first = self.test_origins(n)[0]
        return [first - self.horizon - (self.val_windows - 1 - k) * self.step
                for k in range(self.val_windows)]

    def train_end(self, n: int) -> int:
        """Training targets lie in y[:train_end]."""
        return self.val_origins(n)[0] if self.val_windows else self.test_origins(n)[0]

    def train_origins(self, n: int) -> range:
        """Origins of training windows: at least half a context observed (the rest padded),
        at least one target before :meth:`train_end` (the targets after it are masked)."""
        return range(self.least_context(), self.train_end(n))

    def least_context(self) -> int:
        return -(-self.context // 2)

    def needed(self) -> int:
        """The shortest series with one training window: half a context and the horizon,
        then the validation and test spans (and never less than context + horizon)."""
        held = self.horizon + (self.windows - 1) * self.step
        if self.val_windows:
            held += self.horizon + (self.val_windows - 1) * self.step
        return max(self.least_context() + self.horizon + held, self.context + self.horizon)

    def check(self, series: Series) -> None:
        """A ValueError naming the file, line and series of the first series too short."""
        for k, values in enumerate(series.values):
            n, name, where = len(values), series.names[k], series.where(k)
            if n < self.context + self.horizon:
                raise ValueError(f"{where}: series {name!r} has {n} points, shorter than "
                                 f"context {self.context} + horizon {self.horizon}")
            if n < self.needed():
                held = self.needed() - self.least_context() - self.horizon
                raise ValueError(
                    f"{where}: series {name!r} has {n} points; {held} held out for "
                    f"validation and test windows leave {n - held}, and a training window "
                    f"needs half a context ({self.least_context()}) + horizon "
                    f"{self.horizon}: at least {self.needed()}")


@dataclass
class Inputs:
    """What windows read beside their values: ``before`` steps ahead of each context (for lag
    inputs), each series' calendar (period, position of its first step in it), and its
    covariates (T_i, V), already standardized."""

    before: int = 0
    calendar: list[tuple[int, int]] | None = None
    covariates: list[np.ndarray] | None = None


class WindowSet:
    """Windows (context C then H targets) of many series, gathered from one flat tensor; a
    context that starts before its series is padded on the left (zeros, marked unobserved)."""

    def __init__(self, values: list[np.ndarray], origins: list[list[int]] | list[range],
                 context: int, horizon: int, ends: list[int] | None = None,
                 inputs: Inputs | None = None) -> None:
        lengths = [len(v) for v in values]
        self.flat = torch.tensor(np.concatenate(values), dtype=torch.float32)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        pairs = [(k, o) for k, orig in enumerate(origins) for o in orig]
        self.series = torch.tensor([k for k, _ in pairs], dtype=torch.long)  # (N,)
        self.origins = torch.tensor([o for _, o in pairs], dtype=torch.long)  # (N,)
        self.firsts = torch.tensor([offsets[k] for k, _ in pairs], dtype=torch.long)  # (N,)
        # targets at or past a series' end (training: the end of its training part) are masked
        ends = lengths if ends is None else ends
        self.ends = torch.tensor([offsets[k] + ends[k] for k, _ in pairs], dtype=torch.long)
        self.context, self.horizon = context, horizon
        self.inputs = inputs or Inputs()
        self.covariates = None if self.inputs.covariates is None else torch.tensor(
            np.concatenate(self.inputs.covariates), dtype=torch.float32)  # (sum T_i, V)

    def __len__(self) -> int:
        return len(self.origins)

    def span(self, rows: Tensor, start: int, stop: int) -> tuple[Tensor, Tensor, Tensor]:
        """(flat index (B, stop - start), lower and upper bounds (B, 1)) of window steps
        start..stop-1 (0 is the first target)."""
        index = self.firsts[rows, None] + self.origins[rows, None] + torch.arange(start, stop)
        return index, self.firsts[rows, None], self.ends[rows, None]

    def gather(self, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(context (B, C), targets (B, H), observed (B, C + H)) of windows ``rows``: padded
        context steps and masked targets are 0 and not observed."""
        index, first, end = self.span(rows, -self.context, self.horizon)
        observed = (index >= first) & (index < end)
        window = torch.where(observed, self.flat[index.clamp(first, end - 1)], torch.zeros(()))
        return window[:, :self.context], window[:, self.context:], observed

    def gather_before(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """(values (B, P), observed (B, P)) of the P = ``inputs.before`` steps before each
        context; those before the series are 0 and not observed."""
        index, first, end = self.span(rows, -self.context - self.inputs.before, -self.context)
        seen = (index >= first) & (index < end)
        return torch.where(seen, self.flat[index.clamp(first, end - 1)], torch.zeros(())), seen

    def gather_calendar(self, rows: Tensor) -> Tensor:
        """(B, C + H, 2) sine and cosine of each window step's place in its season (month of
        year, ...), known past the series' end too; (B, C + H, 0) without a calendar."""
        if self.inputs.calendar is None:
            return torch.zeros(len(rows), self.context + self.horizon, 0)
        period, phase = (torch.tensor(c, dtype=torch.float64)
                         for c in zip(*self.inputs.calendar, strict=True))
        k = self.series[rows, None]
        steps = self.origins[rows, None] + torch.arange(-self.context, self.horizon) + phase[k]
        angle = 2 * torch.pi * (steps % period[k]) / period[k]  # (B, C + H)
        return torch.stack([angle.sin(), angle.cos()], -1).float()

    def gather_covariates(self, rows: Tensor) -> Tensor:
        """(B, C, V) the covariates of each context step (0 where the context is padded)."""
        if self.covariates is None:
            return torch.zeros(len(rows), self.context, 0)
        index, first, end = self.span(rows, -self.context, 0)
        seen = (index >= first) & (index < end)
        return self.covariates[index.clamp(first, end - 1)] * seen[..., None]


def transformed(series: Series, transform: str) -> list[np.ndarray]:
    """The values a model reads: as they are, or their log (every value must be positive)."""
    if transform == "none":
        return series.values
    for k, values in enumerate(series.values):
        if (bad := np.flatnonzero(values <= 0)).size:
            raise ValueError(f"{series.where(k, int(bad[0]))}: series {series.names[k]!r} has "
                             f"the value {values[bad[0]]:g}; --transform log needs values > 0")
    return [np.log(values) for values in series.values]


def untransformed(z: Tensor, transform: str) -> Tensor:
    """Values (forecasts, quantiles, sample paths) back from :func:`transformed`."""
    return z.exp() if transform == "log" else z


@dataclass
class Scale:
    """Per-window location and scale: scaled = (y - loc) / scale."""

    loc: Tensor  # (B, 1)
    scale: Tensor  # (B, 1)

    def apply(self, y: Tensor, observed: Tensor | None = None) -> Tensor:
        """Scaled values; unobserved (padded) steps stay 0."""
        z = (y - self.loc) / self.scale
        return z if observed is None else torch.where(observed, z, torch.zeros(()))

    def invert(self, z: Tensor) -> Tensor:
        """Scaled values (B, ...) back to the series' units."""
        shape = (-1,) + (1,) * (z.dim() - 1)
        return z * self.scale.reshape(shape) + self.loc.reshape(shape)


def scale_of(context: Tensor, scaling: str, series_stats: Tensor | None = None,
             observed: Tensor | None = None) -> Scale:
    """The scale of each window: ``window`` from its own observed context (mean, standard
    deviation), ``series`` from ``series_stats`` (B, 2) (its training part's), ``none`` the
    identity. A spread of 0 (a constant context) scales by 1."""
    batch = context.shape[0]
    if scaling == "none":
        return Scale(torch.zeros(batch, 1), torch.ones(batch, 1))
    if scaling == "series":
        loc, spread = series_stats[:, :1], series_stats[:, 1:]
    else:
        weight = torch.ones_like(context) if observed is None else observed.to(context.dtype)
        count = weight.sum(1, keepdim=True)
        loc = (context * weight).sum(1, keepdim=True) / count
        spread = torch.sqrt(((context - loc) ** 2 * weight).sum(1, keepdim=True)
                            / (count - 1).clamp_min(1))
    usable = spread > 1e-8 * (1 + loc.abs())
    return Scale(loc, torch.where(usable, spread, torch.ones_like(spread)))


def series_stats(values: list[np.ndarray], ends: list[int]) -> Tensor:
    """(S, 2) mean and standard deviation of each series' values before ``ends``."""
    return torch.tensor([[v[:e].mean(), v[:e].std(ddof=1) if e > 1 else 1.0]
                         for v, e in zip(values, ends, strict=True)], dtype=torch.float32)
