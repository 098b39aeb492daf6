"""Encoders: a sequence of vectors -> a sequence of states, behind one contract, and their registry.

Every encoder has :class:`seqlab.recurrent.Recurrent`'s contract (:class:`Encoder`), so every
model head (language model, sequence model) takes any of them. :data:`ENCODERS` maps a model
name to its :class:`EncoderSpec`; it is read live: every cell of :data:`seqlab.cells.CELLS` (a
:class:`Recurrent` stack of it), then the feed-forward baselines, what fails on sequences:

- ``window-mlp`` (:class:`WindowEncoder`) sees the last n inputs, concatenated: a fixed window.
  Its first weight matrix is (H, n I): every position of the window has weights of its own (no
  sharing across positions), so the parameter count grows with n, and nothing older than n
  steps can matter.
- ``bow`` (:class:`BagEncoder`) sees the whole history as a bag: the mean of the inputs so far,
  or sign(s) log(1 + |s|) of their sum s (for one-hot inputs, log(1 + count) of each token). The
  order of the history is lost by construction.

Their state is what the next chunk needs (the last n - 1 inputs, or the running sum and count),
so truncated BPTT streams and stateful generation work unchanged. Shapes: B batch, T time,
I input, H hidden.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from seqlab.cells import CELLS
from seqlab.recurrent import Recurrent

BagState = tuple[Tensor, Tensor]  # running sum (B, I), steps seen (B, 1)


class Encoder(Protocol):
    """The encoder contract.

    ``forward(x (B, T, I), state=None, lengths=None) -> (output (B, T, H), state)``: state None
    is :meth:`initial_state`; with ``lengths`` (B,), outputs past a sequence's end are zero and
    its final state is the one at its end. Running a sequence in chunks, carrying the state,
    gives what one call gives.
    """

    def __call__(self, x: Tensor, state=None, lengths: Tensor | None = None): ...

    def initial_state(self, batch_size: int): ...


class ModelKeys(Protocol):
    """The model keys an encoder is built from: :class:`seqlab.config.ModelConfig`'s, which
    reads this registry for its choices and so is not imported here."""

    model: str
    hidden_size: int
    num_layers: int
    dropout: float
    forget_bias: float
    chrono_steps: int
    window: int
    bow_mode: str


def never(config: ModelKeys) -> bool:
    return False


@dataclass(frozen=True, kw_only=True)
class EncoderSpec:
    """One model name: how to build its encoder and what a language model feeds it."""

    name: str
    build: Callable[[int, ModelKeys], nn.Module]  # (input size I, config) -> encoder
    # whether a language model feeds it one-hot tokens (V) rather than embeddings (E)
    one_hot: Callable[[ModelKeys], bool] = never


def build_recurrent(input_size: int, config: ModelKeys) -> Recurrent:
    """A stack of the cell ``config.model``."""
    return Recurrent(config.model, input_size, config.hidden_size, config.num_layers,
                     dropout=config.dropout, forget_bias=config.forget_bias,
                     chrono=config.chrono_steps)


_FEED_FORWARD: dict[str, EncoderSpec] = {}


class _Registry(Mapping):
    """Model name -> EncoderSpec: every registered cell, then the feed-forward encoders, read
    live so that a cell or encoder registered later is a model name at once."""

    def __getitem__(self, name: str) -> EncoderSpec:
        if name in CELLS:
            return EncoderSpec(name=name, build=build_recurrent)
        return _FEED_FORWARD[name]

    def __iter__(self) -> Iterator[str]:
        yield from CELLS
        yield from (name for name in _FEED_FORWARD if name not in CELLS)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"ENCODERS({', '.join(self)})"


ENCODERS: Mapping[str, EncoderSpec] = _Registry()


def register_encoder(spec: EncoderSpec) -> EncoderSpec:
    """Add a feed-forward (or any non-cell) encoder; cells join through the cell registry."""
    if spec.name in ENCODERS:
        raise ValueError(f"register_encoder: a model named {spec.name!r} is already registered")
    _FEED_FORWARD[spec.name] = spec
    return spec


def unregister_encoder(name: str) -> EncoderSpec:
    """Remove an encoder added by :func:`register_encoder`; returns its spec."""
    if name not in _FEED_FORWARD:
        raise ValueError(f"unregister_encoder: no encoder named {name!r} (cells leave through "
                         f"seqlab.cells.unregister_cell)")
    return _FEED_FORWARD.pop(name)


def encoder_spec(name: str) -> EncoderSpec:
    """The spec of a model name; ValueError naming the choices for an unknown one."""
    if name not in ENCODERS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(ENCODERS)}")
    return ENCODERS[name]


def build_encoder(input_size: int, config: ModelKeys) -> nn.Module:
    """The encoder named by ``config.model``, reading input vectors of size ``input_size``."""
    return encoder_spec(config.model).build(input_size, config)


# feed-forward baselines --------------------------------------------------------------------
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
        # the n shifted spans side by side, oldest first (what unfold gives, but unfold over a
        # dynamic length has no ONNX export)
        windows = torch.cat([full[:, k:k + steps] for k in range(self.window)], -1)  # (B, T, n I)
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


def build_window(input_size: int, config: ModelKeys) -> WindowEncoder:
    return WindowEncoder(input_size, config.hidden_size, config.window, config.num_layers)


def build_bag(input_size: int, config: ModelKeys) -> BagEncoder:
    return BagEncoder(input_size, config.hidden_size, config.bow_mode, config.num_layers)


def counts_of_tokens(config: ModelKeys) -> bool:
    """bow in counts mode reads one-hots: log(1 + count) of each token, not of embeddings."""
    return config.bow_mode == "counts"


register_encoder(EncoderSpec(name="window-mlp", build=build_window))
register_encoder(EncoderSpec(name="bow", build=build_bag, one_hot=counts_of_tokens))
