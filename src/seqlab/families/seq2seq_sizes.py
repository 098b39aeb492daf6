"""What an encoder-decoder run allocates, estimated before it allocates (:mod:`seqlab.limits`):
the model and a batch of pairs, a built-in task's generated pairs, and the work of a beam."""

from __future__ import annotations

from typing import Any, ClassVar

from seqlab import limits
from seqlab.data.pairs import TASKS, is_task_name, parse_length
from seqlab.families.sizing import SIZE_KEYS
from seqlab.seq2seq_eval import check_beam

# hypotheses one beam search may expand (beam x decoding steps): its Python loop handles about
# 20,000 a second on one core (a beam of 10,000 over 50 steps took 28 s), so this is minutes;
# a wider beam would run for hours
BEAM_WORK = 10_000_000


class PairSizes:
    """The seq2seq family's part of the size contract (:class:`seqlab.families.sizing.Sizing`)."""

    size_keys: ClassVar[tuple[str, ...]] = (*SIZE_KEYS, "attention_size", "length", "num_pairs")
    val_pairs: ClassVar[int] = 0  # validation pairs generated beside --num-pairs

    def shape(self, configs: Any, assets: Any = None) -> limits.Shape:
        return pair_shape(configs, assets)

    def data_bytes(self, source: str, configs: Any) -> tuple[int, str]:
        return pair_data_bytes(source, configs.own, self.val_pairs)


def pair_shape(configs: Any, assets: Any = None) -> limits.Shape:
    """Encoder and decoder stacks, two embeddings, the attention; a batch of pairs of the
    longest --length (1 symbol when the data decides)."""
    model, s2s, h = configs.model, configs.own, configs.model.hidden_size
    chars = parse_length(s2s.length, (1, 1))[1]
    sources, targets = (assets.source.size, assets.target.size) if assets else (1, 1)
    scorer = {"additive": 2 * (s2s.attention_size or h) * h, "general": h * h}
    attention = 0 if s2s.attention == "none" else 2 * h * h + scorer.get(s2s.attention, 0)
    return limits.Shape(model, model.embedding_size, sources + targets, targets, 2 * chars + 2,
                        configs.train.batch_size, stacks=2, extra_params=attention,
                        extra_per_step=chars)


def pair_data_bytes(source: str, s2s: Any, extra_pairs: int) -> tuple[int, str]:
    """(bytes, what) of a built-in task's pairs as strings, id lists and padded tables (a TSV
    file's are the file's: 0)."""
    if not is_task_name(source):
        return 0, "pairs"
    high = parse_length(s2s.length, TASKS[source][0])[1]
    chars = {"dates": 40, "addition": 3 * high + 2}.get(source, 2 * high)
    pairs = s2s.num_pairs + extra_pairs
    return (pairs * (6 * limits.OBJECT + chars * (1 + 5 * limits.INT)),
            f"generating {s2s.num_pairs:,} {source} pairs of up to {chars:,} characters")


def check_beam_work(beam: int, sources: list[str], longest_target: int) -> None:
    """Refuse a beam that would expand more than :data:`BEAM_WORK` hypotheses for one input
    (decoding runs up to max(source length, 2 x the longest training target) + 10 steps)."""
    check_beam(beam)
    steps = max([len(s) for s in sources] + [2 * longest_target]) + 10
    if beam > 1 and beam * steps > BEAM_WORK:
        raise limits.TooLarge(f"beam {beam}: a beam search of up to {steps:,} steps would "
                              f"expand {beam * steps:,} hypotheses per input, hours of work; "
                              f"at most {BEAM_WORK:,} are allowed (a beam up to "
                              f"{BEAM_WORK // steps:,} here)")
