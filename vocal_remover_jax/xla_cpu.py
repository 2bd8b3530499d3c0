"""Compile options for this project's programs on XLA:CPU.

Recent jaxlib hands reductions, dots and convolutions to YNNPACK fusions by default. On this
project's programs XLA's own kernels are faster: the `small` train step B1 ran 0.93 s with them
and 0.72 s without, the `starter` separation pipeline 27.1 s against 20.8 s for 240 s of audio
(2-core x86-64; README, *Benchmarks*). Options go per program, not through `XLA_FLAGS`, so they
hold however the process was started and touch nothing else in it.
"""

from __future__ import annotations

# An empty list: no YNNPACK fusions (the option takes the enum's names; "" clears the default).
_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


# For a program that runs once: LLVM's optimisations off. A model's initialisation is thousands of
# small kernels (rolled threefry loops for every parameter's key and values); the tiny model's
# compiled in 18.7 s instead of 30.1, the seed model's in 244 s instead of 307 s while its run
# took 13.6 s instead of 2.4 (`jax.jit(model.init)` on this 2-core CPU, no cache).
RUN_ONCE_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def compiler_options(platform: str, run_once: bool = False) -> dict[str, str | int | bool] | None:
    """Options for a program compiled for `platform` ("cpu", "tpu", "gpu"), as `jax.jit` takes
    them: None off the CPU. `run_once`: a program whose compile time outweighs its run time."""
    if platform != "cpu":
        return None
    return dict(_CPU_OPTIONS, **(RUN_ONCE_OPTIONS if run_once else {}))
