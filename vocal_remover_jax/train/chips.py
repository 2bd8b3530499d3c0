"""TPU generations: HBM per chip and bf16 peak, for `plan`'s fit check and MFU estimate."""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str  # as in topology names: "v5p:4x4x4"
    device_kind: str  # jax's Device.device_kind
    hbm_bytes: int
    bf16_flops: float  # peak per chip, FLOP/s
    source: str
    cores_per_chip: int = 1  # TensorCores counted in accelerator types (v5p-8 = 4 chips)


GB, GiB = 10**9, 2**30
CHIPS = {c.name: c for c in (
    # https://cloud.google.com/tpu/docs/v4: 32 GiB HBM2, 275 TFLOPS bf16 per chip (two TensorCores, megacore)
    Chip("v4", "TPU v4", 32 * GiB, 275e12, "https://cloud.google.com/tpu/docs/v4", cores_per_chip=2),
    # https://cloud.google.com/tpu/docs/v5e: 16 GB HBM2, 197 TFLOPS bf16 per chip
    Chip("v5e", "TPU v5 lite", 16 * GB, 197e12, "https://cloud.google.com/tpu/docs/v5e"),
    # https://cloud.google.com/tpu/docs/v5p: 95 GB HBM2e, 459 TFLOPS bf16 per chip (two TensorCores)
    Chip("v5p", "TPU v5", 95 * GB, 459e12, "https://cloud.google.com/tpu/docs/v5p", cores_per_chip=2),
    # https://cloud.google.com/tpu/docs/v6e: 32 GB HBM, 918 TFLOPS bf16 per chip
    Chip("v6e", "TPU v6 lite", 32 * GB, 918e12, "https://cloud.google.com/tpu/docs/v6e"),
)}


def parse_topology(topology: str) -> tuple[Chip, tuple[int, ...]]:
    """"v5p:4x4x4" -> (the v5p chip, (4, 4, 4)); a clear error for anything else."""
    name, sep, shape = topology.partition(":")
    if name not in CHIPS or not sep:
        raise ValueError(f"topology {topology!r}: expected GENERATION:AxBxC with GENERATION one of "
                         f"{', '.join(CHIPS)} (e.g. v5p:4x4x4, v5e:16x16)")
    try:
        dims = tuple(int(d) for d in shape.split("x"))
    except ValueError:
        raise ValueError(f"topology {topology!r}: the shape {shape!r} is not like 4x4x4") from None
    return CHIPS[name], dims


def accelerator_type(chip: Chip, dims: tuple[int, ...]) -> str:
    """The Cloud TPU accelerator type of a topology (v5p:2x2x1 -> v5p-8), which libtpu reads
    from TPU_ACCELERATOR_TYPE instead of probing a host it is not on."""
    cores = math.prod(dims) * chip.cores_per_chip
    return f"v5litepod-{cores}" if chip.name == "v5e" else f"{chip.name}-{cores}"
