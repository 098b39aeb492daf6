"""Classifier: read a whole sequence, give it one label (many-to-one).

``forward(inputs, lengths=None) -> logits (B, K)``: inputs (B, T) token ids or (B, T, C) real
channels, lengths (B,) the valid steps of each sequence (None: all T). The encoder is any name
of :data:`seqlab.encoders.ENCODERS` (a recurrent stack of a registered cell, window-mlp, bow),
so every architecture classifies behind one contract. Its states s_1..s_L of a sequence of
length L (zeros past L, D = H, or 2H bidirectional) are pooled into one vector z:

.. math::

    z = s_L \\quad\\text{(bidirectional: } [\\overrightarrow{s}_L; \\overleftarrow{s}_1])  (1) last
    z = \\frac{1}{L} \\sum_{t \\le L} s_t                                          (2) mean
    e_t = v^\\top \\tanh(W s_t + b)                                               (3) scores
    a_t = \\frac{\\exp e_t}{\\sum_{t' \\le L} \\exp e_{t'}}                           (4) weights
    z = \\sum_{t \\le L} a_t s_t                                                   (5) context
    \\text{logits} = W_o \\operatorname{dropout}(z) + b_o                          (6) head
    u^{(l)}_t = \\operatorname{ReLU}(\\operatorname{BN}((w^{(l)} * u^{(l-1)})_t))      (7) conv
    g = \\frac{1}{L} \\sum_{t \\le L} u^{(n)}_t                                      (8) conv pool
    \\text{logits} = W_o [\\operatorname{dropout}(z); g] + b_o                      (9) LSTM-FCN

Attention pooling is additive attention (Bahdanau et al. 2014) with one learned query, the
vector v, for the single label: attention as a memory read once; W is (D, D), a_t exactly 0
on padding (:func:`seqlab.attention.masked_softmax`). A bidirectional encoder is a second
encoder of the same kind and size H, reading each sequence reversed *within its length*
(padding stays at the end and is never read), its states reversed back, so that
``states[:, t]`` is [forward_t; backward_t] (as torch.nn's bidirectional stacks); the
backward state at step 1 has read the whole sequence, hence (1). With one layer this is
torch.nn's bidirectional stack exactly; with more, each direction is a stack of its own (layer
l reads its own direction's layer l - 1, where torch.nn's reads both), since
:class:`~seqlab.recurrent.Recurrent` has no bidirectional mode and diagnostics trace the
forward stack alone (as :mod:`seqlab.models.seq2seq`'s encoder). ``window_at="first"`` reads
only the first ``config.window`` steps (inputs cut, lengths clamped to it): the lecture's
fixed window over the start; ``"last"`` reads everything (with window-mlp and last pooling the
window then covers the last n steps). Shapes: B batch, T time, C channels, E embedding, H
hidden, D pooled, F the last block's filters, K classes.

``conv_filters`` adds the fully convolutional branch of LSTM-FCN (Karim et al. 2018; FCN: Wang
et al. 2017) beside the encoder, reading the same inputs u^{(0)} = x: blocks (7) of a Conv1d
with "same" padding (kernel k: (k - 1) // 2 zeros before, the rest after), batch norm and a
ReLU, then the mean (8) of the last block over the valid steps; g joins the pooled z before the
head (9), the dropout on z alone, as LSTM-FCN's dropout after its LSTM. ``conv_se`` adds
squeeze-and-excitation (Hu et al. 2018; MLSTM-FCN, Karim et al. 2019) after every block but the
last: each channel scaled by sigmoid(W_2 ReLU(W_1 m)), m the block's channel means over the
valid steps, W_1 reducing by 16 (:mod:`seqlab.models.conv_branch`). Padding never enters:
every block reads zeros past each end, as "same" padding gives a sequence alone, and batch norm
takes its training statistics over the valid steps only, so in training too the outputs do not
depend on how much padding a batch carries (they depend on the batch's other sequences, as
batch norm's always do; in evaluation the running statistics make each sequence's logits its own).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqlab.arguments import is_count
from seqlab.attention import context, length_mask, masked_mean, masked_softmax
from seqlab.config import ModelConfig
from seqlab.encoders import encoder_spec
from seqlab.models.conv_branch import ConvBranch
from seqlab.models.seq2seq import reverse_padded
from seqlab.recurrent import Recurrent, Trace

POOLINGS = ("last", "mean", "attention")
WINDOW_AT = ("last", "first")
INPUTS = ("tokens", "real")


class AttentionPooling(nn.Module):
    """(3)-(5): e_t = v^T tanh(W s_t + b), a softmax over the valid steps, z = sum_t a_t s_t."""

    def __init__(self, size: int, attention_size: int) -> None:
        super().__init__()
        self.to_key = nn.Linear(size, attention_size)  # W, b
        self.to_score = nn.Linear(attention_size, 1, bias=False)  # v

    def forward(self, states: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """states (B, T, D), mask (B, T) True at valid steps -> z (B, D), weights (B, T)."""
        scores = self.to_score(torch.tanh(self.to_key(states))).squeeze(-1)  # (3) (B, T)
        weights = masked_softmax(scores, mask)  # (4) exact zeros past each end
        return context(weights, states), weights  # (5) (B, D)


class Classifier(nn.Module):
    """inputs -> embedding (token ids; one-hots for an encoder that asks for them, bow with
    ``bow_mode = counts``) or nothing (real channels) -> encoder, optionally bidirectional ->
    pooling over the valid steps -> dropout -> linear head (K classes).

    Args:
        config: the model keys (``model``, ``hidden_size``, ``num_layers``, ``dropout``,
            ``embedding_size``, ``window``, ...).
        inputs: ``tokens`` ((B, T) ids below ``input_size``) or ``real`` ((B, T, input_size)).
        input_size: the vocabulary size for tokens, the channels C for real inputs.
        num_classes: K.
        pooling: ``last``, ``mean`` or ``attention`` (equations (1)-(5) of the module).
        bidirectional: add a backward encoder (recurrent cells only); D = 2H.
        window_at: ``last`` (read everything) or ``first`` (the first ``config.window`` steps).
        conv_filters: the filters of each block of the convolutional branch (LSTM-FCN:
            (128, 256, 128)); empty: no branch.
        conv_kernels: the kernel size of each block (LSTM-FCN: (8, 5, 3)).
        conv_se: squeeze-and-excitation after every block but the last (MLSTM-FCN).

    State-dict keys (stable): ``embedding.weight`` (V, E) for token inputs read through an
    embedding; ``encoder.*`` the forward encoder (``encoder.core.weight_ih_l0`` ... for a
    recurrent cell, torch.nn's names; ``encoder.to_hidden.0.weight`` ... for window-mlp and
    bow); ``backward_encoder.*`` the same for the backward direction (bidirectional only);
    ``attention.to_key.weight`` (D, D), ``attention.to_key.bias`` (D,) and
    ``attention.to_score.weight`` (1, D) for attention pooling; ``conv.*`` the convolutional
    branch (:class:`ConvBranch`); ``to_logits.weight`` (K, D + F) (F = 0 without the branch),
    ``to_logits.bias`` (K,).
    """

    def __init__(self, config: ModelConfig, inputs: str, input_size: int, num_classes: int,
                 pooling: str = "last", bidirectional: bool = False, window_at: str = "last",
                 conv_filters: tuple[int, ...] = (), conv_kernels: tuple[int, ...] = (),
                 conv_se: bool = False) -> None:
        super().__init__()
        for name, value, choices in (("inputs", inputs, INPUTS), ("pooling", pooling, POOLINGS),
                                     ("window_at", window_at, WINDOW_AT)):
            if value not in choices:
                raise ValueError(f"Classifier: {name} must be one of {', '.join(choices)}, "
                                 f"got {value!r}")
        for name, value in (("input_size", input_size), ("num_classes", num_classes)):
            if not is_count(value):
                raise ValueError(f"Classifier: {name} must be a positive int, got {value!r}")
        spec = encoder_spec(config.model)  # ValueError naming the choices
        self.config, self.inputs, self.input_size = config, inputs, input_size
        self.num_classes, self.pooling, self.window_at = num_classes, pooling, window_at
        self.one_hot = inputs == "tokens" and spec.one_hot(config)
        self.embedding = nn.Embedding(input_size, config.embedding_size) \
            if inputs == "tokens" and not self.one_hot else None
        width = config.embedding_size if self.embedding is not None else input_size
        self.drop = nn.Dropout(config.dropout)
        self.encoder = spec.build(width, config)
        if bidirectional and not isinstance(self.encoder, Recurrent):
            raise ValueError(f"Classifier: bidirectional applies to recurrent cells, "
                             f"not {config.model}")
        self.backward_encoder = spec.build(width, config) if bidirectional else None
        self.size = config.hidden_size * (2 if bidirectional else 1)  # D
        self.attention = AttentionPooling(self.size, self.size) if pooling == "attention" \
            else None
        self.conv = ConvBranch(width, tuple(conv_filters), tuple(conv_kernels), conv_se) \
            if conv_filters or conv_kernels else None
        if conv_se and self.conv is None:
            raise ValueError("Classifier: conv_se needs a convolutional branch (conv_filters)")
        extra = self.conv.size if self.conv is not None else 0
        self.to_logits = nn.Linear(self.size + extra, num_classes)  # (6), (9)

    @property
    def bidirectional(self) -> bool:
        return self.backward_encoder is not None

    @property
    def recurrent(self) -> Recurrent | None:
        """The forward-direction stack (what diagnostics read), or None for a baseline."""
        return self.encoder if isinstance(self.encoder, Recurrent) else None

    # what the model reads ----------------------------------------------------------------
    def read(self, inputs: Tensor, lengths: Tensor | None = None
             ) -> tuple[Tensor, Tensor | None]:
        """The part of a batch the encoder reads: with ``window_at="first"`` the first
        ``config.window`` steps, lengths clamped to them; else the batch as given. Checks
        shapes and lengths (ValueError; TypeError for float ids or lengths)."""
        self._check(inputs, lengths)
        if self.window_at == "first":
            inputs = inputs[:, :self.config.window]
            lengths = None if lengths is None else lengths.clamp(max=self.config.window)
        return inputs, lengths

    def embed(self, inputs: Tensor) -> Tensor:
        """(B, T) ids or (B, T, C) -> (B, T', I): what the forward stack reads (T' = T, or at
        most ``config.window`` with ``window_at="first"``)."""
        return self._embed(*self.read(inputs))

    def states(self, inputs: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T', D) encoder states, zero past each end; [forward_t; backward_t] when
        bidirectional."""
        return self._states(inputs, lengths)[0]

    def conv_features(self, inputs: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, F) the convolutional branch's g, equation (8)."""
        if self.conv is None:
            raise ValueError("Classifier: no convolutional branch (conv_filters is empty)")
        seen, seen_lengths = self.read(inputs, lengths)
        x = self._embed(seen, seen_lengths)
        return self.conv(x, _valid(seen_lengths, *x.shape[:2], x.device))

    def pool(self, states: Tensor, lengths: Tensor | None = None
             ) -> tuple[Tensor, Tensor | None]:
        """states (B, T, D), lengths (B,) within [1, T] -> (z (B, D), attention weights (B, T)
        or None): equations (1)-(5)."""
        batch, steps, size = states.shape
        if size != self.size:
            raise ValueError(f"Classifier: expected states of shape (B, T, {self.size}), got "
                             f"{tuple(states.shape)}")
        _check_lengths(lengths, batch, steps)
        mask = _valid(lengths, batch, steps, states.device)  # (B, T)
        if self.attention is not None:
            return self.attention(states, mask)  # (3)-(5)
        if self.pooling == "mean":
            return masked_mean(states, mask[..., None], 1), None  # (2)
        ends = mask.sum(1) - 1  # (B,) the last valid step
        rows = torch.arange(batch, device=states.device)
        if not self.bidirectional:
            return states[rows, ends], None  # (1)
        hidden = self.config.hidden_size  # (1): forward at L, backward at step 1
        return torch.cat([states[rows, ends, :hidden], states[:, 0, hidden:]], dim=-1), None

    def forward(self, inputs: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T) ids or (B, T, C) channels, lengths (B,) -> logits (B, K)."""
        states, lengths, x = self._states(inputs, lengths)
        return self._head(states, lengths, x)

    def attention_weights(self, inputs: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T') weights a_t of attention pooling: sum to 1 over each sequence's valid
        steps, exactly 0 past its end."""
        if self.attention is None:
            raise ValueError(f"Classifier: attention weights need pooling 'attention', got "
                             f"{self.pooling!r}")
        return self.pool(*self._states(inputs, lengths)[:2])[1]

    def trace(self, inputs: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Trace]:
        """For :mod:`seqlab.diagnostics`: (outputs (B, T, K), the forward stack's trace).

        outputs hold the class logits at each sequence's last step (lengths - 1 of the
        lengths given, T - 1 without) and zeros elsewhere, so a Probe scored ``last`` scores
        exactly the classifier's loss. The logits are computed from the traced states
        themselves (``trace.h[-1]``), so ``autograd.grad(loss, trace.h[layer])`` is the total
        dL/dh_t: through the pooling at every step it reaches (mean, attention) and through
        the recurrence. The backward direction, if any, runs untraced.
        """
        if self.recurrent is None:
            raise ValueError(f"{self.config.model} has no recurrent state to trace")
        seen, seen_lengths = self.read(inputs, lengths)
        x = self._embed(seen, seen_lengths)  # (B, T', I)
        trace = self.recurrent.trace(x, None, seen_lengths)
        batch, steps = x.shape[:2]
        h = torch.stack(trace.h[-1], dim=1)  # (B, T', H): the traced tensors, not copies
        alive = _valid(seen_lengths, batch, steps, h.device)[..., None]
        states = self._directions(x, seen_lengths, torch.where(alive, h, h.new_zeros(())))
        logits = self._head(states, seen_lengths, x)  # (B, K)
        full = inputs.shape[1]
        ends = _valid(lengths, batch, full, h.device).sum(1) - 1  # (B,)
        at_end = nn.functional.one_hot(ends, full).bool()[..., None]  # (B, T, 1)
        return torch.where(at_end, logits[:, None], logits.new_zeros(())), trace

    # steps -------------------------------------------------------------------------------
    def _check(self, inputs: Tensor, lengths: Tensor | None) -> None:
        if self.inputs == "tokens":
            if inputs.dim() != 2:
                raise ValueError(f"Classifier: expected token ids of shape (B, T), got "
                                 f"{tuple(inputs.shape)}")
            if inputs.is_floating_point() or inputs.is_complex():
                raise TypeError(f"Classifier: token ids must be integers, got {inputs.dtype}")
        elif inputs.dim() != 3 or inputs.shape[2] != self.input_size:
            raise ValueError(f"Classifier: expected real inputs of shape (B, T, "
                             f"{self.input_size}), got {tuple(inputs.shape)}")
        _check_lengths(lengths, inputs.shape[0], inputs.shape[1])

    def _embed(self, inputs: Tensor, lengths: Tensor | None) -> Tensor:
        """(B, T) or (B, T, C) -> (B, T, I), zeros past each end: the padding's values never
        enter the graph (an id out of range or a NaN there changes nothing)."""
        alive = None if lengths is None else _valid(lengths, *inputs.shape[:2], inputs.device)
        if self.inputs == "real":
            if alive is None:
                return inputs
            return torch.where(alive[..., None], inputs, inputs.new_zeros(()))
        ids = inputs if alive is None else inputs.masked_fill(~alive, 0)
        if self.embedding is None:  # one-hots for bow counts: log(1 + count) of each token
            x = nn.functional.one_hot(ids, self.input_size).to(self.to_logits.weight.dtype)
        else:
            x = self.drop(self.embedding(ids))  # (B, T, E)
        return x if alive is None else x * alive[..., None]

    def _states(self, inputs: Tensor, lengths: Tensor | None
                ) -> tuple[Tensor, Tensor | None, Tensor]:
        """(states (B, T', D), the lengths they were read with, the inputs x (B, T', I))."""
        inputs, lengths = self.read(inputs, lengths)
        x = self._embed(inputs, lengths)  # (B, T', I)
        forward, _ = self.encoder(x, None, lengths)  # (B, T', H), zeros past each end
        return self._directions(x, lengths, forward), lengths, x

    def _directions(self, x: Tensor, lengths: Tensor | None, forward: Tensor) -> Tensor:
        """The forward states, or [forward_t; backward_t] (B, T, 2H) with a backward encoder
        reading each sequence reversed within its length."""
        if self.backward_encoder is None:
            return forward
        back, _ = self.backward_encoder(_reverse(x, lengths), None, lengths)
        return torch.cat([forward, _reverse(back, lengths)], dim=-1)

    def _head(self, states: Tensor, lengths: Tensor | None, x: Tensor) -> Tensor:
        pooled, _ = self.pool(states, lengths)  # (B, D)
        pooled = self.drop(pooled)
        if self.conv is not None:  # (9): [dropout(z); g]
            mask = _valid(lengths, *x.shape[:2], x.device)
            pooled = torch.cat([pooled, self.conv(x, mask)], dim=-1)
        return self.to_logits(pooled)  # (6) (B, K)

    def extra_repr(self) -> str:
        return (f"inputs={self.inputs}, classes={self.num_classes}, pooling={self.pooling}, "
                f"bidirectional={self.bidirectional}, window_at={self.window_at}"
                + (f", conv_filters={self.conv.filters}, conv_kernels={self.conv.kernels}"
                   if self.conv is not None else ""))


def _check_lengths(lengths: Tensor | None, batch: int, steps: int) -> None:
    if steps == 0:
        raise ValueError("Classifier: every sequence needs at least one step (T = 0)")
    if lengths is None:
        return
    if lengths.is_floating_point() or lengths.is_complex():
        raise TypeError(f"Classifier: lengths must be integers, got {lengths.dtype}")
    if lengths.shape != (batch,):
        raise ValueError(f"Classifier: expected lengths of shape ({batch},), got "
                         f"{tuple(lengths.shape)}")
    if int(lengths.min()) < 1:
        raise ValueError(f"Classifier: every sequence needs at least one step, got lengths "
                         f"{lengths.tolist()}")
    if int(lengths.max()) > steps:
        raise ValueError(f"Classifier: lengths must lie in [1, {steps}] (the steps given), got "
                         f"{lengths.tolist()}")


def _valid(lengths: Tensor | None, batch: int, steps: int, device) -> Tensor:
    """(B, T) bool, True at each sequence's valid steps (all of them without lengths)."""
    if lengths is None:
        return torch.ones(batch, steps, dtype=torch.bool, device=device)
    return length_mask(lengths.to(device), steps)


def _reverse(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Each sequence of x (B, T, ...) reversed within its length; padding stays at the end."""
    return x.flip(1) if lengths is None else reverse_padded(x, lengths)
