"""Timing several calls in one process, alternated (a, b, b, a, ...) so load drift hits each alike."""

from __future__ import annotations

import time
from collections.abc import Callable


def interleaved_times(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each of `repeats` calls per name; each call must block until its result is ready."""
    times = {name: [] for name in calls}
    order = list(calls)
    for i in range(repeats):
        for name in order if i % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    return times
