"""What a report section holds: a title, blocks of a few kinds, and what is missing.

Families build their sections (:meth:`seqlab.families.base.Family.report_sections`) from these;
the templates render each kind. Every text is escaped by the templates; an SVG is inlined as
it is, so it must come from :mod:`seqlab.sections.svg` or a tool's output cleaned by
:func:`seqlab.sections.svg.clean`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Figure:
    """An inline SVG figure with its caption."""

    svg: str
    caption: str = ""
    kind: str = "figure"


@dataclass
class Table:
    """Rows of cells under a header row (cells are printed as given: format numbers first)."""

    head: list[str]
    rows: list[list[Any]]
    caption: str = ""
    kind: str = "table"


@dataclass
class Samples:
    """Generated text, each sample shown as preformatted text under its label."""

    label: str
    texts: list[str]
    kind: str = "samples"


@dataclass
class Audio:
    """A sound as a data: URI (an audio player)."""

    uri: str
    caption: str = ""
    kind: str = "audio"


@dataclass
class Note:
    """A sentence of prose."""

    text: str
    kind: str = "note"


@dataclass
class Group:
    """Blocks shown together as one item (a tune: its sheet music, player and checks)."""

    title: str
    blocks: list[Any]
    folded: bool = False  # shown closed (a <details> element), opened by a click
    columns: bool = False  # its blocks side by side where the page is wide enough
    kind: str = "group"


@dataclass
class Section:
    """A titled part of the page; ``missing`` lists what could not be shown, and why."""

    title: str
    blocks: list[Any] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    anchor: str = ""

    def samples(self) -> list[Samples]:
        """Every Samples block, inside groups too (what TensorBoard's text tab shows)."""
        found = []
        for block in self.blocks:
            inner = block.blocks if isinstance(block, Group) else [block]
            found += [b for b in inner if isinstance(b, Samples)]
        return found


def number(value: Any, digits: int = 4) -> str:
    """A number as tables print it: ``-`` for None or NaN, integers with separators."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 or abs(value) >= 1e5 \
            else f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
