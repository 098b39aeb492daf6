"""Token language model: embedding -> recurrent stack -> linear head.

``forward(tokens, state=None, lengths=None) -> (logits, state)``: tokens (B, T) int64, logits
(B, T, V). The same weights are applied at every time step; the loss is summed over steps.
"""

from __future__ import annotations

from torch import Tensor, nn

from seqlab.config import ModelConfig
from seqlab.recurrent import Recurrent, State


class RecurrentLM(nn.Module):
    """Recurrent language model for the cells rnn, irnn, lstm and gru."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.vocab_size <= 0:
            raise ValueError(f"RecurrentLM: vocab_size must be positive, got {config.vocab_size}")
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size)
        self.drop = nn.Dropout(config.dropout)
        self.recurrent = Recurrent(config.model, config.embedding_size, config.hidden_size,
                                   config.num_layers, dropout=config.dropout,
                                   forget_bias=config.forget_bias,
                                   chrono=config.chrono_steps)
        self.to_logits = nn.Linear(config.hidden_size, config.vocab_size)
        if config.tie_weights:
            self.to_logits.weight = self.embedding.weight

    def initial_state(self, batch_size: int) -> State:
        return self.recurrent.initial_state(batch_size)

    def forward(self, tokens: Tensor, state: State | None = None,
                lengths: Tensor | None = None) -> tuple[Tensor, State]:
        if tokens.dim() != 2:
            raise ValueError(f"RecurrentLM: expected tokens of shape (B, T), "
                             f"got {tuple(tokens.shape)}")
        x = self.drop(self.embedding(tokens))  # (B, T, E)
        h, state = self.recurrent(x, state, lengths)  # (B, T, H)
        return self.to_logits(self.drop(h)), state  # (B, T, V)
