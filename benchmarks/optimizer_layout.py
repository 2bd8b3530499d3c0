"""The optimizer update per parameter array (the trainer's) against the same update over flat
vectors, side by side: timed on this CPU, or by the TPU cost model for a slice.

    python benchmarks/optimizer_layout.py --size small --repeats 21
    python benchmarks/optimizer_layout.py --config configs/pretrain.py:seed_v5p --topology v5p:4x4x4

A flat vector would give one norm and one update kernel instead of one per array (a third of a
compiled step's kernels; see README, "What is not done"). Both functions are the trainer's
`make_optimizer` update, global norm and non-finite guard.

On this CPU (`--size`) the flat one runs on `jax.flatten_util.ravel_pytree`'s vector (the ravel of
the gradients and the unravel of the new parameters inside the timed function, as a step would
need them). Calls alternate (per-array, flat, flat, per-array, ...) so load drift hits both;
prints medians and the ratio flat / per-array.

For a TPU slice (`--topology`, libtpu's compile-only devices, nothing runs) the flat one is per
device: inside `shard_map` each device concatenates its own shards of the gradients and
parameters into one vector, keeps its moments as one vector (a `(devices, n)` array sharded over
the whole mesh), and splits the new parameters back; only the norm crosses devices. Prints, per
layout, the lowered operations, the compile time and the cost model's time and temporaries.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from interleaved import interleaved_times
from vocal_remover_jax import presets
from vocal_remover_jax.config import load_config
from vocal_remover_jax.train import mesh as mesh_lib
from vocal_remover_jax.train.chips import parse_topology
from vocal_remover_jax.train.optim import global_norm, make_optimizer
from vocal_remover_jax.train.plan import cost_analysis, count_ops, topology_devices
from vocal_remover_jax.train.program import build_program


def guarded_update(tx: optax.GradientTransformationExtraArgs, params, opt_state, grads, norm=None):
    """`norm`: the global gradient norm, where `grads` are only part of the gradients."""
    norm = global_norm(grads) if norm is None else norm
    updates, new_state = tx.update(grads, opt_state, params, grad_norm=norm)
    new = (optax.apply_updates(params, updates), new_state)
    finite = jnp.isfinite(norm)
    return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, (params, opt_state))


def timed_on_cpu(args: argparse.Namespace) -> None:
    config = load_config(f"configs/pretrain.py:{args.size}", ["batch_size=1"])
    program = build_program(config, mesh_lib.make_mesh(config.mesh, jax.devices()[:1]))
    shapes = program.abstract_inputs(1)["state"].params
    keys = iter(jax.random.split(jax.random.key(0), 2 * len(jax.tree.leaves(shapes))))
    params = jax.tree.map(lambda s: 0.02 * jax.random.normal(next(keys), s.shape, s.dtype), shapes)
    grads = jax.tree.map(lambda s: 1e-3 * jax.random.normal(next(keys), s.shape, s.dtype), shapes)
    tx = make_optimizer(config.optimizer, config.total_steps)
    flat_params, unravel = ravel_pytree(params)

    per_array = jax.jit(lambda p, s, g: guarded_update(tx, p, s, g))

    @jax.jit
    def flat(p, s, g):
        new_p, new_s = guarded_update(tx, ravel_pytree(p)[0], s, ravel_pytree(g)[0])
        return unravel(new_p), new_s

    cases = {"per-array": (per_array, tx.init(params)), "flat": (flat, tx.init(flat_params))}
    for fn, state in cases.values():
        jax.block_until_ready(fn(params, state, grads))  # compile
    update = lambda fn, state: lambda: jax.block_until_ready(fn(params, state, grads))  # noqa: E731
    times = interleaved_times({name: update(*case) for name, case in cases.items()}, args.repeats)
    arrays, count = len(jax.tree.leaves(params)), flat_params.size
    print(f"{args.size}: {arrays} parameter arrays, {count:,} parameters, {args.repeats} updates each")
    median = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name:>10}: median {median[name] * 1e3:8.2f} ms   min {min(t) * 1e3:8.2f} ms")
    print(f"flat / per-array: {median['flat'] / median['per-array']:.2f}x")


def flat_per_device(tx: optax.GradientTransformationExtraArgs, mesh: Mesh, param_shardings):
    """The update over each device's shards as one vector: (params, moments, grads) -> (params,
    moments), the moments from `flat_state`."""
    specs = jax.tree.map(lambda s: s.spec, param_shardings)
    every = PartitionSpec(tuple(mesh.axis_names))

    def local(params, state, grads, norm):
        leaves, treedef = jax.tree.flatten(params)
        flat = lambda tree: jnp.concatenate([x.reshape(-1) for x in jax.tree.leaves(tree)])[None]
        new_p, new_state = guarded_update(tx, flat(params), state, flat(grads), norm)
        ends = list(itertools.accumulate(x.size for x in leaves))
        parts = [new_p[0, end - x.size:end].reshape(x.shape) for x, end in zip(leaves, ends)]
        return jax.tree.unflatten(treedef, parts), new_state

    def update(params, state, grads):
        state_specs = jax.tree.map(lambda a: every if a.ndim else PartitionSpec(), state)
        return jax.shard_map(local, mesh=mesh, in_specs=(specs, state_specs, specs, PartitionSpec()),
                             out_specs=(specs, state_specs), check_vma=False)(params, state, grads, global_norm(grads))

    return update


def cost_on_tpu(args: argparse.Namespace) -> None:
    config = load_config(args.config, [])
    chip, dims = parse_topology(args.topology)
    mesh = mesh_lib.make_mesh(config.mesh, topology_devices(chip, dims, args.topology))
    program = build_program(config, mesh)
    state = program.abstract_inputs(config.batch_size)["state"]
    params, param_shardings, tx = state.params, program.shardings.params, program.tx
    local_size = sum(math.prod(a.sharding.shard_shape(a.shape)) for a in jax.tree.leaves(params))
    every = NamedSharding(mesh, PartitionSpec(tuple(mesh.axis_names)))
    flat_state = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=every if a.ndim else NamedSharding(mesh, PartitionSpec())),
        jax.eval_shape(tx.init, jax.ShapeDtypeStruct((mesh.size, local_size), jnp.float32)))
    opt_shardings = program.shardings.opt_state
    cases = {
        "per-array": (jax.jit(lambda p, s, g: guarded_update(tx, p, s, g),
                              in_shardings=(param_shardings, opt_shardings, param_shardings),
                              out_shardings=(param_shardings, opt_shardings), donate_argnums=(0, 1)),
                      state.opt_state),
        "flat per device": (jax.jit(flat_per_device(tx, mesh, param_shardings), donate_argnums=(0, 1)), flat_state)}
    print(f"{args.config} on {args.topology} (mesh {dict(mesh.shape)}): {len(jax.tree.leaves(params))} parameter "
          f"arrays, {local_size:,} parameters per device; XLA's TPU cost model, not a measurement:")
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float("inf"))  # as plan: nothing cached
    with jax.set_mesh(mesh):
        for name, (update, opt_state) in cases.items():
            start = time.perf_counter()
            lowered = update.lower(params, opt_state, params)
            compiled = lowered.compile()
            seconds = time.perf_counter() - start
            cost = cost_analysis(compiled)
            print(f"  {name:16s} {count_ops(lowered):7,} ops, compiled in {seconds:6.1f} s, "
                  f"{cost.get('optimal_seconds', 0.0) * 1e3:8.3f} ms, "
                  f"temporaries {compiled.memory_analysis().temp_size_in_bytes / 1e6:9.1f} MB")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="small", choices=list(presets.NAMES), help="timed on this CPU")
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--topology", help="a TPU slice, e.g. v5p:4x4x4: the cost model instead of timing (needs libtpu)")
    p.add_argument("--config", default="configs/pretrain.py:seed_v5p", help="with --topology: its mesh and model")
    args = p.parse_args(argv)
    (cost_on_tpu if args.topology else timed_on_cpu)(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
