"""Forward and train-step (forward + backward + AdamW) time of a model size on this machine.

    python benchmarks/train_step.py --size small --batch 1 --repeats 5
    python benchmarks/train_step.py --size seed --batch 1 --repeats 2   # tens of seconds per step on CPU
    python benchmarks/train_step.py --size small --mode gan             # critic + generator step

Reports medians after compilation, GFLOP/s from XLA's cost analysis, steps/s, examples/s and the
process's peak RSS. The step is the trainer's own (`steps.make_train_step`), jitted with the
trainer's shardings on a one-device mesh.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import jax
import numpy as np

from vocal_remover_jax import presets


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan")))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="small", choices=list(presets.NAMES))
    p.add_argument("--mode", default="pretrain", choices=["pretrain", "gan", "finetune"])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="timed runs after the compiling one")
    p.add_argument("--dtype", default="float32", help="compute dtype (bfloat16 on accelerators)")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="device peak, for MFU (e.g. 989 for H100 bf16)")
    p.add_argument("--skip-forward", action="store_true")
    args = p.parse_args()

    import flax.linen as nn

    from vocal_remover_jax.config import load_config
    from vocal_remover_jax.train import mesh as mesh_lib, steps
    from vocal_remover_jax.train.program import build_program

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config_file = {"pretrain": "pretrain.py", "gan": "pretrain_gan.py", "finetune": "finetune.py"}[args.mode]
    config = load_config(os.path.join(root, "configs", f"{config_file}:{args.size}"),
                         [f"batch_size={args.batch}", "grad_accum_steps=1", "mesh.data=1", "mesh.fsdp=1",
                          f"model.dtype={args.dtype}"])
    mesh = mesh_lib.make_mesh(config.mesh)
    program = build_program(config, mesh)
    model, tx, disc, disc_tx, init, shardings = (program.model, program.tx, program.disc, program.disc_tx,
                                                 program.init, program.shardings)
    frames, bins = config.model.cropsize, config.model.n_fft // 2 + 1
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, frames, bins, 2), dtype=np.float32)
    if args.mode == "finetune":
        batch = {"mixture": x, "instrumental": x * 0.5}
    else:
        batch = {"input": x, "target": x * 0.5, "is_next": np.zeros((args.batch,), np.int32)}
    batch_sharding = mesh_lib.batch_sharding(mesh)
    batch = jax.device_put(batch, batch_sharding)
    results = {"size": args.size, "mode": args.mode, "batch": args.batch, "dtype": args.dtype, "device": str(jax.devices()[0])}
    with jax.set_mesh(mesh), nn.logical_axis_rules(mesh_lib.logical_rules(config.logical_rules)):
        state = jax.jit(lambda r: nn.unbox(init(r)), out_shardings=shardings)(jax.random.key(0))
        if not args.skip_forward:
            fwd = jax.jit(lambda p, x: model.apply({"params": p}, x, deterministic=True))
            t = time.perf_counter()
            x_in = steps.inputs_and_targets(batch, config.mode)[0]
            compiled = fwd.lower(state.params, x_in).compile()
            jax.block_until_ready(compiled(state.params, x_in))
            results["forward_compile_s"] = time.perf_counter() - t
            results["forward_s"] = _median_time(lambda: compiled(state.params, x_in), args.repeats)
            results["forward_gflops"] = _flops(compiled) / 1e9
            results["forward_gflop_per_s"] = results["forward_gflops"] / results["forward_s"]
        step = jax.jit(steps.make_train_step(config, model, tx, disc, disc_tx), donate_argnums=(0,))
        t = time.perf_counter()
        compiled = step.lower(state, batch).compile()
        state, m = compiled(state, batch)
        jax.block_until_ready(m)
        results["step_compile_s"] = time.perf_counter() - t
        holder = [state]

        def run():
            holder[0], metrics = compiled(holder[0], batch)
            return metrics

        results["step_s"] = _median_time(run, args.repeats)
    results["step_gflops"] = _flops(compiled) / 1e9
    results["step_gflop_per_s"] = results["step_gflops"] / results["step_s"]
    results["steps_per_s"] = 1.0 / results["step_s"]
    results["examples_per_s"] = args.batch / results["step_s"]
    if args.peak_tflops:
        results["mfu"] = results["step_gflop_per_s"] / (args.peak_tflops * 1e3)
    results["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    results["repeats"] = args.repeats
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
