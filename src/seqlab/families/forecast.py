"""The forecast family: ``seqlab train airline --task forecast --horizon 36 --context 48``.

One recurrent forecaster (:class:`seqlab.models.forecaster.Forecaster`, any model name) over
every series of a CSV file or bundled set (:mod:`seqlab.data.series`): one global model,
trained on windows drawn from the training part of every series, each window scaled on its own
(or by its series' training statistics). Splits are by time only: the test windows are the
last ``windows`` origins of each series, the validation windows end where the test starts,
training ends where validation starts.

A run directory holds config.json (its "data" section records the series' names, their
seasonality and training statistics: all that ``forecast`` needs beside the weights),
model.safetensors, last/ and metrics.jsonl. ``evaluate`` scores the test windows
(:mod:`seqlab.families.forecast_eval`) and ``forecaster`` continues new series.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from seqlab import limits
from seqlab.checkpoint import RunDir
from seqlab.data.series import BUNDLED
from seqlab.diagnostics import Probe
from seqlab.distributed import SINGLE, World
from seqlab.families import forecast_export, forecast_report
from seqlab.families.base import Configs, Family, Headline, LoadedRun, Prepared, Report
from seqlab.families.forecast_data import (
    Batch,
    ForecastConfig,
    ForecastData,
    SeriesAssets,
    read_series,
    scaled,
    split_data,
)
from seqlab.families.forecast_eval import RunForecaster, evaluate_run, validation_mase
from seqlab.models.forecaster import LEVELS, Forecaster, encoder_inputs, input_size


class ForecastTask:
    """Random training windows by step; validation: the loss on every validation window."""

    def __init__(self, data: ForecastData, configs: Configs, device) -> None:
        self.data, self.configs, self.device = data, configs, device

    def train_batch(self, step: int) -> Batch:
        gen = torch.Generator().manual_seed(self.configs.train.seed * 1_000_003 + step)
        rows = torch.randint(len(self.data.train), (self.configs.train.batch_size,),
                             generator=gen)
        return scaled(self.data.train, rows, self.data.assets, self.configs.own)

    def loss(self, model: nn.Module, batch: Batch, state) -> tuple[Tensor, None, int]:
        # the values the loss averages over: the observed targets (direct head), or every
        # observed step after the first (the autoregressive heads' likelihood); counted on
        # the batch as it was built, before it moves to the device
        first = batch.context.shape[1] if model.head == "direct" else 1
        scored = int(batch.observed[:, first:].sum())
        batch = batch.to(self.device)
        return model.loss(*batch.model_inputs()), None, scored

    @torch.no_grad()
    def evaluate(self, model: nn.Module, world: World = SINGLE) -> dict[str, float]:
        """val_loss (pinball or NLL, scaled) and val_mase of the point forecasts; with many
        processes each takes its block of the validation windows."""
        model.eval()
        val, total, scored = self.data.val, 0.0, 0
        if len(rows := torch.arange(len(val))[world.block(len(val))]):
            loss, _, scored = self.loss(model, scaled(val, rows, self.data.assets,
                                                      self.configs.own), None)
            total = float(loss) * scored  # the mean loss is over ``scored`` values
        total, scored = world.sum([total, scored])
        return {"val_loss": total / max(scored, 1),
                "val_mase": validation_mase(model, self.data, val, self.configs.own, world)}

    def probe(self, batch: int) -> Probe:
        """The first ``batch`` validation contexts; the target: the first value after each."""
        rows = torch.arange(min(batch, len(self.data.val)))
        own = self.configs.own
        b = scaled(self.data.val, rows, self.data.assets, own)
        path, seen = b.context, b.observed[:, :own.context]
        if b.extra is not None:
            path = torch.cat([b.extra.before, path], 1)
            seen = torch.cat([b.extra.before_seen, seen], 1)
        inputs = encoder_inputs(path, seen, b.extra, own.lag_steps(), 0, own.context)
        return Probe(inputs.to(self.device), b.targets[:, 0].to(self.device), "mse", "last")


class ForecastFamily(Family):
    name = "forecast"
    help = "forecast numeric series (CSV or a bundled set: airline, sunspots, macrodata)"
    config_class = ForecastConfig
    # text handling, token embeddings and the tied head mean nothing for real-valued series
    ignores = frozenset({"tokenizer", "bpe_vocab_size", "val_fraction", "batching", "seq_len",
                         "eval_batches", "tie_weights", "embedding_size"})
    evaluate_options = frozenset({"out", "baselines"})
    size_keys = (*Family.size_keys, "context", "horizon", "samples")
    items = "values"  # the observed values a step's loss scores

    def claims(self, source: str) -> bool:
        return source in BUNDLED and not Path(source).exists()

    def shape(self, configs: Configs, assets: Any = None) -> limits.Shape:
        own, model = configs.own, configs.model
        outputs = own.horizon * len(LEVELS) if own.head == "direct" else 3
        return limits.Shape(model, self.input_size(own, assets), 0, outputs,
                            own.context + own.horizon, configs.train.batch_size)

    @staticmethod
    def input_size(own: ForecastConfig, assets: SeriesAssets | None) -> int:
        covariates = len(assets.covariates) if assets is not None else 0
        return input_size(own.lag_steps(), 2 if own.calendar else 0, covariates)

    def prepare(self, source: str, configs: Configs, assets: Any = None) -> Prepared:
        series = read_series(source, configs.own)
        if assets is not None and list(series.names) != assets.names:
            raise ValueError(f"{series.source}: series {', '.join(series.names)} are not the "
                             f"run's ({', '.join(assets.names)})")
        data = split_data(series, configs.own, assets)
        description = {"source": series.source, "series": data.assets.names,
                       "lengths": [len(v) for v in series.values],
                       "seasonality": data.assets.seasonality,
                       "stats": data.assets.stats.tolist(),
                       "covariates": data.assets.covariates,
                       "covariate_stats": (None if data.assets.covariate_stats is None
                                           else data.assets.covariate_stats.tolist()),
                       "train_windows": len(data.train), "val_windows": len(data.val),
                       "test_windows": len(data.test)}
        return Prepared(series.source, data.assets, data, description)

    def build(self, configs: Configs, assets: Any) -> Forecaster:
        own = configs.own
        return Forecaster(configs.model, own.head, own.horizon, own.lag_steps(),
                          2 if own.calendar else 0, len(assets.covariates))

    def task(self, prepared: Prepared, configs: Configs, device) -> ForecastTask:
        return ForecastTask(prepared.data, configs, device)

    def load_assets(self, run: RunDir, configs: Configs, config: dict[str, Any]
                    ) -> SeriesAssets:
        data = config["data"]
        try:
            stats = data.get("covariate_stats")  # absent from runs without covariates
            return SeriesAssets(list(data["series"]), int(data["seasonality"]),
                                torch.tensor(data["stats"], dtype=torch.float32),
                                list(data.get("covariates", [])),
                                None if stats is None else torch.tensor(stats,
                                                                        dtype=torch.float32))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{run.path / 'config.json'}: invalid forecast data section "
                             f"({err})") from err

    def evaluate(self, loaded: LoadedRun, source: str, **options) -> Report:
        """MAE, RMSE, MAPE, sMAPE, MASE, 80/95% coverage and CRPS on the test windows (with
        ``baselines``, the same for naive, seasonal naive, ETS and ARIMA); writes
        evaluation.json and forecast.png into ``out`` (default RUN/evaluation)."""
        return evaluate_run(loaded, source, options.get("out"), bool(options.get("baselines")))

    def forecaster(self, loaded: LoadedRun):
        return RunForecaster(loaded)

    def exporter(self, loaded: LoadedRun) -> list:
        """The direct head's forecast, or the autoregressive heads' decoder step
        (:mod:`seqlab.families.forecast_export`)."""
        return forecast_export.graphs(loaded)

    report_sections = forecast_report.sections  # forecasts with 80% / 95% intervals

    def info_lines(self, info: dict[str, Any]) -> list[str]:
        data, own = info["config"]["data"], info["config"]["forecast"]
        inputs = [f"lags {own['lags']}" if own.get("lags") else "",
                  "calendar" if own.get("calendar") else "",
                  f"covariates {', '.join(data['covariates'])}" if own.get("covariates") else "",
                  f"{own['transform']} transform" if own.get("transform", "none") != "none"
                  else ""]
        return [f"data         {data['source']}: {len(data['series'])} series, season "
                f"{data['seasonality']}; horizon {own['horizon']}, context {own['context']}, "
                f"head {own['head']}", *([f"inputs       {'; '.join(i for i in inputs if i)}"]
                                         if any(inputs) else []),
                *super().info_lines(info)]

    def eval_note(self, record: dict[str, Any]) -> str:
        return f"val MASE {record['val_mase']:.4f}"

    def loss_unit(self, loss: float, assets: Any) -> str:
        return "(scaled pinball loss or negative log-likelihood per value)"

    def headline(self, record: dict[str, Any]) -> Headline:
        return Headline()  # no memoryless baseline, accuracy or bits: MASE is its own figure


FORECAST = ForecastFamily()
