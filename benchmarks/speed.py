"""Training speed: seqlab's LSTM language model against a plain torch.nn.LSTM loop.

Both train the same model (embedding 64, one LSTM layer of 512, vocabulary 65, batch 32,
sequence 128) on the same token streams with Adam, truncated BPTT with a carried, detached
state, and clipping of the global gradient norm at 1.0 (seqlab's default; the plain loop does the
same work). Rounds alternate between the contestants so that machine noise hits both alike;
the figure of merit is the ratio of median tokens per second, measured in one run. Each ratio is
also given from the process's CPU seconds (``_cpu``), which on a machine shared with other work
leave out the others' turns on the cores (run it with one thread for that figure to mean it).

Also reported: the explicit path (Python loop over cells) as a ratio to the plain loop, measured
in rounds of its own that alternate with it; with ``--compile`` also the explicit path with its
step through torch.compile (``train --compile``), whose first step (the compilation, forward
and backward) is timed apart; with ``--per-step`` also the explicit loop with neither its input
projected before it nor W_hh's gradient made after it (the cell's own step at every step, W_hh's
gradient accumulated step by step); the machine's measured float32 matrix-multiply peak, and the
achieved FLOP rate, counting an LSTM step as 8*H*(I+H) FLOPs forward per sample, the head as
2*H*V, and training as 3x forward.

    python benchmarks/speed.py [--rounds 5] [--steps 8] [--compile] [--per-step] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from functools import partial
from pathlib import Path

import torch
from torch import nn

from rounds import alternate  # alternating rounds, shared by the benchmarks
from seqlab.config import ModelConfig, TrainConfig
from seqlab.models import build_model
from seqlab.tasks import LanguageModelTask
from seqlab.training import Trainer

E, H, V, B, T = 64, 512, 65, 32, 128
SHAKESPEARE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare.txt"


def tokens(n: int) -> torch.Tensor:
    """Tiny Shakespeare's characters when it is there, else seeded random ids."""
    if SHAKESPEARE.exists():
        text = SHAKESPEARE.read_text(encoding="utf-8")[:n]
        chars = sorted(set(text))
        lookup = {c: i for i, c in enumerate(chars)}
        return torch.tensor([lookup[c] for c in text], dtype=torch.int16)
    return torch.randint(0, V, (n,), generator=torch.Generator().manual_seed(0)).to(torch.int16)


class PlainLM(nn.Module):
    def __init__(self, hidden: int = H) -> None:
        super().__init__()
        self.embedding = nn.Embedding(V, E)
        self.lstm = nn.LSTM(E, hidden, batch_first=True)
        self.head = nn.Linear(hidden, V)

    def forward(self, x, state=None):
        h, state = self.lstm(self.embedding(x), state)
        return self.head(h), state


def plain_loop(data: torch.Tensor, hidden: int = H, batch: int = B, length: int = T,
               device: str | torch.device = "cpu"):
    """The hand-written baseline: returns a function that runs n training steps."""
    torch.manual_seed(0)
    model = PlainLM(hidden).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    per = (len(data) - 1) // batch
    x_all = data[:batch * per].view(batch, per).to(device)
    y_all = data[1:batch * per + 1].view(batch, per).to(device)
    pos = {"k": 0, "state": None}

    def run(n: int) -> None:
        for _ in range(n):
            k = pos["k"]
            if (k + 1) * length > per:
                k, pos["state"] = 0, None
            x = x_all[:, k * length:(k + 1) * length].long()
            y = y_all[:, k * length:(k + 1) * length].long()
            logits, state = model(x, pos["state"])
            loss = nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            pos["state"] = tuple(s.detach() for s in state)
            pos["k"] = k + 1
    return run


def seqlab_loop(data: torch.Tensor, mode: str = "fused", compile: bool = False,
                per_step: bool = False, hidden: int = H, batch: int = B, length: int = T,
                device: str | torch.device = "cpu", precision: str = "fp32"):
    """seqlab's trainer step (what Trainer.fit runs between evaluations)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(model="lstm", embedding_size=E, hidden_size=hidden,
                                    vocab_size=V)).to(device)
    model.recurrent.mode = mode
    if per_step:  # the cell's own step at every step
        model.recurrent.spec = dataclasses.replace(model.recurrent.spec, recur=None, sweep=None,
                                                    sweep_on_cpu=False)
    config = TrainConfig(batch_size=batch, seq_len=length, lr=2e-3, warmup_steps=0,
                         max_steps=10**9, compile=compile, precision=precision)
    task = LanguageModelTask(data, data[:1000], config)
    trainer = Trainer(model, task, config, device=device)
    model.train()

    def run(n: int) -> None:
        for _ in range(n):
            trainer._train_step()
    return run


def matmul_peak(size: int = 2048, repeats: int = 10) -> float:
    """Best-of float32 GFLOP/s of a square matrix product on this machine."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2 * size**3 / (time.perf_counter() - t0) / 1e9)
    return best


def measure(runners: dict, rounds: int, steps: int, first: dict | None = None
            ) -> dict[str, float]:
    """Median tokens/s per runner over alternating rounds of ``steps`` steps (one warm-up step
    each first, whose seconds go into ``first`` when given); ``NAME_cpu``: per CPU second."""
    timed = alternate({name: partial(run, steps) for name, run in runners.items()}, rounds,
                      warm_up={name: partial(run, 1) for name, run in runners.items()})
    if first is not None:
        first.update(timed.first)
    tokens = steps * B * T
    return {**{name: statistics.median(tokens / s for s in w) for name, w in timed.wall.items()},
            **{f"{name}_cpu": statistics.median(tokens / s for s in c)
               for name, c in timed.cpu.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--steps", type=int, default=8, help="training steps per round (default 8)")
    parser.add_argument("--explicit-steps", type=int, default=2,
                        help="steps per round for the slow explicit path (default 2)")
    parser.add_argument("--compile", action="store_true",
                        help="also the explicit path with its step through torch.compile")
    parser.add_argument("--per-step", action="store_true",
                        help="also the explicit path running the cell's own step at every step")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    data = tokens(B * T * 40 + 1)
    fast = measure({"plain": plain_loop(data), "seqlab": seqlab_loop(data, "fused")},
                   args.rounds, args.steps)
    explicit = {"plain": plain_loop(data), "explicit": seqlab_loop(data, "explicit")}
    if args.compile:
        explicit["compiled"] = seqlab_loop(data, "explicit", compile=True)
    if args.per_step:
        explicit["per_step"] = seqlab_loop(data, "explicit", per_step=True)
    first: dict[str, float] = {}
    slow = measure(explicit, max(2, args.rounds // 2), args.explicit_steps, first)
    peak = matmul_peak()
    flops_per_token = 3 * (8 * H * (E + H) + 2 * H * V)
    result = {
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "plain_tokens_per_s": fast["plain"], "seqlab_tokens_per_s": fast["seqlab"],
        "seqlab_over_plain": fast["seqlab"] / fast["plain"],
        "seqlab_over_plain_cpu": fast["seqlab_cpu"] / fast["plain_cpu"],
        "explicit_tokens_per_s": slow["explicit"],
        "explicit_over_plain": slow["explicit"] / slow["plain"],
        # the same from the process's CPU seconds: what a shared machine's other work leaves out
        "explicit_over_plain_cpu": slow["explicit_cpu"] / slow["plain_cpu"],
        **({"compiled_tokens_per_s": slow["compiled"],
            "compiled_over_plain": slow["compiled"] / slow["plain"],
            "compiled_over_plain_cpu": slow["compiled_cpu"] / slow["plain_cpu"],
            "compiled_first_step_s": first["compiled"],
            "explicit_first_step_s": first["explicit"]} if args.compile else {}),
        **({"per_step_over_plain": slow["per_step"] / slow["plain"],
            "per_step_over_plain_cpu": slow["per_step_cpu"] / slow["plain_cpu"]}
           if args.per_step else {}),
        "matmul_peak_gflops": peak,
        "seqlab_gflops": fast["seqlab"] * flops_per_token / 1e9,
        "seqlab_fraction_of_peak": fast["seqlab"] * flops_per_token / 1e9 / peak,
    }
    for key, value in result.items():
        print(f"{key:26} {value:,.3f}" if isinstance(value, float) else f"{key:26} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
