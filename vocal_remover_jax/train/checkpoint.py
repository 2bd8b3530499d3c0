"""Orbax checkpoints of the whole training state, restorable onto any mesh.

Layout: `WORKDIR/checkpoints/<step>/{state,meta}` (latest K, async) and
`WORKDIR/best/<step>/...` (best validation so far), plus `WORKDIR/config.json`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp

from vocal_remover_jax.atomic import atomic_path

CONFIG_FILE = "config.json"


def make_manager(directory: str, *, keep: int, every: int, asynchronous: bool = True) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=every,
                                           enable_async_checkpointing=asynchronous, create=True)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def save(manager: ocp.CheckpointManager, step: int, state: Any, meta: dict, force: bool = False) -> bool:
    """`meta` carries the data position (examples consumed per host) for an exact resume."""
    if manager.latest_step() == step:
        return False
    return manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
                        force=force)


def restore(manager: ocp.CheckpointManager, abstract_state: Any, step: int | None = None) -> tuple[Any, dict, int]:
    """Restores into `abstract_state` (ShapeDtypeStructs carrying the current mesh's shardings),
    whatever mesh wrote it."""
    step = manager.latest_step() if step is None else step
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                                             meta=ocp.args.JsonRestore()))
    return restored["state"], restored["meta"], step


def make_best_manager(directory: str, metric: str, mode: str) -> ocp.CheckpointManager:
    """Keeps only the generator parameters of the step with the best validation `metric`."""
    options = ocp.CheckpointManagerOptions(max_to_keep=1, best_fn=lambda m: m[metric], best_mode=mode,
                                           keep_checkpoints_without_metrics=False, create=True)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def save_best(manager: ocp.CheckpointManager, step: int, params: Any, results: dict) -> None:
    if results:
        manager.save(step, args=ocp.args.Composite(params=ocp.args.StandardSave(params)), metrics=results)


def with_shardings(abstract: Any, shardings: Any) -> Any:
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)


def save_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    with atomic_path(os.path.join(workdir, CONFIG_FILE)) as tmp, open(tmp, "w") as f:
        f.write(config.to_json_best_effort(indent=2))


def load_config(workdir: str) -> ml_collections.ConfigDict:
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: not a training workdir")
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def restore_params(workdir: str, step: int | None = None, best: bool = False) -> tuple[dict, ml_collections.ConfigDict]:
    """The generator's parameters of a workdir's checkpoint (latest, or `step`), on the host,
    without the optimizer or the critic; and the run's config. `best`: the one kept in
    WORKDIR/best instead (the best validation `checkpoint.best_metric` so far).

    `workdir` may also be a model file (from `export` or `import-torch`): its parameters and its
    model/audio config, so finetuning can start from either (`config.init_from`).
    """
    if os.path.isfile(workdir):
        from vocal_remover_jax.inference.model_file import load_model_file

        if step is not None or best:
            raise ValueError(f"{workdir} is a model file: it has no checkpoint steps")
        return load_model_file(workdir)
    config = load_config(workdir)
    directory = os.path.join(os.path.abspath(workdir), "best" if best else "checkpoints")
    steps = ocp.utils.checkpoint_steps(directory) if os.path.isdir(directory) else []
    if not steps:
        raise FileNotFoundError(f"{directory}: no checkpoints")
    step = max(steps) if step is None else step
    if step not in steps:
        raise ValueError(f"no checkpoint for step {step} in {directory} (have {sorted(steps)})")
    path = os.path.join(directory, str(step), "params" if best else "state")
    cpu = jax.sharding.SingleDeviceSharding(jax.local_devices(backend="cpu")[0])  # this process's own: every process reads it all
    with _quiet_absl(), ocp.PyTreeCheckpointer() as checkpointer:
        tree = checkpointer.metadata(path).item_metadata.tree
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=cpu),
                              tree if best else {"params": tree["params"]})
        restored = checkpointer.restore(path, args=ocp.args.PyTreeRestore(
            item=target, restore_args=jax.tree.map(lambda _: ocp.ArrayRestoreArgs(sharding=cpu), target),
            partial_restore=True))
    return (restored if best else restored["params"]), config


def best_step(workdir: str) -> int | None:
    """The step kept in WORKDIR/best, or None."""
    directory = os.path.join(os.path.abspath(workdir), "best")
    steps = ocp.utils.checkpoint_steps(directory) if os.path.isdir(directory) else []
    return max(steps) if steps else None


def zero_matching(params: dict, pattern: str) -> dict:
    """`params` with every array whose path ("out/kernel") matches `pattern` (re.search) set to zero.

    Why: a pretrained mask head can end in saturated logits (masks of 0 or 1), where the sigmoid
    passes almost no gradient and finetuning stays near keeping everything; zeroed, it starts at 0.5."""
    from flax import traverse_util

    flat = traverse_util.flatten_dict(dict(params), sep="/")
    hits = {name for name in flat if re.search(pattern, name)}
    if not hits:
        raise ValueError(f"init_zero {pattern!r} matches no parameter (e.g. {sorted(flat)[:3]})")
    return traverse_util.unflatten_dict({k: jnp.zeros_like(v) if k in hits else v for k, v in flat.items()}, sep="/")


@contextlib.contextmanager
def _quiet_absl():
    """Reading one item of a step directory makes Orbax warn that the step's metadata file is
    not inside the item: true and harmless, and alarming on a user's console."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
