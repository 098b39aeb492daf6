"""Language model: tokens -> embedding (or one-hots) -> any registered encoder -> linear head.

``forward(tokens, state=None, lengths=None) -> (logits, state)``: tokens (B, T) int64, logits
(B, T, V). The encoder is :data:`seqlab.encoders.ENCODERS` [``config.model``]: a recurrent
stack, whose same weights are applied at every time step, or a feed-forward baseline; the loss
is summed over steps either way, so one trainer, one ``generate`` and one ``evaluate`` serve all.
"""

from __future__ import annotations

from torch import Tensor, nn

from seqlab.config import ModelConfig
from seqlab.encoders import encoder_spec
from seqlab.recurrent import Recurrent, Trace


class LanguageModel(nn.Module):
    """tokens -> embedding (E), or one-hots (V) for an encoder that asks for them (bow with
    ``bow_mode = counts``) -> encoder (H) -> dropout -> linear head (V).

    ``recurrent`` is the encoder when it is a :class:`Recurrent` stack, else None.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.vocab_size <= 0:
            raise ValueError(f"LanguageModel: vocab_size must be positive, "
                             f"got {config.vocab_size}")
        spec = encoder_spec(config.model)
        one_hot = spec.one_hot(config)
        if one_hot and config.tie_weights:
            raise ValueError(f"tie_weights needs an embedding; {config.model} with these "
                             f"settings reads one-hots")
        self.config = config
        self.embedding = None if one_hot else nn.Embedding(config.vocab_size,
                                                           config.embedding_size)
        self.drop = nn.Dropout(config.dropout)
        encoder = spec.build(config.vocab_size if one_hot else config.embedding_size, config)
        # the attribute names the state-dict keys, kept as runs have always been saved:
        # recurrent.core.* for a recurrent stack, encoder.* for any other encoder
        if isinstance(encoder, Recurrent):
            self.recurrent = encoder
        else:
            self.encoder, self.recurrent = encoder, None
        self.to_logits = nn.Linear(config.hidden_size, config.vocab_size)
        if config.tie_weights:
            self.to_logits.weight = self.embedding.weight

    def encode(self, x: Tensor, state=None, lengths: Tensor | None = None):
        """The encoder's forward: x (B, T, I) -> (h (B, T, H), state)."""
        encoder = self.encoder if self.recurrent is None else self.recurrent
        return encoder(x, state, lengths)

    def initial_state(self, batch_size: int):
        encoder = self.encoder if self.recurrent is None else self.recurrent
        return encoder.initial_state(batch_size)

    def embed(self, tokens: Tensor) -> Tensor:
        """(B, T) token ids -> the encoder's input: embeddings (B, T, E) or one-hots (B, T, V)."""
        if tokens.dim() != 2:
            raise ValueError(f"LanguageModel: expected tokens of shape (B, T), "
                             f"got {tuple(tokens.shape)}")
        if self.embedding is None:
            return nn.functional.one_hot(tokens, self.config.vocab_size).float()
        return self.drop(self.embedding(tokens))

    def forward(self, tokens: Tensor, state=None, lengths: Tensor | None = None):
        h, state = self.encode(self.embed(tokens), state, lengths)  # (B, T, H)
        return self.to_logits(self.drop(h)), state  # (B, T, V)

    def trace(self, tokens: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Trace]:
        """Logits and the explicit path's every h_t, c_t and gate (recurrent encoders only)."""
        if self.recurrent is None:
            raise ValueError(f"{self.config.model} has no recurrent state to trace")
        trace = self.recurrent.trace(self.embed(tokens), None, lengths)
        return self.to_logits(self.drop(trace.output)), trace


# the names of the first layout, when recurrent and feed-forward models had a class each
RecurrentLM = BaselineLM = LanguageModel
