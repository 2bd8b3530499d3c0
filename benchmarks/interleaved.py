"""Timing several calls in one process, alternated (a, b, b, a, ...) so load drift hits each alike."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator


def alternating(names: list[str], rounds: int) -> Iterator[tuple[int, str]]:
    """(round, name) for every name in every round: in order in even rounds, reversed in odd ones."""
    for i in range(rounds):
        for name in names if i % 2 == 0 else names[::-1]:
            yield i, name


def interleaved_times(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each of `repeats` calls per name; each call must block until its result is ready."""
    times = {name: [] for name in calls}
    for _, name in alternating(list(calls), repeats):
        start = time.perf_counter()
        calls[name]()
        times[name].append(time.perf_counter() - start)
    return times
