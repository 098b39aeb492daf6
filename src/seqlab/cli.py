"""The command line: the only module that prints, reads argv or exits.

Every command is one entry in COMMANDS: a function that adds its arguments and a function that
runs it. Errors a user can cause become one line, ``seqlab: error: ...``, and exit code 2;
``--debug`` shows the traceback instead. The library's logged warnings become
``seqlab: warning: ...`` lines on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seqlab.cli_base import Parser, UsageError, WarningLines
from seqlab.cli_use import add_generate, add_translate, run_generate, run_translate

EXAMPLES = """examples:
  seqlab train oneills --model lstm --hidden-size 256 --time-budget 120 --out runs/tunes
  seqlab generate runs/tunes --prompt "X:1" --length 400 --temperature 0.8
  seqlab evaluate runs/tunes my_tunes.abc --json
  seqlab info runs/tunes
  seqlab diagnose runs/tunes --out runs/tunes-diagnostics
  seqlab lab --quick --out lab
"""


# train ---------------------------------------------------------------------------------
def add_train(p: argparse.ArgumentParser) -> None:
    from seqlab.families import registry
    from seqlab.families.base import RESUMABLE

    p.add_argument("data", metavar="DATA", nargs="?",
                   help="a UTF-8 text file, a folder of them, a bundled corpus (oneills, ryans), "
                        "a synthetic task (adding, copy, order, delay), a TSV file of pairs or a "
                        "built-in pair task (dates, reverse, sort, addition); with --resume it "
                        "may be left out (the run knows its source)")
    p.add_argument("--out", metavar="DIR", help="run directory to create (default: "
                   "runs/NAME-MODEL-TIME); with --resume, the run to continue")
    may_change = ", ".join("--" + k.replace("_", "-") for k in sorted(RESUMABLE))
    p.add_argument("--resume", action="store_true",
                   help="continue the stopped run in --out from its last checkpoint; the "
                        "original command may be repeated as it was, and only these keys may "
                        f"change: {may_change}")
    p.add_argument("--config", metavar="FILE", help="TOML file with the same keys as the flags "
                   "(hidden_size = 512); flags given here override it")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--task", choices=list(registry.FAMILIES), default=None,
                   help="what to train (default: what DATA names, else lm): " + "; ".join(
                       f"{name}: {family.help}" for name, family in registry.FAMILIES.items()))
    for title, fields in registry.field_groups():
        group = p.add_argument_group(title)
        for f in fields:
            add_key(group, f)


def add_key(group, f) -> None:
    """One config key as a flag: its help, type, choices and default from the field."""
    flag = "--" + f.name.replace("_", "-")
    meta = f.metadata
    default = f"(default: {f.default})"
    if f.type == "bool":
        group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                           help=f"{meta['help']} {default}")
        return
    kind = {"int": int, "float": float, "str": str}[f.type]
    choices = meta.get("choices")
    group.add_argument(flag, type=kind, default=None, choices=choices,
                       metavar=None if choices else f.name.split("_")[-1].upper(),
                       help=f"{meta['help']} {default}")


def run_train(args: argparse.Namespace) -> int:
    from seqlab.config import read_toml
    from seqlab.families import registry, runner

    given = {f.name: getattr(args, f.name) for f in registry.all_fields()
             if getattr(args, f.name) is not None}
    if args.task is not None:
        given["task"] = args.task
    stop = threading.Event()
    toml = read_toml(Path(args.config)) if args.config else {}
    if args.resume:
        if not args.out:
            raise UsageError("--resume needs --out DIR, the run to continue")
        check_config_file(args.out, toml, args.config)
        family = runner.family_of(args.out)
    else:
        if args.data is None:
            raise UsageError("train needs DATA (a file, folder, bundled corpus or task), or "
                             "--resume --out RUN to continue a run")
        family = runner.family_for(args.data, {**toml, **given})
    reporter = Reporter(quiet=args.quiet, family=family)
    with interrupt_sets(stop):
        if args.resume:
            result = runner.resume(args.out, on_event=reporter, stop=stop, source=args.data,
                                   **{**toml, **given})
        else:
            keys = {**toml, **given}
            out = args.out or default_run_name(args.data, keys.get("model", "lstm"))
            reporter.total = keys.get("max_steps")
            result = runner.train(args.data, out=out, on_event=reporter, stop=stop, **keys)
    reporter.close()
    s = result.summary
    print(f"best validation loss {result.best_loss()} after {s.steps} steps "
          f"({s.stop_reason}); run: {result.run.path}", file=sys.stderr)
    return 130 if s.stop_reason == "interrupted" else 0


def check_config_file(out: str, toml: dict[str, Any], name: str | None) -> None:
    """A TOML file given on resume must agree with the run (the user repeats the command)."""
    from seqlab.families import runner

    if not toml:
        return
    try:
        runner.resume_configs(out, toml)
    except ValueError as err:
        raise UsageError(f"{err}; {name} differs from the run: drop --config to continue "
                         "with the run's own keys") from err


def default_run_name(data: str, model: str) -> str:
    stem = Path(data.rstrip("/")).stem or "data"
    return f"runs/{stem}-{model}-{time.strftime('%Y%m%d-%H%M%S')}"


class interrupt_sets:
    """While active, Ctrl-C sets ``stop`` (the trainer saves and returns); a second one kills."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def __enter__(self):
        def handler(signum, frame):
            if self.stop.is_set():
                raise KeyboardInterrupt
            self.stop.set()
            print("\nseqlab: stopping after this step (Ctrl-C again to abort)", file=sys.stderr)

        self.previous = signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self.previous)


class Reporter:
    """Training progress: a bar when stderr is a terminal, plain periodic lines otherwise."""

    def __init__(self, quiet: bool = False, total: int | None = None, family=None) -> None:
        self.quiet, self.total, self.bar, self.family = quiet, total, None, family

    def note(self, record: dict[str, Any]) -> str:
        """The second figure of an evaluation line, as the run's family words it."""
        return self.family.eval_note(record) if self.family is not None else ""

    def __call__(self, kind: str, record: dict[str, Any]) -> None:
        if self.quiet or kind == "stop":
            return
        if sys.stderr.isatty():
            self._bar(kind, record)
        elif kind == "log":
            print(f"step {record['step']:>6}  loss {record['loss']:.4f}  lr {record['lr']:.2e}  "
                  f"grad_norm {record['grad_norm']:.3f}  {record['tokens_per_s']:,.0f} tok/s  "
                  f"{record['elapsed_s']:.0f}s", file=sys.stderr, flush=True)
        else:
            print(f"eval {record['step']:>6}  val_loss {record['val_loss']:.4f}  "
                  f"{self.note(record)}  best {record['best_val_loss']:.4f}",
                  file=sys.stderr, flush=True)

    def _bar(self, kind: str, record: dict[str, Any]) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=self.total, unit="step", dynamic_ncols=True)
        if kind == "log":
            self.bar.update(record["step"] - self.bar.n)
            self.bar.set_postfix(loss=f"{record['loss']:.3f}",
                                 tok_s=f"{record['tokens_per_s']:,.0f}")
        else:
            self.bar.write(f"step {record['step']}: val_loss {record['val_loss']:.4f} "
                           f"({self.note(record)}), best {record['best_val_loss']:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where to run the model (default: auto)")


def run_evaluate(args: argparse.Namespace) -> int:
    from seqlab.families import runner

    if args.beam is not None and args.beam < 1:
        raise UsageError("--beam must be >= 1")
    result = runner.evaluate(args.run, args.data, device=args.device, beam=args.beam)
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
    from seqlab.training import resolve_device

    report = diagnose_run(args.run, args.out, args.batch, resolve_device(args.device),
                          jacobian=not args.no_jacobian)
    if args.json:
        print(json.dumps(report))
        return 0
    for when in ("init", "trained"):
        m = report[when]
        last = m["grad_last"]
        radius = ", ".join(f"{layer} " + " ".join(f"{k} {v:.3f}" for k, v in blocks.items())
                           for layer, blocks in m["spectral_radius"].items())
        print(f"{when:8} ||dL/dh_t|| (loss at the last step): t=0 {last[0]:.3g}, "
              f"t=T-1 {last[-1]:.3g}; spectral radius of W_hh: {radius}")
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


def run_lab(args: argparse.Namespace) -> int:
    from seqlab.lab import run_suite

    suite = args.suite or "quick"
    out = Path(args.out or f"lab-{suite}")

    def progress(name: str, result: dict) -> None:
        print(f"{name:24} best val loss {result['best_val_loss']:.4f}  {result['stop']}  "
              f"{result['wall_s']:.0f} s", file=sys.stderr, flush=True)

    summary = run_suite(suite, out, progress, tuple(args.only))
    for key, verdict in summary["verdicts"].items():
        if verdict:
            print(f"{key}: {verdict}")
    print(f"report: {out / 'report.md'} ({summary['session_s']:.0f} s)")
    return 0


COMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "train": ("train a model: a language model on text or tunes, a synthetic long-range "
              "task, or an encoder-decoder on pairs", add_train, run_train),
    "generate": ("sample text, or whole tunes with MIDI, audio and sheet music, from a "
                 "trained language model", add_generate, run_generate),
    "evaluate": ("score a run: loss, perplexity and bits per character on a text; a synthetic "
                 "or seq2seq run's own metrics", add_evaluate, run_evaluate),
    "info": ("config, parameter count and metrics of a run", add_info, run_info),
    "diagnose": ("gradients through time, Jacobian products, spectral radius and gate "
                 "statistics of a recurrent run", add_diagnose, run_diagnose),
    "lab": ("run the lecture's experiments and write a report with figures", add_lab,
            run_lab),
    "translate": ("decode inputs with a seq2seq run (arguments, or lines from stdin)",
                  add_translate, run_translate),
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
    args = build_parser().parse_args(argv)
    if args.command is None:
        build_parser().print_help(sys.stderr)
        return 2
    from seqlab.training import TrainingDiverged

    warnings = WarningLines()
    logging.getLogger("seqlab").addHandler(warnings)
    try:
        return COMMANDS[args.command][2](args)
    except (UsageError, ValueError, TypeError, FileNotFoundError, FileExistsError,
            NotADirectoryError, IsADirectoryError, PermissionError) as err:
        if args.debug:
            raise
        return fail(err, 2)
    except TrainingDiverged as err:
        if args.debug:
            raise
        return fail(err, 1)
    except KeyboardInterrupt:
        print("seqlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader stopped early (`seqlab generate ... | head`): not an error
        quiet_stdout()
        return 141
    except Exception as err:  # a bug: say so in one line, --debug shows where
        if args.debug:
            raise
        return fail(f"internal error: {type(err).__name__}: {err} (rerun with --debug)", 1)
    finally:
        logging.getLogger("seqlab").removeHandler(warnings)


def quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises no second BrokenPipeError."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def fail(err: Exception | str, code: int) -> int:
    message = err.args[0] if isinstance(err, OSError) and len(err.args) == 1 else str(err)
    if isinstance(err, OSError) and err.filename and len(err.args) != 1:
        message = f"{err.filename}: {err.strerror}"
    first_line = " ".join(str(message).split())
    print(f"seqlab: error: {first_line}", file=sys.stderr)
    return code
