"""A model and its STFT settings alone: for `describe`, `import-torch` and benchmarks.

Usage: `--config configs/model.py:seed` (or `:small`, `:tiny`).
"""

import ml_collections

from vocal_remover_jax import presets


def get_config(arg: str = "seed") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.audio = presets.audio_config(arg)
    config.model = presets.model_config(arg, config.audio)
    return config
