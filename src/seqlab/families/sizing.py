"""The size part of the family contract: what a training run of a family allocates, estimated
before it allocates (:mod:`seqlab.limits`), and the refusals built on the estimate.

A family (:class:`seqlab.families.base.Family`, which mixes :class:`Sizing` in) overrides
``shape`` (the model's and a batch's sizes), ``data_bytes`` (data it draws from its keys) and
``size_keys`` (the keys an estimate may blame); the rest is shared, and reads the keys'
defaults from the family (``Family.defaults``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from seqlab import limits
from seqlab.families.configs import Configs, replace_keys
from seqlab.training import resolve_device

# the shared keys that scale memory, one of which an estimate that does not fit names
SIZE_KEYS = ("hidden_size", "embedding_size", "num_layers", "window", "batch_size", "seq_len")


class Sizing:
    """A family's memory estimate and the refusals built on it."""

    size_keys: ClassVar[tuple[str, ...]] = SIZE_KEYS  # keys an estimate may blame

    def shape(self, configs: Configs, assets: Any = None) -> limits.Shape:
        """The sizes a training step of these configs allocates; ``assets`` None: before the
        data is read, its sizes at their least. Default: a language model's (tokens embedded,
        the vocabulary as the head, batch_size windows of seq_len tokens)."""
        model, train = configs.model, configs.train
        vocab = max(model.vocab_size, 1)
        return limits.Shape(model, model.embedding_size, vocab, vocab, train.seq_len,
                            train.batch_size)

    def data_bytes(self, source: str, configs: Configs) -> tuple[int, str]:
        """(bytes, what they hold) of the data the family draws from its keys for ``source``
        (default: none; a file's size is the file's)."""
        return 0, "data"

    def check_sizes(self, configs: Configs, assets: Any = None) -> None:
        """Refuse, before anything is allocated, a model and batch whose training cannot fit
        in the memory of the run's device; the message names the key that makes it large."""

        def need(c: Configs) -> tuple[int, str]:
            parts = limits.training_bytes(self.shape(c, assets), c.train.optimizer)
            return sum(parts.values()), f"training ({limits.describe(parts)})"

        self.refuse_beyond_memory(configs, need, resolve_device(configs.train.device))

    def allocation_errors(self, configs: Configs):
        """A context in which an allocation failure (MemoryError, torch's "can't allocate
        memory", CUDA out of memory) becomes :class:`seqlab.limits.TooLarge` naming this run's
        size keys: for building the model and training it."""
        flat, defaults = configs.flat(), self.defaults()
        keys = {k: flat[k] for k in self.size_keys if k in flat}
        given = {k: v for k, v in keys.items() if v != defaults[k]}
        return limits.allocation_errors(given or keys, resolve_device(configs.train.device))

    def check_data(self, source: str, configs: Configs) -> None:
        """Refuse data to draw that cannot fit in memory, before drawing it."""
        self.refuse_beyond_memory(configs, lambda c: self.data_bytes(source, c), "cpu")

    def refuse_beyond_memory(self, configs: Configs, need_of, device) -> None:
        """:class:`seqlab.limits.TooLarge` when ``need_of(configs)`` (bytes, what) exceeds the
        device's total memory, naming the size key whose default would lower it most."""
        need, what = need_of(configs)
        memory = limits.machine_memory(device)
        if need <= memory.total:
            return
        flat, variants, defaults = configs.flat(), {}, self.defaults()
        for key in self.size_keys:
            if key in flat and flat[key] != defaults[key]:
                try:
                    variants[key] = (flat[key], need_of(replace_keys(configs,
                                                                     {key: defaults[key]}))[0])
                except ValueError:  # the default conflicts with another key (tie_weights)
                    continue
        limits.check_fits(need, limits.culprit(need, variants), what, memory=memory)
