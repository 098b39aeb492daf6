"""Tasks: what the trainer trains on, how a batch turns into a loss, and how to evaluate.

A task provides ``train_batch(step) -> Chunk``, ``loss(model, chunk, state) -> (loss, state)``
and ``evaluate(model, world) -> dict`` (each process its rows of the validation data); the
trainer knows nothing else about the data or the model.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from seqlab.config import TrainConfig
from seqlab.data import IGNORE
from seqlab.data.lines import EncodedLines, LineBatches
from seqlab.data.streams import Chunk, StreamBatches, WindowBatches
from seqlab.data.tunes_batches import EncodedTunes, TuneBatches
from seqlab.distributed import SINGLE, World, own_rows
from seqlab.recurrent import State, detach_state


def token_nll(logits: Tensor, targets: Tensor) -> tuple[Tensor, int]:
    """Summed cross-entropy in nats over the targets that are not IGNORE, and their count.

    logits (B, T, V), targets (B, T). This is the loss summed over time steps; dividing by the
    count gives nats per token.
    """
    total = nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(),
                                        ignore_index=IGNORE, reduction="sum")
    return total, int((targets != IGNORE).sum())


def lm_metrics(nats: float, tokens: int, chars_per_token: float, prefix: str = "") -> dict:
    loss = nats / max(tokens, 1)
    return {f"{prefix}loss": loss,
            f"{prefix}ppl": math.exp(min(loss, 700.0)),  # exp overflows a float past ~709
            f"{prefix}bpc": loss / math.log(2) / chars_per_token,
            f"{prefix}tokens": tokens}


@torch.no_grad()
def evaluate_tokens(model: nn.Module, tokens: Tensor, batch_size: int, seq_len: int,
                    device: torch.device | str = "cpu", max_chunks: int = 0,
                    world: World = SINGLE) -> tuple[float, int]:
    """(summed nats, tokens scored) of a language model on one token stream, state carried."""
    if len(tokens) < 2:
        raise ValueError(f"need at least 2 tokens to evaluate, got {len(tokens)}")
    batch_size = max(1, min(batch_size, (len(tokens) - 1) // seq_len))
    seq_len = min(seq_len, len(tokens) - 1)
    return evaluate_chunks(model, StreamBatches(tokens, batch_size, seq_len), device, max_chunks,
                           world)


@torch.no_grad()
def evaluate_chunks(model: nn.Module, batches: StreamBatches | TuneBatches | LineBatches,
                    device: torch.device | str = "cpu", max_chunks: int = 0,
                    world: World = SINGLE) -> tuple[float, int]:
    """(summed nats, tokens scored) over the chunks of one epoch in order, the state carried
    except into a fresh chunk (the first of a batch of tunes, every batch of lines); padding
    is not scored. With many processes (``world``) each scores its block of every chunk's
    rows, carrying its own rows' state, and the sums are added up across them."""
    was_training = model.training
    model.eval()
    nats, count, state = 0.0, 0, None
    chunks = len(batches) if max_chunks <= 0 else min(max_chunks, len(batches))
    for k in range(chunks):
        chunk, own = own_rows(batches[k], world)
        if not own:  # none of this batch's rows (all its chunks alike): nothing to carry
            state = None
            continue
        logits, state = model(chunk.inputs.to(device), None if chunk.fresh else state)
        total, n = token_nll(logits, chunk.targets.to(device))
        nats, count = nats + float(total), count + n
    model.train(was_training)
    nats, count = world.sum([nats, count])
    return nats, int(count)


class LanguageModelTask:
    """Next-token prediction: on one token stream (truncated BPTT or random windows), on whole
    tunes or on whole lines, padded and masked (``tunes`` / ``lines``: the training and
    validation items, needed by ``batching="tunes"`` / ``"lines"`` only)."""

    def __init__(self, train_tokens: Tensor, val_tokens: Tensor, config: TrainConfig,
                 chars_per_token: float = 1.0,
                 tunes: tuple[EncodedTunes, EncodedTunes] | None = None,
                 lines: tuple[EncodedLines, EncodedLines] | None = None) -> None:
        self.val_batches: TuneBatches | LineBatches | None = None
        if config.batching == "lines":
            if lines is None:
                raise ValueError("--batching lines needs the source read as lines")
            self.batches = LineBatches(lines[0], config.batch_size, config.seed)
            self.val_batches = LineBatches(lines[1], config.batch_size, None)
        elif config.batching == "tunes":
            if tunes is None:
                raise ValueError("--batching tunes needs ABC tunes (a bundled corpus, an .abc "
                                 "file or a folder of them); for other text use streams or "
                                 "windows")
            self.batches = TuneBatches(tunes[0], config.batch_size, config.seq_len, config.seed)
            self.val_batches = TuneBatches(tunes[1], config.batch_size, config.seq_len, None)
        elif config.batching == "streams":
            self.batches = StreamBatches(train_tokens, config.batch_size, config.seq_len)
        else:
            self.batches = WindowBatches(train_tokens, config.batch_size, config.seq_len,
                                         config.seed)
        if len(val_tokens) < 2:
            raise ValueError(f"the validation split has {len(val_tokens)} tokens; it needs at "
                             "least 2 (raise --val-fraction or give more data)")
        self.val_tokens = val_tokens
        self.config = config
        self.chars_per_token = chars_per_token
        self.device: torch.device | str = "cpu"

    def train_batch(self, step: int) -> Chunk:
        return self.batches[step]

    def loss(self, model: nn.Module, chunk: Chunk, state: State | None
             ) -> tuple[Tensor, State, int]:
        """Mean nats per token of one chunk, the state to carry (detached), tokens scored."""
        logits, state = model(chunk.inputs.to(self.device), None if chunk.fresh else state)
        total, count = token_nll(logits, chunk.targets.to(self.device))
        return total / count, detach_state(state), count

    def evaluate(self, model: nn.Module, world: World = SINGLE) -> dict[str, float]:
        if self.val_batches is not None:
            nats, count = evaluate_chunks(model, self.val_batches, self.device,
                                         self.config.eval_batches, world)
            return lm_metrics(nats, count, self.val_batches.chars_per_token, prefix="val_")
        nats, count = evaluate_tokens(model, self.val_tokens, self.config.batch_size,
                                      self.config.seq_len, self.device, self.config.eval_batches,
                                      world)
        return lm_metrics(nats, count, self.chars_per_token, prefix="val_")
