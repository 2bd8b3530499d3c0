"""One optimizer step on an 8-device FSDP mesh, whole batch vs 4 accumulated micro-batches.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/accum_run.py
Prints one JSON object: the relative difference of the two updates, the update's size, where
each micro-batch's examples live, and how many of the model's compiled instructions still hold
the whole batch on one device.
"""

import json
import os
import re
import sys

if __name__ == "__main__":
    import jax
    import numpy as np

    from vocal_remover_jax.config import load_config
    from vocal_remover_jax.train import inputs, mesh as mesh_lib, steps
    from vocal_remover_jax.train.program import build_program

    # eps=1 makes Adam's first update about lr * g (not lr * sign(g)), so it shows the gradient.
    config = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "pretrain.py:tiny"), [
        "data.source=random", "model.depth=1", "model.cropsize=16", "audio.n_fft=64", "model.feedforward_dim=32",
        "model.dropout=0.0", "batch_size=32", "mesh.data=1", "mesh.fsdp=8", "optimizer.warmup_steps=0",
        "optimizer.eps=1.0", "optimizer.grad_clip_norm=1e9", *sys.argv[1:]])
    mesh = mesh_lib.make_mesh(config.mesh)
    host_batch = next(inputs.train_batches(config, config.batch_size, 0, 0, 1))
    updates, results = {}, {}
    for accum in (1, 4):
        config.grad_accum_steps = accum
        program = build_program(config, mesh)
        with program.context():
            state = program.init_state(jax.random.key(0))
            before = jax.device_get(state.params)
            batch = jax.device_put(host_batch, program.batch_sharding)
            stop = jax.device_put(np.zeros((mesh.size,), np.int32), program.batch_sharding)
            step = program.train_step.lower(state, batch, stop).compile()
            if accum == 1:
                # model activations whose per-device shape still holds the whole batch (32 examples x 16 frames)
                results["whole_batch_activations"] = sum(1 for line in step.as_text().splitlines()
                                                         if "FrameTransformerUnet" in line and re.search(r"\[32,16,", line))
            new, metrics = step(state, batch, stop)
            updates[accum] = jax.tree.map(lambda a, b: np.asarray(a) - b, jax.device_get(new.params), before)
            results[f"grad_norm_{accum}"] = float(metrics["grad_norm"])
            if accum > 1:
                micro = jax.jit(lambda b: steps.microbatches(b, accum))(batch)["input"]
                results["micro_spec"] = str(micro.sharding.spec)
                results["micro_devices"] = len(micro.sharding.device_set)
                results["micro_shard_shape"] = list(micro.sharding.shard_shape(micro.shape))
                results["micro_values_strided"] = bool(all(np.array_equal(np.asarray(micro[k]), host_batch["input"][k::accum])
                                                           for k in range(accum)))
    flat = lambda t: np.concatenate([a.ravel() for a in jax.tree.leaves(t)])
    one, four = flat(updates[1]), flat(updates[4])
    results["update_norm"] = float(np.linalg.norm(one))
    results["relative_difference"] = float(np.linalg.norm(four - one) / np.linalg.norm(one))
    print("RESULT " + json.dumps(results))
