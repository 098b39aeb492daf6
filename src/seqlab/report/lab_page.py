"""``seqlab lab``'s page: report.md's claims, tables and figures as one self-contained HTML
file beside it (``templates/lab.html.j2``). The lab's figures are its PNG files, embedded as
data: URIs, so the page is the same figures as report.md, and needs no file beside it."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from seqlab.io import atomic_write_text
from seqlab.report.render import render


def png_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def write_lab_page(path: Path, title: str, intro: str, experiments: list[dict[str, Any]]
                   ) -> Path:
    """``experiments``: dicts of title, claim, published, head, rows, verdict and figures
    (PNG paths)."""
    shown = [{**e, "figures": [{"uri": png_uri(f), "name": Path(f).stem}
                               for f in e["figures"] if Path(f).is_file()]}
             for e in experiments]
    atomic_write_text(path, render("lab.html.j2", title=title, intro=intro,
                                   experiments=shown))
    return path
