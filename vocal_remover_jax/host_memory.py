"""Handing the compiler's freed heap back to the operating system."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
from collections.abc import Callable


@functools.cache
def _libc_function(name: str) -> Callable | None:
    """glibc's `name` (malloc_trim, mallopt), or None where the C library has none."""
    libc = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(libc), name, None) if libc else None


_M_ARENA_MAX = -8  # glibc's malloc.h


@functools.cache
def _tcmalloc_release() -> Callable[[], None] | None:
    return getattr(ctypes.CDLL(None), "MallocExtension_ReleaseFreeMemory", None)


def allocator() -> str:
    """The malloc this process runs on: "tcmalloc" or "jemalloc" when preloaded (LD_PRELOAD), else
    "glibc" (Linux) or "system"."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return "system"
    for name in ("tcmalloc", "jemalloc"):
        if f"lib{name}" in maps:
            return name
    return "glibc"


def tcmalloc_library() -> str | None:
    """tcmalloc's shared library as the loader names it, where the machine has it."""
    return ctypes.util.find_library("tcmalloc_minimal") or ctypes.util.find_library("tcmalloc")


def rerun_with_tcmalloc(command: str) -> None:
    """Runs this process's command again, now, with tcmalloc preloaded, if the machine has it, this
    process is on glibc's malloc and it was started as `vocal-remover-jax COMMAND` (never a notebook
    or a test calling the command in process); returns otherwise. XLA's compiler, many-threaded,
    fragments glibc's per-thread arenas: the seed step's TPU compile peaked at 13.6 GiB on glibc
    and 9.9 GiB on tcmalloc, and took 421 s instead of 657 (README, "Checking a run fits")."""
    lib = tcmalloc_library()
    if (lib is None or allocator() != "glibc" or os.environ.get("VOCAL_REMOVER_JAX_RERUN")
            or sys.argv[1:2] != [command]):
        return
    env = {**os.environ, "LD_PRELOAD": " ".join(filter(None, [lib, os.environ.get("LD_PRELOAD")])),
           "VOCAL_REMOVER_JAX_RERUN": "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)


def limit_malloc_arenas(arenas: int = 2) -> int | None:
    """On glibc's malloc, at most `arenas` heaps for all threads (as `MALLOC_ARENA_MAX`, which wins
    when set); returns the limit in force, or None elsewhere. Fewer arenas fragment less under
    XLA's many-threaded compile: on glibc the seed step's TPU compile peaked at 11.4 GB with 2
    (537 s) and 15.3 GB without a limit (563 s) (README, "Checking a run fits")."""
    mallopt = _libc_function("mallopt")
    if allocator() != "glibc" or mallopt is None:
        return None
    if os.environ.get("MALLOC_ARENA_MAX"):
        return int(os.environ["MALLOC_ARENA_MAX"])
    return arenas if mallopt(_M_ARENA_MAX, arenas) else None


def release_freed_memory() -> None:
    """XLA's compiler frees gigabytes of small allocations that the allocator keeps; the program's
    own buffers then come on top, and the process peaks at both (seed step: 14.6 GiB where the
    step needs 9.5). glibc's malloc_trim returns those pages, and tcmalloc's ReleaseFreeMemory
    when it is preloaded; elsewhere a no-op."""
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)
    release = _tcmalloc_release()
    if release is not None:
        release()


def compiled_on_first_call(jitted: Callable) -> Callable:
    """`jitted`, compiled for its first call's arguments with the freed heap released before it runs.
    Later calls take the same shapes and shardings (a train loop)."""
    compiled = None

    def call(*args):
        nonlocal compiled
        if compiled is None:
            compiled = jitted.lower(*args).compile()
            release_freed_memory()
        return compiled(*args)

    return call


def _status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Starts a new peak-RSS window (Linux >= 4.0: writing 5 to clear_refs resets VmHWM), so that
    the peak of one phase of a process (lowering, one compile) can be read on its own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_bytes() -> int:
    """The process's resident memory now (0 where /proc is missing)."""
    return _status_bytes("VmRSS") or 0


def peak_rss_bytes() -> int:
    """The process's peak resident memory since it started, or since the last `reset_peak_rss`."""
    peak = _status_bytes("VmHWM")
    if peak is None:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux units: KiB
    return peak
