"""The training knobs shared by configs/pretrain.py, pretrain_gan.py and finetune.py."""

from __future__ import annotations

import ml_collections

from vocal_remover_jax import presets

# (batch_size, total_steps, warmup_steps, log_every, checkpoint_every) per size
_SCHEDULES = {
    "seed": (4, 200_000, 10_000, 100, 2000),
    "small": (8, 50_000, 2_000, 50, 1000),
    "tiny": (4, 300, 20, 10, 50),
    "starter": (4, 2500, 100, 20, 250),  # CPU-sized: about 4 h of finetuning on 2 cores (README, starter section)
}


def training_config(mode: str, size: str) -> ml_collections.ConfigDict:
    from vocal_remover_jax.data.pipelines import default_data_config

    size = size or "tiny"
    batch, total, warmup, log_every, ckpt_every = _SCHEDULES[size if size in _SCHEDULES else "tiny"]
    c = ml_collections.ConfigDict()
    c.mode = mode  # pretrain | gan | finetune
    c.seed = 0
    c.audio = presets.audio_config(size)
    c.model = presets.model_config(size, c.audio)
    c.data = default_data_config("finetune" if mode == "finetune" else "pretrain")
    c.data.cropsize = c.model.cropsize
    c.model.cropsize = c.data.get_ref("cropsize")  # one value: the pipeline crops what the model sees
    c.data.source = "records"  # "records" (from `prepare`) or "random" (no files: tests, benchmarks)
    c.data.records = ""  # folder written by `vocal-remover-jax prepare`
    c.batch_size = batch  # global, per optimizer step
    c.grad_accum_steps = 1
    c.total_steps = total
    c.optimizer = ml_collections.ConfigDict(dict(
        learning_rate=1e-4, end_learning_rate=1e-7, warmup_steps=warmup, decay_power=1.0, weight_decay=1e-2,
        b1=0.9, b2=0.999, eps=1e-8, grad_clip_norm=0.5, amsgrad=False,
        schedule="polynomial"))  # after warm-up: "polynomial" (optax) or "compounding" (the reference's)
    c.loss = ml_collections.ConfigDict(dict(
        l1_weight=1.0, is_next_weight=1.0, gan_l1_weight=10.0,
        reference_double_log_softmax=False))  # True: the reference's log-softmax applied twice
    c.init_from = ""  # finetuning: a pretraining workdir or a model file
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))
    # Logical axis -> mesh axes. FSDP shards the feature axes of every transformer weight.
    c.logical_rules = [("batch", ["data", "fsdp"]), ("embed", "fsdp"), ("mlp", None), ("qkv", None),
                       ("conv_in", None), ("conv_out", None), ("taps", None), ("frames", None)]
    c.checkpoint = ml_collections.ConfigDict(dict(every_steps=ckpt_every, keep=3, asynchronous=True,
                                                  best_metric="sdr_magnitude", best_mode="max"))
    c.log_every_steps = log_every
    c.eval_every_steps = ckpt_every if mode == "finetune" else 0
    c.eval_batches = 0  # 0: the whole validation split
    c.distributed = ml_collections.ConfigDict(dict(enabled=False, coordinator_address="", num_processes=0,
                                                   process_id=-1, cpu_collectives=""))
    return c
