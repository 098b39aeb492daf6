"""``seqlab train``: a new run or, with ``--resume``, the continuation of a stopped one.

Registered in :data:`seqlab.cli.COMMANDS`. The flags come from the family registry (the shared
model and training keys, then each family's own); Ctrl-C and SIGTERM stop after the current
step with a checkpoint; progress is a bar on a terminal, periodic lines otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqlab.cli_base import UsageError, interrupt_sets

if TYPE_CHECKING:
    from seqlab.distributed import World


# train ---------------------------------------------------------------------------------
def add_train(p: argparse.ArgumentParser) -> None:
    from seqlab.families import registry
    from seqlab.families.base import RESUMABLE

    p.add_argument("data", metavar="DATA", nargs="?",
                   help="a UTF-8 text file, a folder of them, ABC tunes or a bundled corpus "
                        "(oneills, ryans), a synthetic task (adding, copy, order, delay), a TSV "
                        "file of pairs or a built-in pair task (dates, reverse, sort, "
                        "addition), labelled sequences (a TSV, a .ts file, a long CSV, "
                        "tune-types, japanese-vowels, gunpoint, italy-power) or numeric series "
                        "(a CSV, airline, sunspots, macrodata); --task says which when the name "
                        "cannot; with --resume it may be left out (the run knows its source)")
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
    p.add_argument("--report", action="store_true",
                   help="keep RUN/report.html current: rewritten at every evaluation (no tune "
                        "is sampled until training ends), then once more in full")
    p.add_argument("--tensorboard", metavar="DIR", default=None,
                   help="also write TensorBoard event files into DIR: the scalars of "
                        "metrics.jsonl and the family's text samples (needs the tensorboard "
                        "package: pip install 'seqlab[tensorboard]')")
    p.add_argument("--dist-timeout", type=float, default=None, metavar="SECONDS",
                   help="with several processes (torchrun): how long one waits for the others "
                        "before it stops with an error, e.g. when another died (default: "
                        "600)")
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
    """One process of a training: alone, or one of several started by torchrun (RANK,
    WORLD_SIZE, LOCAL_RANK in the environment), of which rank 0 alone writes and prints."""
    from seqlab import distributed

    timeout = distributed.DEFAULT_TIMEOUT if args.dist_timeout is None else args.dist_timeout
    if timeout <= 0:
        raise UsageError(f"--dist-timeout must be > 0 seconds, got {args.dist_timeout}")
    world = distributed.from_env(os.environ)
    try:
        with distributed.session(world, timeout), warnings_of(world):
            return train_command(args, world)
    except RuntimeError as err:
        if (lost := distributed.lost(err, world)) is None:
            raise
        raise lost from err


@contextlib.contextmanager
def warnings_of(world: World):
    """The library's warnings from rank 0 only (every process would say the same)."""
    logger = logging.getLogger("seqlab")
    level = logger.level
    if not world.main:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def train_command(args: argparse.Namespace, world: World) -> int:
    from seqlab.config import read_toml
    from seqlab.families import registry, runner

    given = {f.name: getattr(args, f.name) for f in registry.all_fields()
             if getattr(args, f.name) is not None}
    if args.task is not None:
        given["task"] = args.task
    stop = threading.Event()
    toml = read_toml(Path(args.config)) if args.config else {}
    if clash := sorted(set(toml) & {"out", "resume", "config", "data", "quiet"}):
        raise UsageError(f"{args.config}: {', '.join(clash)} is a command-line option, not a "
                         "config key; give it as a flag (--out DIR, ...)")
    known = {f.name for f in registry.all_fields()} | {"task"}
    if unknown := sorted(set(toml) - known):
        raise UsageError(f"{args.config}: unknown config keys: {', '.join(unknown)}"
                         f"{registry.did_you_mean(unknown, known)}")
    keys = {**toml, **given}  # flags given here override the file
    if args.resume:
        if not args.out:
            raise UsageError("--resume needs --out DIR, the run to continue")
        check_config_file(args.out, toml, args.config)
        family = runner.family_of(args.out)
    else:
        if args.data is None:
            raise UsageError("train needs DATA (a file, folder, bundled corpus or task), or "
                             "--resume --out RUN to continue a run")
        family = runner.family_for(args.data, keys)
    reporter = Reporter(quiet=args.quiet or not world.main, family=family)
    out = args.out or default_run_name(args.data, keys.get("model", "lstm"))
    on_event, watcher = watched(reporter, out, args.report and world.main,
                                args.tensorboard if world.main else None)
    if not reporter.quiet:  # the bar's total; a quiet process shows none
        reporter.total = planned_steps(family, keys, args.out if args.resume else None)
    with interrupt_sets(stop, world.main) as signals:
        if args.resume:
            result = runner.resume(args.out, on_event=on_event, stop=stop, source=args.data,
                                   world=world, **keys)
        else:
            result = runner.train(args.data, out=out, on_event=on_event, stop=stop,
                                  world=world, **keys)
    reporter.close()
    if watcher is not None:
        watcher.close()
    if not world.main:
        return signals.exit_code() if result.summary.stop_reason == "interrupted" else 0
    s = result.summary
    print(f"best validation loss {result.best_loss()} after {s.steps} steps "
          f"({s.stop_reason}); run: {result.run.path}", file=sys.stderr)
    if args.report:
        print(f"report: {result.run.path / 'report.html'}", file=sys.stderr)
    return signals.exit_code() if s.stop_reason == "interrupted" else 0


def planned_steps(family, keys: dict[str, Any], resumed: str | None) -> int | None:
    """The step the run will stop at, for the progress bar's total: the family's default when
    --max-steps is not given, the run's own (or the new --max-steps) on resume. None when the
    keys are wrong: training reports that itself, in one line."""
    from seqlab.families import runner

    try:
        if resumed is not None:
            return runner.resume_configs(resumed, keys).train.max_steps
        return runner.typed_configs(family, keys).train.max_steps
    except ValueError:
        return None


def watched(reporter: Reporter, out: str, report: bool, tensorboard: str | None):
    """(the trainer's event hook, the report and TensorBoard watcher or None): progress lines,
    then the page and event files when asked for (a missing tensorboard fails here, before
    any training)."""
    if not report and tensorboard is None:
        return reporter, None
    from seqlab.report.live import Watcher

    watcher = Watcher(out, report, tensorboard)

    def on_event(kind: str, record: dict[str, Any]) -> None:
        reporter(kind, record)
        watcher(kind, record)

    return on_event, watcher


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


class Reporter:
    """Training progress: a bar when stderr is a terminal, plain periodic lines otherwise."""

    def __init__(self, quiet: bool = False, total: int | None = None, family=None) -> None:
        self.quiet, self.total, self.bar, self.family = quiet, total, None, family

    @property
    def unit(self) -> str:
        """What the trainer counts per second, as the run's family words it."""
        return self.family.items if self.family is not None else "tok"

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
                  f"grad_norm {record['grad_norm']:.3f}  "
                  f"{record['tokens_per_s']:,.0f} {self.unit}/s  {record['elapsed_s']:.0f}s",
                  file=sys.stderr, flush=True)
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
                                 **{f"{self.unit}_s": f"{record['tokens_per_s']:,.0f}"})
        else:
            self.bar.write(f"step {record['step']}: val_loss {record['val_loss']:.4f} "
                           f"({self.note(record)}), best {record['best_val_loss']:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
