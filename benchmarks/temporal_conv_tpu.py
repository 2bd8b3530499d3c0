"""The TPU cost model's time and memory for one grouped temporal convolution, per formulation.

    python benchmarks/temporal_conv_tpu.py                          # seed's conv2_grouped: 2 channels per group
    python benchmarks/temporal_conv_tpu.py --features 1024 --in-per-group 1   # a depthwise one

Compiles forward and backward (gradients of the input and the kernel) for one v5p chip with
libtpu's compile-only devices, in bf16, for a `lax.conv` with `feature_group_count`, the shifted
products with CPU's hand-written VJP, the shifted products differentiated by JAX, and the
products over features rotated within their groups (what `TemporalConv` runs on accelerators
when groups have as many outputs as inputs). Times are XLA's cost model, not a measurement.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from vocal_remover_jax.models import layers
from vocal_remover_jax.train.plan import one_chip_gradient_cost

FORMULATIONS = {"lax.conv, feature_group_count": layers.xla_temporal_conv,
                "shifted products, hand-written VJP": layers.grouped_temporal_conv,
                "shifted products, autodiff": layers.grouped_products,
                "rotated products, autodiff (accelerators, in = out)": layers.rotated_products}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--frames", type=int, default=1024)
    p.add_argument("--features", type=int, default=4096)
    p.add_argument("--taps", type=int, default=9)
    p.add_argument("--in-per-group", type=int, default=2, help="channels per group (in = out); 1: depthwise")
    args = p.parse_args()
    cin = args.in_per_group
    x = jax.ShapeDtypeStruct((args.batch, args.frames, args.features), jnp.float32)
    kernel = jax.ShapeDtypeStruct((args.taps, args.features // cin, cin, cin), jnp.float32)
    print(f"{args.batch} x {args.frames} frames x {args.features} features, {args.taps} taps, "
          f"{cin} channels per group, bf16, forward + backward, one v5p chip:")
    for name, conv in FORMULATIONS.items():
        seconds, temporaries, _ = one_chip_gradient_cost(
            lambda x, k, conv=conv: conv(x.astype(jnp.bfloat16), k.astype(jnp.bfloat16), (args.taps - 1) // 2),
            x, kernel)
        print(f"  {name:52s} {seconds * 1e3:7.3f} ms (cost model), temporaries {temporaries / 1e6:7.0f} MB")

if __name__ == "__main__":
    main()
