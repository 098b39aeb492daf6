"""Tunes in a run's report: sheet music (abcm2ps's SVG), a player (Ogg Vorbis) and the checks.

The tunes are those of a ``tunes.json`` in the run folder or one of its subfolders (``seqlab
generate RUN --tunes N --out RUN/tunes``) when there is one, else :data:`COUNT` tunes sampled
at report time with a fixed seed into a temporary folder (not during training: rendering takes
seconds a tune). Files a tunes.json names but that are gone are said, not fatal.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from seqlab import music
from seqlab.checkpoint import RunDir
from seqlab.families.base import LoadedRun
from seqlab.sections.blocks import Audio, Figure, Group, Note, Samples, Section, Table, number
from seqlab.sections.media import sheet_svg, tune_audio

COUNT, SHOWN, MAX_LENGTH, SEED = 4, 10, 1500, 0  # sampled, shown at most, tokens a tune, seed


def find_tunes_json(run: RunDir) -> Path | None:
    """RUN/tunes.json, else the first RUN/*/tunes.json by name."""
    found = [run.path / "tunes.json", *sorted(run.path.glob("*/tunes.json"))]
    return next((p for p in found if p.is_file()), None)


def tunes_section(family, run: RunDir, loaded: LoadedRun | None, live: bool) -> Section:
    section = Section("Tunes", anchor="tunes")
    path = find_tunes_json(run)
    if path is not None:
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
            records = list(report["tunes"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            section.missing.append(f"{path}: unreadable tunes.json ({err})")
            return section
        section.blocks.append(Note(f"{len(records)} tunes from {path}."))
        fill(section, report, records, path.parent)
        return section
    if loaded is None or live:
        section.missing.append("no tunes yet: they are sampled when training ends and by "
                               "`seqlab report` (or write them with `seqlab generate RUN "
                               "--tunes N --out RUN/tunes`)")
        return section
    sampler = family.generator(loaded)
    tunes = sampler.tunes(COUNT, "", MAX_LENGTH, seed=SEED)
    training = (sampler.tune_split() or (None, None))[0]
    with tempfile.TemporaryDirectory(prefix="seqlab-report-tunes-") as tmp:
        report = music.write_tunes(tunes, Path(tmp) / "tunes", training,
                                   settings={"seed": SEED, "max_length": MAX_LENGTH})
        section.blocks.append(Note(f"{COUNT} tunes sampled now from the best weights (seed "
                                   f"{SEED}); `seqlab generate --tunes` writes more."))
        fill(section, report, report["tunes"], Path(tmp) / "tunes")
    return section


def fill(section: Section, report: dict[str, Any], records: list[dict], folder: Path) -> None:
    """The summary table, then one group per tune (its files read from ``folder``)."""
    summary = report.get("summary") or {}
    keys = [k for k in ("valid_rate", "headers_rate", "music21_rate", "abc2midi_rate",
                        "bar_fit", "near_copy_rate", "ended_rate") if k in summary]
    if keys:
        section.blocks.append(Table(["tunes", *keys], [[summary.get("tunes", len(records)),
                                     *(number(summary[k], 3) for k in keys)]],
                                    "validity and novelty over the tunes (tunes.json)"))
    section.missing += [f"tools missing when the tunes were written: {line}"
                        for line in report.get("missing_tools", [])]
    for record in records[:SHOWN]:
        section.blocks.append(tune_group(record, folder, section.missing))


def tune_group(record: dict[str, Any], folder: Path, missing: list[str]) -> Group:
    files = record.get("files", {})
    name = record.get("file") or files.get("abc", "tune")
    group = Group(f"{name}: {record.get('title') or 'untitled'}", [])
    if "svg" in files and (folder / files["svg"]).is_file():
        try:
            group.blocks.append(Figure(sheet_svg(folder / files["svg"]), "sheet music"))
        except (OSError, ValueError) as err:
            missing.append(f"{name}: sheet music: {err}")
    else:
        missing.append(f"{name}: no sheet music" + (f" ({folder / files['svg']} is missing)"
                                                    if "svg" in files else ""))
    wav, midi = (folder / files[k] if k in files else None for k in ("wav", "midi"))
    try:
        group.blocks.append(Audio(tune_audio(wav, midi), "audio (rendered from the MIDI)"))
    except (OSError, ValueError) as err:
        missing.append(f"{name}: no audio ({err})")
    group.blocks.append(Table(["check", "result"], check_rows(record)))
    abc = folder / files.get("abc", name)
    if abc.is_file():
        group.blocks.append(Samples("ABC", [abc.read_text(encoding="utf-8", errors="replace")]))
    else:
        missing.append(f"{name}: the ABC file {abc} is missing")
    return group


def check_rows(record: dict[str, Any]) -> list[list[str]]:
    checks = record.get("checks", {})
    rows = [["valid", number(record.get("valid"))]]
    rows += [[name, "not run" if c.get("ok") is None else
              number(bool(c["ok"])) + (f" ({c['reason']})" if c.get("reason") else "")]
             for name, c in checks.items()]
    if record.get("bars_fit"):
        fit, bars = record["bars_fit"]
        rows.append(["bars that fit the meter", f"{fit} of {bars}"])
    if "novelty" in record:
        novelty = record["novelty"]
        rows.append(["longest run of bars shared with a training tune",
                     f"{novelty.get('longest_shared_bars')} ({novelty.get('shared_with')})"])
        rows.append(["near-copy", number(novelty.get("near_copy"))])
    if "ended" in record:
        rows.append(["ended by the model", number(record["ended"])])
    return rows
