"""Where a train step's memory goes on this CPU: XLA's plan for it and the buffers live at its peak.

    python benchmarks/step_memory.py --config configs/pretrain.py:seed --config.batch_size=1   # plan + live at its peak
    python benchmarks/step_memory.py --config configs/pretrain.py:seed --config.batch_size=1 --steps 2  # + peak RSS

Compiles the trainer's step (`program.train_step`, one-device mesh) with XLA's buffer dumps on,
prints `memory_analysis()` (arguments, temporaries, outputs) and the buffers alive at the
plan's peak, grouped by the model op that made them (from `-live-range.txt`), largest first: the
way to see which activations a backward pass keeps. `--steps N` then runs N steps on constant
inputs and reports peak RSS (XLA's compilation included: it is the same process; its freed heap
is handed back before the steps run, as the trainer does).
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import resource
import sys
import tempfile
import time


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """The options, and the `--config.x=y` overrides as `x=y`."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="e.g. configs/pretrain.py:seed")
    p.add_argument("--steps", type=int, default=0, help="steps to run after compiling (0: plan only)")
    p.add_argument("--top", type=int, default=25, help="groups of live buffers to print")
    p.add_argument("--dump", help="keep XLA's dump in this folder (default: a temporary one)")
    args, overrides = p.parse_known_args(argv)
    return args, [o.removeprefix("--config.") for o in overrides]


def peak_live_buffers(dump_dir: str) -> tuple[int, collections.Counter, dict]:
    """(bytes live at the peak, bytes per op group, shape counts per group) from XLA's dump."""
    [live_range] = glob.glob(os.path.join(dump_dir, "*jit_train_step*cpu_after_optimizations-live-range.txt"))
    lines = open(live_range).read().splitlines()
    start = next(i for i, line in enumerate(lines) if "(peak)" in line)
    live = [(m.group(1), int(m.group(2))) for line in lines[start + 1:]
            if (m := re.match(r"\s+(\S+)\{[^}]*\}: (\d+) bytes", line))]
    made_by = {}
    with open(live_range.replace("-live-range.txt", ".txt")) as f:
        for line in f:
            if m := re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = (\S+?)(?:\{[^}]*\})? ", line):
                op = re.search(r'op_name="([^"]*)"', line)
                made_by[m.group(1)] = (m.group(2), op.group(1) if op else "")
    groups, shapes = collections.Counter(), collections.defaultdict(collections.Counter)
    for name, size in live:
        shape, op = made_by.get(name, ("?", "?"))
        parts = [p for p in re.sub(r"_\d+", "_N", op).split("/") if p and not p.startswith(("jit(", "jvp("))]
        key = "/".join(parts[:4]) or "(no op name)"
        groups[key] += size
        shapes[key][shape] += 1
    return sum(size for _, size in live), groups, shapes


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(argv)
    dump = args.dump or tempfile.mkdtemp(prefix="step_memory_")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_dump_to={dump} --xla_dump_hlo_module_re=jit_train_step").strip()
    import jax
    import jax.numpy as jnp

    from vocal_remover_jax.config import load_config
    from vocal_remover_jax.host_memory import release_freed_memory
    from vocal_remover_jax.train import mesh as mesh_lib
    from vocal_remover_jax.train.program import build_program

    cfg = load_config(args.config, overrides)
    program = build_program(cfg, mesh_lib.make_mesh(cfg.mesh, jax.devices()[:1]))
    inputs = program.abstract_inputs(cfg.batch_size)
    start = time.perf_counter()
    with program.context():
        compiled = program.train_step.lower(inputs["state"], inputs["batch"], inputs["stop"]).compile()
    seconds = time.perf_counter() - start
    m = compiled.memory_analysis()
    gb = lambda b: f"{b / 1e9:.2f} GB"  # noqa: E731
    print(f"{args.config} B{cfg.batch_size}: compiled in {seconds:.0f} s; arguments "
          f"{gb(m.argument_size_in_bytes)}, temporaries {gb(m.temp_size_in_bytes)}, outputs "
          f"{gb(m.output_size_in_bytes)} ({gb(m.alias_size_in_bytes)} aliased to arguments)")
    total, groups, shapes = peak_live_buffers(dump)
    print(f"live at the plan's peak: {total / 2**30:.2f} GiB; largest groups (MiB, op, shapes):")
    for key, size in groups.most_common(args.top):
        print(f"{size / 2**20:9.0f}  {key}  {dict(shapes[key].most_common(3))}")
    if args.steps:
        with program.context():
            state = program.init_state(jax.random.key(0))
            release_freed_memory()  # the compilers' freed heap (the step's and init's), as the trainer does
            batch = {k: jnp.full(v.shape, 0.5, v.dtype) for k, v in inputs["batch"].items()}
            stop = jnp.zeros(inputs["stop"].shape, jnp.int32)
            for i in range(args.steps):
                start = time.perf_counter()
                state, metrics = compiled(state, batch, stop)
                jax.block_until_ready(metrics)
                print(f"step {i}: {time.perf_counter() - start:.1f} s, loss {float(metrics['loss']):.4f}; peak RSS "
                      f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
