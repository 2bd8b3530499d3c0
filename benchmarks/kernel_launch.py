"""What one compiled kernel costs XLA:CPU beyond its work: a chain of tiny products and fusions.

    python benchmarks/kernel_launch.py --size 16 --links 1000

Each link of the chain is a `size` x `size` product (a dot thunk) and a fused tanh + add (a fusion
thunk), each waiting on the one before, so nothing overlaps; at size 16 the work is a few hundred
FLOPs and the time per kernel is the runtime's own cost. Multiply it by a step's kernel count
(`jax.profiler`) to see how much of a step the launches can be.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=16, help="side of the square operands")
    p.add_argument("--links", type=int, default=1000, help="products in the chain (each adds a fusion)")
    p.add_argument("--repeats", type=int, default=9)
    args = p.parse_args()

    import jax
    import jax.numpy as jnp

    w = jnp.eye(args.size) * 0.5

    def chain(x):
        for i in range(args.links):
            x = jnp.tanh(x @ w) + i
        return x

    x = jnp.ones((args.size, args.size))
    compiled = jax.jit(chain).lower(x).compile()
    hlo = compiled.as_text()
    kernels = hlo.count(" dot(") + hlo.count(" fusion(")
    jax.block_until_ready(compiled(x))
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        jax.block_until_ready(compiled(x))
        times.append(time.perf_counter() - t)
    chain_s = float(np.median(times))
    print(json.dumps({"size": args.size, "kernels": kernels, "chain_s": chain_s,
                      "us_per_kernel": chain_s / kernels * 1e6, "device": str(jax.devices()[0])}, indent=1))


if __name__ == "__main__":
    main()
