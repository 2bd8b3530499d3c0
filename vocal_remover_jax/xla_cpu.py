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


def compiler_options(platform: str) -> dict[str, str] | None:
    """Options for a program compiled for `platform` ("cpu", "tpu", "gpu"), as `jax.jit` takes
    them: None off the CPU."""
    return dict(_CPU_OPTIONS) if platform == "cpu" else None
