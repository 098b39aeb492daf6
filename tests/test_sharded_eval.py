"""Validation split across processes: each family's task evaluated by 2 and 3 processes, each
scoring only its block of the validation rows, gives the figures one process gives alone.

The processes here are threads sharing one model, joined by :class:`ThreadWorld`, a World
whose sums, gathers and broadcasts go through memory instead of a process group: the same
calls in the same order as under torchrun (tests/test_distributed.py runs real gloo processes
through whole training runs). Each process's share is counted at the model's recurrent
layers: together they read every row once, as one process does, and none reads them all.
"""

from __future__ import annotations

import math
import random
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from seqlab.distributed import World
from seqlab.families import runner
from seqlab.recurrent import Recurrent

WORDS = "the quick brown fox jumps over a lazy dog and cat sat on mat by old red barn".split()

pytestmark = pytest.mark.usefixtures("single_thread")  # conftest: one intra-op thread


class Exchange:
    """What the threads share: one slot each, read by all once all have written. Between
    exchanges one thread works at a time (``turn``): processes have a random generator each,
    threads share torch's, whose draws (a forecaster's sample paths) must not interleave."""

    def __init__(self, size: int) -> None:
        self.barrier = threading.Barrier(size, timeout=60)
        self.slots: list = [None] * size
        self.turn = threading.Lock()

    def all(self, rank: int, value):
        self.slots[rank] = value
        self.turn.release()
        try:
            self.barrier.wait()
            values = list(self.slots)
            self.barrier.wait()  # nobody writes the next round before all have read this one
        finally:
            self.turn.acquire()
        return values


@dataclass(frozen=True)
class ThreadWorld(World):
    exchange: Exchange | None = None

    def _reduce(self, values, op):
        columns = zip(*self.exchange.all(self.rank, [float(v) for v in values]), strict=True)
        return [math.fsum(c) if op == dist.ReduceOp.SUM else max(c) for c in columns]

    def gather(self, value):
        return self.exchange.all(self.rank, value)

    def from_main(self, value):
        return self.exchange.all(self.rank, value)[0]


def evaluated_apart(task, model, size: int) -> tuple[list[dict], list[int]]:
    """Each of ``size`` threads' metrics, and the rows each fed the recurrent layers."""
    exchange, results, rows = Exchange(size), [None] * size, Counter()
    errors: list[BaseException] = []

    def count(module, args):
        rows[threading.get_ident()] += args[0].shape[0]

    hooks = [m.register_forward_pre_hook(count) for m in model.modules()
             if isinstance(m, Recurrent)]

    def one(rank: int) -> None:
        try:
            with exchange.turn:
                results[rank] = task.evaluate(model, world=ThreadWorld(rank, size,
                                                                       exchange=exchange))
            results[rank]["rows"] = rows[threading.get_ident()]
        except BaseException as err:  # surfaced in the test's thread
            errors.append(err)
            exchange.barrier.abort()

    threads = [threading.Thread(target=one, args=(rank,)) for rank in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for hook in hooks:
        hook.remove()
    if errors:
        raise errors[0]
    return results, [r.pop("rows") for r in results]


def model_and_task(source, **keys):
    """The untrained model and the task that training ``source`` with ``keys`` builds."""
    family = runner.family_for(source, keys)
    configs = runner.typed_configs(family, {"seed": 0, "device": "cpu", **keys})
    prepared = family.prepare(str(source), configs)
    configs = family.complete(configs, prepared.assets)
    model = runner.initial_model(family, configs, prepared.assets)
    return model, family.task(prepared, configs, "cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sharded")
    rng = random.Random(0)
    text = folder / "text.txt"
    text.write_text("".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
                            + "\n" for _ in range(400)), encoding="utf-8")
    tunes = folder / "tunes.abc"
    tunes.write_text("\n\n".join(
        f"X:{k}\nT:Tune {k}\nM:4/4\nL:1/8\nK:G\nGABc dBAG|{'ABcd' * (k % 7 + 1)}|"
        f"{'gfed' * (k % 3 + 1)}|]" for k in range(1, 81)) + "\n", encoding="utf-8")
    labelled = folder / "labelled.tsv"
    labelled.write_text("label\ttext\n" + "".join(
        f"{'ab'[k % 2]}\t{' '.join(rng.choice(WORDS) for _ in range(rng.randint(2, 9)))}\n"
        for k in range(200)), encoding="utf-8")
    shop = folder / "shop.csv"
    shop.write_text("id,time,value\n" + "".join(
        f"s{s},{2000 + k // 12}-{k % 12 + 1:02d},{100 + s * 7 + k + 10 * math.sin(k / 2):.3f}\n"
        for s in range(6) for k in range(80)), encoding="utf-8")
    return {"text": text, "tunes": tunes, "labelled": labelled, "shop": shop}


LM = dict(hidden_size=16, embedding_size=8, seq_len=16, batch_size=6)
CASES = {
    "text-streams": ("text", dict(batching="streams", **LM)),
    "text-windows": ("text", dict(batching="windows", **LM)),
    "text-lines": ("text", dict(batching="lines", **LM)),
    "tunes": ("tunes", dict(batching="tunes", **LM)),
    "seq2seq": ("reverse", dict(task="seq2seq", num_pairs=300, length="3-9", attention="dot",
                                hidden_size=16, embedding_size=8, batch_size=16)),
    "classify": ("labelled", dict(task="classify", model="gru", bidirectional=True,
                                  hidden_size=8, embedding_size=8, batch_size=8)),
    "synthetic": ("adding", dict(model="gru", length="5-15", hidden_size=8, batch_size=10,
                                 val_sequences=45)),
    "forecast-direct": ("shop", dict(task="forecast", head="direct", horizon=4, context=12,
                                     val_windows=4, hidden_size=8, batch_size=8)),
    # 8192 // 1000 = 8 windows share one model call and one seed: each process takes whole
    # calls (24 windows: 3 calls), so that every window's sample paths are those drawn alone
    "forecast-sampled": ("shop", dict(task="forecast", head="gaussian", horizon=4, context=12,
                                      val_windows=4, hidden_size=8, batch_size=8,
                                      samples=1000)),
}


@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("case", list(CASES))
def test_each_process_scores_its_block_and_the_figures_are_one_processs(data, case, size):
    source, keys = CASES[case]
    model, task = model_and_task(data.get(source, source), **keys)
    with torch.no_grad():  # off its init, so that the figures are not a uniform model's
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(
                p.numel())))
    (alone,), (rows_alone,) = evaluated_apart(task, model, 1)
    apart, rows = evaluated_apart(task, model, size)
    for result in apart:  # every process ends with the same figures: one process's
        assert result.keys() == alone.keys()
        for key, value in alone.items():
            assert result[key] == pytest.approx(value, rel=2e-6, abs=1e-9), key
    assert sum(rows) == rows_alone  # every row read once ...
    assert max(rows) < rows_alone and sum(r > 0 for r in rows) >= 2  # ... and split
    assert alone == pytest.approx(task.evaluate(model))  # the World-less call is the same


def test_a_block_per_process_covers_the_rows_in_order():
    for count in (0, 1, 2, 5, 6, 7):
        for size in (1, 2, 3, 4):
            blocks = [World(rank, size).block(count) for rank in range(size)]
            assert [i for b in blocks for i in range(count)[b]] == list(range(count))
            assert max(len(range(count)[b]) for b in blocks) == -(-count // size)


def test_greedy_decoding_of_a_source_does_not_depend_on_its_batch(data):
    """Each source stops at its own cap (not its batch's longest), so that the processes'
    blocks decode as one process does: an untrained model rarely ends, and is cut there."""
    from seqlab.seq2seq_eval import translate_texts

    model, task = model_and_task("reverse", **CASES["seq2seq"][1])
    sources = ["ab", "abcdefghabcdefghabcdefghabcdefgh", "c"]
    together = translate_texts(model, task.vocabs, sources, max_target=3)
    alone = [translate_texts(model, task.vocabs, [s], max_target=3)[0] for s in sources]
    assert [t.text for t in together] == [t.text for t in alone]
    assert [t.source for t in together] == sources
    assert np.all([len(t.output_tokens) <= max(len(s), 6) + 10
                   for t, s in zip(together, sources, strict=True)])


def test_a_process_with_no_validation_rows_joins_the_others(data, tmp_path):
    """Three processes and two validation rows: one scores nothing, its (0, K) probabilities
    join the others' and every process ends with one process's figures."""
    small = tmp_path / "small.tsv"
    small.write_text("".join(f"{'ab'[k % 2]}\t{' '.join(WORDS[k % 7:k % 7 + 3])}\n"
                             for k in range(20)), encoding="utf-8")
    model, task = model_and_task(small, **CASES["classify"][1])
    assert len(task.val_set) == 2
    (alone,), _ = evaluated_apart(task, model, 1)
    apart, rows = evaluated_apart(task, model, 3)
    assert sorted(r > 0 for r in rows) == [False, True, True]
    for result in apart:
        assert result == pytest.approx(alone, rel=2e-6)
