"""The training knobs shared by configs/pretrain.py, pretrain_gan.py and finetune.py."""

from __future__ import annotations

import dataclasses

import ml_collections

from vocal_remover_jax import presets
from vocal_remover_jax.data.defaults import default_data_config


@dataclasses.dataclass(frozen=True)
class Schedule:
    batch_size: int
    total_steps: int
    warmup_steps: int
    log_every_steps: int
    checkpoint_every_steps: int


_SCHEDULES = {
    "seed": Schedule(batch_size=4, total_steps=200_000, warmup_steps=10_000, log_every_steps=100,
                     checkpoint_every_steps=2000),
    "small": Schedule(batch_size=8, total_steps=50_000, warmup_steps=2_000, log_every_steps=50,
                      checkpoint_every_steps=1000),
    "tiny": Schedule(batch_size=4, total_steps=300, warmup_steps=20, log_every_steps=10, checkpoint_every_steps=50),
    # CPU-sized: about 4 h of finetuning on 2 cores (README, starter section)
    "starter": Schedule(batch_size=4, total_steps=2500, warmup_steps=100, log_every_steps=20,
                        checkpoint_every_steps=250),
}


# Pod variants of the seed model (README, "Checking a run fits"): size -> (mesh data, mesh fsdp,
# global batch). bf16 compute and the compiler's lowest execution-time effort, which cut tiny's
# TPU compile from 123 to 76 s: every host of the slice pays it at every (re)start.
POD_VARIANTS = {"seed_v5p": (8, 8, 64), "seed_v5e": (16, 16, 256), "seed_v5p_slice": (1, 4, 8)}


def training_config(mode: str, size: str) -> ml_collections.ConfigDict:
    size = size or "tiny"
    if size in POD_VARIANTS:
        return pod_config(mode, size)
    audio = presets.audio_config(size)  # a clear error for an unknown size
    schedule = _SCHEDULES[size]
    c = ml_collections.ConfigDict()
    c.mode = mode  # pretrain | gan | finetune
    c.seed = 0
    # Dropout's random bits: "threefry2x32" gives the same masks on any mesh (tests compare runs
    # across device counts); "rbg" is XLA's RngBitGenerator, far cheaper on TPUs, whose masks
    # depend on how the batch is sharded (for pod runs).
    c.dropout_rng = "threefry2x32"
    c.audio = audio
    c.model = presets.model_config(size, c.audio)
    c.data = default_data_config("finetune" if mode == "finetune" else "pretrain")
    c.data.cropsize = c.model.cropsize
    c.model.cropsize = c.data.get_ref("cropsize")  # one value: the pipeline crops what the model sees
    c.data.source = "records"  # "records" (from `prepare`) or "random" (no files: tests, benchmarks)
    c.data.records = ""  # folder written by `vocal-remover-jax prepare`
    c.batch_size = schedule.batch_size  # global, per optimizer step
    c.grad_accum_steps = 1
    c.total_steps = schedule.total_steps
    c.optimizer = ml_collections.ConfigDict(dict(
        learning_rate=1e-4, end_learning_rate=1e-7, warmup_steps=schedule.warmup_steps, decay_power=1.0, weight_decay=1e-2,
        b1=0.9, b2=0.999, eps=1e-8, grad_clip_norm=0.5, amsgrad=False,
        schedule="polynomial"))  # after warm-up: "polynomial" (optax) or "compounding" (the reference's)
    c.loss = ml_collections.ConfigDict(dict(
        l1_weight=1.0, is_next_weight=1.0, gan_l1_weight=10.0,
        # finetuning: weight of the vocal estimate's L1 at the instrumental's level (0: the
        # reference's loss, the instrumental's L1 only); losses.vocal_l1_at_instrumental_level
        vocal_weight=0.0, vocal_floor_db=-20.0,
        # finetuning: weight of the instrumental's L1 where the masked mixture falls below it
        # (accompaniment removed; 1: the reference's plain L1); losses.removal_l1
        removal_weight=1.0,
        # finetuning: weight of the mask logits' cross-entropy against the ideal ratio mask
        # (0: off); losses.ideal_mask_bce
        mask_bce_weight=0.0,
        # ... each bin weighted by the mixture's magnitude to this power (2: as the squared error)
        mask_bce_power=1.0,
        # ... normalised per frame instead of per example (every frame weighs the same)
        mask_bce_per_frame=False,
        reference_double_log_softmax=False))  # True: the reference's log-softmax applied twice
    c.init_from = ""  # finetuning: a pretraining workdir (its latest checkpoint) or a model file
    # finetuning: parameters of init_from whose path ("out/kernel") matches this regex start at zero
    # instead; "^out/" starts the mask head at sigmoid(0) = 0.5 in every bin (checkpoint.zero_matching)
    c.init_zero = ""
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))
    # Logical axis -> mesh axes. FSDP shards the feature axes of every transformer weight.
    c.logical_rules = [("batch", ["data", "fsdp"]), ("embed", "fsdp"), ("mlp", None), ("qkv", None),
                       ("conv_in", None), ("conv_out", None), ("taps", None), ("frames", None)]
    c.checkpoint = ml_collections.ConfigDict(dict(every_steps=schedule.checkpoint_every_steps, keep=3, asynchronous=True,
                                                  best_metric="sdr_magnitude", best_mode="max"))
    c.log_every_steps = schedule.log_every_steps
    c.eval_every_steps = schedule.checkpoint_every_steps if mode == "finetune" else 0
    c.eval_batches = 0  # 0: the whole validation split
    # finetuning: a folder of held-out mixtures (`evaluate`'s layout) separated and scored against
    # doing nothing at every evaluation, logged as heldout/* (train/heldout.py); "" skips it
    c.heldout_dir = ""
    # XLA's effort levels for the train step, in [-1, 1] (0: the compiler's default). On TPU,
    # exec_time_optimization_effort=-1 compiles faster (README, "Checking a run fits").
    c.compiler = ml_collections.ConfigDict(dict(exec_time_optimization_effort=0.0, memory_fitting_effort=0.0))
    c.distributed = ml_collections.ConfigDict(dict(enabled=False, coordinator_address="", num_processes=0,
                                                   process_id=-1, cpu_collectives=""))
    return c


def pod_config(mode: str, variant: str) -> ml_collections.ConfigDict:
    """The seed model as planned for a TPU slice: `seed_v5p` (v5p:4x4x4), `seed_v5e` (v5e:16x16),
    `seed_v5p_slice` (v5p:2x2x1, for finetuning)."""
    data, fsdp, batch = POD_VARIANTS[variant]
    c = training_config(mode, "seed")
    c.mesh.data, c.mesh.fsdp, c.batch_size = data, fsdp, batch
    c.model.dtype = "bfloat16"
    c.compiler.exec_time_optimization_effort = -1.0
    return c
