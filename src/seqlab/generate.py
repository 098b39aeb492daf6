"""Stateful sampling from a language model: the prompt is read once, then one step per token.

The recurrent state is carried from step to step, so producing N tokens costs N model steps;
the prefix is never run again. Several samples are drawn in parallel as one batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seqlab import limits
from seqlab.arguments import flag, instance, real, whole
from seqlab.config import check_value
from seqlab.data.vocab import UNK, Vocab, check_prompt

# bytes one sampled token costs until it is printed: its id in the output tensor and in a Python
# list, and its text (a token of a word or BPE vocabulary holds several characters)
TOKEN_BYTES = 2 * limits.INT + 16
Progress = Callable[[Iterable[int]], Iterable[int]]  # wraps a loop over steps: a progress bar


@dataclass(frozen=True, kw_only=True)
class SamplingConfig:
    temperature: float = 1.0  # divides the logits; < 1 sharpens, > 1 flattens
    top_k: int = 0  # keep the k most likely tokens (0: all)
    top_p: float = 1.0  # keep the smallest set whose probability reaches p (1: all)
    greedy: bool = False  # always take the most likely token
    banned: tuple[int, ...] = ()  # ids never produced (e.g. a word vocabulary's <unk>)

    def __post_init__(self) -> None:
        real("temperature", self.temperature)
        whole("top_k", self.top_k, 0)
        real("top_p", self.top_p)
        flag("greedy", self.greedy)
        if not self.temperature > 0:  # NaN included
            hint = "; greedy decoding (--greedy) is the limit of temperature 0" \
                if self.temperature == 0 else ""
            raise ValueError(f"temperature must be positive, got {self.temperature}{hint}")
        # the logits are divided by it in float32: no overflow to inf, no subnormal
        check_value("temperature", self.temperature, {"positive": True})
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


def filter_logits(logits: Tensor, config: SamplingConfig) -> Tensor:
    """Temperature, top-k and top-p (nucleus) filtering of (B, V) logits; removed ones are -inf."""
    logits = logits / config.temperature
    if config.top_k and config.top_k < logits.shape[-1]:
        kth = torch.topk(logits, config.top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if config.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the tokens ranked above it already reach top_p
        drop = probs.cumsum(-1) - probs >= config.top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def next_tokens(logits: Tensor, config: SamplingConfig, generator: torch.Generator) -> Tensor:
    """(B, V) logits of the last step -> (B,) sampled ids."""
    if config.banned:
        logits = logits.index_fill(-1, torch.tensor(config.banned, device=logits.device),
                                   float("-inf"))
    if config.greedy:
        return logits.argmax(-1)
    # less the largest logit: however small the temperature, the best token's stays 0, never inf
    logits = logits.float()
    logits = logits - logits.amax(-1, keepdim=True)
    probs = filter_logits(logits, config).softmax(-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(logits.device)


def sampling_config(vocab: Vocab, **sampling) -> SamplingConfig:
    """The sampling settings for a vocabulary: a word vocabulary's ``<unk>`` is never sampled
    (it would write the placeholder itself)."""
    if vocab.kind == "word":
        sampling.setdefault("banned", (vocab.index[UNK],))
    return SamplingConfig(**sampling)


def make_generator(seed: int | None) -> torch.Generator:
    """A CPU generator from ``seed``, or from fresh entropy; torch's global one is left alone."""
    if seed is not None:
        whole("seed", seed, 0)
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


@torch.no_grad()
def sample_ids(model: nn.Module, prompt_ids: Tensor, length: int, config: SamplingConfig,
               num_samples: int = 1, seed: int | None = None, progress: Progress | None = None,
               stop: threading.Event | None = None) -> Tensor:
    """(num_samples, length) new token ids following ``prompt_ids`` (P,) int64, P >= 1;
    ``progress`` wraps the loop over the steps (a progress bar). Setting ``stop`` ends the
    sampling after the current step: fewer than ``length`` columns, every one sampled."""
    whole("length", length, 0)
    whole("num_samples", num_samples, 1)
    if prompt_ids.numel() == 0:
        raise ValueError("the prompt must hold at least one token")
    generator = make_generator(seed)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    tokens = prompt_ids.to(device).expand(num_samples, -1)  # (N, P)
    logits, state = model(tokens)  # the prompt, once
    out = torch.empty(num_samples, length, dtype=torch.long, device=device)
    done = 0
    for t in (progress or iter)(range(length)):
        if stop is not None and stop.is_set():
            break
        token = next_tokens(logits[:, -1], config, generator)  # (N,)
        out[:, t] = token
        done = t + 1
        logits, state = model(token[:, None], state)  # one step, state carried
    model.train(was_training)
    return out[:, :done]


def sample_bytes(vocab_size: int, count: int, length: int) -> int:
    """Memory that ``count`` samples of ``length`` tokens hold: the tokens, and the logits and
    probabilities of one step for every sample."""
    return count * (length * TOKEN_BYTES + 3 * vocab_size * limits.FLOAT)


def check_sample_sizes(model: nn.Module | None, vocab_size: int, count: int, length: int,
                       length_key: str = "length", count_key: str = "num_samples",
                       what: str = "samples") -> None:
    """Refuse ``count`` samples of ``length`` tokens that cannot fit in memory, before
    sampling; the message names both keys (and the model's device when it is a GPU)."""
    need = sample_bytes(vocab_size, count, length)
    device = next(model.parameters()).device if model is not None else "cpu"
    for where in {torch.device("cpu"), torch.device(device)}:
        limits.check_fits(need, f"{length_key} {length} with {count_key} {count}",
                          f"{count:,} {what} of up to {length:,} tokens", where)


def default_prompt(vocab: Vocab) -> str:
    """What to start from when the user gives no prompt: a newline when there is one."""
    if vocab.kind == "bpe":
        return "\n"
    return "\n" if "\n" in vocab.tokens else vocab.tokens[0]


def generate(model: nn.Module, vocab: Vocab, prompt: str | None = None, length: int = 500,
             num_samples: int = 1, seed: int | None = None, progress: Progress | None = None,
             stop: threading.Event | None = None, **sampling) -> list[str]:
    """Sample ``num_samples`` continuations of ``prompt`` (text) of ``length`` tokens each
    (``progress`` and ``stop``: see :func:`sample_ids`).

    Keyword arguments are those of :class:`SamplingConfig`. Returns the prompt followed by the
    generated text, one string per sample. Raises ValueError for a prompt with symbols outside
    the vocabulary, naming them.
    """
    instance("model", model, nn.Module, "a torch.nn.Module (seqlab.load_run(RUN).model)")
    instance("vocab", vocab, Vocab, "a run's vocabulary (seqlab.load_run(RUN).vocab)")
    instance("prompt", prompt, str | None, "a str or None")
    config = sampling_config(vocab, **sampling)
    whole("length", length, 0)
    whole("num_samples", num_samples, 1)
    check_sample_sizes(model, vocab.size, num_samples, length)
    given = prompt if prompt else default_prompt(vocab)
    check_prompt(vocab, given)
    prompt_ids = torch.as_tensor(vocab.encode(given).astype("int64"))
    ids = sample_ids(model, prompt_ids, length, config, num_samples, seed, progress, stop)
    prefix = prompt or ""
    return [prefix + vocab.decode(row.tolist()) for row in ids]


@torch.no_grad()
def sample_until(model: nn.Module, vocab: Vocab, prompt: str, end: str, max_length: int,
                 num_samples: int = 1, seed: int | None = None, **sampling
                 ) -> list[tuple[str, bool]]:
    """Sample ``num_samples`` continuations of ``prompt``, each until it writes ``end`` or
    reaches ``max_length`` tokens, in parallel as one batch.

    Returns (text, ended) per sample: the new text only, cut before the first ``end``, and
    whether ``end`` was reached (False: cut at the length cap). The prompt is read once and
    each step costs one model step per sample.
    """
    config = sampling_config(vocab, **sampling)
    whole("max_length", max_length)
    whole("num_samples", num_samples)
    if max_length < 1 or num_samples < 1:
        raise ValueError(f"max_length and num_samples must be >= 1, got {max_length} and "
                         f"{num_samples}")
    if not end:
        raise ValueError("the end marker must not be empty")
    check_sample_sizes(model, vocab.size, num_samples, max_length, "max_length")
    check_prompt(vocab, prompt)
    generator = make_generator(seed)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    tokens = torch.as_tensor(vocab.encode(prompt).astype("int64")).to(device)
    logits, state = model(tokens.expand(num_samples, -1))  # the prompt, once
    rows: list[list[int]] = [[] for _ in range(num_samples)]
    ended = [False] * num_samples
    for _ in range(max_length):
        token = next_tokens(logits[:, -1], config, generator)  # (N,)
        for k, t in enumerate(token.tolist()):
            if not ended[k]:
                rows[k].append(t)
                # a marker of c characters ends within the last c tokens (every token >= 1 char)
                ended[k] = end in vocab.decode(rows[k][-len(end) - 1:])
        if all(ended):
            break
        logits, state = model(token[:, None], state)  # one step, state carried
    model.train(was_training)
    texts = [vocab.decode(row) for row in rows]
    return [(text.split(end, 1)[0], done) for text, done in zip(texts, ended, strict=True)]
