"""The commands that use a trained run: ``generate`` (text, or whole tunes written out with
MIDI, WAV, sheet music and their checks) and ``translate`` (a seq2seq run). Registered in
:data:`seqlab.cli.COMMANDS`."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from seqlab.cli_base import UsageError, check_outputs, interrupt_sets

BAR_FROM = 2000  # tokens from which generate shows a progress bar (on a terminal)

# generate --------------------------------------------------------------------------------
def add_generate(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory written by seqlab train")
    p.add_argument("--prompt", default="", help="text to start from (default: a newline)")
    p.add_argument("--length", type=int, default=None,
                   help="tokens to generate (default: 500; --tunes and --lines take their "
                        "own maximum lengths)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="divide the logits by this; < 1 is safer, > 1 wilder (default: 1.0)")
    p.add_argument("--top-k", type=int, default=0,
                   help="sample among the k most likely tokens only (default: 0, all)")
    p.add_argument("--top-p", type=float, default=1.0,
                   help="sample from the smallest set of tokens with total probability p "
                        "(default: 1.0, all)")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--num-samples", type=int, default=None,
                   help="independent samples (default: 1; --tunes N and --lines N say how "
                        "many)")
    p.add_argument("--seed", type=int, default=None, help="random seed: repeats a sample exactly")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"),
                   help="where to run the model (default: cpu)")
    tunes = p.add_argument_group("tunes (runs trained on ABC)")
    tunes.add_argument("--tunes", type=int, metavar="N", help="sample N whole tunes, each from "
                       "--prompt (default: X:<its number>) to its end marker (a blank line) or "
                       "--max-tune-length, and write them to --out with MIDI, WAV, SVG and "
                       "tunes.json (validity and novelty)")
    tunes.add_argument("--out", metavar="DIR", help="folder for --tunes (must not exist or be "
                       "empty)")
    tunes.add_argument("--max-tune-length", type=int, default=2000, metavar="N",
                       help="length cap of one tune, in tokens (default: 2000)")
    tunes.add_argument("--no-meter", dest="meter", action="store_false",
                       help="sample without meter-aware masking (by default no token that "
                            "would overfill a bar, or close one too early, is sampled)")
    lines = p.add_argument_group("lines (runs trained with --batching lines)")
    lines.add_argument("--lines", type=int, metavar="N", help="sample N new lines, each from an "
                       "empty state to its end-of-line token or --max-line-length, one per line "
                       "on stdout")
    lines.add_argument("--max-line-length", type=int, default=256, metavar="N",
                       help="length cap of one line, in tokens (default: 256)")
    lines.add_argument("--mark-seen", action="store_true",
                       help="mark the lines that occur in the run's training lines, and count "
                            "them on stderr")
    tunes.add_argument("--near-copy-bars", type=int, default=8, metavar="N",
                       help="a tune sharing a run of N bars with a training tune is a "
                            "near-copy (default: 8)")


def run_generate(args: argparse.Namespace) -> int:
    from seqlab.generate import check_sample_sizes
    from seqlab.limits import allocation_errors

    if (args.tunes is not None or args.lines is not None) and \
            (args.length is not None or args.num_samples is not None):
        raise UsageError("--length and --num-samples apply to text samples; --tunes N and "
                         "--lines N say how many, --max-tune-length and --max-line-length "
                         "how long")
    args.length = 500 if args.length is None else args.length
    args.num_samples = 1 if args.num_samples is None else args.num_samples
    if args.length < 1 or args.num_samples < 1:
        raise UsageError("--length and --num-samples must be positive")
    if args.seed is not None and not 0 <= args.seed < 2**63:
        raise UsageError(f"--seed must be in [0, 2^63), got {args.seed}")
    if args.lines is not None and (args.tunes is not None or args.out is not None):
        raise UsageError("--lines and --tunes are two ways to sample: choose one")
    if args.lines is not None and args.prompt:
        raise UsageError("--prompt does not apply to --lines: every line is sampled from a "
                         "line's start")
    if args.mark_seen and args.lines is None:
        raise UsageError("--mark-seen applies to --lines only")
    count, length, flags = sample_sizes(args)
    if count >= 1 and length >= 1:  # before the run is loaded or --out made
        check_sample_sizes(None, 1, count, length, *flags)
    if args.tunes is not None or args.out is not None:
        return run_generate_tunes(args)
    if args.lines is not None:
        return run_generate_lines(args)
    sampler = load_sampler(args)
    stop = threading.Event()  # Ctrl-C or SIGTERM: the text sampled so far is printed
    with allocation_errors({"--length": args.length, "--num-samples": args.num_samples}), \
            interrupt_sets(stop) as signals:
        samples = sampler.text(args.prompt, args.length, args.num_samples, args.seed,
                               token_bar(args.length), stop, **sampling_of(args))
    for k, text in enumerate(samples):
        if len(samples) > 1:
            print(f"--- sample {k + 1} ---")
        print(text)
    if signals.received:
        print(f"seqlab: stopped early: the sample{'s' * (len(samples) > 1)} above "
              f"{'are' if len(samples) > 1 else 'is'} shorter than --length {args.length}",
              file=sys.stderr)
        return signals.exit_code()
    return 0


def token_bar(length: int):
    """A progress bar over sampling steps on stderr, for a terminal only (a pipe or a file gets
    none), and only for a long sample: short ones end before a bar would mean anything."""
    from tqdm import tqdm

    if length < BAR_FROM:
        return None
    return lambda steps: tqdm(steps, total=length, unit="token", leave=False, disable=None,
                              file=sys.stderr, dynamic_ncols=True)


def sample_sizes(args: argparse.Namespace) -> tuple[int, int, tuple[str, str, str]]:
    """(how many, tokens each, (length flag, count flag, what)) that generate will sample."""
    if args.tunes is not None:
        return args.tunes, args.max_tune_length, ("--max-tune-length", "--tunes", "tunes")
    if args.lines is not None:
        return args.lines, args.max_line_length, ("--max-line-length", "--lines", "lines")
    return args.num_samples, args.length, ("--length", "--num-samples", "samples")


def sampling_of(args: argparse.Namespace) -> dict:
    return dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                greedy=args.greedy)


def load_sampler(args: argparse.Namespace):
    """What samples from the run; a ValueError for a run that is not a language model."""
    from seqlab.families import runner
    from seqlab.training import resolve_device

    loaded = runner.load_run(args.run, resolve_device(args.device))
    return loaded.family.generator(loaded)


def run_generate_lines(args: argparse.Namespace) -> int:
    if args.lines < 1 or args.max_line_length < 1:
        raise UsageError("--lines and --max-line-length must be positive")
    sampler = load_sampler(args)
    lines = sampler.lines(args.lines, args.max_line_length, args.seed, **sampling_of(args))
    seen = None
    if args.mark_seen:
        training = sampler.training_lines()
        if training is None:
            print("seqlab: no check against the training lines: the run's source is not "
                  "readable", file=sys.stderr)
        else:
            seen = set(training)
    for line in lines:
        print(f"{line}{'  (in training data)' if seen is not None and line in seen else ''}")
    if seen is not None:
        print(f"seqlab: {sum(line in seen for line in lines)} of {len(lines)} lines occur in "
              "the training data", file=sys.stderr)
    return 0


def run_generate_tunes(args: argparse.Namespace) -> int:
    from seqlab import music

    if args.tunes is None or args.out is None:
        raise UsageError("--tunes N and --out DIR go together")
    if args.tunes < 1 or args.max_tune_length < 1 or args.near_copy_bars < 1:
        raise UsageError("--tunes, --max-tune-length and --near-copy-bars must be positive")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} already exists and is not empty; choose another --out")
    sampler = load_sampler(args)
    sampling = sampling_of(args)
    tunes = sampler.tunes(args.tunes, args.prompt, args.max_tune_length, args.seed,
                          meter=args.meter, **sampling)
    training, held_out = sampler.tune_split() or (None, None)
    if training is None:
        print("seqlab: no novelty check: the run's training tunes are not readable "
              f"({sampler.loaded.config['data']['source']})", file=sys.stderr)
    settings = {"run": str(args.run), "seed": args.seed, "prompt": args.prompt or "X:<n>",
                "max_tune_length": args.max_tune_length, "meter": args.meter, **sampling}
    report = music.write_tunes(tunes, out, training, args.near_copy_bars, settings, held_out)
    for line in report["missing_tools"]:
        print(f"seqlab: {line}", file=sys.stderr)
    s = report["summary"]
    rates = ", ".join(f"{name} {s[name + '_rate']:.0%}" for name in ("headers", "music21",
                      "abc2midi") if s[name + "_rate"] is not None)
    copies = (f"; near-copies {s['near_copy_rate']:.0%}" if "near_copy_rate" in s else "")
    real, bars = report.get("real") or {}, ""
    if s["bar_fit"] is not None:
        versus = (f" (real held-out tunes {real['bar_fit']:.1%})"
                  if real.get("bar_fit") is not None else "")
        bars = f"; bar fit {s['bar_fit']:.1%}{versus}"
    rhythm = (f"; header consistency {s['header_consistency_rate']:.0%} of "
              f"{s['rhythm_tunes']} with R:" if s["rhythm_tunes"] else "")
    fallbacks = f"; meter fallbacks {s['meter_fallbacks']}" if args.meter else ""
    print(f"{s['tunes']} tunes in {out}: valid {s['valid_rate']:.0%} ({rates}); ended by "
          f"the model {s['ended_rate']:.0%}{bars}{rhythm}{copies}{fallbacks}; details in "
          f"{out / 'tunes.json'}")
    return 0


# translate -------------------------------------------------------------------------------
def add_translate(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory written by seqlab train --task "
                   "seq2seq (or on a built-in pair task)")
    p.add_argument("text", metavar="TEXT", nargs="*",
                   help="inputs to translate (default: one per line from stdin, where a "
                        "blank line gives a blank line)")
    p.add_argument("--beam", type=int, default=None,
                   help="beam width (default: the run's --beam; 1 is greedy)")
    p.add_argument("--length-penalty", type=float, default=None,
                   help="beam search ranks by log-probability / length^this (default: the run's)")
    p.add_argument("--show-attention", metavar="PNG", default=None,
                   help="write the attention heatmap here (several inputs: PNG-1.png, ...)")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"),
                   help="where to run the model (default: cpu)")


def run_translate(args: argparse.Namespace) -> int:
    from seqlab.config import check_key
    from seqlab.families import runner
    from seqlab.families.seq2seq import Seq2SeqConfig
    from seqlab.limits import allocation_errors
    from seqlab.seq2seq_eval import save_attention
    from seqlab.training import resolve_device

    if args.beam is not None and args.beam < 1:
        raise UsageError("--beam must be >= 1")
    if args.length_penalty is not None and args.length_penalty < 0:
        raise UsageError("--length-penalty must be >= 0")
    if args.length_penalty is not None:  # nan, inf and overflow: the run's key's own rules
        check_key(Seq2SeqConfig, "length_penalty", args.length_penalty)
    texts = args.text or stdin_lines()
    # a blank line of stdin (a paragraph break, a file's last line) is a blank output line,
    # so that output line k still answers input line k; an empty TEXT argument is an error
    numbers = [k for k, text in enumerate(texts, start=1) if args.text or text.strip()]
    if not numbers:
        raise UsageError("no input: give TEXT arguments or lines on stdin" if not texts else
                         "no input: stdin holds only blank lines")
    device = resolve_device(args.device)
    loaded = runner.load_run(args.run, device)
    pictures = attention_paths(args.show_attention, numbers)
    flags = ["--show-attention"] if len(numbers) == 1 else \
        [f"--show-attention (map {k})" for k in numbers]
    check_outputs({flag: str(path) for flag, path in zip(flags, pictures, strict=False)}, {},
                  args.run, kinds={"--show-attention": (".png",)})
    sizes = {**({"--beam": args.beam} if args.beam else {}), "inputs": len(numbers)}
    with allocation_errors(sizes, device):
        results = loaded.family.translator(loaded)([texts[k - 1] for k in numbers], args.beam,
                                                   args.length_penalty, numbers)
    for path, result in zip(pictures, results, strict=False):
        save_attention(path, result)
    translated = dict(zip(numbers, results, strict=True))
    for k in range(1, len(texts) + 1):
        print(translated[k].text if k in translated else "")
    return 0


def attention_paths(png: str | None, numbers: list[int]) -> list[Path]:
    """Where --show-attention PNG puts the map of each input numbered in ``numbers`` (lines
    of stdin, blank ones left out): PNG itself for a single input, PNG-k (before the suffix)
    for input k of more; none without the flag."""
    if not png:
        return []
    path = Path(png)
    return [path] if len(numbers) == 1 else [path.with_name(f"{path.stem}-{k}{path.suffix}")
                                             for k in numbers]


def stdin_lines() -> list[str]:
    """The lines of standard input, read as UTF-8; other bytes are a one-line error."""
    if sys.stdin is None:
        return []
    binary = getattr(sys.stdin, "buffer", None)  # a text stream without one is text already
    try:
        text = binary.read().decode("utf-8") if binary is not None else sys.stdin.read()
        return [line.rstrip("\r") for line in text.splitlines()]
    except UnicodeDecodeError as err:
        raise UsageError(f"standard input: not UTF-8 text (invalid byte at offset {err.start})"
                         ) from None
