"""The device mesh and how logical axis names land on it."""

from __future__ import annotations

import logging

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp")
BATCH_AXES = ("data", "fsdp")  # FSDP shards the batch too: every device computes on its own examples


def make_mesh(cfg: ml_collections.ConfigDict, devices: list | None = None) -> Mesh:
    """`cfg.data` x `cfg.fsdp` devices; -1 in one of them takes the rest.

    `devices`: all of a slice's devices (default: this run's), e.g. a TPU topology's
    compile-only devices for `plan`."""
    whole_slice = devices is not None or jax.process_count() > 1
    devices = jax.devices() if devices is None else list(devices)
    n = len(devices)
    data, fsdp = int(cfg.data), int(cfg.fsdp)
    if data == -1:
        data = n // fsdp
    if fsdp == -1:
        fsdp = n // data
    if data * fsdp > n or (whole_slice and data * fsdp != n):
        raise ValueError(f"mesh data={cfg.data} x fsdp={cfg.fsdp} does not fit the {n} devices")
    devices = devices[: data * fsdp]  # a single host may use fewer devices than it has
    try:
        grid = mesh_utils.create_device_mesh((data, fsdp), devices)
    except NotImplementedError:
        # e.g. 8 x 8 on a 4x4x4 torus: an axis has to split a physical ring (slower collectives).
        logging.warning("mesh %d x %d splits a physical axis of the slice; a shape whose axes are products of "
                        "the slice's axes (e.g. 4 x 16 on 4x4x4) communicates faster", data, fsdp)
        grid = mesh_utils.create_device_mesh((data, fsdp), devices, allow_split_physical_axes=True)
    return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto, AxisType.Auto))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def logical_rules(config_rules) -> tuple:
    """`config.logical_rules` (lists, as config files write them) as the tuples Flax expects."""
    return tuple((name, tuple(axes) if isinstance(axes, (list, tuple)) else axes) for name, axes in config_rules)


def logical_shardings(abstract_tree, mesh: Mesh, rules: tuple) -> object:
    """NamedShardings for a tree of `nn.Partitioned` abstract values.

    A dimension that its mesh axes do not divide stays replicated (logged), so any model size
    runs on any mesh."""
    specs = nn.get_partition_spec(abstract_tree)
    values = nn.unbox(abstract_tree)

    def shard(spec, value):
        mesh_spec = nn.logical_to_mesh_axes(spec, rules) if spec else PartitionSpec()
        fixed = []
        for dim, axes in zip(value.shape, tuple(mesh_spec) + (None,) * (len(value.shape) - len(mesh_spec))):
            names = (axes,) if isinstance(axes, str) else (axes or ())
            size = int(np.prod([mesh.shape[a] for a in names])) if names else 1
            if size > 1 and dim % size:
                logging.info("replicating a dimension of size %d that %s (%d devices) does not divide", dim, axes, size)
                axes = None
            fixed.append(axes)
        return NamedSharding(mesh, PartitionSpec(*fixed))

    return jax.tree.map(shard, specs, values, is_leaf=lambda x: isinstance(x, PartitionSpec))
