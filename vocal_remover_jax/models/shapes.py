"""A model's input shape and its parameters' shapes, without computing anything: what `describe`,
the model file's checks, `import-torch` and random initialisation all need."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vocal_remover_jax.models.layers import traced_for_platform


def input_spec(model_cfg: ml_collections.ConfigDict, batch_size: int = 1) -> jax.ShapeDtypeStruct:
    """The separation model's input: `(batch, cropsize, n_fft // 2 + 1, in_channels)` float32."""
    return jax.ShapeDtypeStruct((batch_size, model_cfg.cropsize, model_cfg.n_fft // 2 + 1, model_cfg.in_channels),
                                jnp.float32)


def abstract_params(module: nn.Module, *inputs: jax.ShapeDtypeStruct) -> dict:
    """The 'params' collection of `module` for `inputs` as ShapeDtypeStructs (unboxed).

    Unboxed while traced: under a mesh with logical rules (the trainer's), unboxing applies sharding
    constraints, which shape structs outside a trace cannot take. Every platform's formulation has
    the same shapes, so only the default backend's is traced."""
    init = lambda *xs: nn.unbox(module.init(jax.random.key(0), *xs))["params"]  # noqa: E731
    return jax.eval_shape(traced_for_platform(init, jax.default_backend()), *inputs)
