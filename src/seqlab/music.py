"""Folk tunes out of a model: sampling, rendering (MIDI, WAV, SVG) and tunes.json.

The checks of a tune (headers, music21, abc2midi), bars against the meter, novelty and the rates
over many tunes live in :mod:`seqlab.music_checks`; the ones callers need are importable from
here too.

Tunes are sampled as the model was trained (:func:`generate_tunes`): as streams of tunes with
the state carried from one into the next, or, for a model trained on tunes one by one
(``--batching tunes``), every tune from an empty state. By default sampling is meter-aware
(:mod:`seqlab.meter_masks`): a token that would overfill the current bar, or close a bar
before it is full where a partial bar is not legal, is never sampled (the rules:
:mod:`seqlab.abc_meter`).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqlab import abc_meter
from seqlab.checkpoint import RunDir
from seqlab.data.abc import END, START, is_abc_source, train_val_tunes
from seqlab.generate import make_generator, next_tokens, sampling_config
from seqlab.io import atomic_write_text
from seqlab.meter_masks import MeterMasks
from seqlab.music_checks import (
    NEAR_COPY_BARS,
    TOOL_TIMEOUT_S,
    NoveltyIndex,
    assess,
    bar_fit_summary,
    check_rhythm,
    first_line,
    summarise,
)
from seqlab.music_checks import bar_fraction as bar_fraction  # re-exported
from seqlab.music_checks import check_headers as check_headers  # re-exported
from seqlab.music_checks import parse_music21 as parse_music21  # re-exported
from seqlab.music_checks import tune_bars as tune_bars  # re-exported

# tool -> the Debian package that provides it
TOOLS = {"abc2midi": "abcmidi", "timidity": "timidity", "abcm2ps": "abcm2ps"}


@dataclass(frozen=True)
class GeneratedTune:
    text: str
    ended: bool  # True: the model wrote the end marker; False: cut at the length cap
    meter_fallbacks: int = 0  # steps where meter-aware sampling found no legal token


def tool_paths() -> dict[str, str | None]:
    return {name: shutil.which(name) for name in TOOLS}


def missing_tool_messages(paths: dict[str, str | None]) -> list[str]:
    """One line per missing tool, naming the Debian package that provides it."""
    effect = {"abc2midi": "the abc2midi check is skipped and MIDI comes from music21",
              "timidity": "no WAV files", "abcm2ps": "no SVG sheet music"}
    return [f"{name} not found (Debian package {TOOLS[name]}: apt-get install {TOOLS[name]}): "
            f"{effect[name]}" for name, path in paths.items() if path is None]


def render(stem: Path, score, record: dict[str, Any], tools: dict[str, str | None]) -> None:
    """MIDI (abc2midi's, else music21's), WAV from the MIDI, SVG from the ABC; files named in
    ``record["files"]``, failures in ``record["render_errors"]``."""
    stem = Path(stem).absolute()  # the tools run inside its folder (see _run)
    files, errors = {"abc": stem.with_suffix(".abc").name}, []
    midi = stem.with_suffix(".mid")
    if not midi.is_file() and score is not None:
        try:
            with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")
                score.write("midi", fp=str(midi))
        except Exception as err:  # music21 cannot write every parsed oddity
            errors.append(f"music21 MIDI: {type(err).__name__}: {first_line(err)}")
    if midi.is_file():
        files["midi"] = midi.name
        wav = stem.with_suffix(".wav")
        # 22 kHz mono: a quarter of timidity's default size, plenty for a fiddle tune
        command = [tools["timidity"], "-Ow", "-s", "22050", "--output-mono", "-o", str(wav),
                   str(midi)] if tools.get("timidity") else None
        if command and _run(command, wav, errors):
            files["wav"] = wav.name
    if tools.get("abcm2ps") and record["checks"]["headers"]["ok"]:
        svg = stem.with_suffix(".svg")
        # -g: SVG, one file per page; -O names the output (abcm2ps adds 001 to it)
        page = stem.parent / f"{stem.name}001.svg"
        if _run([tools["abcm2ps"], "-g", "-O", str(svg), str(stem.with_suffix(".abc"))],
                page, errors):
            page.replace(svg)
            files["svg"] = svg.name
    record["files"] = files
    if errors:
        record["render_errors"] = errors


def _run(command: list[str], product: Path, errors: list[str]) -> bool:
    """Run a tool; True when it left ``product``."""
    try:
        subprocess.run(command, capture_output=True, timeout=TOOL_TIMEOUT_S,
                       cwd=product.parent)
    except subprocess.TimeoutExpired:
        errors.append(f"{Path(command[0]).name} ran over {TOOL_TIMEOUT_S} s")
        return False
    if not product.is_file():
        errors.append(f"{Path(command[0]).name} wrote no {product.suffix} file")
        return False
    return True


# many tunes ---------------------------------------------------------------------------------
def validate_tunes(tunes: list[str], novelty: NoveltyIndex | None = None,
                   near_copy_bars: int = NEAR_COPY_BARS) -> list[dict[str, Any]]:
    """Records for tunes, without keeping any file (for tests and benchmarks)."""
    tools = tool_paths()
    records = []
    with tempfile.TemporaryDirectory(prefix="seqlab-abc-") as tmp:
        for tune in tunes:
            abc = Path(tmp) / "tune.abc"
            abc.write_text(tune + "\n", encoding="utf-8")
            records.append(assess(tune, abc, Path(tmp) / "tune.mid", tools, novelty,
                                  near_copy_bars)[0])
    return records


def write_tunes(tunes: list[GeneratedTune], out: str | Path,
                training: list[str] | None = None, near_copy_bars: int = NEAR_COPY_BARS,
                settings: dict[str, Any] | None = None, held_out: list[str] | None = None
                ) -> dict[str, Any]:
    """Write ``out/tune-001.abc`` ... with MIDI, WAV and SVG where possible, and
    ``out/tunes.json``; return what tunes.json holds. ``out`` must not exist or be empty.
    ``held_out`` (real tunes the model never trained on) are measured beside the generated
    ones (bar fit and header consistency, :func:`real_summary`) under ``"real"``."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not empty; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    tools = tool_paths()
    novelty = NoveltyIndex(training) if training else None
    records = []
    for k, tune in enumerate(tunes, start=1):
        stem = out / f"tune-{k:03d}"
        stem.with_suffix(".abc").write_text(tune.text + "\n", encoding="utf-8")
        record, score = assess(tune.text, stem.with_suffix(".abc"), stem.with_suffix(".mid"),
                               tools, novelty, near_copy_bars)
        record = {"file": stem.with_suffix(".abc").name, "ended": tune.ended,
                  "meter_fallbacks": tune.meter_fallbacks, **record}
        render(stem, score, record, tools)
        records.append(record)
    report = {"summary": summarise(records), "settings": settings or {},
              "near_copy_bars": near_copy_bars, "novelty_against": len(training or []),
              "tools": {name: path is not None for name, path in tools.items()},
              "missing_tools": missing_tool_messages(tools),
              "real": real_summary(held_out) if held_out else None, "tunes": records}
    atomic_write_text(out / "tunes.json", json.dumps(report, indent=1) + "\n")
    return report


# generation ---------------------------------------------------------------------------------
def generate_tunes(model, vocab, count: int, prompt: str = "", max_length: int = 2000,
                   seed: int | None = None, rows: int = 32, burn_in: int = 1,
                   fresh_state: bool = False, meter: bool = True, **sampling
                   ) -> list[GeneratedTune]:
    """``count`` tunes sampled the way the model was trained.

    As streams of tunes (the default, for streams and windows): ``rows`` streams run in
    parallel, the state carried from one tune into the next. Each tune starts with a forced
    start (``prompt``, default ``X:<n>``, its number), then is sampled until the end marker or
    ``max_length`` tokens; after a cut at the cap the marker is forced too. The first
    ``burn_in`` tunes of each stream start from an empty state, which the model never saw at a
    tune's start, and are dropped. Tunes are taken stream by stream in order, never the first
    to finish (that would favour short tunes).

    With ``fresh_state`` (a model trained with ``--batching tunes``, which read every tune from
    an empty state): every tune starts from an empty state that reads the start marker, then its
    forced start; ``rows`` tunes at a time, all of them kept (``burn_in`` does not apply).

    With ``meter`` (the default), tokens that would break a bar (see :mod:`seqlab.abc_meter`)
    are masked; where a row has no legal token left, it samples unmasked for that step, counted
    in each tune's ``meter_fallbacks``.
    """

    if count < 1 or max_length < 1 or rows < 1 or burn_in < 0:
        raise ValueError(f"count, max_length and rows must be >= 1 and burn_in >= 0, got "
                         f"{count}, {max_length}, {rows}, {burn_in}")
    config = sampling_config(vocab, **sampling)
    rows = min(rows, count)
    generator = make_generator(seed)
    masks = MeterMasks(vocab) if meter else None
    if fresh_state:
        tunes: list[GeneratedTune] = []
        while len(tunes) < count:
            starts = [[prompt or f"X:{len(tunes) + k + 1}\n"]
                      for k in range(min(rows, count - len(tunes)))]
            tunes += [row[0] for row in _sample_rows(model, vocab, starts, max_length, config,
                                                     generator, masks)]
        return tunes
    quota = burn_in - (-count // rows)  # tunes per stream, burn-in included
    starts = [_starts(prompt, k, quota - burn_in, burn_in) for k in range(rows)]
    sampled = _sample_rows(model, vocab, starts, max_length, config, generator, masks)
    return [t for row in sampled for t in row[burn_in:]][:count]


def _sample_rows(model, vocab, starts: list[list[str]], max_length: int, config, generator,
                 masks: MeterMasks | None = None) -> list[list[GeneratedTune]]:
    """Row k samples one tune per forced start in ``starts[k]``, in parallel with the other
    rows; each row reads the start marker from an empty state, then carries its state from one
    tune into the next."""

    streams = [_TuneStream(vocab, row, END, masks) for row in starts]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits, state = model(torch.as_tensor(vocab.encode(START).astype("int64"),
                                              device=device).expand(len(streams), -1))
        while not all(stream.done for stream in streams):
            sampled = next_tokens(logits[:, -1], config, generator).tolist()
            if masks is not None:
                sampled = masks.resample(logits[:, -1], sampled, streams, config, generator)
            fed = [stream.step(t, max_length) for stream, t in zip(streams, sampled,
                                                                       strict=True)]
            logits, state = model(torch.tensor(fed, device=device)[:, None], state)
    model.train(was_training)
    return [stream.tunes for stream in streams]


def _starts(prompt: str, row: int, kept: int, burn_in: int) -> list[str]:
    """The forced starts of one stream: its burn-in tunes, then tunes numbered in output order
    (stream k's kept tunes are k * kept + 1, k * kept + 2, ...)."""
    if prompt:
        return [prompt] * (burn_in + kept)
    return ["X:1\n"] * burn_in + [f"X:{row * kept + j + 1}\n" for j in range(kept)]


class _TuneStream:
    """One row of :func:`generate_tunes`: forced starts, sampled tunes, cut at END or a cap."""

    def __init__(self, vocab, starts: list[str], end: str, masks: MeterMasks | None = None
                 ) -> None:
        self.vocab, self.starts, self.end, self.masks = vocab, starts, end, masks
        self.tunes: list[GeneratedTune] = []
        self._begin(starts[0], "")

    def _begin(self, start: str, before: str) -> None:
        self.forced = [int(t) for t in self.vocab.encode(before + start)]
        self.tune = [int(t) for t in self.vocab.encode(start)]  # the tune so far, start included
        self.sampled = self.fallbacks = 0
        self.meter = self.masks.start(start) if self.masks is not None else 0  # a state id

    @property
    def sampling(self) -> bool:
        """Whether the token sampled next is the row's own (not forced, not done)."""
        return not self.forced and not self.done

    @property
    def done(self) -> bool:
        return len(self.tunes) == len(self.starts)

    def step(self, sampled: int, max_length: int) -> int:
        """The token this row reads next: a forced one, or the one just sampled."""
        if self.forced:
            return self.forced.pop(0)
        if self.done:
            return sampled
        self.tune.append(sampled)
        self.sampled += 1
        if self.masks is not None:
            self.meter = self.masks.advance(self.meter, sampled)
        # a marker of c characters ends within the last c + 1 tokens (each token >= 1 character)
        ended = self.end in self.vocab.decode(self.tune[-len(self.end) - 1:])
        if ended or self.sampled >= max_length:
            text = self.vocab.decode(self.tune).split(self.end, 1)[0]
            self.tunes.append(GeneratedTune(text.strip(), ended, self.fallbacks))
            if not self.done:  # after a cut at the cap, the end marker is forced first
                self._begin(self.starts[len(self.tunes)], "" if ended else self.end)
        return sampled


def real_summary(tunes: list[str]) -> dict[str, Any]:
    """Bar fit and header consistency of real tunes, from their text (no tools needed)."""
    records = [{"bars_fit": abc_meter.bar_fit(t), "rhythm": check_rhythm(t)} for t in tunes]
    rhythm = [r["rhythm"]["ok"] for r in records if r["rhythm"]["ok"] is not None]
    return {"tunes": len(tunes), **bar_fit_summary(records), "rhythm_tunes": len(rhythm),
            "header_consistency_rate": sum(rhythm) / len(rhythm) if rhythm else None}


def tune_split(run_dir: str | Path) -> tuple[list[str], list[str]] | None:
    """(training tunes, held-out tunes) of an ABC run, as the data loader split them, or None
    when the run was not trained on ABC."""
    run = RunDir(run_dir)
    config = run.read_config()
    data = config.get("data", {})
    source = data.get("source_path") or data.get("source")
    if source is None or not is_abc_source(source):
        return None
    train = config["train"]
    return train_val_tunes(source, train["val_fraction"], train["seed"])
