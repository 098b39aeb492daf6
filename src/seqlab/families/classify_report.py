"""The classify family's section of a run's report: the confusion matrix of the validation
split, the per-class table and, for attention pooling, the weights over time."""

from __future__ import annotations

import numpy as np
import torch

from seqlab.checkpoint import RunDir
from seqlab.families.base import LoadedRun, no_model
from seqlab.families.classify_data import labelled_scores, pad, probabilities
from seqlab.sections import svg
from seqlab.sections.blocks import Figure, Note, Section, Table, number

POOLED = 8  # validation sequences whose attention pooling weights are drawn


def sections(family, run: RunDir, loaded: LoadedRun | None, live: bool = False
             ) -> list[Section]:
    section = Section("Classes", anchor="classes")
    if loaded is None:
        section.missing.append(no_model(run, "confusion matrix"))
        return [section]
    prepared = family.prepare(family.source_of(loaded.config), loaded.configs, loaded.vocab)
    val = prepared.data[1]
    classes = list(loaded.vocab.classes)
    probs = probabilities(loaded.model, val, loaded.configs.train.batch_size,
                          next(loaded.model.parameters()).device)
    result = labelled_scores(probs, val.labels.numpy(), loaded.vocab)
    section.blocks.append(Note(f"Validation split ({result['examples']:,} examples), best "
                               f"weights: accuracy {100 * result['accuracy']:.1f}%, macro-F1 "
                               f"{result['macro_f1']:.3f}."))
    section.blocks.append(Figure(svg.heatmap(result["confusion"], classes, classes,
                                             "confusion matrix (validation)", "predicted",
                                             "true", annotate=True),
                                 "rows: true class; columns: predicted"))
    section.blocks.append(Table(["class", "precision", "recall", "F1", "support"],
                                [[name, number(c["precision"], 3), number(c["recall"], 3),
                                  number(c["f1"], 3), c["support"]]
                                 for name, c in result["per_class"].items()]))
    if loaded.configs.own.pooling == "attention":
        section.blocks.append(pooling_figure(loaded, val, classes))
    return [section]


@torch.no_grad()
def pooling_figure(loaded: LoadedRun, val, classes: list[str]) -> Figure:
    """Attention pooling's weight on every step of the first validation sequences."""
    count = min(POOLED, len(val))
    inputs, lengths = pad([val.items[k] for k in range(count)])
    device = next(loaded.model.parameters()).device
    weights = loaded.model.attention_weights(inputs.to(device), lengths.to(device)).cpu()
    rows = weights.numpy()
    steps = [str(t) if t % 5 == 0 else "" for t in range(rows.shape[1])]
    labels = [f"{k}: {classes[int(val.labels[k])]}" for k in range(count)]
    masked = np.where(np.arange(rows.shape[1])[None] < lengths.numpy()[:, None], rows, np.nan)
    return Figure(svg.heatmap(masked, steps, labels, "attention pooling weights", "time step",
                              "validation sequence", vmin=0, colorbar="weight"),
                  "each row sums to 1 over its sequence's steps (blank past its end)")
