"""The text family's sections of a run's report: samples at two temperatures, or tunes.

Samples are drawn at report time from the run's best weights with a fixed seed (the same page
for the same weights), short enough to be cheap at every refresh during training. A run on ABC
tunes shows tunes instead (:mod:`seqlab.families.tunes_report`).
"""

from __future__ import annotations

from seqlab.checkpoint import RunDir
from seqlab.data.abc import is_abc_source
from seqlab.families.base import LoadedRun, no_model
from seqlab.families.tunes_report import tunes_section
from seqlab.sections.blocks import Note, Samples, Section

TEMPERATURES = (0.7, 1.0)
SAMPLES, TOKENS, LINES = 2, 200, 4  # per temperature: samples of TOKENS tokens, or LINES lines
SEED = 0


def is_abc_run(config: dict) -> bool:
    data = config.get("data", {})
    source = str(data.get("source_path") or data.get("source", ""))
    return source.lower().endswith(".abc") or is_abc_source(source)


def sections(family, run: RunDir, loaded: LoadedRun | None, live: bool = False
             ) -> list[Section]:
    """Tunes for an ABC run, else text samples at :data:`TEMPERATURES`."""
    config = loaded.config if loaded is not None else run.read_config()
    if is_abc_run(config):
        return [tunes_section(family, run, loaded, live)]
    section = Section("Samples", anchor="samples")
    if loaded is None:
        section.missing.append(no_model(run, "samples"))
        return [section]
    sampler = family.generator(loaded)
    lines = loaded.configs.train.batching == "lines"
    for temperature in TEMPERATURES:
        if lines:
            texts = sampler.lines(LINES, TOKENS, seed=SEED, temperature=temperature)
        else:
            texts = sampler.text("", TOKENS, SAMPLES, seed=SEED, temperature=temperature)
        section.blocks.append(Samples(f"temperature {temperature:g}", texts))
    what = f"{LINES} lines" if lines else f"{SAMPLES} samples of {TOKENS} tokens"
    section.blocks.insert(0, Note(f"{what} at each temperature, from the best weights, seed "
                                  f"{SEED}, no prompt."))
    return [section]
