"""XLA's persistent compilation cache, on by default for every command.

Compiling the seed model's forward pass takes tens of seconds on CPU and initialising any model
pays for one threefry kernel per parameter; cached executables make the second `separate` or
`train` start in seconds.
"""

from __future__ import annotations

import os

DEFAULT_DIR = os.path.join(os.path.expanduser("~"), ".cache", "vocal-remover-jax", "xla")


def enable_compilation_cache(path: str | None = None) -> str | None:
    """Points JAX at a persistent cache directory (`JAX_COMPILATION_CACHE_DIR` wins; `off` or an
    empty value disables it). Returns the directory in use."""
    import jax

    path = os.environ.get("JAX_COMPILATION_CACHE_DIR", path or DEFAULT_DIR)
    if not path or path.lower() == "off":
        jax.config.update("jax_compilation_cache_dir", None)  # JAX itself would take "off" for a folder
        return None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None  # read-only home: run uncached rather than fail
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", 1.0)))
    return path
