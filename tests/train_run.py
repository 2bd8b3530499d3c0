"""Runs one short training job in a fresh process (its own device count, its own signals).

    python tests/train_run.py WORKDIR MODE [--config.key=value ...]
Writes WORKDIR/params.npz with the final generator parameters (flattened) when it finishes.
TRAIN_RUN_BATCH_DELAY=SECONDS slows the input so that a test can signal a run mid-way.
"""

import os
import sys

import numpy as np

if __name__ == "__main__":
    workdir, mode, *overrides = sys.argv[1:]
    from vocal_remover_jax.cli import split_config_overrides
    from vocal_remover_jax.compilation_cache import enable_compilation_cache

    enable_compilation_cache()
    from flax import traverse_util

    from vocal_remover_jax.config import load_config
    from vocal_remover_jax.train.checkpoint import restore_params
    from vocal_remover_jax.train import inputs
    from vocal_remover_jax.train.trainer import train_and_evaluate

    delay = float(os.environ.get("TRAIN_RUN_BATCH_DELAY", 0))
    if delay:
        import time

        make_batches = inputs.train_batches

        def slow_batches(*args, **kwargs):
            for batch in make_batches(*args, **kwargs):
                time.sleep(delay)
                yield batch

        inputs.train_batches = slow_batches

    config = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", f"{mode}.py:tiny"),
                         split_config_overrides(overrides)[0])
    train_and_evaluate(config, workdir)
    import jax

    if jax.process_count() == 1:  # (restoring on one host of several would wait for the others)
        params, _ = restore_params(workdir)
        flat = {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(params).items()}
        np.savez(os.path.join(workdir, "params.npz"), **flat)
