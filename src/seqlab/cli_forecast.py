"""``seqlab forecast RUN``: continue series with a forecast run, as a CSV of quantiles and a
plot. Registered in :data:`seqlab.cli.COMMANDS`."""

from __future__ import annotations

import argparse
import sys

from seqlab.cli_base import UsageError, check_outputs


def add_forecast(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory written by seqlab train --task "
                   "forecast (or on a bundled series set)")
    p.add_argument("--horizon", type=int, default=None, metavar="H",
                   help="steps to forecast past the end of each series (default: the run's "
                        "--horizon)")
    p.add_argument("--input", metavar="CSV", default=None,
                   help="the series to continue, in the run's layout: the same series "
                        "(columns, or ids in long form) and at least --context values each "
                        "(default: the run's own data)")
    p.add_argument("--out", metavar="CSV", default=None,
                   help="where to write the forecast: one row per series and step, the median "
                        "and the 80%% and 95%% intervals' ends (default: print it)")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="where to draw history, forecast and intervals")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"),
                   help="where to run the model (default: cpu)")


def run_forecast(args: argparse.Namespace) -> int:
    from seqlab.families import runner
    from seqlab.families.forecast_eval import forecast_csv, write_forecast
    from seqlab.limits import allocation_errors
    from seqlab.training import resolve_device

    if args.horizon is not None and args.horizon < 1:
        raise UsageError(f"--horizon must be positive, got {args.horizon}")
    loaded = runner.load_run(args.run, resolve_device(args.device))
    check_outputs({"--out": args.out, "--plot": args.plot}, {"--input": args.input}, args.run,
                  kinds={"--plot": (".png",)})
    forecaster = loaded.family.forecaster(loaded)
    horizon = args.horizon or loaded.configs.flat()["horizon"]
    with allocation_errors({"--horizon": horizon}, next(loaded.model.parameters()).device):
        series, result = forecaster(args.input, horizon)  # what the estimate missed: one line
    written = write_forecast(series, result, args.out, args.plot)
    if args.out is None:
        sys.stdout.write(forecast_csv(series, result))
    if written:
        print(f"seqlab: wrote {', '.join(written)}", file=sys.stderr)
    return 0


# the command's entry in seqlab.cli.COMMANDS (its name is the family's: kept out of cli.py,
# whose strings never name a family)
FORECAST_COMMAND = {"forecast": ("continue series with a forecast run: quantiles as CSV, and a "
                                 "plot", add_forecast, run_forecast)}
