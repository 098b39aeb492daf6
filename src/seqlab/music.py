"""Folk tunes out of a model: validity checks, novelty, rendering (MIDI, WAV, SVG), tunes.json.

Checks, per tune (each ``{"ok": bool | None, "reason": str}``; None: not run, its tool missing):

- ``headers``: X first (a number), M (a meter), L (a unit length, or absent: the default follows
  from M), K last;
- ``music21``: music21 parses it and finds at least one note;
- ``abc2midi``: abc2midi writes a MIDI file holding at least one note. abc2midi exits 0 after
  fatal errors and prints ``Error`` for things real tunes do all the time (2,000 of them in
  O'Neill's collection alone), so the file, not the exit status or the messages, decides;
  the first error message is kept as information.

A tune is ``valid`` when every check that ran passed. ``bar_fraction`` (bars whose duration
matches the meter, from music21's measures; a pickup bar, the two halves of a bar split by a
repeat sign, and a short last bar count as matching) is reported beside it, not folded in: real
tunes are not all square either. Novelty is the longest run of bars shared with any training
tune; at ``near_copy_bars`` or more (default 8, a whole strain) a tune is a near-copy.

A malformed tune never raises here: every failure becomes a check with its reason.

Tunes are sampled as the model was trained, as streams of tunes with the state carried from
one into the next (:func:`generate_tunes`).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqlab.data.abc import body, headers
from seqlab.io import atomic_write_text

# tool -> the Debian package that provides it
TOOLS = {"abc2midi": "abcmidi", "timidity": "timidity", "abcm2ps": "abcm2ps"}
TOOL_TIMEOUT_S = 30
NEAR_COPY_BARS = 8
METER = re.compile(r"^(C\|?|none|\d+(\+\d+)*/\d+)$")
UNIT = re.compile(r"^1/\d+$")
BAR_LINE = re.compile(r":*\[?\|[\]|:]*\d*|::|\[\d")


@dataclass(frozen=True)
class GeneratedTune:
    text: str
    ended: bool  # True: the model wrote the end marker; False: cut at the length cap


def tool_paths() -> dict[str, str | None]:
    return {name: shutil.which(name) for name in TOOLS}


def missing_tool_messages(paths: dict[str, str | None]) -> list[str]:
    """One line per missing tool, naming the Debian package that provides it."""
    effect = {"abc2midi": "the abc2midi check is skipped and MIDI comes from music21",
              "timidity": "no WAV files", "abcm2ps": "no SVG sheet music"}
    return [f"{name} not found (Debian package {TOOLS[name]}: apt-get install {TOOLS[name]}): "
            f"{effect[name]}" for name, path in paths.items() if path is None]


# checks -------------------------------------------------------------------------------------
def check(ok: bool | None, reason: str = "") -> dict[str, Any]:
    return {"ok": ok, "reason": reason}


def check_headers(tune: str) -> dict[str, Any]:
    lines = tune.splitlines()
    if not lines or not re.match(r"^X:\s*\d+\s*$", lines[0]):
        return check(False, "the first line is not X:<number>")
    fields = headers(tune)
    for name in "MK":
        if name not in fields:
            return check(False, f"no {name}: field in the header")
    if not METER.match(fields["M"].replace(" ", "")):
        return check(False, f"M:{fields['M']} is not a meter")
    if "L" in fields and not UNIT.match(fields["L"].replace(" ", "")):
        return check(False, f"L:{fields['L']} is not a unit note length")
    return check(True)


def parse_music21(tune: str):
    """(check, score or None). music21 writes its warnings to stderr; they are kept quiet."""
    from music21 import converter

    quiet = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(quiet):
            warnings.simplefilter("ignore")
            score = converter.parseData(tune, format="abc")
            notes = len(score.flatten().notes)
    except Exception as err:  # music21 raises many types on bad input
        return check(False, f"music21: {type(err).__name__}: {_first_line(err)}"), None
    if notes == 0:
        return check(False, "music21 found no notes"), None
    return check(True), score


def bar_fraction(score) -> float | None:
    """Fraction of bars whose length matches the meter (None: no meter or no bars)."""
    from music21 import meter, stream

    part = score.parts[0] if getattr(score, "parts", None) else score
    if not part.recurse().getElementsByClass(meter.TimeSignature):
        return None
    bars = [(float(m.duration.quarterLength), float(m.barDuration.quarterLength))
            for m in part.getElementsByClass(stream.Measure)]
    bars = [(have, full) for have, full in bars if have > 0]
    if not bars:
        return None
    ok = [abs(have - full) < 1e-6 for have, full in bars]
    for k in range(len(bars) - 1):  # a bar split by a repeat sign: two short halves
        (a, full), (b, _) = bars[k], bars[k + 1]
        if a < full and b < full and abs(a + b - full) < 1e-6:
            ok[k] = ok[k + 1] = True
    ok[0] = ok[0] or bars[0][0] < bars[0][1]  # pickup
    ok[-1] = ok[-1] or bars[-1][0] < bars[-1][1]  # a last bar completing the pickup
    return sum(ok) / len(ok)


def run_abc2midi(abc_path: Path, midi_path: Path, abc2midi: str | None) -> dict[str, Any]:
    """Convert with abc2midi; ok when the MIDI file it leaves holds at least one note."""
    if abc2midi is None:
        return check(None, "abc2midi not installed")
    midi_path.unlink(missing_ok=True)
    try:
        done = subprocess.run([abc2midi, str(abc_path), "-o", str(midi_path)],
                              capture_output=True, text=True, errors="replace",
                              timeout=TOOL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        midi_path.unlink(missing_ok=True)
        return check(False, f"abc2midi ran over {TOOL_TIMEOUT_S} s")
    errors = [line for line in (done.stdout + done.stderr).splitlines()
              if line.startswith("Error")]
    first = f" ({errors[0]})" if errors else ""
    if not midi_path.is_file():
        return check(False, f"abc2midi wrote no MIDI file{first}")
    if midi_notes(midi_path) == 0:
        midi_path.unlink()
        return check(False, f"abc2midi wrote a MIDI file without notes{first}")
    return check(True, f"{len(errors)} error messages{first}" if errors else "")


def midi_notes(path: Path) -> int:
    """Note-on events with a velocity in a MIDI file (0 for an unreadable one)."""
    from music21 import midi

    mf = midi.MidiFile()
    try:
        mf.readstr(Path(path).read_bytes())
    except Exception:  # a damaged file has no notes we can trust
        return 0
    return sum(1 for track in mf.tracks for event in track.events
               if event.isNoteOn() and event.velocity > 0)


# novelty ------------------------------------------------------------------------------------
def tune_bars(tune: str) -> list[str]:
    """The bars of a tune's music, whitespace and line breaks removed; field lines skipped."""
    music = "".join(line for line in body(tune).splitlines()
                    if not re.match(r"^[A-Za-z]:", line))
    music = re.sub(r"[\s\\]+", "", music)
    return [bar for bar in BAR_LINE.split(music) if bar]


class NoveltyIndex:
    """Where every bar of the training tunes occurs, to find the longest shared run of bars."""

    def __init__(self, tunes: list[str]) -> None:
        self.titles = [headers(t).get("T", f"tune {k + 1}") for k, t in enumerate(tunes)]
        self.bars = [tune_bars(t) for t in tunes]
        self.where: dict[str, list[tuple[int, int]]] = {}
        for t, bars in enumerate(self.bars):
            for j, bar in enumerate(bars):
                self.where.setdefault(bar, []).append((t, j))

    def longest_shared(self, tune: str) -> tuple[int, str | None]:
        """(length in bars of the longest run shared with one training tune, its title)."""
        g = tune_bars(tune)
        best, title = 0, None
        for i, bar in enumerate(g):
            for t, j in self.where.get(bar, ()):
                other = self.bars[t]
                if i and j and other[j - 1] == g[i - 1]:
                    continue  # not the start of a run
                k = 1
                while i + k < len(g) and j + k < len(other) and g[i + k] == other[j + k]:
                    k += 1
                if k > best:
                    best, title = k, self.titles[t]
        return best, title


# one tune -----------------------------------------------------------------------------------
def assess(tune: str, abc_path: Path, midi_path: Path, tools: dict[str, str | None],
           novelty: NoveltyIndex | None = None, near_copy_bars: int = NEAR_COPY_BARS
           ) -> tuple[dict[str, Any], Any]:
    """Checks, bar fraction, novelty and descriptive fields of a tune already written at
    ``abc_path``; abc2midi's MIDI (when it converts) is left at ``midi_path``. Returns the
    record and music21's score (None when it did not parse)."""
    fields = headers(tune)
    checks = {"headers": check_headers(tune)}
    checks["music21"], score = parse_music21(tune)
    checks["abc2midi"] = run_abc2midi(abc_path, midi_path, tools.get("abc2midi"))
    fraction = None
    if score is not None:
        try:
            fraction = bar_fraction(score)
        except Exception:  # music21 measures of an odd tune; the fraction is just unknown
            fraction = None
    record = {"title": fields.get("T"), "key": fields.get("K"), "meter": fields.get("M"),
              "length": len(tune), "bars": len(tune_bars(tune)), "checks": checks,
              "valid": all(c["ok"] for c in checks.values() if c["ok"] is not None),
              "bar_fraction": fraction}
    if novelty is not None:
        shared, title = novelty.longest_shared(tune)
        record["novelty"] = {"longest_shared_bars": shared, "shared_with": title,
                             "near_copy": shared >= near_copy_bars}
    return record, score


def render(stem: Path, score, record: dict[str, Any], tools: dict[str, str | None]) -> None:
    """MIDI (abc2midi's, else music21's), WAV from the MIDI, SVG from the ABC; files named in
    ``record["files"]``, failures in ``record["render_errors"]``."""
    files, errors = {"abc": stem.with_suffix(".abc").name}, []
    midi = stem.with_suffix(".mid")
    if not midi.is_file() and score is not None:
        try:
            with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")
                score.write("midi", fp=str(midi))
        except Exception as err:  # music21 cannot write every parsed oddity
            errors.append(f"music21 MIDI: {type(err).__name__}: {_first_line(err)}")
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


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else ""


# many tunes ---------------------------------------------------------------------------------
def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Rates over tunes: each check (over the tunes where it ran), valid, near-copy."""
    n = max(len(records), 1)
    summary: dict[str, Any] = {"tunes": len(records),
                               "valid_rate": sum(r["valid"] for r in records) / n}
    for name in ("headers", "music21", "abc2midi"):
        ran = [r["checks"][name]["ok"] for r in records if r["checks"][name]["ok"] is not None]
        summary[f"{name}_rate"] = sum(ran) / len(ran) if ran else None
    fractions = [r["bar_fraction"] for r in records if r["bar_fraction"] is not None]
    summary["mean_bar_fraction"] = sum(fractions) / len(fractions) if fractions else None
    if records and all("novelty" in r for r in records):
        summary["near_copy_rate"] = sum(r["novelty"]["near_copy"] for r in records) / n
    if records and all("ended" in r for r in records):
        summary["ended_rate"] = sum(r["ended"] for r in records) / n
    return summary


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
                settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``out/tune-001.abc`` ... with MIDI, WAV and SVG where possible, and
    ``out/tunes.json``; return what tunes.json holds. ``out`` must not exist or be empty."""
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
        record = {"file": stem.with_suffix(".abc").name, "ended": tune.ended, **record}
        render(stem, score, record, tools)
        records.append(record)
    report = {"summary": summarise(records), "settings": settings or {},
              "near_copy_bars": near_copy_bars, "novelty_against": len(training or []),
              "tools": {name: path is not None for name, path in tools.items()},
              "missing_tools": missing_tool_messages(tools), "tunes": records}
    atomic_write_text(out / "tunes.json", json.dumps(report, indent=1) + "\n")
    return report


# generation ---------------------------------------------------------------------------------
def generate_tunes(model, vocab, count: int, prompt: str = "", max_length: int = 2000,
                   seed: int | None = None, rows: int = 32, burn_in: int = 1, **sampling
                   ) -> list[GeneratedTune]:
    """``count`` tunes sampled the way the model was trained: as streams of tunes.

    ``rows`` streams run in parallel, the state carried from one tune into the next. Each tune
    starts with a forced start (``prompt``, default ``X:<n>``, its number), then is sampled
    until the end marker or ``max_length`` tokens; after a cut at the cap the marker is forced
    too. The first ``burn_in`` tunes of each stream start from an empty state, which the model
    never saw at a tune's start, and are dropped. Tunes are taken stream by stream in order,
    never the first to finish (that would favour short tunes).
    """
    from seqlab.data.abc import END
    from seqlab.generate import SamplingConfig, make_generator, next_tokens

    if count < 1 or max_length < 1 or rows < 1 or burn_in < 0:
        raise ValueError(f"count, max_length and rows must be >= 1 and burn_in >= 0, got "
                         f"{count}, {max_length}, {rows}, {burn_in}")
    config = SamplingConfig(**sampling)
    rows = min(rows, count)
    quota = burn_in - (-count // rows)  # tunes per stream, burn-in included
    generator = make_generator(seed)
    streams = [_TuneStream(vocab, _starts(prompt, k, quota - burn_in, burn_in), END)
               for k in range(rows)]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits, state = model(torch.as_tensor(vocab.encode(END).astype("int64"),
                                              device=device).expand(rows, -1))
        while not all(stream.done for stream in streams):
            sampled = next_tokens(logits[:, -1], config, generator).tolist()
            fed = [stream.step(t, max_length) for stream, t in zip(streams, sampled,
                                                                       strict=True)]
            logits, state = model(torch.tensor(fed, device=device)[:, None], state)
    model.train(was_training)
    return [t for stream in streams for t in stream.tunes[burn_in:]][:count]


def _starts(prompt: str, row: int, kept: int, burn_in: int) -> list[str]:
    """The forced starts of one stream: its burn-in tunes, then tunes numbered in output order
    (stream k's kept tunes are k * kept + 1, k * kept + 2, ...)."""
    if prompt:
        return [prompt] * (burn_in + kept)
    return ["X:1\n"] * burn_in + [f"X:{row * kept + j + 1}\n" for j in range(kept)]


class _TuneStream:
    """One row of :func:`generate_tunes`: forced starts, sampled tunes, cut at END or a cap."""

    def __init__(self, vocab, starts: list[str], end: str) -> None:
        self.vocab, self.starts, self.end = vocab, starts, end
        self.tunes: list[GeneratedTune] = []
        self._begin(starts[0], "")

    def _begin(self, start: str, before: str) -> None:
        self.forced = [int(t) for t in self.vocab.encode(before + start)]
        self.tune = [int(t) for t in self.vocab.encode(start)]  # the tune so far, start included
        self.sampled = 0

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
        # a marker of c characters ends within the last c + 1 tokens (each token >= 1 character)
        ended = self.end in self.vocab.decode(self.tune[-len(self.end) - 1:])
        if ended or self.sampled >= max_length:
            text = self.vocab.decode(self.tune).split(self.end, 1)[0]
            self.tunes.append(GeneratedTune(text.strip(), ended))
            if not self.done:  # after a cut at the cap, the end marker is forced first
                self._begin(self.starts[len(self.tunes)], "" if ended else self.end)
        return sampled


def training_tunes(run_dir: str | Path) -> list[str] | None:
    """The training split of an ABC run (as the data loader made it), or None when the run was
    not trained on ABC or its source is no longer where it was."""
    from seqlab.checkpoint import RunDir
    from seqlab.data.abc import is_abc_source, load_tunes, split_train_val

    run = RunDir(run_dir)
    source = run.read_config().get("data", {}).get("source")
    if source is None or not is_abc_source(source):
        return None
    config = run.train_config()
    return split_train_val(load_tunes(source), config.val_fraction, config.seed)[0]
