"""The classify family: ``seqlab train gunpoint --task classify --model lstm``.

Many-to-one: a whole sequence in, one label out. Sources (:mod:`seqlab.data.labelled`): a TSV
file of ``label<TAB>text`` lines or a folder with a subfolder per label (text, tokenised as the
language models are); an sktime ``.ts`` file or a long CSV (numeric series, padded and masked,
standardised with the training split's statistics); ABC tunes labelled by their ``R:`` field;
the bundled sets ``tune-types``, ``japanese-vowels``, ``gunpoint`` and ``italy-power``. The
validation split is drawn from the training data (seeded, stratified); a bundled set's official
test split is read by ``evaluate`` only.

The model (:class:`seqlab.models.classifier.Classifier`) is any encoder of the registry (a
recurrent cell, optionally bidirectional; the lecture's window-mlp and bow baselines) pooled
over valid steps (last state, mean, or attention with a learned query), then a linear head;
``--conv-filters`` adds LSTM-FCN's convolutional branch beside the encoder. A
run directory holds ``classes.json`` (classes, their training counts, the series' channels,
whether their deltas follow them, and scaling) and, for text, the vocabulary.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqlab import limits, plots
from seqlab.checkpoint import RunDir
from seqlab.config import opt, validate
from seqlab.data.labelled import FILLS, Examples, Standardizer, is_bundled, read_examples
from seqlab.data.labelled import stratified_split as split
from seqlab.data.vocab import build_vocab
from seqlab.diagnostics import Probe
from seqlab.export import Graph, classifier_graph, real_inputs, token_inputs
from seqlab.families import classify_report
from seqlab.families.base import Configs, Family, Headline, LoadedRun, Prepared, Report
from seqlab.families.classify_data import (
    UNKNOWN,
    ClassifyAssets,
    ClassifyTask,
    Encoded,
    empty_examples,
    encode,
    labelled_scores,
    probabilities,
    warn_longer,
    with_deltas,
)
from seqlab.io import atomic_write_json
from seqlab.models.classifier import POOLINGS, WINDOW_AT, Classifier

ASSETS = "classes.json"
KERNELS = "8,5,3"  # LSTM-FCN's three blocks


@dataclass(frozen=True, kw_only=True)
class ClassifyConfig:
    """Keys of the classify family."""

    pooling: str = opt("last", "classify: how a sequence's states become one vector: the "
                       "last state, the mean over valid steps, or attention (a learned query "
                       "over every state)", choices=POOLINGS)
    bidirectional: bool = opt(False, "classify, seq2seq: also read each sequence backwards "
                              "(classify: H units each way; seq2seq: H/2)")
    window_at: str = opt("last", "classify: read the whole sequence (last), or only its first "
                         "--window steps (first: the fixed window over the start)",
                         choices=WINDOW_AT)
    class_weights: bool = opt(False, "classify: weigh each class's examples by n / (K n_c), "
                              "so rare classes count as much as common ones (the loss: the "
                              "batch's weighted sum over its number of examples)")
    label_smoothing: float = opt(0.0, "classify: label smoothing of the training loss",
                                 minimum=0.0, below=1.0)
    fill: str = opt("none", "classify: missing values in series: none (an error), forward, "
                    "linear or zero", choices=FILLS)
    max_tokens: int = opt(0, "classify, text: keep each text's first N tokens (0: all)",
                          minimum=0)
    input_noise: float = opt(0.0, "classify, series: add Gaussian noise of this standard "
                             "deviation to the standardised inputs of every training batch, "
                             "--deltas channels included, each drawn on its own (a regulariser "
                             "for small sets; 0: none)", minimum=0.0)
    deltas: bool = opt(False, "classify, series: also give the model each channel's change "
                       "since the step before (0 at a series' first step), as C more channels "
                       "standardised like the rest: speech's delta features")
    conv_filters: str = opt("", "classify: add LSTM-FCN's fully convolutional branch beside the "
                            "encoder, the filters of each Conv1d block, comma-separated (e.g. "
                            "128,256,128; empty: none); its outputs, averaged over the valid "
                            "steps, join the pooled states before the head")
    conv_kernels: str = opt(KERNELS, "classify: the kernel size of each block of "
                            "--conv-filters, comma-separated (as many as filters)")
    conv_se: bool = opt(False, "classify: squeeze-and-excitation after every convolutional "
                        "block but the last (MLSTM-FCN); needs --conv-filters")

    def __post_init__(self) -> None:
        validate(self)
        filters, kernels = self.conv()
        if filters and len(filters) != len(kernels):
            default = " (the default, for three blocks)" if self.conv_kernels == KERNELS else ""
            raise ValueError(f"conv_kernels needs one kernel size per block of conv_filters "
                             f"({len(filters)}), got {self.conv_kernels!r}{default}")
        if self.conv_se and not filters:
            raise ValueError("conv_se needs a convolutional branch: set conv_filters")

    def conv(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(filters, kernels) of the convolutional branch; ((), ()) without one."""
        if not self.conv_filters.strip():
            return (), ()
        return (_sizes("conv_filters", self.conv_filters),
                _sizes("conv_kernels", self.conv_kernels))


def _sizes(name: str, text: str) -> tuple[int, ...]:
    """'128,256,128' -> (128, 256, 128); ValueError naming the key otherwise."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) <= 0 or max(sizes) > 65536:
        raise ValueError(f"{name} must be positive integers up to 65536, comma-separated, got "
                         f"{text!r}")
    return sizes


class ClassifyFamily(Family):
    name = "classify"
    help = "a classifier: one label per sequence (TSV or folder of text, .ts or CSV series, tunes)"
    config_class = ClassifyConfig
    report_sections = classify_report.sections  # confusion, per class, pooling
    ignores = frozenset({"seq_len", "batching", "tie_weights", "eval_batches"})
    evaluate_options = frozenset({"out"})
    size_keys = (*Family.size_keys, "max_tokens")
    items = "seq"

    def claims(self, source: str) -> bool:
        return is_bundled(source) or source.lower().endswith(".ts")

    # data ----------------------------------------------------------------------------------
    def prepare(self, source: str, configs: Configs, assets: Any = None) -> Prepared:
        examples, _ = read_examples(source, fill=configs.own.fill)
        train_index, val_index = split(examples.labels, configs.train.val_fraction,
                                       configs.train.seed, source=examples.source)
        fresh = assets is None
        if fresh:
            assets = new_assets(examples, train_index, configs)
        elif sorted(set(examples.labels)) != assets.classes:
            raise ValueError(f"{source} holds the classes {sorted(set(examples.labels))}, but "
                             f"the run was trained on {assets.classes}")
        encoded = encode(examples, assets, configs.own.max_tokens)
        empty_examples(encoded)
        if fresh:  # in steps as the model reads them: tokens of a text, not its characters
            assets.max_length = max(len(item) for item in encoded.items)
        data = (encoded.subset(train_index), encoded.subset(val_index))
        description = {"source": str(source), "kind": examples.kind,
                       "classes": len(assets.classes), "train_examples": len(train_index),
                       "val_examples": len(val_index), "note": examples.note}
        return Prepared(str(source), assets, data, description)

    def complete(self, configs: Configs, assets: ClassifyAssets) -> Configs:
        if assets.vocab is not None:  # text: the vocabulary decides the embedding's rows
            configs = dataclasses.replace(configs, model=dataclasses.replace(
                configs.model, vocab_size=assets.vocab.size))
        return super().complete(configs, assets)

    def shape(self, configs: Configs, assets: ClassifyAssets | None = None) -> limits.Shape:
        """Batches of the longest training example (both directions when bidirectional)."""
        model, own = configs.model, configs.own
        if assets is None:
            return limits.Shape(model, 1, 0, 2, 1, configs.train.batch_size)
        text = assets.vocab is not None
        steps = min(assets.max_length, own.max_tokens or assets.max_length)
        return limits.Shape(model, model.embedding_size if text else assets.input_size,
                            assets.input_size if text else 0, len(assets.classes), steps,
                            configs.train.batch_size, stacks=2 if own.bidirectional else 1)

    # model and task ------------------------------------------------------------------------
    def build(self, configs: Configs, assets: ClassifyAssets) -> Classifier:
        own = configs.own
        filters, kernels = own.conv()
        return Classifier(configs.model, "tokens" if assets.vocab is not None else "real",
                          assets.input_size, len(assets.classes), pooling=own.pooling,
                          bidirectional=own.bidirectional, window_at=own.window_at,
                          conv_filters=filters, conv_kernels=kernels,
                          conv_se=own.conv_se)

    def task(self, prepared: Prepared, configs: Configs, device) -> ClassifyTask:
        train, val = prepared.data
        return ClassifyTask(train, val, prepared.assets, configs, device)

    def unused_keys(self, source: str, configs: Configs, prepared: Prepared) -> dict[str, str]:
        if prepared.assets.kind == "text":
            return {**super().unused_keys(source, configs, prepared),
                    **dict.fromkeys(("input_noise", "fill", "deltas"),
                                    "applies to numeric series only")}
        return dict.fromkeys(("tokenizer", "bpe_vocab_size", "embedding_size", "max_tokens"),
                             "applies to texts only, and these are numeric series")

    def save_assets(self, run: RunDir, assets: ClassifyAssets) -> None:
        if assets.vocab is not None:
            assets.vocab.save(run.path)
        atomic_write_json(run.path / ASSETS, assets.to_json())

    def load_assets(self, run: RunDir, configs: Configs, config: dict[str, Any]
                    ) -> ClassifyAssets:
        path = run.path / ASSETS
        if not path.is_file():
            raise ValueError(f"{run.path}: not a complete run (no {ASSETS})")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            assets = ClassifyAssets.from_json(data, None)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"{path}: not a valid classes file ({err})") from err
        if assets.kind == "text":
            assets.vocab = run.vocab()
        elif (assets.scaler is None or not isinstance(data.get("deltas", False), bool)
              or len(assets.scaler.mean) != assets.input_size):
            raise ValueError(f"{path}: not a valid classes file (a scaler of one mean per "
                             f"channel, {assets.input_size} with deltas "
                             f"{data.get('deltas', False)!r}, is needed)")
        return assets

    # using a run ---------------------------------------------------------------------------
    def evaluate(self, loaded: LoadedRun, source: str, out: str | None = None,
                 **options) -> Report:
        """Accuracy, macro-F1, per-class figures and the confusion matrix on ``source``'s
        official test split (a bundled set) or every example (a file); writes
        evaluation.json and confusion.png into ``out`` (default RUN/evaluation)."""
        probs, labels, split = self.scored_probabilities(loaded, source)
        assets: ClassifyAssets = loaded.vocab
        result = {"run": str(loaded.run.path), "data": str(source), "split": split,
                  **labelled_scores(probs, labels, assets)}
        folder = Path(out) if out else loaded.run.path / "evaluation"
        figure = plots.confusion(folder / "confusion.png", result["confusion"], assets.classes,
                                 f"{loaded.run.path.name} on {Path(str(source)).name}: "
                                 f"accuracy {result['accuracy']:.3f}")
        result["files"] = [str(folder / "evaluation.json"), str(figure)]
        atomic_write_json(folder / "evaluation.json", result)
        return Report(result, summarize(result))

    def scored_probabilities(self, loaded: LoadedRun, source: str
                             ) -> tuple[np.ndarray, np.ndarray, str]:
        """(class probabilities (N, K), label ids (N,), "test" or "all") of what ``evaluate``
        scores: ``source``'s official test split (a bundled set) or every example."""
        examples, test = self.examples(loaded, source)
        data = test if test is not None else examples
        encoded = self.encoded(loaded, data)
        if data.labels is None or (encoded.labels == UNKNOWN).any():
            raise ValueError(unknown_label(data, encoded, loaded))
        probs = probabilities(loaded.model, encoded, loaded.configs.train.batch_size,
                              next(loaded.model.parameters()).device)
        return probs, encoded.labels.numpy(), "test" if test is not None else "all"

    def examples(self, loaded: LoadedRun, source: str, labels: bool = True
                 ) -> tuple[Examples, Examples | None]:
        trained = loaded.config["data"]["source"]
        if is_bundled(source) and is_bundled(trained) and source != trained:
            raise ValueError(f"{loaded.run.path} was trained on {trained!r}; its classes mean "
                             f"nothing on {source!r}")
        return read_examples(source, fill=loaded.configs.own.fill, labels=labels)

    def encoded(self, loaded: LoadedRun, data: Examples) -> Encoded:
        encoded = encode(data, loaded.vocab, loaded.configs.own.max_tokens)
        empty_examples(encoded)
        warn_longer(encoded, loaded.vocab.max_length)
        return encoded

    def exporter(self, loaded: LoadedRun) -> list[Graph]:
        """The classifier: ids (B, T) or channels (B, T, C) and lengths (B,) -> class logits
        and probabilities (B, K)."""
        model, tokens = loaded.model, loaded.vocab.vocab is not None
        inputs = (token_inputs if tokens else real_inputs)(model.input_size)
        changes = " followed by their changes since the step before" \
            if loaded.vocab.deltas else ""
        given = ("ids of the run's vocabulary (vocab.json)" if tokens else
                 f"channels{changes}, standardised by the scaler of the run's {ASSETS}")
        return [classifier_graph(model, "ids" if tokens else "channels", inputs, {
            "family": self.name, "classes": json.dumps(loaded.vocab.classes),
            "inputs": given})]

    def predictor(self, loaded: LoadedRun) -> Predictor:
        return Predictor(self, loaded)

    def figures(self, loaded: LoadedRun, probe: Probe, out: Path) -> list[Path]:
        """Attention pooling's weight on every step of the probe's first sequences."""
        model: Classifier = loaded.model
        if loaded.configs.own.pooling != "attention":
            return []
        with torch.no_grad():
            weights = model.attention_weights(probe.inputs, probe.lengths).cpu().numpy()
        lengths = (probe.lengths.tolist() if probe.lengths is not None
                   else [probe.inputs.shape[1]] * len(weights))
        classes = loaded.vocab.classes
        rows = [weights[k, :lengths[k]] for k in range(min(8, len(weights)))]
        labels = [f"{k}: {classes[int(probe.targets[k])]}" for k in range(len(rows))]
        return [plots.weights_over_time(out / "attention_pooling.png", rows, labels,
                                        f"{loaded.config['model']['model']}: attention "
                                        "pooling weights (validation sequences)")]

    # how its numbers read ------------------------------------------------------------------
    def info_lines(self, info: dict[str, Any]) -> list[str]:
        data, own = info["config"]["data"], info["config"]["classify"]
        pooled = {"last": "the last state", "mean": "mean pooling",
                  "attention": "attention pooling"}
        parts = [pooled.get(own.get("pooling"), str(own.get("pooling"))),
                 "bidirectional" if own.get("bidirectional") else "",
                 f"first {info['config']['model']['window']} steps"
                 if own.get("window_at") == "first" else "",
                 f"conv branch {own['conv_filters']} (kernels {own['conv_kernels']}"
                 f"{', squeeze-excitation' if own.get('conv_se') else ''})"
                 if own.get("conv_filters") else "",
                 "deltas" if own.get("deltas") else "",
                 f"input noise {own['input_noise']}" if own.get("input_noise") else "",
                 "class weights" if own.get("class_weights") else "",
                 f"label smoothing {own['label_smoothing']}" if own.get("label_smoothing")
                 else ""]
        return [f"data         {data['source']}: {data['kind']}, {data['classes']} classes, "
                f"{data['train_examples']:,} train / {data['val_examples']:,} validation",
                "classifier   " + ", ".join(filter(None, parts)), *super().info_lines(info)]

    def eval_note(self, record: dict[str, Any]) -> str:
        return f"val_acc {record['val_accuracy']:.3f}"

    def loss_unit(self, loss: float, assets: Any) -> str:
        return "nats per example"

    def headline(self, record: dict[str, Any]) -> Headline:
        return Headline(accuracy=record.get("val_accuracy"))


def new_assets(examples: Examples, train_index: np.ndarray, configs: Configs
               ) -> ClassifyAssets:
    """Classes, the vocabulary (text) or the scaling (series) of the training examples (the
    longest example's steps are set once they are encoded)."""
    classes = sorted(set(examples.labels))
    train_labels = [examples.labels[i] for i in train_index]
    counts = [train_labels.count(c) for c in classes]
    if examples.kind == "text":
        text = "\n".join(examples.items)
        vocab = build_vocab(text, configs.train.tokenizer, configs.train.bpe_vocab_size)
        return ClassifyAssets("text", classes, counts, [], vocab=vocab)
    deltas = configs.own.deltas
    train = [examples.items[i] for i in train_index]
    scaler = Standardizer.fit(with_deltas(train) if deltas else train)
    return ClassifyAssets("series", classes, counts, list(examples.features), scaler=scaler,
                          deltas=deltas)


def unknown_label(data: Examples, encoded: Encoded, loaded: LoadedRun) -> str:
    if data.labels is None:
        return f"{data.source} has no labels to evaluate against; seqlab predict labels it"
    k = int(np.flatnonzero(encoded.labels.numpy() == UNKNOWN)[0])
    return (f"{encoded.names[k]}: label {data.labels[k]!r} is not one of the classes "
            f"{loaded.run.path} was trained on ({', '.join(loaded.vocab.classes)})")


def summarize(result: dict[str, Any]) -> str:
    """The line ``seqlab evaluate`` prints for a classifier."""
    split = "the official test split" if result["split"] == "test" else "every example"
    return (f"accuracy {100 * result['accuracy']:.2f}%  macro-F1 {result['macro_f1']:.4f}  "
            f"majority class {100 * result['majority_rate']:.1f}%  ({result['examples']:,} "
            f"examples, {split}); confusion matrix: {result['files'][1]}")


@dataclass
class Predictor:
    """What ``seqlab predict`` drives: a label and the class probabilities per sequence."""

    family: ClassifyFamily
    loaded: LoadedRun

    @property
    def classes(self) -> list[str]:
        return list(self.loaded.vocab.classes)

    def predict(self, source: str) -> list[dict[str, Any]]:
        """One record per sequence of ``source`` (a bundled set: its test split): its name,
        the predicted label, every class's probability and the label it came with, if any."""
        examples, test = self.family.examples(self.loaded, source, labels=False)
        data = test if test is not None else examples
        encoded = self.family.encoded(self.loaded, data)
        probs = probabilities(self.loaded.model, encoded, self.loaded.configs.train.batch_size,
                              next(self.loaded.model.parameters()).device)
        given = data.labels or [None] * len(encoded)
        return [{"name": name, "label": self.classes[int(p.argmax())],
                 "probabilities": dict(zip(self.classes, map(float, p), strict=True)),
                 "given": label}
                for name, p, label in zip(encoded.names, probs, given, strict=True)]


CLASSIFY = ClassifyFamily()
