"""Models over the encoder registry: every name of :data:`MODELS` builds a language model.

Every language model shares one contract, ``forward(tokens, state=None) -> (logits, state)``,
so one trainer, one ``generate`` and one ``evaluate`` serve them all. :data:`MODELS` is
:data:`seqlab.encoders.ENCODERS` itself (every registered cell, then window-mlp and bow), and
``ModelConfig.model`` chooses from the same object: a new cell or encoder, once registered, is
a model name everywhere.
"""

from __future__ import annotations

from torch import nn

from seqlab.config import ModelConfig
from seqlab.encoders import ENCODERS, encoder_spec
from seqlab.models.classifier import Classifier as Classifier  # re-exported
from seqlab.models.lm import LanguageModel

MODELS = ENCODERS


def build_model(config: ModelConfig) -> nn.Module:
    encoder_spec(config.model)  # ValueError naming the choices for an unknown model
    return LanguageModel(config)


def count_parameters(model: nn.Module) -> int:
    """Distinct trainable parameters (a tied matrix counts once)."""
    distinct = {id(p): p for p in model.parameters() if p.requires_grad}
    return sum(p.numel() for p in distinct.values())
