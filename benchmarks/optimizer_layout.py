"""The optimizer update per parameter array (the trainer's) against the same update over one flat
vector of all parameters, side by side on this machine.

    python benchmarks/optimizer_layout.py --size small --repeats 21

A flat vector would give one norm and one update kernel instead of one per array (a third of a
compiled step's kernels; see README, "What is not done"). Both functions are the trainer's
`make_optimizer` update, global norm and non-finite guard; the flat one on
`jax.flatten_util.ravel_pytree`'s vector (the ravel of the gradients and the unravel of the new
parameters inside the timed function, as a step would need them). Calls alternate (per-array,
flat, flat, per-array, ...) so load drift hits both; prints medians and the ratio flat / per-array.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from vocal_remover_jax import presets
from vocal_remover_jax.config import load_config
from vocal_remover_jax.train import mesh as mesh_lib
from vocal_remover_jax.train.optim import global_norm, make_optimizer
from vocal_remover_jax.train.program import build_program


def guarded_update(tx: optax.GradientTransformationExtraArgs, params, opt_state, grads):
    norm = global_norm(grads)
    updates, new_state = tx.update(grads, opt_state, params, grad_norm=norm)
    new = (optax.apply_updates(params, updates), new_state)
    finite = jnp.isfinite(norm)
    return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, (params, opt_state))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="small", choices=list(presets.NAMES))
    p.add_argument("--repeats", type=int, default=21)
    args = p.parse_args(argv)

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
    times = {name: [] for name in cases}
    for fn, state in cases.values():
        jax.block_until_ready(fn(params, state, grads))  # compile
    for i in range(args.repeats):
        for name in (cases if i % 2 == 0 else reversed(list(cases))):
            fn, state = cases[name]
            start = time.perf_counter()
            jax.block_until_ready(fn(params, state, grads))
            times[name].append(time.perf_counter() - start)
    arrays, count = len(jax.tree.leaves(params)), flat_params.size
    print(f"{args.size}: {arrays} parameter arrays, {count:,} parameters, {args.repeats} updates each")
    median = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name:>10}: median {median[name] * 1e3:8.2f} ms   min {min(t) * 1e3:8.2f} ms")
    print(f"flat / per-array: {median['flat'] / median['per-array']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
