"""Multi-host start-up: `jax.distributed.initialize` when the config or environment asks."""

from __future__ import annotations

import os

import jax
import ml_collections

_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def maybe_initialize(cfg: ml_collections.ConfigDict) -> None:
    """Explicit fields win; empty ones fall back to JAX's own discovery (env vars, TPU pod, SLURM).

    Must run before anything touches a device; a second call is a no-op."""
    wanted = cfg.enabled or bool(os.environ.get("JAX_COORDINATOR_ADDRESS"))
    if not wanted or jax.distributed.is_initialized():
        return
    if cfg.cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", cfg.cpu_collectives)
    kwargs = {}
    address = cfg.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if address:
        kwargs["coordinator_address"] = address
    num = cfg.num_processes or int(os.environ.get("JAX_NUM_PROCESSES", 0))
    pid = cfg.process_id if cfg.process_id >= 0 else int(os.environ.get("JAX_PROCESS_ID", -1))
    if num:
        kwargs["num_processes"] = num
    if pid >= 0:
        kwargs["process_id"] = pid
    jax.distributed.initialize(**kwargs)
