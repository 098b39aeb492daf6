"""What the classify family trains on: labelled examples as tensors, batches, the task.

Text becomes token ids (the run's vocabulary), series become standardised float channels (the
training split's statistics). A batch is B whole examples padded to the longest and masked by
their lengths; which examples is a pure function of (seed, step): each epoch is one
permutation of the training examples drawn from the seed, so a resumed run sees the batches a
run that never stopped would have seen.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from seqlab.class_metrics import confusion, scores
from seqlab.data.labelled import Examples, Standardizer
from seqlab.data.vocab import Vocab
from seqlab.diagnostics import Probe
from seqlab.distributed import SINGLE, World

log = logging.getLogger(__name__)
UNKNOWN = -1  # the label id of a label the run never saw


@dataclass
class ClassifyAssets:
    """What a classify run keeps beside its weights (classes.json, and the vocabulary)."""

    kind: str  # "text" or "series"
    classes: list[str]
    counts: list[int]  # training examples per class
    features: list[str] = field(default_factory=list)  # series: channel names
    max_length: int = 1  # the longest training example, in steps
    vocab: Vocab | None = None  # text
    scaler: Standardizer | None = None  # series
    deltas: bool = False  # series: each channel's change since the step before follows them

    @property
    def input_size(self) -> int:
        if self.vocab is not None:
            return self.vocab.size
        return len(self.features) * (2 if self.deltas else 1)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "classes": self.classes, "counts": self.counts,
                "features": self.features, "max_length": self.max_length,
                "scaler": self.scaler.to_dict() if self.scaler is not None else None,
                "deltas": self.deltas}

    @classmethod
    def from_json(cls, data: dict[str, Any], vocab: Vocab | None) -> ClassifyAssets:
        scaler = Standardizer.from_dict(data["scaler"]) if data.get("scaler") else None
        return cls(data["kind"], list(data["classes"]), list(data["counts"]),
                   list(data["features"]), int(data["max_length"]), vocab, scaler,
                   bool(data.get("deltas", False)))

    def class_weights(self) -> Tensor:
        """n / (K n_c) per class: every class weighs as much in the loss as any other."""
        counts = torch.tensor(self.counts, dtype=torch.float32)
        return counts.sum() / (len(counts) * counts.clamp(min=1))


@dataclass
class Encoded:
    """Examples as tensors: (T_i,) ids or (T_i, C) channels, a label id each (UNKNOWN: a
    label the run never saw, or none given)."""

    items: list[Tensor]
    labels: Tensor  # (N,) int64
    names: list[str]

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, index: np.ndarray) -> Encoded:
        return Encoded([self.items[i] for i in index], self.labels[torch.as_tensor(index)],
                       [self.names[i] for i in index])


def encode(examples: Examples, assets: ClassifyAssets, max_tokens: int = 0) -> Encoded:
    """Token ids or standardised channels of every example (text: the first ``max_tokens``
    tokens when > 0; characters the vocabulary lacks are dropped, with a warning)."""
    if examples.kind != assets.kind:
        raise ValueError(f"{examples.source} holds {examples.kind}, but the run was trained on "
                         f"{assets.kind}")
    if examples.kind == "text":
        items = [torch.from_numpy(ids[:max_tokens] if max_tokens else ids).long()
                 for ids in encode_texts(examples, assets.vocab)]
    else:
        values = channels_in_order(examples, assets)
        items = [torch.from_numpy(x)
                 for x in assets.scaler.apply(with_deltas(values) if assets.deltas else values)]
    index = {name: k for k, name in enumerate(assets.classes)}
    labels = [index.get(label, UNKNOWN) for label in (examples.labels or [None] * len(items))]
    return Encoded(items, torch.tensor(labels, dtype=torch.long), list(examples.names))


def encode_texts(examples: Examples, vocab: Vocab) -> list[np.ndarray]:
    """Token ids of every text; a character vocabulary (which has no unknown token) drops the
    characters it lacks, with a warning."""
    if vocab.kind != "char":
        return [vocab.encode(text) for text in examples.items]
    unknown = sorted({c for text in examples.items for c in vocab.unknown(text)})
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:10])
        log.warning("%s: dropped %d character(s) the run's vocabulary lacks (%s)",
                    examples.source, len(unknown), shown)
        drop = str.maketrans("", "", "".join(unknown))
        return [vocab.encode(text.translate(drop)) for text in examples.items]
    return [vocab.encode(text) for text in examples.items]


def channels_in_order(examples: Examples, assets: ClassifyAssets) -> list[np.ndarray]:
    """Each series' (T, C) values with its channels in the run's order: named channels (a
    CSV's columns) are matched by name, in any order; unnamed ones (a .ts file's dim_0,
    dim_1, ...) by position."""
    found, trained = list(examples.features), list(assets.features)
    if len(found) != len(trained):
        named = not (_unnamed(found) or _unnamed(trained))
        missing = [name for name in trained if name not in found] if named else []
        extra = [name for name in found if name not in trained] if named else []
        which = "".join(f"; {what}: {', '.join(names)}" for what, names in
                        (("missing", missing), ("not trained on", extra)) if names)
        raise ValueError(f"{examples.source}: {len(found)} channel(s) per step, but the run was "
                         f"trained on {len(trained)} ({', '.join(trained)}){which}")
    if found == trained or _unnamed(found) or _unnamed(trained):
        return examples.items
    if sorted(found) != sorted(trained):
        raise ValueError(f"{examples.source}: channels {', '.join(found)}, but the run was "
                         f"trained on {', '.join(trained)}; name the columns as in training")
    order = [found.index(name) for name in trained]
    return [values[:, order] for values in examples.items]


def with_deltas(series: list[np.ndarray]) -> list[np.ndarray]:
    """Each (T, C) series as (T, 2C): its channels, then each channel's change since the step
    before (0 at the first step), so that a model reads a slope without computing it."""
    return [np.concatenate([x, np.diff(x, axis=0, prepend=x[:1])], axis=1) for x in series]


def _unnamed(features: list[str]) -> bool:
    return all(re.fullmatch(r"dim_\d+", name) for name in features)


def pad(items: list[Tensor]) -> tuple[Tensor, Tensor]:
    """(B, T) or (B, T, C) padded with zeros, and (B,) lengths."""
    lengths = torch.tensor([len(x) for x in items], dtype=torch.long)
    return pad_sequence(items, batch_first=True), lengths


def empty_examples(encoded: Encoded) -> None:
    for item, name in zip(encoded.items, encoded.names, strict=True):
        if len(item) == 0:
            raise ValueError(f"{name}: nothing left to classify once encoded: an empty text, "
                             "or one made only of characters the run's vocabulary lacks")


def warn_longer(encoded: Encoded, longest: int) -> None:
    """Warn of sequences longer than any the run learnt from (``longest`` steps): they are
    classified, but past every length the model has seen."""
    longer = [len(item) for item in encoded.items if len(item) > longest]
    if longer:
        log.warning("%d of %d sequences are longer than any the run was trained on (%d steps), "
                    "up to %d; classifying them anyway", len(longer), len(encoded), longest,
                    max(longer))


class ClassifyTask:
    """Whole labelled examples, B per step; validation: loss, accuracy and macro-F1."""

    def __init__(self, train: Encoded, val: Encoded, assets: ClassifyAssets, configs,
                 device) -> None:
        self.train_set, self.val_set, self.assets, self.device = train, val, assets, device
        self.batch_size, self.seed = configs.train.batch_size, configs.train.seed
        own = configs.own
        # what the model reads: the first --window steps only, with --window-at first
        self.window = configs.model.window if own.window_at == "first" else None
        self.noise = own.input_noise if assets.kind == "series" else 0.0
        weights = assets.class_weights().to(device) if own.class_weights else None
        # summed, then averaged over the batch's examples (not over their class weights, as
        # torch's mean would): a mean over items, which many processes add up exactly
        self.criterion = nn.CrossEntropyLoss(weight=weights, reduction="sum",
                                             label_smoothing=own.label_smoothing)

    def train_batch(self, step: int) -> tuple[Tensor, Tensor, Tensor]:
        n = len(self.train_set)
        per_epoch = max(1, -(-n // self.batch_size))
        epoch, position = divmod(step, per_epoch)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(
            self.seed * 1_000_003 + epoch))
        index = order[position * self.batch_size:(position + 1) * self.batch_size]
        inputs, lengths = pad([self.train_set.items[i] for i in index])
        if self.noise > 0:  # drawn from (seed, step) too: a resumed run adds the same noise
            noise = torch.randn(inputs.shape, generator=torch.Generator().manual_seed(
                self.seed * 1_000_003 + step + 7_919))
            inputs = inputs + self.noise * noise  # padding is never read
        return inputs, lengths, self.train_set.labels[index]

    def loss(self, model: nn.Module, batch, state) -> tuple[Tensor, None, int]:
        inputs, lengths, labels = batch
        logits = model(inputs.to(self.device), lengths.to(self.device))  # (B, K)
        loss = self.criterion(logits.float(), labels.to(self.device)) / len(labels)
        return loss, None, len(labels)

    def evaluate(self, model: nn.Module, world: World = SINGLE) -> dict[str, float]:
        """Loss, accuracy and macro-F1 of the validation examples; with many processes each
        scores its block of them and the probabilities are gathered in order."""
        mine = np.arange(len(self.val_set))[world.block(len(self.val_set))]
        parts = world.gather(probabilities(model, self.val_set.subset(mine), self.batch_size,
                                           self.device))
        result = labelled_scores(np.concatenate(parts), self.val_set.labels.numpy(),
                                 self.assets)
        return {"val_loss": result["loss"], "val_accuracy": result["accuracy"],
                "val_macro_f1": result["macro_f1"]}

    def probe(self, batch: int) -> Probe:
        """The first ``batch`` validation examples, scored at their last step (the class
        logits the classifier's trace puts there)."""
        chosen = self.val_set.subset(np.arange(min(batch, len(self.val_set))))
        inputs, lengths = pad([x[:self.window] for x in chosen.items])
        full = bool((lengths == lengths.max()).all())
        return Probe(inputs.to(self.device), chosen.labels.to(self.device), "ce", "last",
                     None if full else lengths.to(self.device))


@torch.no_grad()
def probabilities(model: nn.Module, encoded: Encoded, batch_size: int, device) -> np.ndarray:
    """(N, K) class probabilities, in batches of similar lengths (less padding)."""
    was = model.training
    model.eval()
    order = np.argsort([len(x) for x in encoded.items], kind="stable")
    out = [None] * len(order)
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        inputs, lengths = pad([encoded.items[i] for i in index])
        probs = torch.softmax(model(inputs.to(device), lengths.to(device)).float(), -1)
        for row, i in enumerate(index):
            out[i] = probs[row].cpu().numpy()
    model.train(was)
    return np.stack(out) if out else np.zeros((0, model.num_classes), dtype=np.float32)


def labelled_scores(probs: np.ndarray, labels: np.ndarray, assets: ClassifyAssets
                    ) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class figures and the confusion matrix of class probabilities
    (N, K) against label ids (N,), their mean negative log-likelihood (``loss``, nats) and the
    rate of the training split's majority class."""
    result = scores(confusion(labels, probs.argmax(1), len(assets.classes)), assets.classes)
    nll = -np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-12)).mean() \
        if len(labels) else float("nan")
    majority = int(np.argmax(assets.counts))
    return {**result, "loss": float(nll), "majority_rate": float((labels == majority).mean())}
