"""Randomly initialised parameters without running `model.init` (which compiles slowly on CPU).

For tests and benchmarks: shapes come from `jax.eval_shape`, values from numpy.
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np

from vocal_remover_jax.models import build_model
from vocal_remover_jax.models.shapes import abstract_params, input_spec


def random_params(model_config: ml_collections.ConfigDict, seed: int = 0) -> dict:
    """Scales 1, biases 0, other weights normal with std 1/sqrt(fan-in): a usable, untrained model."""
    abstract = abstract_params(build_model(model_config), input_spec(model_config))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = str(getattr(path[-1], "key", path[-1]))
        dtype = np.dtype(leaf.dtype)
        if "scale" in name:
            return np.ones(leaf.shape, dtype)
        if "bias" in name:
            return np.zeros(leaf.shape, dtype)
        fan_in = max(1, int(np.prod(leaf.shape[:-1])))
        return (rng.standard_normal(leaf.shape, np.float32) / np.sqrt(fan_in)).astype(dtype)

    return jax.tree_util.tree_map_with_path(fill, abstract)
