"""Sound and sheet music for a page: audio as compressed data: URIs, SVG inlined.

Audio: a WAV file (timidity's, from a tune's MIDI) is re-encoded as Ogg Vorbis through
``soundfile`` (its wheel ships libsndfile with Vorbis), mono, at a quality that keeps a fiddle
tune near 100 KB a minute, then base64-encoded into a ``data:audio/ogg`` URI: a page with ten
tunes stays a few MB. A MIDI file without its WAV is rendered first, with timidity.
"""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from seqlab.sections.svg import clean

QUALITY = 0.3  # Vorbis quality from 0 (smallest) to 1 (best): plenty for a synthesised fiddle
RATE = 22050  # Hz, as seqlab renders its WAV files
TIMIDITY_S = 60  # seconds a MIDI file may take to render
BLOCK = 4096  # frames handed to the encoder at a time


def ogg_uri(wav: Path) -> str:
    """A WAV file as a ``data:audio/ogg;base64,...`` URI (Ogg Vorbis, mono)."""
    import soundfile

    try:
        data, rate = soundfile.read(str(wav), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise ValueError(f"{wav}: not a readable WAV file ({err})") from err
    if not len(data):
        raise ValueError(f"{wav}: no sound in it")
    mono = data.mean(axis=1)
    peak = float(np.abs(mono).max())
    if peak > 1.0:  # a mix of channels cannot clip, but a float WAV can hold anything
        mono = mono / peak
    out = io.BytesIO()
    # in blocks: libsndfile's Vorbis encoder crashes (a segmentation fault) on one long write
    with soundfile.SoundFile(out, "w", rate, 1, format="OGG", subtype="VORBIS",
                             compression_level=1 - QUALITY) as encoded:
        for start in range(0, len(mono), BLOCK):
            encoded.write(mono[start:start + BLOCK])
    return "data:audio/ogg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def midi_to_wav(midi: Path, wav: Path) -> None:
    """Render a MIDI file with timidity (22 kHz mono WAV)."""
    timidity = shutil.which("timidity")
    if timidity is None:
        raise ValueError("timidity not found (Debian package timidity: apt-get install "
                         "timidity): no audio")
    try:
        subprocess.run([timidity, "-Ow", "-s", str(RATE), "--output-mono", "-o", str(wav),
                        str(midi)], capture_output=True, timeout=TIMIDITY_S, check=False)
    except subprocess.TimeoutExpired:
        raise ValueError(f"timidity ran over {TIMIDITY_S} s on {midi}") from None
    if not wav.is_file():
        raise ValueError(f"timidity wrote no WAV file from {midi}")


def tune_audio(wav: Path | None, midi: Path | None) -> str:
    """The audio of a tune: its WAV if there, else rendered from its MIDI."""
    if wav is not None and wav.is_file():
        return ogg_uri(wav)
    if midi is None or not midi.is_file():
        raise ValueError("no WAV and no MIDI file")
    with tempfile.TemporaryDirectory(prefix="seqlab-audio-") as tmp:
        rendered = Path(tmp) / "tune.wav"
        midi_to_wav(midi, rendered)
        return ogg_uri(rendered)


def sheet_svg(path: Path) -> str:
    """An SVG file (abcm2ps's sheet music) as an element to inline, given a viewBox from its
    size when it has none (so that the page can scale it to its width)."""
    try:
        svg = clean(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a text SVG file") from err
    head = svg[:svg.find(">") + 1]
    size = re.search(r'width="([\d.]+)(?:px)?"\s+height="([\d.]+)(?:px)?"', head)
    if "viewBox" not in head and size:
        width, height = size.groups()
        svg = svg.replace("<svg", f'<svg viewBox="0 0 {width} {height}"', 1)
    return svg
