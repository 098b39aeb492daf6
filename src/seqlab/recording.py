"""Recording the gradient through time while a model trains: ``--record-every N``.

Every N steps (and at step 0, the initialisation) the trainer's ``before_step`` hook measures
the norm of dL/dh_t for every t on one fixed probe batch, for the loss at the last step and
for the loss summed over steps (:func:`seqlab.diagnostics.gradients_through_time`), and
appends a line to ``RUN/gradients.jsonl``. ``seqlab diagnose RUN`` draws it as a heatmap
(training step x time step). The same hook serves every family with a recurrent model: the
probe is the task's own (a synthetic task's first sequences, or evenly spaced windows of a
language model's validation split).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from seqlab.checkpoint import RunDir
from seqlab.diagnostics import Probe, gradients_through_time, recurrent_of
from seqlab.io import read_jsonl, truncate_jsonl

log = logging.getLogger(__name__)

GRADIENTS = "gradients.jsonl"
PROBE = 16  # sequences (or windows) in the probe batch


def recorder(model: nn.Module, probe: Probe, every: int, run: RunDir
             ) -> Callable[[int], None] | None:
    """A ``before_step`` hook appending dL/dh_t norms on ``probe`` at step 0, N, 2N, ...

    None (with a warning) for a model without a recurrent state: nothing to record.
    """
    try:
        recurrent_of(model)
    except ValueError as err:
        log.warning("record_every: %s; nothing is recorded", err)
        return None

    def record(step: int) -> None:
        if step % every:
            return
        norms = {r: g.tolist() for r, g in gradients_through_time(model, probe).items()}
        run.ready()
        with open(run.path / GRADIENTS, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, **norms}) + "\n")

    return record


def read_gradients(run_dir: str | Path) -> list[dict[str, Any]]:
    return read_jsonl(Path(run_dir) / GRADIENTS)


def truncate_gradients(run: RunDir, step: int) -> None:
    """Keep the records taken before ``step`` (resuming from a checkpoint taken there)."""
    if (run.path / GRADIENTS).exists():
        truncate_jsonl(run.path / GRADIENTS, lambda r: r["step"] < step)
