"""Expensive fixture results made once per test run, not once per xdist worker.

A module- or session-scoped fixture is made again by every worker that runs one of its tests,
and `--dist worksteal` spreads a module's tests over the workers: a training run or a TPU
compile of half a minute or more would be made twice. Here the first worker to ask makes it in
the run's shared temporary folder, under a file lock, and the others wait for it and read it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
import shutil
from typing import Any, Callable, Iterator


def _run_root(tmp_path_factory) -> pathlib.Path:
    """The folder all workers of this run share (the parent of each worker's base temp)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def _locked(path: pathlib.Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def folder(tmp_path_factory, name: str, make: Callable[[pathlib.Path], None]) -> pathlib.Path:
    """`make(folder)` fills a folder once per run; every caller gets that folder. A failed
    `make` leaves nothing behind, so the next caller tries again (and fails the same way)."""
    root = _run_root(tmp_path_factory)
    target, done = root / f"once-{name}", root / f"once-{name}.done"
    with _locked(root / f"once-{name}.lock"):
        if not done.exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            make(target)
            done.touch()
    return target


def value(tmp_path_factory, name: str, make: Callable[[], Any]) -> Any:
    """`make()`'s JSON-able result, computed once per run."""
    path = folder(tmp_path_factory, name, lambda d: (d / "value.json").write_text(json.dumps(make())))
    return json.loads((path / "value.json").read_text())
