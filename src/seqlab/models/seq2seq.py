"""Encoder-decoder: a recurrent encoder reads the source, a recurrent decoder writes the target.

The encoder is a :class:`~seqlab.recurrent.Recurrent` stack (rnn, irnn, lstm or gru), optionally
bidirectional: a second stack reads each source backwards *within its own length* (padding is
never read), and the two directions, H/2 units each, are concatenated into H. Its outputs
k_1..k_S (B, S, H) are the attention keys and values; its final state starts the decoder.

The decoder, at step t, from the token y_{t-1} it emitted last (teacher forcing in training:
the reference token) and its state s_{t-1}:

- ``none``: s_t = f(s_{t-1}, E y_{t-1}); logits = W_o s_t. Everything the decoder knows of the
  source came through the encoder's final state: the bottleneck.
- ``additive`` (Bahdanau et al. 2014): c_t = attend(s_{t-1}, k); s_t = f(s_{t-1}, [E y_{t-1};
  c_t]); logits = W_o tanh(W_c [s_t; c_t]).
- ``dot`` and ``general`` (Luong et al. 2015, global attention without input feeding):
  s_t = f(s_{t-1}, E y_{t-1}); c_t = attend(s_t, k); logits = W_o tanh(W_c [s_t; c_t]).

``none``, ``dot`` and ``general`` run the decoder over the whole target in one fused call in
training; ``additive`` needs c_t before s_t and so steps. Shapes: B batch, S source, T target,
E embedding, H hidden, V vocabulary. Token 0 is padding in both vocabularies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seqlab.attention import Attention, length_mask
from seqlab.recurrent import Recurrent, State, map_state


@dataclass(frozen=True, kw_only=True)
class Seq2SeqShape:
    """What to build; the run's config.json holds the same numbers."""

    cell: str = "lstm"
    source_vocab_size: int
    target_vocab_size: int
    embedding_size: int = 64
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.0
    forget_bias: float = 1.0
    attention: str = "additive"  # none | additive | dot | general
    attention_size: int = 0  # additive only; 0: hidden_size
    bidirectional: bool = False


@dataclass
class Memory:
    """What the decoder reads of one batch of sources."""

    keys: Tensor  # (B, S, H) encoder outputs, zeros at padding
    prepared: Tensor | None  # the scorer's key-only part, (B, S, A)
    mask: Tensor  # (B, S) True at real positions

    def select(self, index: Tensor) -> Memory:
        return Memory(self.keys[index], None if self.prepared is None else self.prepared[index],
                      self.mask[index])


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each sequence of x (B, S, ...) within its length; padding stays where it is."""
    steps = torch.arange(x.shape[1], device=x.device)[None, :]  # (1, S)
    lengths = lengths.to(x.device)[:, None]
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)  # (B, S)
    return x.gather(1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))


class Encoder(nn.Module):
    """Recurrent stack over padded sources; bidirectional as two stacks of H/2 units."""

    def __init__(self, shape: Seq2SeqShape) -> None:
        super().__init__()
        directions = 2 if shape.bidirectional else 1
        if shape.hidden_size % directions:
            raise ValueError(f"Encoder: a bidirectional encoder splits hidden_size between its "
                             f"two directions; it must be even, got {shape.hidden_size}")
        size = shape.hidden_size // directions
        args = (shape.cell, shape.embedding_size, size, shape.num_layers)
        kwargs = dict(dropout=shape.dropout, forget_bias=shape.forget_bias)
        self.forward_stack = Recurrent(*args, **kwargs)
        self.backward_stack = Recurrent(*args, **kwargs) if shape.bidirectional else None

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, State]:
        """x (B, S, E), lengths (B,) -> outputs (B, S, H) with zeros past each end, final state."""
        out, state = self.forward_stack(x, lengths=lengths)
        if self.backward_stack is None:
            return out, state
        back, back_state = self.backward_stack(reverse_padded(x, lengths), lengths=lengths)
        out = torch.cat([out, reverse_padded(back, lengths)], dim=-1)
        if isinstance(state, tuple):
            return out, tuple(torch.cat(pair, -1) for pair in zip(state, back_state, strict=True))
        return out, torch.cat([state, back_state], dim=-1)


class Seq2Seq(nn.Module):
    """``forward(source, source_lengths, target_in) -> (logits (B, T, V), weights (B, T, S))``.

    ``weights`` is None for ``attention="none"``. For step-by-step decoding: :meth:`encode`,
    then :meth:`decode_step` once per output token.
    """

    def __init__(self, shape: Seq2SeqShape) -> None:
        super().__init__()
        for name in ("source_vocab_size", "target_vocab_size"):
            if getattr(shape, name) <= 0:
                raise ValueError(f"Seq2Seq: {name} must be positive, got {getattr(shape, name)}")
        self.shape = shape
        H, E = shape.hidden_size, shape.embedding_size
        self.source_embedding = nn.Embedding(shape.source_vocab_size, E, padding_idx=0)
        self.target_embedding = nn.Embedding(shape.target_vocab_size, E, padding_idx=0)
        self.drop = nn.Dropout(shape.dropout)
        self.encoder = Encoder(shape)
        self.attention = None
        decoder_input = E
        if shape.attention != "none":
            self.attention = Attention(shape.attention, H, H, shape.attention_size or H)
            self.to_output = nn.Linear(2 * H, H)  # W_c
            decoder_input += H if shape.attention == "additive" else 0
        self.decoder = Recurrent(shape.cell, decoder_input, H, shape.num_layers,
                                 dropout=shape.dropout, forget_bias=shape.forget_bias)
        self.to_logits = nn.Linear(H, shape.target_vocab_size)  # W_o

    # encoder ---------------------------------------------------------------------------
    def encode(self, source: Tensor, lengths: Tensor) -> tuple[Memory, State]:
        """source (B, S) ids, lengths (B,) -> memory and the decoder's initial state."""
        if source.dim() != 2 or lengths.shape != source.shape[:1]:
            raise ValueError(f"Seq2Seq: expected source (B, S) and lengths (B,), got "
                             f"{tuple(source.shape)} and {tuple(lengths.shape)}")
        keys, state = self.encoder(self.drop(self.source_embedding(source)), lengths)
        prepared = None if self.attention is None else self.attention.prepare(keys)
        return Memory(keys, prepared, length_mask(lengths.to(keys.device), source.shape[1])), state

    # decoder ---------------------------------------------------------------------------
    def decode_step(self, memory: Memory, token: Tensor, state: State
                    ) -> tuple[Tensor, State, Tensor | None]:
        """token (B,) -> logits (B, V), new state, attention weights (B, S) or None."""
        x = self.drop(self.target_embedding(token))  # (B, E)
        kind, weights = self.shape.attention, None
        if kind == "additive":
            query = _top(state)  # s_{t-1}
            ctx, weights = self.attention(query, memory.keys, memory.prepared, memory.mask)
            x = torch.cat([x, ctx], dim=-1)
        out, state = self.decoder(x.unsqueeze(1), state)
        h = out[:, 0]  # (B, H) s_t
        if kind in ("dot", "general"):
            ctx, weights = self.attention(h, memory.keys, memory.prepared, memory.mask)
        if kind != "none":
            h = torch.tanh(self.to_output(torch.cat([h, ctx], dim=-1)))
        return self.to_logits(self.drop(h)), state, weights

    def forward(self, source: Tensor, source_lengths: Tensor, target_in: Tensor
                ) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: target_in (B, T) starts with the begin token."""
        memory, state = self.encode(source, source_lengths)
        if self.shape.attention == "additive":
            logits, weights = [], []
            for t in range(target_in.shape[1]):
                step_logits, state, w = self.decode_step(memory, target_in[:, t], state)
                logits.append(step_logits)
                weights.append(w)
            return torch.stack(logits, 1), torch.stack(weights, 1)
        h, _ = self.decoder(self.drop(self.target_embedding(target_in)), state)  # (B, T, H)
        weights = None
        if self.attention is not None:
            ctx, weights = self.attention(h, memory.keys, memory.prepared, memory.mask)
            h = torch.tanh(self.to_output(torch.cat([h, ctx], dim=-1)))
        return self.to_logits(self.drop(h)), weights

    @staticmethod
    def select(state: tuple[State, Memory], index: Tensor) -> tuple[State, Memory]:
        """Rows ``index`` of a (decoder state, memory) pair: what beam search reorders."""
        rnn_state, memory = state
        return map_state(rnn_state, lambda s: s[:, index]), memory.select(index)

    def step_fn(self):
        """A ``search.Step`` over (decoder state, memory) pairs, returning log-probabilities."""

        def step(tokens: Tensor, state: tuple[State, Memory]):
            rnn_state, memory = state
            logits, rnn_state, weights = self.decode_step(memory, tokens, rnn_state)
            return torch.log_softmax(logits.float(), -1), (rnn_state, memory), weights

        return step


def _top(state: State) -> Tensor:
    """The top layer's h of a state: (B, H)."""
    return (state[0] if isinstance(state, tuple) else state)[-1]
