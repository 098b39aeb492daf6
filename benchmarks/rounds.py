"""Timing in alternating rounds, shared by the benchmarks: every contestant runs once to warm
up, then ``rounds`` rounds in which each runs once in turn, so that the machine's load at any
moment weighs on all of them alike; the figures to compare are ratios of their medians."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Rounds:
    """Seconds of every round, by contestant: wall-clock and this process's CPU time; and the
    wall seconds of each contestant's warm-up call (compilation, first allocations)."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]
    first: dict[str, float]


def alternate(runners: dict[str, Callable[[], object]], rounds: int,
              warm_up: dict[str, Callable[[], object]] | None = None,
              sync: Callable[[], object] = lambda: None) -> Rounds:
    """Time ``runners`` in alternating rounds, after one call each of ``warm_up`` (default: the
    runners themselves); ``sync`` waits for queued device work before each clock reading."""
    result = Rounds({name: [] for name in runners}, {name: [] for name in runners}, {})
    for name, run in (runners if warm_up is None else warm_up).items():
        sync()
        t0 = time.perf_counter()
        run()
        sync()
        result.first[name] = time.perf_counter() - t0
    for _ in range(rounds):
        for name, run in runners.items():
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            run()
            sync()
            result.wall[name].append(time.perf_counter() - t0)
            result.cpu[name].append(time.process_time() - c0)
    return result
