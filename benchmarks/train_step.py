"""Forward and train-step (forward + backward + AdamW) time of a model size on this machine.

    python benchmarks/train_step.py --size small --batch 1 --repeats 5
    python benchmarks/train_step.py --size seed --batch 1 --repeats 2   # tens of seconds per step on CPU
    python benchmarks/train_step.py --size small --mode gan             # critic + generator step
    python benchmarks/train_step.py --size small --batch 1 --reference /path/to/frame-transformer

Reports medians after compilation, GFLOP/s from XLA's cost analysis, steps/s, examples/s, the
process's peak RSS, and a floor: the step's FLOPs at this machine's float32 matmul rate. The step
is the trainer's own (`program.train_step`: its shardings, donation and compiler options) on a
one-device mesh.

With `--reference PATH` (a checkout of kingoomieiii/frame-transformer at 82256e7; needs torch) it
times our pretraining step and the reference's (`reference_step.py`) side by side instead: each in
its own process (so each peak RSS is its own), same inputs, ours on XLA's pool of all the cores
the process may use, the reference at the fastest of its threading settings (`reference_settings`,
each tried for `--probe` steps), warm-up steps, then the steps interleaved (ours, reference,
reference, ours, ...) so load drift hits both; it prints both medians and the ratio ours /
reference. Under `taskset -c 0` both sides get one core.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from interleaved import alternating
from vocal_remover_jax import presets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = {"pretrain": "pretrain.py", "gan": "pretrain_gan.py", "finetune": "finetune.py"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="small", choices=list(presets.NAMES))
    p.add_argument("--mode", default="pretrain", choices=list(CONFIG_FILES))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="timed runs after the compiling one (per side)")
    p.add_argument("--dtype", default="float32", help="compute dtype (bfloat16 on accelerators)")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="device peak, for MFU (e.g. 989 for H100 bf16)")
    p.add_argument("--skip-forward", action="store_true")
    p.add_argument("--reference", metavar="PATH",
                   help="time the reference PyTorch step beside ours: PATH is a checkout of kingoomieiii/frame-transformer")
    p.add_argument("--warmup", type=int, default=3, help="with --reference: untimed steps per side before the timed ones")
    p.add_argument("--probe", type=int, default=5,
                   help="with --reference: timed steps per threading setting the reference is tried with")
    p.add_argument("--json", action="store_true", help="with --reference: print a JSON object instead of the table")
    p.add_argument("--side", choices=["ours", "reference"], help=argparse.SUPPRESS)  # a side-by-side worker
    p.add_argument("--reference-spec", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.reference is not None:
        from reference_step import check_reference_tree

        if problem := check_reference_tree(args.reference):
            p.error(f"--reference {problem}")
        if args.mode != "pretrain":
            p.error("--reference times the pretraining step only (--mode pretrain)")
        if args.dtype != "float32":
            p.error("--reference compares float32 steps (the reference runs float32 on a CPU)")
        if args.repeats < 1 or args.warmup < 0 or args.probe < 1:
            p.error("--reference needs --repeats >= 1, --probe >= 1 and --warmup >= 0")
    return args


def _config(args: argparse.Namespace):
    from vocal_remover_jax.config import load_config

    return load_config(os.path.join(ROOT, "configs", f"{CONFIG_FILES[args.mode]}:{args.size}"),
                       [f"batch_size={args.batch}", "grad_accum_steps=1", "mesh.data=1", "mesh.fsdp=1",
                        f"model.dtype={args.dtype}"])


def _inputs(batch: int, frames: int, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input, target, is_next): the same arrays in every process."""
    x = np.random.default_rng(0).random((batch, frames, bins, 2), dtype=np.float32)
    return x, x * 0.5, np.zeros((batch,), np.int32)


def _median_time(fn, repeats: int) -> float:
    import jax

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


def matmul_rate(size: int = 1024, repeats: int = 9) -> float:
    """GFLOP/s of a float32 `size` x `size` matmul in XLA on this process's cores: the best rate
    these cores reach, so `step GFLOP / rate` is the time no implementation of the step beats here."""
    import jax
    import jax.numpy as jnp

    a = jnp.asarray(np.random.default_rng(0).random((size, size), np.float32))
    product = jax.jit(lambda a: a @ a).lower(a).compile()
    jax.block_until_ready(product(a))
    return 2 * size**3 / _median_time(lambda: product(a), repeats) / 1e9


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def our_step(args: argparse.Namespace, results: dict):
    """Our jitted train step, compiled and run once, as a no-argument callable returning its metrics."""
    import flax.linen as nn
    import jax

    from vocal_remover_jax import xla_cpu
    from vocal_remover_jax.host_memory import release_freed_memory
    from vocal_remover_jax.train import mesh as mesh_lib, steps
    from vocal_remover_jax.train.program import build_program

    config = _config(args)
    mesh = mesh_lib.make_mesh(config.mesh)
    program = build_program(config, mesh)
    model, init, shardings = program.model, program.init, program.shardings
    x, target, is_next = _inputs(args.batch, config.model.cropsize, config.model.n_fft // 2 + 1)
    if args.mode == "finetune":
        batch = {"mixture": x, "instrumental": target}
    else:
        batch = {"input": x, "target": target, "is_next": is_next}
    batch = jax.device_put(batch, mesh_lib.batch_sharding(mesh))
    results.update(size=args.size, mode=args.mode, batch=args.batch, dtype=args.dtype, device=str(jax.devices()[0]))
    with jax.set_mesh(mesh), nn.logical_axis_rules(mesh_lib.logical_rules(config.logical_rules)):
        state = jax.jit(lambda r: nn.unbox(init(r)), out_shardings=shardings)(jax.random.key(0))
        results["parameters"] = int(sum(np.size(p) for p in jax.tree.leaves(state.params)))
        if not args.skip_forward:
            fwd = jax.jit(lambda p, x: model.apply({"params": p}, x, deterministic=True),  # as the eval step
                          compiler_options=xla_cpu.compiler_options(jax.devices()[0].platform))
            t = time.perf_counter()
            x_in = steps.inputs_and_targets(batch, config.mode)[0]
            compiled = fwd.lower(state.params, x_in).compile()
            jax.block_until_ready(compiled(state.params, x_in))
            results["forward_compile_s"] = time.perf_counter() - t
            results["forward_s"] = _median_time(lambda: compiled(state.params, x_in), args.repeats)
            results["forward_gflops"] = _flops(compiled) / 1e9
            results["forward_gflop_per_s"] = results["forward_gflops"] / results["forward_s"]
        stop = jax.device_put(np.zeros((mesh.size,), np.int32), mesh_lib.batch_sharding(mesh))
        t = time.perf_counter()
        compiled = program.train_step.lower(state, batch, stop).compile()
        release_freed_memory()  # as the trainer does: the compiler's freed heap does not stay under the step
        state, m = compiled(state, batch, stop)
        jax.block_until_ready(m)
        results["step_compile_s"] = time.perf_counter() - t
    results["step_gflops"] = _flops(compiled) / 1e9
    holder = [state]

    def run():
        holder[0], metrics = compiled(holder[0], batch, stop)
        return jax.block_until_ready(metrics)

    return run


def single(args: argparse.Namespace) -> None:
    results = {}
    run = our_step(args, results)
    results["step_s"] = _median_time(run, args.repeats)
    results["step_gflop_per_s"] = results["step_gflops"] / results["step_s"]
    results["steps_per_s"] = 1.0 / results["step_s"]
    results["matmul_gflop_per_s"] = matmul_rate()
    results["flop_floor_s"] = results["step_gflops"] / results["matmul_gflop_per_s"]
    results["examples_per_s"] = args.batch / results["step_s"]
    if args.peak_tflops:
        results["mfu"] = results["step_gflop_per_s"] / (args.peak_tflops * 1e3)
    results["peak_rss_gib"] = _peak_rss_gib()
    results["repeats"] = args.repeats
    print(json.dumps(results, indent=1))


def worker(args: argparse.Namespace) -> None:
    """One side of the side-by-side run: builds its step, says so, then runs one step per `step`
    line on stdin and answers each with its time; `exit` answers with the process's memory."""
    t = time.perf_counter()
    info = {}
    if args.side == "ours":
        args.skip_forward = True
        run = our_step(args, info)
        info = {"build_s": time.perf_counter() - t, "parameters": info["parameters"],
                "gflops": info["step_gflops"], "matmul_gflop_per_s": matmul_rate()}
    else:
        from reference_step import build_reference_step

        spec = json.loads(args.reference_spec)
        arguments = spec["arguments"]
        x, target, is_next = _inputs(args.batch, arguments["cropsize"], arguments["n_fft"] // 2 + 1)
        run, shapes = build_reference_step(args.reference, arguments, argparse.Namespace(**spec["optimizer"]),
                                           x, target, is_next, spec["threads"])
        info = {"build_s": time.perf_counter() - t, "state_dict_shapes": shapes,
                "parameters": int(sum(np.prod(s) for s in shapes.values()))}
    _send(dict(info, ready=True))
    for line in sys.stdin:
        if line.strip() == "step":
            t = time.perf_counter()
            run()
            _send({"s": time.perf_counter() - t})
        else:
            _send({"peak_rss_gib": _peak_rss_gib(), "rss_gib": _current_rss_gib()})
            return


def _send(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _current_rss_gib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


class _Worker:
    def __init__(self, side: str, argv: list[str], env: dict[str, str] | None = None):
        self.side = side
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), *argv, "--side", side],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def receive(self) -> dict:
        """The worker's next message; lines that are not messages (a library's prints) go to stderr."""
        for line in self.proc.stdout:
            if line.startswith("{"):
                return json.loads(line)
            sys.stderr.write(line)
        raise SystemExit(f"the {self.side} side's process exited with status {self.proc.wait()} (its error is above)")

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.receive()

    def close(self) -> dict:
        """The worker's memory report; it exits."""
        report = self.ask("exit")
        self.proc.wait()
        return report


def reference_settings(cores: int, wait_policy: str | None) -> list[tuple[int, str | None]]:
    """The (torch threads, OpenMP wait policy) pairs the reference is tried with; it is timed with
    the fastest. None is libgomp's default (threads spin a little, then sleep): fastest on a quiet
    machine (0.74 s for the small step on 2 cores against 1.43 s with passive waiting), while on a
    loaded one a spinning thread that is descheduled stalls the others (9-22 s instead of about 1
    s) and passive waiting or one thread win. ACTIVE is never tried: its threads spin for ever,
    also while our side runs, and took our step from 0.6 to 1.0 s. A policy the caller set in
    OMP_WAIT_POLICY is the only one tried."""
    policies = [wait_policy] if wait_policy else [None, "PASSIVE"]
    return [(cores, p) for p in policies] + ([(1, policies[0])] if cores > 1 else [])


def _start_reference(args: argparse.Namespace, common: list[str], spec: dict, threads: int,
                     policy: str | None) -> _Worker:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    return _Worker("reference", common + ["--reference", args.reference, "--reference-spec",
                                          json.dumps(dict(spec, threads=threads))],
                   env=env if policy is None else dict(env, OMP_WAIT_POLICY=policy))


def side_by_side(args: argparse.Namespace) -> None:
    import jax

    from vocal_remover_jax import reference_layout
    from vocal_remover_jax.models.shapes import abstract_params, input_spec

    config = _config(args)
    arguments = reference_layout.unet_arguments(config.model)
    cores = len(os.sched_getaffinity(0))  # XLA:CPU sizes its thread pool by the cores it may run on
    optimizer = {k: config.optimizer[k] for k in ("learning_rate", "b1", "b2", "eps", "weight_decay", "grad_clip_norm")}
    common = ["--size", args.size, "--batch", str(args.batch), "--mode", args.mode]
    spec = {"arguments": arguments, "optimizer": optimizer}
    sides = {"ours": _Worker("ours", common)}
    probes = []
    try:
        info = {"ours": sides["ours"].receive()}  # compiled before the reference is timed, so it runs alone

        # The reference at its fastest threading: each setting in its own process, one at a time (two
        # seed-sized references beside ours exceed 24 GB), warmed up and timed while ours waits.
        for threads, policy in reference_settings(cores, os.environ.get("OMP_WAIT_POLICY")):
            sides["reference"] = _start_reference(args, common, spec, threads, policy)
            sides["reference"].receive()
            steps = [sides["reference"].ask("step")["s"] for _ in range(args.warmup + args.probe)][args.warmup:]
            probes.append({"threads": threads, "omp_wait_policy": policy, "median_s": float(np.median(steps))})
            sides.pop("reference").close()
        kept = min(probes, key=lambda p: p["median_s"])
        sides["reference"] = _start_reference(args, common, spec, kept["threads"], kept["omp_wait_policy"])
        info["reference"] = sides["reference"].receive()

        # Same architecture on both sides: every reference weight maps onto a parameter of our model
        # built from the same arguments (raises naming the first key that does not).
        module = reference_layout.module_from_reference("unet", arguments)
        shapes = info["reference"].pop("state_dict_shapes")
        reference_layout.convert_state_dict({k: np.zeros(s, np.float32) for k, s in shapes.items()}, "unet",
                                            abstract_params(module, input_spec(config.model, args.batch)),
                                            depth=arguments["depth"])

        times = {"ours": [], "reference": []}
        for i, name in alternating(["ours", "reference"], args.warmup + args.repeats):
            s = sides[name].ask("step")["s"]  # the worker's own time: no pipe in it
            if i >= args.warmup:
                times[name].append(s)
        memory = {name: side.close() for name, side in sides.items()}
    finally:  # a side that failed leaves the other waiting
        for side in sides.values():
            if side.proc.poll() is None:
                side.proc.kill()

    results = {"size": args.size, "mode": args.mode, "batch": args.batch, "dtype": args.dtype,
               "device": str(jax.devices()[0]), "cores": cores, "reference_threads": kept["threads"],
               "omp_wait_policy": kept["omp_wait_policy"], "reference_settings": probes,
               "warmup": args.warmup, "repeats": args.repeats}
    for name in sides:
        results[name] = {"median_s": float(np.median(times[name])), "min_s": float(np.min(times[name])),
                         "times_s": times[name], **memory[name], **info[name]}
    results["ours"].pop("ready")
    results["reference"].pop("ready")
    results["ratio"] = results["ours"]["median_s"] / results["reference"]["median_s"]
    # measured by our side alone, before the reference started
    results["flop_floor_s"] = results["ours"]["gflops"] / results["ours"]["matmul_gflop_per_s"]
    if args.json:
        print(json.dumps(results, indent=1))
        return
    tried = ", ".join(f"{p['threads']} thread{'s' * (p['threads'] > 1)} {p['omp_wait_policy'] or 'default'} "
                      f"{p['median_s']:.3f} s" for p in probes)
    print(f"{args.mode} train step, size {args.size}, batch {args.batch}, float32, on {results['device']}: "
          f"{args.warmup} warm-up + {args.repeats} timed steps per side, interleaved; ours on XLA:CPU's pool of "
          f"{cores} cores, the reference at its fastest threading (tried, medians of {args.probe} steps: {tried})")
    print(f"{'':<10} {'median s':>9} {'min s':>8} {'peak RSS GiB':>13} {'RSS at end GiB':>15} {'parameters':>11} {'build s':>8}")
    for name in sides:
        r = results[name]
        print(f"{name:<10} {r['median_s']:>9.3f} {r['min_s']:>8.3f} {r['peak_rss_gib']:>13.2f} {r['rss_gib']:>15.2f} "
              f"{r['parameters']:>11,} {r['build_s']:>8.1f}")
    print(f"reference: torch.set_num_threads({kept['threads']}), OMP_WAIT_POLICY={kept['omp_wait_policy'] or '(unset)'}")
    print(f"ours / reference (medians): {results['ratio']:.2f}x")
    print(f"floor: our step's {results['ours']['gflops']:.1f} GFLOP at this machine's float32 matmul rate "
          f"({results['ours']['matmul_gflop_per_s']:.0f} GFLOP/s) take {results['flop_floor_s']:.3f} s = "
          f"{results['flop_floor_s'] / results['reference']['median_s']:.2f}x the reference's median")


def main() -> None:
    args = parse_args()
    if args.side is not None:
        worker(args)
    elif args.reference is not None:
        side_by_side(args)
    else:
        single(args)


if __name__ == "__main__":
    main()
