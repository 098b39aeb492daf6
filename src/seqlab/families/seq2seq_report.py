"""The seq2seq family's sections of a run's report: translations with their attention maps,
and exact match against source length, on the run's validation pairs (greedy decoding)."""

from __future__ import annotations

from collections import defaultdict

from seqlab.checkpoint import RunDir
from seqlab.families.base import LoadedRun, no_model
from seqlab.sections import svg
from seqlab.sections.blocks import Figure, Group, Note, Section, Table, number
from seqlab.seq2seq_eval import Translation, token_label, translate_texts

SHOWN, SCORED = 4, 300  # translations shown with their attention; pairs scored by length
ROWS = 30  # output tokens an attention map shows at most


def sections(family, run: RunDir, loaded: LoadedRun | None, live: bool = False
             ) -> list[Section]:
    section = Section("Translations", anchor="translations")
    if loaded is None:
        section.missing.append(no_model(run, "translations"))
        return [section]
    pairs = family.prepare(family.source_of(loaded.config), loaded.configs,
                           loaded.vocab).data.val[:SCORED]
    longest = int(loaded.config["data"].get("max_target_chars", 0))
    outputs = translate_texts(loaded.model, loaded.vocab, [s for s, _ in pairs],
                              max_target=longest)
    section.blocks.append(Note(f"The first {min(SHOWN, len(pairs))} of {len(pairs)} validation "
                               "pairs, decoded greedily with the best weights."))
    section.blocks.append(Table(["source", "reference", "output", "exact"],
                                [[o.source, t, o.text, number(o.text == t)]
                                 for o, (_, t) in zip(outputs[:SHOWN], pairs, strict=False)]))
    maps = [Figure(attention_map(o), f"attention: {o.source}") for o in outputs[:SHOWN]
            if o.weights is not None]
    if maps:
        section.blocks.append(Group("attention maps (source along x, output along y)", maps,
                                    columns=True))
    if loaded.configs.own.attention == "none":
        section.missing.append("no attention maps: the run was trained with --attention none")
    section.blocks += by_length(outputs, [t for _, t in pairs])
    return [section]


def attention_map(output: Translation) -> str:
    """The weights of the first :data:`ROWS` output tokens over the source tokens."""
    rows = output.output_tokens[:ROWS]
    return svg.heatmap(output.weights.numpy()[:ROWS],
                       [token_label(t) for t in output.source_tokens],
                       [token_label(t) for t in rows],
                       "attention weights", "source", "output", vmin=0, vmax=1, cell=0.24)


def by_length(outputs: list[Translation], references: list[str]) -> list:
    """Exact match per source length (characters): a curve and its table."""
    hits: dict[int, list[bool]] = defaultdict(list)
    for output, reference in zip(outputs, references, strict=True):
        hits[len(output.source)].append(output.text == reference)
    lengths = sorted(hits)
    rates = [100 * sum(hits[n]) / len(hits[n]) for n in lengths]
    figure = svg.curves({"exact match": (lengths, rates)}, "exact match against source length "
                        f"({len(outputs)} validation pairs)", "source length (characters)",
                        "exact match (%)", markers={"exact match": "exact-by-length"})
    return [Figure(figure, "greedy exact match by source length"),
            Table(["source length", "pairs", "exact match"],
                  [[n, len(hits[n]), f"{r:.1f}%"] for n, r in zip(lengths, rates, strict=True)])]
