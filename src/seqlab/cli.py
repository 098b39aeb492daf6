"""The command line: the only module that prints, reads argv or exits.

Every command is one entry in COMMANDS: a function that adds its arguments and a function that
runs it. Errors a user can cause become one line, ``seqlab: error: ...``, and exit code 2;
``--debug`` shows the traceback instead. The library's logged warnings become
``seqlab: warning: ...`` lines on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import re
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from seqlab.cli_base import Parser, UsageError, WarningLines, check_folder, handling
from seqlab.cli_export import EXPORT_COMMAND
from seqlab.cli_forecast import FORECAST_COMMAND
from seqlab.cli_predict import add_predict, run_predict
from seqlab.cli_report import REPORT_COMMAND
from seqlab.cli_train import add_train, run_train
from seqlab.cli_use import add_generate, add_translate, run_generate, run_translate

EXAMPLES = """examples:
  seqlab train oneills --model lstm --hidden-size 256 --time-budget 120 --out runs/tunes
  seqlab generate runs/tunes --prompt "X:1" --length 400 --temperature 0.8
  seqlab evaluate runs/tunes my_tunes.abc --json
  seqlab info runs/tunes
  seqlab diagnose runs/tunes --out runs/tunes-diagnostics
  seqlab report runs/tunes
  seqlab export runs/tunes --onnx tunes.onnx
  seqlab lab --quick --out lab
"""


# evaluate / info -------------------------------------------------------------------------
def add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory written by seqlab train")
    p.add_argument("data", metavar="DATA", help="text file, folder or bundled corpus to score "
                   "(a synthetic run: its task; a seq2seq run: a TSV file or built-in task)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--beam", type=int, default=None, metavar="N",
                   help="seq2seq runs: beam width; as in translate, hypotheses rank by "
                        "log-probability / length^(the run's --length-penalty) (default: the "
                        "run's --beam; 1 is greedy)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="classify and forecast runs: where to write evaluation.json and its "
                        "figures (default: RUN/evaluation)")
    p.add_argument("--baselines", action="store_true", default=None,
                   help="forecast runs: also score naive, seasonal-naive, ETS and ARIMA "
                        "forecasts on the same windows")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where to run the model (default: auto)")


def run_evaluate(args: argparse.Namespace) -> int:
    from seqlab.families import runner

    if args.beam is not None and args.beam < 1:
        raise UsageError("--beam must be >= 1")
    if args.out is not None and "out" in runner.family_of(args.run).evaluate_options:
        check_folder(args.out, "evaluate writes a folder (of evaluation.json and figures)")
    result = runner.evaluate(args.run, args.data, device=args.device, beam=args.beam,
                             out=args.out, baselines=args.baselines)
    print(json.dumps(result) if args.json else result)
    return 0


def add_info(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory written by seqlab train")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run_info(args: argparse.Namespace) -> int:
    from seqlab.families import runner

    report = runner.info(args.run)
    print(json.dumps(report) if args.json else report)
    return 0


# diagnose --------------------------------------------------------------------------------
def add_diagnose(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory of a recurrent model (a language "
                   "model or a synthetic task such as adding)")
    p.add_argument("--out", metavar="DIR", help="where to write diagnostics.json and the PNG "
                   "figures (default: RUN/diagnostics)")
    p.add_argument("--batch", type=int, default=16, metavar="N",
                   help="validation sequences to measure on (default: 16)")
    p.add_argument("--no-jacobian", action="store_true",
                   help="skip the Jacobian products (the slowest part)")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"),
                   help="where to run the model (default: cpu)")


def run_diagnose(args: argparse.Namespace) -> int:
    from seqlab.diagnose import diagnose_run
    from seqlab.limits import allocation_errors
    from seqlab.training import resolve_device

    check_folder(args.out, "diagnose writes a folder (of diagnostics.json and figures)")
    device = resolve_device(args.device)
    with allocation_errors({"--batch": args.batch}, device):
        report = diagnose_run(args.run, args.out, args.batch, device,
                              jacobian=not args.no_jacobian)
    if args.json:
        print(json.dumps(report))
        return 0
    for when in ("init", "trained"):
        m = report[when]
        last = m["grad_last"]
        radius = ", ".join(f"{layer} " + " ".join(f"{k} {v:.3f}" for k, v in blocks.items())
                           for layer, blocks in m["spectral_radius"].items())
        radius = (f"; spectral radius of W_hh: {radius}" if radius
                  else " (no W_hh: its gates read x_t only)")
        print(f"{when:8} ||dL/dh_t|| (loss at the last step): t=0 {last[0]:.3g}, "
              f"t=T-1 {last[-1]:.3g}{radius}")
        if "jacobian" in m:
            print(f"{'':8} ||dh_T/dh_(T-d)||: d=1 {m['jacobian'][0]:.3g}, "
                  f"d={len(m['jacobian'])} {m['jacobian'][-1]:.3g}")
    print(f"recorded in training: {len(report['recorded'])} points; figures: "
          f"{', '.join(report['files'])}")
    return 0



# lab -------------------------------------------------------------------------------------
def add_lab(p: argparse.ArgumentParser) -> None:
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="suite", action="store_const", const="quick",
                      help="small models, short training: about 14 minutes on 2 CPU cores "
                           "(the default)")
    size.add_argument("--full", dest="suite", action="store_const", const="full",
                      help="the papers' sizes: hours on a CPU")
    size.add_argument("--suite", choices=("quick", "full", "smoke"),
                      help="a suite by name (smoke: seconds, for testing the pipeline)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="folder for runs/, figures/, report.md and results.json (default: "
                        "lab-SUITE); finished runs already there are read, not retrained")
    p.add_argument("--only", metavar="EXPERIMENT", action="append", default=[],
                   help="train only this experiment (adding, gradients, exploding, copy, "
                        "baselines, attention; repeatable); the report covers every finished "
                        "one")


class Terminated(KeyboardInterrupt):
    """SIGTERM during a command that stops on it as on Ctrl-C (exit code 143, not 130)."""


def run_lab(args: argparse.Namespace) -> int:
    from seqlab.lab import run_suite

    suite = args.suite or "quick"
    out = Path(args.out or f"lab-{suite}")

    def progress(name: str, result: dict) -> None:
        print(f"{name:24} best val loss {result['best_val_loss']:.4f}  {result['stop']}  "
              f"{result['wall_s']:.0f} s", file=sys.stderr, flush=True)

    def terminated(signum, frame) -> None:  # kill, timeout, a scheduler: as Ctrl-C
        raise Terminated

    with handling((signal.SIGTERM,), terminated):  # the next `seqlab lab` continues its run
        summary = run_suite(suite, out, progress, tuple(args.only))
    for key, verdict in summary["verdicts"].items():
        if verdict:
            print(f"{key}: {verdict}")
    print(f"report: {out / 'report.md'} and {out / 'report.html'} "
          f"({summary['session_s']:.0f} s)")
    return 0


COMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "train": ("train a model: a language model on text or tunes, a synthetic long-range "
              "task, an encoder-decoder on pairs, a classifier or a forecaster", add_train,
              run_train),
    "generate": ("sample text, or whole tunes with MIDI, audio and sheet music, from a "
                 "trained language model", add_generate, run_generate),
    "evaluate": ("score a run on data with its family's own metrics: bits per character, "
                 "exact match, accuracy and a confusion matrix, forecast errors beside "
                 "baselines", add_evaluate, run_evaluate),
    "info": ("config, parameter count and metrics of a run", add_info, run_info),
    "diagnose": ("gradients through time, Jacobian products, spectral radius and gate "
                 "statistics of a recurrent run", add_diagnose, run_diagnose),
    "lab": ("run the lecture's experiments and write a report with figures", add_lab,
            run_lab),
    "translate": ("decode inputs with a seq2seq run (arguments, or lines from stdin)",
                  add_translate, run_translate),
    "predict": ("label sequences with a classify run: a label and class probabilities each",
                add_predict, run_predict),
    **FORECAST_COMMAND,
    **REPORT_COMMAND,
    **EXPORT_COMMAND,
}


def build_parser() -> Parser:
    from seqlab import __version__

    parser = Parser(prog="seqlab", description="Deep sequence modelling: train, inspect and use "
                    "recurrent models.", epilog=EXAMPLES,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"seqlab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, (help_text, add, _) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        add(command)
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show tracebacks on errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("seqlab: error: no command given; `seqlab --help` lists the commands, "
              "`seqlab COMMAND --help` describes one", file=sys.stderr)
        return 2
    if extra and args.command == "translate" and not any(a.startswith("-") for a in extra):
        args.text += extra  # inputs after the options: seqlab translate RUN --beam 2 TEXT
    elif extra:
        parser.parse_args(argv)  # argparse's own one-line error for what it did not know
    if sys.stdout is None and args.command != "train":  # started with stdout closed (>&-)
        return fail("standard output is closed: what this command prints would be lost", 2)
    from seqlab.distributed import ProcessLost
    from seqlab.training import TrainingDiverged

    warnings = WarningLines()
    logging.getLogger("seqlab").addHandler(warnings)
    try:
        code = COMMANDS[args.command][2](args)
        if sys.stdout is not None:
            sys.stdout.flush()  # a full disk behind stdout shows here, not at exit
        return code
    except (UsageError, ValueError, TypeError, FileNotFoundError, FileExistsError,
            NotADirectoryError, IsADirectoryError, PermissionError) as err:
        if args.debug:
            raise
        return fail(err, 2)
    except (TrainingDiverged, ProcessLost) as err:
        if args.debug:
            raise
        return fail(err, 1)
    except KeyboardInterrupt as err:
        print("seqlab: interrupted", file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130  # 128 + SIGTERM or SIGINT
    except BrokenPipeError:  # the reader stopped early (`seqlab generate ... | head`): not an error
        quiet_stdout()
        return 141
    except OSError as err:
        if args.debug or err.errno not in STORAGE_ERRNOS:
            raise
        if err.filename is None:  # stdout itself (`> /dev/full`): keep exit quiet
            quiet_stdout()
        return fail(storage_message(err), 2)
    except Exception as err:  # a bug: say so in one line, --debug shows where
        if args.debug:
            raise
        return fail(f"internal error: {type(err).__name__}: {err} (rerun with --debug)", 1)
    finally:
        logging.getLogger("seqlab").removeHandler(warnings)


# a full disk, a quota, a read-only file system, a closed descriptor: the user's to fix
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EBADF)


def storage_message(err: OSError) -> str:
    """Which file could not be written, why, and (disk full) how much room its folder has."""
    if err.filename is None:
        return f"standard output: {err.strerror}"
    free = ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        where = Path(err.filename).parent
        while not where.exists() and where != where.parent:  # the run folder may be gone
            where = where.parent
        with contextlib.suppress(OSError):
            free = f"; {shutil.disk_usage(where).free / 2**20:,.1f} MB free in {where}"
    return f"{os_message(err)}{free}"


def os_message(err: OSError) -> str:
    """``file: reason``; a hidden file staged for an atomic write (which the user never named)
    is told as its folder: ``cannot write in folder: reason``."""
    name = Path(err.filename)
    if name.name.startswith(".") and name.suffix == ".tmp":
        return f"cannot write in {name.parent}: {err.strerror}"
    return f"{err.filename}: {err.strerror}"


def quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises no second BrokenPipeError."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def fail(err: Exception | str, code: int) -> int:
    message = err.args[0] if isinstance(err, OSError) and len(err.args) == 1 else str(err)
    if isinstance(err, OSError) and err.filename and len(err.args) != 1:
        message = os_message(err)
    # one line: line breaks become spaces; spaces inside the message (a quoted input, a
    # token of two spaces) stay as they are
    first_line = re.sub(r"\s*[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+\s*", " ", str(message)).strip()
    print(f"seqlab: error: {first_line}", file=sys.stderr)
    return code
