"""Meter-aware sampling of ABC tunes: which tokens keep every bar legal, batched over rows.

The rules are :mod:`seqlab.abc_meter`'s; this module applies them to a sampler's rows. A row is
anything with ``meter`` (its tracker state id), ``sampling`` (whether its next token is its own)
and ``fallbacks`` (a counter): :class:`seqlab.music._TuneStream`.
"""

from __future__ import annotations

import torch

from seqlab import abc_meter
from seqlab.abc_fields import BODY_FIELDS
from seqlab.generate import filter_logits, next_tokens

DRAWS = 8  # draws again from the model's distribution before building a mask


class MeterMasks:
    """Meter-aware sampling: which tokens keep a tune's bars legal (:mod:`seqlab.abc_meter`).

    Each row carries a bar tracker state, interned as an id; a token is legal when reading its
    text adds no violation. Sampling is masked sampling done lazily (:meth:`resample`): every
    row samples as usual, and only a row whose token is illegal samples again with the illegal
    tokens masked. Without top-k or top-p that is the masked distribution exactly (a
    categorical draw rejected outside a set is a draw from the set, renormalised); with them the
    draws were filtered before the mask. Moves (state, token) -> (state, legal) and masks
    are cached; a new mask in the music reads each kind of token once: single characters that
    the tracker cannot tell apart there (upper-case note letters, lower-case ones, rests,
    decoration letters, other letters that name no field) share one reading; in the header or
    a field, every token is read.
    """

    def __init__(self, vocab) -> None:
        self.texts = [vocab.decode([i]) for i in range(vocab.size)]
        kinds = [_kind(text) for text in self.texts]
        self.readings = sorted(set(kinds))  # the texts to read for a new mask
        self.reading_of = torch.tensor([self.readings.index(k) for k in kinds])  # (V,)
        self.ids: dict[abc_meter.BarState, int] = {}
        self.states: list[abc_meter.BarState] = []
        self.masks: dict[int, torch.Tensor] = {}
        self.moves: dict[tuple[int, int], tuple[int, bool]] = {}

    def intern(self, state: abc_meter.BarState) -> int:
        state = state._replace(violations=0, closed=())  # neither changes what comes next
        if state not in self.ids:
            self.ids[state] = len(self.states)
            self.states.append(state)
        return self.ids[state]

    def start(self, text: str) -> int:
        return self.intern(abc_meter.read(text))

    def move(self, sid: int, token: int) -> tuple[int, bool]:
        """(the state after ``token``, whether it is legal)."""
        found = self.moves.get((sid, token))
        if found is None:
            state = abc_meter.read(self.texts[token], self.states[sid])
            found = self.moves[sid, token] = (self.intern(state), state.violations == 0)
        return found

    def advance(self, sid: int, token: int) -> int:
        return self.move(sid, token)[0]

    def mask(self, sid: int) -> torch.Tensor:
        """(V,) True where a token is legal after state ``sid``."""
        if sid not in self.masks:
            state = self.states[sid]
            if state.header or state.skip:  # a field being read tells every letter apart
                self.masks[sid] = torch.tensor([abc_meter.read(text, state).violations == 0
                                                for text in self.texts])
            else:
                legal = torch.tensor([abc_meter.read(text, state).violations == 0
                                      for text in self.readings])
                self.masks[sid] = legal[self.reading_of]
        return self.masks[sid]

    def resample(self, logits: torch.Tensor, sampled: list[int], streams: list,
                 config, generator: torch.Generator) -> list[int]:
        """``sampled`` (one token per row, from (B, V) ``logits``) with each illegal token drawn
        again among the legal ones: first by drawing ``DRAWS`` more from the row's distribution
        and keeping the first legal one (no mask needed), else from the masked distribution.
        A row with no legal token keeps its token, counted in its stream's ``fallbacks``."""
        moves, rows = self.moves, []
        for k, (stream, token) in enumerate(zip(streams, sampled, strict=True)):
            if stream.sampling and not (moves.get((stream.meter, token))
                                        or self.move(stream.meter, token))[1]:
                rows.append(k)
        if not rows:
            return sampled
        left = []
        for k, tokens in zip(rows, _draws(logits[rows], config, generator), strict=True):
            legal = [t for t in tokens if self.move(streams[k].meter, t)[1]]
            if legal:
                sampled[k] = legal[0]
            elif self.mask(streams[k].meter).any():
                left.append(k)
            else:
                streams[k].fallbacks += 1
        if left:
            allowed = torch.stack([self.mask(streams[k].meter) for k in left])  # (R, V)
            masked = logits[left].masked_fill(~allowed.to(logits.device), float("-inf"))
            for k, token in zip(left, next_tokens(masked, config, generator).tolist(),
                                strict=True):
                sampled[k] = token
        return sampled


def _draws(logits: torch.Tensor, config, generator: torch.Generator) -> list[list[int]]:
    """``DRAWS`` tokens from each of (R, V) ``logits``' distributions, as
    :func:`seqlab.generate.next_tokens` samples them (none when sampling is greedy)."""
    if config.greedy:
        return [[] for _ in range(len(logits))]
    logits = logits.float()
    if config.banned:
        logits = logits.index_fill(-1, torch.tensor(config.banned, device=logits.device),
                                   float("-inf"))
    probs = filter_logits(logits - logits.amax(-1, keepdim=True), config).softmax(-1)
    return torch.multinomial(probs.cpu(), DRAWS, replacement=True, generator=generator).tolist()


def _kind(text: str) -> str:
    """A text that the bar tracker reads exactly as it reads ``text``."""
    if len(text) != 1:
        return text
    for members, kind in (("ABCDEFG", "A"), ("abcdefg", "a"), ("zx", "z")):
        if text in members:
            return kind
    if text.isalpha() and text not in BODY_FIELDS and text not in "ZX":
        return "H" if text in abc_meter.LETTER_MARKS else "j"  # a decoration, or no music
    return text
