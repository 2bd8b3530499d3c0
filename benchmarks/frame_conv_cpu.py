"""The CPU train step with the frame convolutions' kernel gradient as per-tap matmuls (the
project's `cpu_frame_conv`) against XLA's own gradient of the `lax.conv` (`xla_frame_conv`, a
convolution whose window spans all frames and bins), both compiled in this process.

    python benchmarks/frame_conv_cpu.py --size small --repeats 21

Steps alternate (matmuls, lax.conv, lax.conv, matmuls, ...) so load drift hits both; prints the
medians and the ratio. Both steps are the trainer's (`train_step.py`'s); only the frame
convolution's CPU formulation differs, swapped in before each is traced.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax

import train_step
from interleaved import interleaved_times
from vocal_remover_jax import presets
from vocal_remover_jax.models import frame_conv


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="small", choices=list(presets.NAMES))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=21, help="timed steps per formulation")
    args = p.parse_args()
    step_args = train_step.parse_args(["--size", args.size, "--batch", str(args.batch), "--skip-forward"])
    formulations = {"matmuls": frame_conv.cpu_frame_conv, "lax.conv": frame_conv.xla_frame_conv}
    steps, info = {}, {}
    try:
        for name, conv in formulations.items():
            frame_conv.cpu_frame_conv = conv
            jax.clear_caches()
            t = time.perf_counter()
            results = {}
            steps[name] = train_step.our_step(step_args, results)
            info[name] = {"build_s": round(time.perf_counter() - t, 1), "gflops": round(results["step_gflops"], 2)}
    finally:
        frame_conv.cpu_frame_conv = formulations["matmuls"]
    for run in steps.values():
        run()
    times = interleaved_times(steps, args.repeats)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    print(json.dumps({"size": args.size, "batch": args.batch, "repeats": args.repeats, "built": info,
                      "median_s": medians, "min_s": {name: min(ts) for name, ts in times.items()},
                      "matmuls / lax.conv": medians["matmuls"] / medians["lax.conv"]}, indent=1))


if __name__ == "__main__":
    main()
