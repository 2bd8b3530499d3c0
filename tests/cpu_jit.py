"""How the tests compile for this CPU."""

import jax

from vocal_remover_jax.models.layers import traced_for_platform
from vocal_remover_jax.xla_cpu import RUN_ONCE_OPTIONS, compiler_options

# The same options as XLA_FLAGS, for the subprocesses that run a few tiny steps (trainer jobs,
# notebooks), where compiling is most of the time.
UNOPTIMISED_XLA_FLAGS = " ".join(f"--{name}={str(value).lower()}" for name, value in RUN_ONCE_OPTIONS.items())


def cpu_jit(fn, **jit_options):
    """Jitted as the trainer jits for a CPU (one formulation per layer traced, not every
    platform's; the test of `per_platform` itself and the parity tests run the untargeted form),
    and compiled as a program that runs once: tests run the tiny model a few times after
    compiling it."""
    return jax.jit(traced_for_platform(fn, "cpu"), compiler_options=compiler_options("cpu", run_once=True),
                   **jit_options)
