"""Feed-forward baselines: what a sequence model has to beat, behind the same contracts.

Two encoders with the contract of :class:`seqlab.recurrent.Recurrent`,
``forward(x (B, T, I), state=None, lengths=None) -> (output (B, T, H), state)``:

- :class:`WindowEncoder` sees the last n inputs, concatenated: a fixed window. Its first weight
  matrix is (H, n I): every position of the window has weights of its own (no sharing across
  positions), so the parameter count grows with n, and nothing older than n steps can matter.
- :class:`BagEncoder` sees the whole history as a bag: the mean of the inputs so far, or
  sign(s) log(1 + |s|) of their sum s (for one-hot inputs, log(1 + count) of each token). The
  order of the history is lost by construction.

:class:`BaselineLM` puts either behind an embedding (or one-hots) and a linear head, so it is a
language model like :class:`seqlab.models.lm.RecurrentLM`: ``forward(tokens, state=None) ->
(logits, state)``. The state is what the next chunk needs (the last n - 1 inputs, or the running
sum and count), so truncated BPTT streams and stateful generation work unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqlab.config import ModelConfig

BagState = tuple[Tensor, Tensor]  # running sum (B, I), steps seen (B, 1)


def mlp(input_size: int, hidden_size: int, num_layers: int) -> nn.Sequential:
    """num_layers tanh layers: (.., input_size) -> (.., hidden_size)."""
    layers: list[nn.Module] = []
    for k in range(num_layers):
        layers += [nn.Linear(input_size if k == 0 else hidden_size, hidden_size), nn.Tanh()]
    return nn.Sequential(*layers)


def alive_mask(lengths: Tensor | None, batch: int, steps: int, device) -> Tensor | None:
    """(B, T, 1) float mask, 1 where t < length; None without lengths."""
    if lengths is None:
        return None
    return (torch.arange(steps, device=device)[None, :] < lengths.to(device)[:, None]
            ).unsqueeze(-1).float()


def check_input(name: str, x: Tensor, input_size: int, lengths: Tensor | None) -> None:
    if x.dim() != 3 or x.shape[2] != input_size:
        raise ValueError(f"{name}: expected input of shape (B, T, {input_size}), got "
                         f"{tuple(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError(f"{name}: the input has no time steps (T = 0)")
    if lengths is not None and (lengths.shape != (x.shape[0],) or int(lengths.min()) < 1
                                or int(lengths.max()) > x.shape[1]):
        raise ValueError(f"{name}: lengths must have shape ({x.shape[0]},) and lie in "
                         f"[1, {x.shape[1]}], got {lengths.tolist()}")


class WindowEncoder(nn.Module):
    """A fixed window of the last ``window`` inputs -> MLP (the lecture's "fixed window").

    h_t = MLP([x_{t-n+1}; ...; x_t]), inputs before the first step taken as zeros.
    State: the last n - 1 inputs (B, n - 1, I).
    """

    def __init__(self, input_size: int, hidden_size: int, window: int, num_layers: int = 1) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"WindowEncoder: window must be >= 1, got {window}")
        self.input_size, self.hidden_size, self.window = input_size, hidden_size, window
        self.to_hidden = mlp(window * input_size, hidden_size, num_layers)

    def initial_state(self, batch_size: int) -> Tensor:
        ref = self.to_hidden[0].weight
        return ref.new_zeros(batch_size, self.window - 1, self.input_size)

    def forward(self, x: Tensor, state: Tensor | None = None, lengths: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
        check_input("WindowEncoder", x, self.input_size, lengths)
        batch, steps, _ = x.shape
        past = self.initial_state(batch).to(x.dtype) if state is None else state
        want = (batch, self.window - 1, self.input_size)
        if past.shape != want:
            raise ValueError(f"WindowEncoder: expected a state of shape {want}, got "
                             f"{tuple(past.shape)}")
        full = torch.cat([past, x], dim=1)  # (B, n - 1 + T, I)
        windows = full.unfold(1, self.window, 1)  # (B, T, I, n): oldest first along n
        windows = windows.transpose(2, 3).reshape(batch, steps, -1)  # (B, T, n I)
        out = self.to_hidden(windows)  # (B, T, H)
        if lengths is None:
            return out, full[:, steps:]
        # the last n - 1 inputs before each sequence's end: full[:, L .. L + n - 2]
        index = lengths.to(x.device)[:, None] + torch.arange(self.window - 1, device=x.device)
        final = full.gather(1, index[..., None].expand(-1, -1, self.input_size))
        return out * alive_mask(lengths, batch, steps, x.device), final


class BagEncoder(nn.Module):
    """The whole history as a bag -> MLP: order is lost by construction.

    mode ``mean``: h_t = MLP(mean(x_1..x_t)); mode ``counts``: h_t = MLP(sign(s) log(1 + |s|))
    with s = x_1 + ... + x_t (for one-hot inputs, log(1 + count) of each token).
    State: (running sum (B, I), steps seen (B, 1)).
    """

    MODES = ("mean", "counts")

    def __init__(self, input_size: int, hidden_size: int, mode: str = "mean",
                 num_layers: int = 1) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"BagEncoder: mode must be one of {self.MODES}, got {mode!r}")
        self.input_size, self.hidden_size, self.mode = input_size, hidden_size, mode
        self.to_hidden = mlp(input_size, hidden_size, num_layers)

    def initial_state(self, batch_size: int) -> BagState:
        ref = self.to_hidden[0].weight
        return ref.new_zeros(batch_size, self.input_size), ref.new_zeros(batch_size, 1)

    def forward(self, x: Tensor, state: BagState | None = None, lengths: Tensor | None = None
                ) -> tuple[Tensor, BagState]:
        check_input("BagEncoder", x, self.input_size, lengths)
        batch, steps, _ = x.shape
        total, seen = self.initial_state(batch) if state is None else state
        alive = alive_mask(lengths, batch, steps, x.device)
        if alive is not None:
            x = x * alive  # nothing past a sequence's end enters its bag
        counts = alive if alive is not None else x.new_ones(batch, steps, 1)
        sums = total[:, None] + x.cumsum(1)  # (B, T, I)
        seen_t = seen[:, None] + counts.cumsum(1)  # (B, T, 1)
        if self.mode == "mean":
            features = sums / seen_t.clamp_min(1.0)  # clamp: only past-the-end rows can be 0
        else:
            features = sums.sign() * sums.abs().log1p()
        out = self.to_hidden(features)  # (B, T, H)
        if alive is not None:
            out = out * alive
        return out, (sums[:, -1], seen_t[:, -1])


class BaselineLM(nn.Module):
    """A language model on a feed-forward encoder: ``window-mlp`` or ``bow``.

    tokens -> embedding (E), or one-hots (V) for ``bow`` with ``bow_mode = counts`` -> encoder
    (H) -> linear head (V). ``num_layers`` is the number of tanh layers of the MLP.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.vocab_size <= 0:
            raise ValueError(f"BaselineLM: vocab_size must be positive, got {config.vocab_size}")
        self.config = config
        one_hot = config.model == "bow" and config.bow_mode == "counts"
        if one_hot and config.tie_weights:
            raise ValueError("tie_weights needs an embedding; bow with bow_mode counts reads "
                             "one-hots")
        self.embedding = None if one_hot else nn.Embedding(config.vocab_size,
                                                           config.embedding_size)
        width = config.vocab_size if one_hot else config.embedding_size
        self.encoder = build_baseline_encoder(config, width)
        self.drop = nn.Dropout(config.dropout)
        self.to_logits = nn.Linear(config.hidden_size, config.vocab_size)
        if config.tie_weights:
            self.to_logits.weight = self.embedding.weight

    def initial_state(self, batch_size: int):
        return self.encoder.initial_state(batch_size)

    def forward(self, tokens: Tensor, state=None, lengths: Tensor | None = None):
        if tokens.dim() != 2:
            raise ValueError(f"BaselineLM: expected tokens of shape (B, T), got "
                             f"{tuple(tokens.shape)}")
        if self.embedding is None:
            x = nn.functional.one_hot(tokens, self.config.vocab_size).float()  # (B, T, V)
        else:
            x = self.drop(self.embedding(tokens))  # (B, T, E)
        h, state = self.encoder(x, state, lengths)  # (B, T, H)
        return self.to_logits(self.drop(h)), state  # (B, T, V)


def build_baseline_encoder(config: ModelConfig, input_size: int) -> nn.Module:
    if config.model == "window-mlp":
        return WindowEncoder(input_size, config.hidden_size, config.window, config.num_layers)
    if config.model == "bow":
        return BagEncoder(input_size, config.hidden_size, config.bow_mode, config.num_layers)
    raise ValueError(f"not a feed-forward baseline: {config.model!r}")
