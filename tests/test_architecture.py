"""The shape of the house, held against the code: imports one way, no family tests in shared
code, modules of a readable size."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from seqlab.families import registry

SRC = Path(__file__).resolve().parents[1] / "src"
MODULES = sorted(SRC.rglob("*.py"))
# shared code: it asks the family, never which family it holds
SHARED = ["cli.py", "cli_base.py", "cli_train.py", "cli_use.py", "api.py", "checkpoint.py",
          "training.py", "diagnostics.py", "diagnose.py", "lab.py", "lab_report.py", "recording.py",
          "families/runner.py", "cli_report.py", "report/run_report.py",
          "report/training_sections.py", "report/live.py", "report/lab_page.py",
          "sections/blocks.py", "sections/svg.py", "sections/media.py", "export.py",
          "cli_export.py", "distributed.py"]
# the figures of an evaluation that belong to one family or another (val_loss is everyone's)
FAMILY_METRICS = {"val_bpc", "val_ppl", "val_baseline", "val_ratio", "val_accuracy",
                  "val_exact_match", "val_token_accuracy"}
# (importer prefix, imported prefixes it must not reach): lower layers never import higher ones
LAYERS = [
    ("seqlab.data", ("seqlab.models", "seqlab.training", "seqlab.families", "seqlab.cli",
                     "seqlab.checkpoint", "seqlab.tasks")),
    ("seqlab.cells", ("seqlab.recurrent", "seqlab.models", "seqlab.training", "seqlab.families",
                      "seqlab.cli")),
    ("seqlab.models", ("seqlab.training", "seqlab.families", "seqlab.cli", "seqlab.checkpoint")),
    ("seqlab.checkpoint", ("seqlab.families", "seqlab.models", "seqlab.cli", "seqlab.api")),
    ("seqlab.training", ("seqlab.families", "seqlab.cli", "seqlab.api", "seqlab.models")),
    # the processes of one training: below the trainer, it knows no data, model or run folder
    ("seqlab.distributed", ("seqlab.training", "seqlab.checkpoint", "seqlab.families",
                            "seqlab.models", "seqlab.data", "seqlab.cli", "seqlab.api")),
    ("seqlab.diagnostics", ("seqlab.families", "seqlab.cli", "seqlab.checkpoint",
                            "seqlab.training")),
    ("seqlab.families", ("seqlab.cli", "seqlab.api", "seqlab.lab", "seqlab.diagnose",
                         "seqlab.report")),
    # argument checks every layer may use: they know nothing of seqlab
    ("seqlab.arguments", ("seqlab.",)),
    # the drawing blocks know no run, no family, no model: families build their sections on them
    ("seqlab.sections.blocks", ("seqlab.",)),
    ("seqlab.sections", ("seqlab.checkpoint", "seqlab.families", "seqlab.models",
                         "seqlab.training", "seqlab.cli", "seqlab.report")),
    ("seqlab.report", ("seqlab.cli", "seqlab.api")),
    # ONNX export's plumbing, below the families that describe their graphs with it
    ("seqlab.export", ("seqlab.families", "seqlab.cli", "seqlab.api", "seqlab.report")),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


NAMES = {module_name(p): p for p in MODULES}


def imported(path: Path) -> set[str]:
    """Every seqlab module ``path`` imports: at the top, inside functions, or by importlib."""
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in NAMES
                     else node.module for a in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            names = [a.value for a in node.args if isinstance(a, ast.Constant)]
        found |= {n for n in names if n.split(".")[0] == "seqlab"}
    return {n for n in found if n in NAMES} - {module_name(path)}


GRAPH = {name: imported(path) for name, path in NAMES.items()}


def test_no_import_cycles_counting_imports_inside_functions():
    cycles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == "open":
                cycles.append(trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert cycles == []


@pytest.mark.parametrize("importer, forbidden", LAYERS)
def test_lower_layers_never_import_higher_ones(importer, forbidden):
    wrong = {f"{a} -> {b}" for a, targets in GRAPH.items() if a.startswith(importer)
             for b in targets if b.startswith(forbidden)}
    assert wrong == set()


@pytest.mark.parametrize("name", SHARED)
def test_shared_code_never_asks_which_family_it_holds(name):
    """No task name, no probing of a family's result keys, no hasattr on a model."""
    path = SRC / "seqlab" / name
    text = path.read_text(encoding="utf-8")
    assert "hasattr(model" not in text
    constants = {n.value for n in ast.walk(ast.parse(text))
                 if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert constants & set(registry.FAMILIES) == set()
    assert constants & FAMILY_METRICS == set()


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_modules_stay_under_400_lines(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 400

