"""Sequence model for tasks whose inputs are not a token stream to predict: an output per step.

``forward(inputs, state=None, lengths=None) -> (outputs, state)``: inputs (B, T) token ids or
(B, T, C) real channels; outputs (B, T, O). The encoder is any of :data:`seqlab.encoders.ENCODERS`
(a recurrent stack of a registered cell, or a feed-forward baseline: window-mlp, bow), chosen by
``ModelConfig.model``, so every architecture runs on the same tasks behind one contract.
"""

from __future__ import annotations

from torch import Tensor, nn

from seqlab.config import ModelConfig
from seqlab.encoders import build_encoder
from seqlab.recurrent import Recurrent, Trace


class SequenceModel(nn.Module):
    """inputs -> embedding (tokens) or nothing (real channels) -> encoder (H) -> linear (O)."""

    def __init__(self, config: ModelConfig, inputs: str, input_size: int, output_size: int
                 ) -> None:
        super().__init__()
        if inputs not in ("tokens", "real"):
            raise ValueError(f"SequenceModel: inputs must be 'tokens' or 'real', got {inputs!r}")
        self.config, self.inputs = config, inputs
        self.embedding = nn.Embedding(input_size, config.embedding_size) if inputs == "tokens" \
            else None
        width = config.embedding_size if inputs == "tokens" else input_size
        self.encoder = build_encoder(width, config)
        self.drop = nn.Dropout(config.dropout)
        self.to_outputs = nn.Linear(config.hidden_size, output_size)

    @property
    def recurrent(self) -> Recurrent | None:
        return self.encoder if isinstance(self.encoder, Recurrent) else None

    def embed(self, inputs: Tensor) -> Tensor:
        """(B, T) ids or (B, T, C) -> the encoder's input (B, T, I)."""
        if self.embedding is None:
            if inputs.dim() != 3:
                raise ValueError(f"SequenceModel: expected real inputs of shape (B, T, C), got "
                                 f"{tuple(inputs.shape)}")
            return inputs
        if inputs.dim() != 2:
            raise ValueError(f"SequenceModel: expected token ids of shape (B, T), got "
                             f"{tuple(inputs.shape)}")
        return self.drop(self.embedding(inputs))

    def forward(self, inputs: Tensor, state=None, lengths: Tensor | None = None):
        h, state = self.encoder(self.embed(inputs), state, lengths)  # (B, T, H)
        return self.to_outputs(self.drop(h)), state  # (B, T, O)

    def trace(self, inputs: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Trace]:
        """Outputs and the explicit path's every h_t, c_t and gate (recurrent encoders only)."""
        if self.recurrent is None:
            raise ValueError(f"{self.config.model} has no recurrent state to trace")
        trace = self.recurrent.trace(self.embed(inputs), None, lengths)
        return self.to_outputs(self.drop(trace.output)), trace
