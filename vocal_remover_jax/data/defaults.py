"""The data pipelines' settings, apart from the pipelines so that loading a training config never
imports TensorFlow (a `data.source=random` run never needs it)."""

from __future__ import annotations

import ml_collections


def default_data_config(kind: str) -> ml_collections.ConfigDict:
    """Every knob of a pipeline and of its device-side augmentation.

    Defaults follow the reference (train-pre.py / train.py, lib/dataset.py at 82256e7) except
    `mask_rate` (the seed README's 20 %; the reference's is 0.15).
    """
    if kind not in ("pretrain", "finetune"):
        raise ValueError(f"default_data_config: kind must be 'pretrain' or 'finetune', not {kind!r}")
    cfg = ml_collections.ConfigDict()
    cfg.cropsize = 1024
    cfg.swap_rate = 0.5  # left/right channel swap
    cfg.verify_checksums = True  # sha256 of this host's shards at start (sizes always checked)
    cfg.prefetch = 4  # batches read ahead
    cfg.workers = 2  # threads reading batches
    cfg.mixup_alpha = 0.4
    if kind == "pretrain":
        cfg.next_chunk = cfg.get_ref("cropsize") // 2  # trailing frames that may come from another clip
        cfg.not_next_rate = 0.5
        cfg.hard_negative_rate = 0.5  # of not-next chunks, share taken from the same track's nearby clips
        cfg.hard_negative_distance = 4  # ... at most this many clips away (never the clip itself)
        cfg.token_size = cfg.get_ref("cropsize") // 32  # frames per masking token
        cfg.token_warmup_epochs = 4.0  # token size grows from 1 frame to token_size over these epochs
        cfg.mask_rate = 0.2
        cfg.noise_rate = 0.1  # share of selected tokens noised instead of set to 1.0
        cfg.unchanged_rate = 0.1  # share of selected tokens left as they are
        cfg.noise_scale = 1.0  # uniform(0, noise_scale) added, then clipped to [0, 1]
        cfg.mixup_rate = 0.0
    else:
        cfg.vocal_rate = 0.98  # instrumental clips that get vocals mixed in
        cfg.vocal_blend_rate = 0.5  # of those, two vocal stems blended with Beta(1, 1)
        cfg.vocal_channel_drop_rate = 0.025
        cfg.vocal_pan = 0.0  # vocals panned uniformly within +-this (1: hard left/right; 0: as recorded)
        # () mixes vocals at their records' own levels (the reference); (low, high) rescales each
        # crop's vocals to a uniform draw of that many dB RMS relative to its instrumental
        cfg.vocal_to_instrumental_db = ()
        cfg.instrumental_only_rate = 0.025  # mixture replaced by the instrumental (real pairs too)
        cfg.mixup_rate = 0.5
    return cfg
