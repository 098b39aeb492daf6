"""The README's promises: its Python example runs, its model table matches the registry, and
its two set-up commands exist in the Makefile and CI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from seqlab.config import MODEL_NAMES
from seqlab.models import MODELS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.usefixtures("single_thread")
def test_python_api_example_runs(tmp_path, monkeypatch):
    blocks = python_blocks(README)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["result"].summary.steps > 0
    assert namespace["text"].startswith("X:")
    assert list(tmp_path.iterdir()) == [], "the example must not write files"


def test_model_table_matches_registry():
    section = README.split("Models (`--model`):", 1)[1].split("\n\n", 2)[1]
    listed = re.findall(r"^\| `([\w-]+)` \|", section, flags=re.M)
    assert sorted(listed) == sorted(MODELS)
    assert sorted(MODEL_NAMES) == sorted(MODELS)


def test_two_setup_commands_and_ci():
    assert "make demo" in README and "make test" in README
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, flags=re.M) and re.search(r"^test:", makefile, flags=re.M)
    assert "torch==2.13.0" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()
