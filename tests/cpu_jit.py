"""How the tests jit a model on this CPU."""

import jax

from vocal_remover_jax.models.layers import traced_for_platform
from vocal_remover_jax.xla_cpu import compiler_options


def cpu_jit(fn, **jit_options):
    """Jitted as the trainer jits for a CPU (one formulation per layer traced, not every
    platform's; the test of `per_platform` itself and the parity tests run the untargeted form),
    and compiled as a program that runs once: tests run the tiny model a few times after
    compiling it."""
    return jax.jit(traced_for_platform(fn, "cpu"), compiler_options=compiler_options("cpu", run_once=True),
                   **jit_options)
