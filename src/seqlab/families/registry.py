"""The registry of task families: the ``task`` name in config.json -> its family.

A new family is one module (a :class:`~seqlab.families.base.Family` subclass) and one call to
:func:`register`; the command line's ``--task`` choices, its flags and the key checks all read
the registry. :func:`registered` registers for the length of a ``with`` block (tests).
"""

from __future__ import annotations

import contextlib
import difflib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from seqlab.config import ModelConfig, TrainConfig, fields_of
from seqlab.families.base import Family
from seqlab.families.classify import CLASSIFY
from seqlab.families.forecast import FORECAST
from seqlab.families.seq2seq import SEQ2SEQ
from seqlab.families.synthetic import SYNTHETIC
from seqlab.families.text import TEXT

log = logging.getLogger(__name__)
FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    if family.name in FAMILIES:
        raise ValueError(f"a task family named {family.name!r} is already registered")
    FAMILIES[family.name] = family
    return family


@contextlib.contextmanager
def registered(family: Family) -> Iterator[Family]:
    register(family)
    try:
        yield family
    finally:
        FAMILIES.pop(family.name, None)


for _family in (TEXT, SYNTHETIC, SEQ2SEQ):
    register(_family)
register(FORECAST)
register(CLASSIFY)


def get(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(FAMILIES)}") from None


def of_config(config: Mapping[str, Any]) -> Family:
    """The family of a run's config.json (runs from before families wrote "task" are "lm")."""
    return get(config.get("task", "lm"))


def choose(source: str, task: str | None = None, say: bool = False) -> Family:
    """``task`` by name, else the first family that claims ``source``, else the fallback
    (with ``say``, a warning when that reads a CSV or TSV file as plain text)."""
    if task is not None:
        return get(task)
    for family in FAMILIES.values():
        if not family.fallback and family.claims(source):
            return family
    fallback = next(f for f in FAMILIES.values() if f.fallback)
    if say and Path(source).suffix.lower() in (".csv", ".tsv"):
        log.warning("%s is read as plain text for a language model (--task %s); labelled "
                    "examples, series or pairs need --task classify, forecast or seq2seq",
                    source, fallback.name)
    return fallback


def check_keys(family: Family, keys: Mapping[str, Any]) -> None:
    """Unknown keys, and keys of other families, are errors; the message names the family."""
    known = {f.name for fam in FAMILIES.values() for cls in fam.config_classes()
             for f in fields_of(cls)}
    if unknown := sorted(set(keys) - known):
        raise ValueError(f"unknown config keys: {', '.join(unknown)}{did_you_mean(unknown, known)}")
    if foreign := sorted(set(keys) - family.key_names()):
        raise ValueError(f"{', '.join(foreign)} {'does' if len(foreign) == 1 else 'do'} not "
                         f"apply to the {family.name} task ({family.help})")


SHARED_TITLES = {ModelConfig: "model keys (every task; each says where it applies)",
                 TrainConfig: "training keys (every task; each says where it applies)"}


def field_groups() -> list[tuple[str, list]]:
    """(title, fields) per config class: the shared keys, then each family's own; a key
    declared by two families is listed once, with the first (for the command line)."""
    seen: set[str] = set()
    groups: list[tuple[str, list]] = []
    for family in FAMILIES.values():
        for cls in family.config_classes():
            if cls in [c for c, _ in groups]:
                continue
            new = [f for f in fields_of(cls) if f.name not in seen]
            seen |= {f.name for f in new}
            title = (SHARED_TITLES[cls] if cls in SHARED_TITLES
                     else f"{family.name} keys: {family.help}")
            groups.append((cls, (title, new)))
    return [group for _, group in groups]


def all_fields() -> list:
    """Every user key once, with the field that first declares it."""
    return [f for _, fields in field_groups() for f in fields]


def did_you_mean(unknown: list[str], known: set[str]) -> str:
    """'' or " (did you mean hidden_size?)": the known keys closest to each unknown one."""
    close = [match for word in unknown
             for match in difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.75)]
    return f" (did you mean {', '.join(close)}?)" if close else ""
