"""`vocal-remover-jax plan --config CONFIG --topology v5p:4x4x4 [--json]`: will a run fit a TPU slice?

Compiles the trainer's own train and eval steps for a TPU topology on any machine, with libtpu's
compile-only devices, and reports per chip what XLA's TPU compiler planned: memory against the
chip's HBM, FLOPs, and the cost model's step time (an estimate, not a measurement).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import sys
import time

import ml_collections

from vocal_remover_jax.config import load_config
from vocal_remover_jax.host_memory import (allocator, limit_malloc_arenas, peak_rss_bytes, release_freed_memory,
                                           reset_peak_rss, rerun_with_tcmalloc, rss_bytes)
from vocal_remover_jax.train.chips import Chip, accelerator_type, parse_topology

INSTALL = ("plan compiles with the TPU compiler, which ships in libtpu; install it with "
           "`pip install 'vocal-remover-jax[tpu]'` (or `pip install libtpu`, the version matching jax). "
           "No TPU is needed.")


class CompilerMissing(RuntimeError):
    """libtpu (or, for GPUs, the CUDA plugin) is not installed."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True,
                        help="configs/pretrain.py|pretrain_gan.py|finetune.py[:seed|small|tiny]; the mesh "
                             "(--config.mesh.data/fsdp), batch_size and grad_accum_steps are the run's")
    parser.add_argument("--topology", required=True, help="TPU slice, e.g. v5p:4x4x4, v5e:16x16, v6e:4x4, v4:2x2x1")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--malloc", choices=("auto", "glibc"), default="auto",
                        help="auto: compile on tcmalloc where installed (Debian: libtcmalloc-minimal4), which "
                             "peaks a quarter lower and compiles faster than glibc's malloc")


def topology_devices(chip: Chip, dims: tuple[int, ...], topology: str) -> list:
    """Compile-only devices for a whole slice: libtpu's for TPUs, XLA's deviceless GPU target
    for GPUs (no accelerator, no host probing)."""
    if chip.platform == "cuda":
        return _gpu_devices(chip, dims)
    if importlib.util.find_spec("libtpu") is None:
        raise CompilerMissing(INSTALL)
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", accelerator_type(chip, dims))
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    # Compiling touches no TPU: other jax processes on this machine may hold libtpu's lock.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    from jax.experimental import topologies

    extra = {"chip_config_name": "megacore"} if chip.name == "v4" else {}
    return list(topologies.get_topology_desc(topology_name=topology, platform="tpu", **extra).devices)


def _gpu_devices(chip: Chip, dims: tuple[int, ...]) -> list:
    if importlib.util.find_spec("jax_cuda12_plugin") is None:
        raise CompilerMissing("plan for GPUs compiles with XLA's GPU compiler from the CUDA plugin; install it with "
                            "`pip install 'vocal-remover-jax[cuda12]'`. No GPU is needed.")
    os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")  # nothing runs: cuDNN etc. need not load
    from jax.experimental import topologies

    hosts, per_host = (1, dims[0]) if len(dims) == 1 else dims
    return list(topologies.get_topology_desc(platform="cuda", target_config=chip.target_config,
                                             topology=f"1x{hosts}x{per_host}").devices)


def per_device_bytes(abstract_tree) -> int:
    """Bytes of one device's shard of a tree of ShapeDtypeStructs with shardings."""
    import jax

    return sum(math.prod(a.sharding.shard_shape(a.shape)) * a.dtype.itemsize for a in jax.tree.leaves(abstract_tree))


def count_ops(lowered) -> int:
    """Operations in the lowered StableHLO module (every function, each op once)."""
    return len(re.findall(r"^\s*(?:%[^=]+= )?\"?(?:stablehlo|chlo|sdy|mhlo)\.", lowered.as_text(), re.MULTILINE))


def cost_analysis(compiled) -> dict:
    """XLA's cost analysis of a compiled program as one dict (empty where the backend gives none)."""
    cost = compiled.cost_analysis()
    return (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}


def one_chip_gradient_cost(fn, *shapes, topology: str = "v5p:2x2x1") -> tuple[float, int, float]:
    """(cost model's seconds, temporary bytes, FLOPs) of `fn`'s forward and backward on one chip of
    `topology`: the gradient of its squared output's sum in every argument, compiled for that chip
    from any machine. What a layer costs there, for the benchmarks that compare formulations."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    chip, dims = parse_topology(topology)
    replicated = NamedSharding(Mesh(topology_devices(chip, dims, topology)[:1], ("x",)), PartitionSpec())
    loss = lambda *a: jnp.sum(jnp.square(fn(*a).astype(jnp.float32)))  # noqa: E731
    step = jax.jit(jax.grad(loss, argnums=tuple(range(len(shapes)))), in_shardings=replicated,
                   out_shardings=replicated)
    compiled = step.lower(*shapes).compile()
    cost = cost_analysis(compiled)
    return (float(cost.get("optimal_seconds", 0.0)), compiled.memory_analysis().temp_size_in_bytes,
            float(cost.get("flops", 0.0)))


def _phase(phases: dict, name: str, fn):
    """Runs one compile phase, recording its seconds and its own peak RSS (the freed heap of the
    phase before is handed back first, so each peak is what that phase holds)."""
    release_freed_memory()
    reset_peak_rss()
    held = rss_bytes()
    start = time.perf_counter()
    out = fn()
    phases[name] = {"seconds": time.perf_counter() - start, "start_rss_bytes": held, "peak_rss_bytes": peak_rss_bytes()}
    return out


def _compile(program, args) -> tuple:
    """(train executable, eval executable, StableHLO ops, phases): lowering, then each compile, with
    what one phase no longer needs dropped before the next."""
    phases: dict = {}
    with program.context():
        def lower():
            lowered = program.train_step.lower(args["state"], args["batch"], args["stop"])
            return lowered, count_ops(lowered)

        lowered, hlo_ops = _phase(phases, "lower_train", lower)
        compiled = _phase(phases, "compile_train", lowered.compile)
        del lowered
        eval_compiled = _phase(phases, "compile_eval", lambda: program.eval_step.lower(
            args["state"].params, args["eval_batch"]).compile())
    release_freed_memory()
    return compiled, eval_compiled, hlo_ops, phases


def plan(config: ml_collections.ConfigDict, topology: str) -> dict:
    """Compiles the config's train and eval steps for `topology`; returns the report (see README)."""
    chip, dims = parse_topology(topology)
    devices = topology_devices(chip, dims, topology)
    import jax

    from vocal_remover_jax.train import mesh as mesh_lib
    from vocal_remover_jax.train.program import build_program, check_batch

    mesh = mesh_lib.make_mesh(config.mesh, devices)
    check_batch(config, mesh.size)
    program = build_program(config, mesh)
    args = program.abstract_inputs(config.batch_size)
    # Nothing into the persistent cache: compile time and memory as a pod host pays them, and a
    # compile-only executable cannot be loaded back from it. (JAX decides once per process whether
    # the cache is in use, so only the write threshold can still keep these programs out.)
    keep = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float("inf"))
    try:
        compiled, eval_compiled, hlo_ops, phases = _compile(program, args)
    finally:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", keep)
    compile_seconds = phases["lower_train"]["seconds"] + phases["compile_train"]["seconds"]
    peak_rss = max(p["peak_rss_bytes"] for p in phases.values())

    state = args["state"]
    params = per_device_bytes((state.params, state.disc_params))
    optimizer = per_device_bytes((state.step, state.opt_state, state.disc_opt_state))
    mem = compiled.memory_analysis()
    total = (mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
             + mem.temp_size_in_bytes + mem.generated_code_size_in_bytes)
    cost = cost_analysis(compiled)  # TPU: per chip, with the cost model's time; GPU: none
    flops = float(cost["flops"]) if "flops" in cost else None
    seconds = float(cost.get("optimal_seconds", 0.0)) or None
    eval_mem, eval_cost = eval_compiled.memory_analysis(), cost_analysis(eval_compiled)
    eval_total = (eval_mem.argument_size_in_bytes + eval_mem.output_size_in_bytes - eval_mem.alias_size_in_bytes
                  + eval_mem.temp_size_in_bytes + eval_mem.generated_code_size_in_bytes)
    chips = len(devices)
    # Pallas kernels: the cost model rates each by the cost it declares (else by its bytes), and
    # counts its FLOPs only where declared.
    fused_kernels = compiled.as_text().count('custom_call_target="tpu_custom_call"')
    return {
        "topology": topology, "chip": chip.name, "chips": chips,
        "mesh": {name: int(size) for name, size in mesh.shape.items()},
        "mode": config.mode, "global_batch": int(config.batch_size), "grad_accum_steps": int(config.grad_accum_steps),
        "compute_dtype": str(config.model.get("dtype", "float32")),
        "per_chip_bytes": {
            "parameters": params, "optimizer": optimizer,
            "batch": mem.argument_size_in_bytes - params - optimizer,
            "temporaries": mem.temp_size_in_bytes,
            "outputs_not_aliased": mem.output_size_in_bytes - mem.alias_size_in_bytes,
            "code": mem.generated_code_size_in_bytes,
            "total": total},
        "hbm_bytes": chip.hbm_bytes, "hbm_source": chip.source,
        "fits": total <= chip.hbm_bytes, "headroom_bytes": chip.hbm_bytes - total,
        "flops_per_chip": flops,
        "estimated_step_seconds": seconds,
        "estimated_examples_per_second_per_chip": config.batch_size / chips / seconds if seconds else None,
        "estimated_mfu": flops / seconds / chip.bf16_flops if seconds and flops else None,
        "peak_bf16_flops_per_chip": chip.bf16_flops,
        "compile_seconds": compile_seconds,
        "compile_peak_rss_bytes": peak_rss,
        "compile_phases": phases,
        "allocator": allocator(),
        "hlo_ops": hlo_ops,
        "fused_kernels": fused_kernels,
        "eval": {"per_chip_bytes": {"temporaries": eval_mem.temp_size_in_bytes, "total": eval_total},
                 "fits": eval_total <= chip.hbm_bytes, "flops_per_chip": eval_cost.get("flops"),
                 "estimated_step_seconds": float(eval_cost.get("optimal_seconds", 0.0)) or None,
                 "compile_seconds": phases["compile_eval"]["seconds"]},
        "note": ("times, examples/s and MFU are XLA's TPU cost model, not a measurement" if chip.platform == "tpu"
                 else "XLA's GPU compiler reports no costs for a deviceless target: memory only"),
    }


def _gb(n: float) -> str:
    return f"{n / 1e9:8.2f} GB" if abs(n) >= 1e9 else f"{n / 1e6:8.2f} MB"


def format_report(r: dict) -> str:
    b = r["per_chip_bytes"]
    mesh = " x ".join(f"{k} {v}" for k, v in r["mesh"].items())
    verdict = (f"fits, {_gb(r['headroom_bytes']).strip()} to spare" if r["fits"]
               else f"DOES NOT FIT: {_gb(-r['headroom_bytes']).strip()} over")
    na = lambda v, fmt: "n/a" if v is None else format(v, fmt)
    lines = [
        f"plan: {r['mode']} on {r['topology']} ({r['chips']} chips), mesh {mesh}, global batch {r['global_batch']}"
        f" (grad_accum_steps {r['grad_accum_steps']}), compute {r['compute_dtype']}",
        "per chip (XLA's memory plan for the train step):",
        f"  parameters        {_gb(b['parameters'])}",
        f"  optimizer state   {_gb(b['optimizer'])}",
        f"  batch             {_gb(b['batch'])}",
        f"  temporaries       {_gb(b['temporaries'])}   (activations, gradients, workspace)",
        f"  outputs (new)     {_gb(b['outputs_not_aliased'])}   (the state is donated: its outputs reuse its inputs)",
        f"  code              {_gb(b['code'])}",
        f"  total             {_gb(b['total'])}   of {_gb(r['hbm_bytes']).strip()} HBM: {verdict}",
        f"  eval step total   {_gb(r['eval']['per_chip_bytes']['total'])}",
        "compute per chip and step:",
        f"  FLOPs             {na(r['flops_per_chip'], '.4g')}",
        f"  step time         {na(r['estimated_step_seconds'] and r['estimated_step_seconds'] * 1e3, '.2f')} ms"
        "   (cost model)",
        f"  examples/s/chip   {na(r['estimated_examples_per_second_per_chip'], '.3g')}   (cost model)",
        f"  MFU               {na(r['estimated_mfu'] and 100 * r['estimated_mfu'], '.1f')} %   (cost model; of "
        f"{r['peak_bf16_flops_per_chip'] / 1e12:.0f} TFLOP/s bf16 peak)",
        f"compile: train step {r['compile_seconds']:.1f} s, eval step {r['eval']['compile_seconds']:.1f} s, "
        f"peak RSS {r['compile_peak_rss_bytes'] / 2**30:.2f} GiB; lowered train step: {r['hlo_ops']:,} StableHLO ops",
        "  by phase: " + ", ".join(f"{name} {p['seconds']:.1f} s, peak {p['peak_rss_bytes'] / 2**30:.2f} GiB"
                                   for name, p in r["compile_phases"].items()) + f" (malloc: {r['allocator']}"
        + (f", {r['malloc_arena_max']} arenas)" if r.get("malloc_arena_max") else ")"),
        "Times, examples/s and MFU come from XLA's TPU cost model, not from running: they ignore input "
        "pipelines and host stalls and can be far off for communication-heavy programs. Memory is the "
        "compiler's own plan and is reliable.",
    ]
    if r["flops_per_chip"] is None:
        lines[-1] = "Memory is the GPU compiler's own plan; it gives no FLOPs or time for a GPU it does not have."
    if r["fused_kernels"]:
        lines.append(f"The step runs {r['fused_kernels']} fused (Pallas) kernels, which the cost model does not "
                     "analyse: it times each by the cost the kernel declares (or by its bytes) and counts FLOPs only "
                     "where declared (flash attention's backward declares none), so their time is a roofline and "
                     "MFU counts fewer FLOPs than run.")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.config_overrides)
    if args.malloc == "auto":
        rerun_with_tcmalloc("plan")
    arenas = limit_malloc_arenas()  # where tcmalloc is not there (or not wanted)
    try:
        report = plan(config, args.topology)
        report["malloc_arena_max"] = arenas
    except (CompilerMissing, ValueError) as e:
        print(f"plan: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0
