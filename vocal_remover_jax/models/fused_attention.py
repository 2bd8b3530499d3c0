"""Attention as one fused TPU kernel (jax's Pallas flash attention), sharded over the batch.

XLA writes each module's frames x frames scores to HBM and reads them back several times
(about 440 MB per module and example, fwd + bwd, whatever the head size); the kernel keeps
them on chip. The kernel cannot be partitioned by XLA, so it runs under `shard_map`, each
device on its own examples.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu import flash_attention as pallas_flash
from jax.sharding import PartitionSpec

FRAMES_PER_BLOCK = 128  # the kernel's blocks of queries and keys (its default; its backward needs 128)


def flash_attend(queries: jax.Array, keys: jax.Array, values: jax.Array, temperature: float) -> jax.Array:
    """softmax(queries . keys / temperature) . values for `(batch, bands, frames, features)`
    arrays, as `attention.attend` computes it but without its weights; TPU only (elsewhere it
    runs in Pallas' interpreter, for tests). Values narrower than queries are zero-padded: the
    kernel wants one feature width."""
    if queries.shape[-2] % FRAMES_PER_BLOCK:
        raise ValueError(f"flash_attend: {queries.shape[-2]} frames are not a multiple of {FRAMES_PER_BLOCK}")
    pad = queries.shape[-1] - values.shape[-1]
    padded = jnp.pad(values, ((0, 0),) * 3 + ((0, pad),)) if pad else values

    def local(q, k, v):
        return pallas_flash.flash_attention(q, k, v, sm_scale=1.0 / temperature)

    spec = _batch_spec(queries.shape[0])
    if spec is not None:
        local = jax.shard_map(local, in_specs=(spec,) * 3, out_specs=spec, check_vma=False)
    out = local(queries, keys, padded)
    return out[..., : values.shape[-1]] if pad else out


def _batch_spec(batch: int) -> PartitionSpec | None:
    """The mesh axes the batch is sharded over (the logical rules' `batch`), or None without a
    mesh. Axes the batch does not divide are left out (those devices repeat the work)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return None
    axes = nn.logical_to_mesh_axes(("batch",))[0]
    axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
    kept, size = [], 1
    for axis in axes:
        if batch % (size * mesh.shape[axis]) == 0:
            kept.append(axis)
            size *= mesh.shape[axis]
    return PartitionSpec(tuple(kept) or None)
