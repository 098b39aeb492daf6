"""The Python API: the same operations as the command line, returning objects instead of text.

    import seqlab
    result = seqlab.train("oneills", model="lstm", hidden_size=128, max_steps=200, out="runs/x")
    print(seqlab.generate(result.model, result.vocab, prompt="X:", length=200)[0])
    print(seqlab.evaluate("runs/x", "my_tunes.abc"))

Every operation is the one runner's (:mod:`seqlab.families.runner`), whatever the task family.
"""

from __future__ import annotations

from seqlab.families.base import LoadedRun, Report
from seqlab.families.runner import TrainResult, evaluate, info, load_run, resume, train
from seqlab.families.text import TextData, load_data

__all__ = ["LoadedRun", "Report", "TextData", "TrainResult", "evaluate", "info", "load_data",
           "load_run", "resume", "train"]
