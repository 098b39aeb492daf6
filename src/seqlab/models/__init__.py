"""Model registry: a name -> a builder taking a ModelConfig.

Every language model shares one contract, ``forward(tokens, state=None) -> (logits, state)``,
so one trainer, one ``generate`` and one ``evaluate`` serve them all. A new model is one entry
here and one module.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from seqlab.config import ModelConfig
from seqlab.models.baselines import BaselineLM
from seqlab.models.lm import RecurrentLM

MODELS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "rnn": RecurrentLM,
    "irnn": RecurrentLM,
    "lstm": RecurrentLM,
    "gru": RecurrentLM,
    "window-mlp": BaselineLM,
    "bow": BaselineLM,
}


def build_model(config: ModelConfig) -> nn.Module:
    try:
        builder = MODELS[config.model]
    except KeyError:
        names = ", ".join(MODELS)
        raise ValueError(f"unknown model {config.model!r}; choose from {names}") from None
    return builder(config)


def count_parameters(model: nn.Module) -> int:
    """Distinct trainable parameters (a tied matrix counts once)."""
    distinct = {id(p): p for p in model.parameters() if p.requires_grad}
    return sum(p.numel() for p in distinct.values())
