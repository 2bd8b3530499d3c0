"""Accelerators `plan` compiles for: HBM per chip and bf16 peak (fit check, MFU estimate).

TPUs come as libtpu topologies; GPUs as XLA's deviceless GPU target (a description of the chip
that the CUDA plugin compiles against without one)."""

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
    platform: str = "tpu"
    target_config: str = ""  # GPUs: XLA's GpuTargetConfig (text proto)


# NVIDIA H100 SXM5 80GB: 132 SMs, 50 MB L2, 3.35 TB/s, compute capability 9.0 (NVIDIA H100
# datasheet and CUDA device query); the fields XLA's GPU compiler reads.
_H100_TARGET = """
gpu_device_info {
  threads_per_block_limit: 1024 threads_per_warp: 32 shared_memory_per_block: 49152
  shared_memory_per_core: 233472 threads_per_core_limit: 2048 core_count: 132 fpus_per_core: 128
  block_dim_limit_x: 2147483647 block_dim_limit_y: 65535 block_dim_limit_z: 65535
  memory_bandwidth: 3352320000000 l2_cache_size: 52428800 clock_rate_ghz: 1.98
  device_memory_size: 84929347584 shared_memory_per_block_optin: 232448
  cuda_compute_capability { major: 9 } registers_per_core_limit: 65536 registers_per_block_limit: 65536
}
platform_name: "CUDA"
dnn_version_info { major: 9 minor: 8 }
runtime_version { major: 12 minor: 8 }
device_description_str: "NVIDIA H100 80GB HBM3"
"""


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
    # https://www.nvidia.com/en-us/data-center/h100/: H100 SXM 80 GB HBM3, 989 TFLOPS bf16 dense
    # (1,979 with sparsity); usable memory as CUDA reports it
    Chip("h100", "NVIDIA H100 80GB HBM3", 84929347584, 989e12, "https://www.nvidia.com/en-us/data-center/h100/",
         platform="cuda", target_config=_H100_TARGET),
)}


def parse_topology(topology: str) -> tuple[Chip, tuple[int, ...]]:
    """"v5p:4x4x4" -> (the v5p chip, (4, 4, 4)); a clear error for anything else."""
    name, sep, shape = topology.partition(":")
    if name not in CHIPS or not sep:
        raise ValueError(f"topology {topology!r}: expected GENERATION:AxBxC with GENERATION one of "
                         f"{', '.join(CHIPS)} (e.g. v5p:4x4x4, v5e:16x16; GPUs: h100:8 for one host of 8, "
                         "h100:2x8 for two)")
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
