"""A run's typed keys (:class:`Configs`), apart from the family contract that reads them
(:mod:`seqlab.families.base`) so that the contract's parts (the sizes of
:mod:`seqlab.families.sizing`) can build them too."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from seqlab.config import ModelConfig, TrainConfig, coerce, fields_of


@dataclass(frozen=True)
class Configs:
    """A run's typed keys: the shared model and training keys and the family's own."""

    model: ModelConfig
    train: TrainConfig
    own: Any = None  # the family's config_class instance, or None

    def flat(self) -> dict[str, Any]:
        """Every user key with its value (vocab_size, decided by the data, left out)."""
        parts = [self.model, self.train] + ([self.own] if self.own is not None else [])
        return {f.name: getattr(part, f.name) for part in parts for f in fields_of(type(part))}


def replace_keys(configs: Configs, keys: Mapping[str, Any]) -> Configs:
    """``configs`` with ``keys`` (checked, typed) put in."""
    parts = [None if part is None else dataclasses.replace(part, **coerce(type(part), keys))
             for part in (configs.model, configs.train, configs.own)]
    return Configs(*parts)
