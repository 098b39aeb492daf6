"""The seq2seq family's ONNX export (``seqlab export``): two graphs, the encoder and one
decoder step, written as FILE's stem + ``-encoder.onnx`` and ``-decoder.onnx``.

- encoder: source ids (B, S) and lengths (B,) -> the decoder's first state (h, and c for an
  LSTM: (L, B, H)), the encoder's outputs, keys (B, S, H), and with attention the rest of the
  memory the decoder reads: the scorer's prepared keys (B, S, A) and the mask (B, S) (True at
  real positions);
- decoder: the token emitted last (B,) (the begin token first), the state and, with
  attention, the memory -> logits (B, V), the new state and, with attention, the weights
  (B, S). Without attention the decoder reads nothing of the source but the first state.

A server decodes as seqlab does (:func:`seqlab.search.greedy_search`): the begin token, then
each step's chosen token, until the end token. Token 0 is padding in both vocabularies.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqlab.export import Graph, generator, lengths_of, state_tensors, token_inputs
from seqlab.families.base import LoadedRun
from seqlab.models.seq2seq import Memory, Seq2Seq

MEMORY = ("keys", "prepared", "mask")


class EncoderGraph(nn.Module):
    """(source, lengths) -> (*state, keys, prepared, mask); without attention (*state, keys)
    (the keys only so that the traced graph keeps the encoder's padded outputs)."""

    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(self, source: Tensor, lengths: Tensor) -> tuple[Tensor, ...]:
        memory, state = self.model.encode(source, lengths)
        parts = state_tensors(state)
        if self.model.attention is None:
            return (*parts, memory.keys)
        return (*parts, memory.keys, memory.prepared, memory.mask)


class DecoderGraph(nn.Module):
    """(token, *state, keys, prepared, mask) -> (logits, *state, weights): one decoder step."""

    def __init__(self, model: Seq2Seq, states: int) -> None:
        super().__init__()
        self.model, self.states = model, states

    def forward(self, token: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        state, memory = rest[:self.states], rest[self.states:]
        logits, state, weights = self.model.decode_step(
            Memory(*memory) if memory else None, token,
            state if self.states > 1 else state[0])
        return (logits, *state_tensors(state), *([] if weights is None else [weights]))


class Seq2SeqExport:
    """The family's ``exporter`` hook (a mixin of :class:`Seq2SeqFamily`)."""

    def exporter(self, loaded: LoadedRun) -> list[Graph]:
        """The encoder and the decoder step (module docstring)."""
        model: Seq2Seq = loaded.model
        shape = model.shape
        names = model.decoder.spec.state  # ("h",) or ("h", "c")
        attention = model.attention is not None
        memory = MEMORY if attention else ()
        encoded = MEMORY if attention else MEMORY[:1]
        source = token_inputs(shape.source_vocab_size, low=1)

        def encoder_example(batch: int, length: int) -> dict[str, Tensor]:
            return {"source": source(batch, length), "lengths": lengths_of(batch, length)}

        @torch.no_grad()
        def decoder_example(batch: int, length: int) -> dict[str, Tensor]:
            outputs = EncoderGraph(model)(*encoder_example(batch, length).values())
            read = dict(zip((*names, *encoded), outputs, strict=True))  # what the decoder reads
            token = torch.randint(1, shape.target_vocab_size, (batch,),
                                  generator=generator(batch, length))
            return {"token": token, **{name: read[name] for name in (*names, *memory)}}

        state_axes = {name: {1: "batch"} for name in names}
        outs = {f"{name}_out": {1: "batch"} for name in names}
        memory_axes = {name: {0: "batch", 1: "length"} for name in memory}
        weights = {"weights": {0: "batch", 1: "length"}} if attention else {}
        notes = {"family": loaded.family.name, "attention": shape.attention}
        encoder = Graph(EncoderGraph(model), encoder_example, (*names, *encoded),
                        {"source": {0: "batch", 1: "length"}, "lengths": {0: "batch"},
                         "keys": {0: "batch", 1: "length"}, **state_axes, **memory_axes},
                        "encoder", notes)
        decoder = Graph(DecoderGraph(model, len(names)), decoder_example,
                        ("logits", *outs, *weights),
                        {"token": {0: "batch"}, "logits": {0: "batch"}, **state_axes,
                         **memory_axes, **outs, **weights}, "decoder", notes)
        return [encoder, decoder]
