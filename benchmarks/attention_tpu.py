"""The TPU cost model's time and memory for one attention module's core, XLA's against the fused kernel.

    python benchmarks/attention_tpu.py [--batch 1] [--head-features 128 16 2]

Compiles forward and backward (gradients of queries, keys and values) of `attend` (XLA) and of
`flash_attend` (jax's Pallas flash attention, what TPUs run) for one v5p chip with libtpu's
compile-only devices, in bf16, at the seed model's shapes: 8 bands, 1,024 frames, queries and
keys twice the head's features wide (the position term rides along), values as wide as the head.
Times are XLA's cost model, not a measurement; for the kernel, a roofline of the cost it declares
(README, "Checking a run fits"); its FLOPs, too, are what it declares (the forward only).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from vocal_remover_jax.models.attention import attend
from vocal_remover_jax.models.fused_attention import flash_attend
from vocal_remover_jax.train.plan import one_chip_gradient_cost

TEMPERATURE = 32.0  # sqrt(1024 bins); any value costs the same
FORMULATIONS = {"XLA (attend)": lambda q, k, v: attend(q, k, v, TEMPERATURE)[0],
                "fused kernel (flash_attend, TPU)": lambda q, k, v: flash_attend(q, k, v, TEMPERATURE)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--bands", type=int, default=8)
    p.add_argument("--frames", type=int, default=1024)
    p.add_argument("--head-features", type=int, nargs="+", default=[128, 16, 2],
                   help="per band: 128 at the seed model's top level, 2 at its deepest")
    args = p.parse_args()
    print(f"{args.batch} x {args.bands} bands x {args.frames} frames, bf16, forward + backward, one v5p chip:")
    for d in args.head_features:
        qk = jax.ShapeDtypeStruct((args.batch, args.bands, args.frames, 2 * d), jnp.float32)
        v = jax.ShapeDtypeStruct((args.batch, args.bands, args.frames, d), jnp.float32)
        for name, fn in FORMULATIONS.items():
            seconds, temporaries, flops = one_chip_gradient_cost(
                lambda q, k, v, fn=fn: fn(q.astype(jnp.bfloat16), k.astype(jnp.bfloat16), v.astype(jnp.bfloat16)),
                qk, qk, v)
            print(f"  {d:4d} features  {name:34s} {seconds * 1e6:8.1f} µs (cost model), "
                  f"temporaries {temporaries / 1e6:7.1f} MB, {flops / 1e9:6.2f} GFLOP", flush=True)


if __name__ == "__main__":
    main()
