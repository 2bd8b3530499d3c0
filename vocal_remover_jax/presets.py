"""Named model sizes shared by every config file (`configs/*.py`).

`seed` is the reference's default (kingoomieiii/frame-transformer train-pre.py), `small`
a laptop-sized model, `tiny` the one tests, CI and the quickstart train in seconds, `starter`
the CPU-sized model of the real-audio recipe (README, "A starter model from the real-audio pack").
"""

from __future__ import annotations

import ml_collections

# name: (sample_rate, n_fft, hop_length, cropsize, channels, depth, blocks, bands, feedforward)
_SIZES = {
    "seed": (44100, 2048, 1024, 1024, 2, 7, 2, 8, 4096),
    "small": (44100, 1024, 512, 256, 2, 5, 1, 4, 1024),
    "tiny": (22050, 256, 128, 64, 4, 3, 1, 4, 128),
    # the starter model trained on the real-audio pack: small's shape with a narrower feed-forward, for CPUs
    "starter": (44100, 1024, 512, 256, 2, 5, 1, 4, 256),
}
NAMES = tuple(_SIZES)


def audio_config(name: str) -> ml_collections.ConfigDict:
    sr, n_fft, hop, *_ = _sizes(name)
    return ml_collections.ConfigDict({"sample_rate": sr, "n_fft": n_fft, "hop_length": hop})


def model_config(name: str, audio: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
    """The U-Net frame transformer of size `name`; `n_fft` follows `audio.n_fft` when given."""
    _, n_fft, _, cropsize, channels, depth, blocks, bands, ff = _sizes(name)
    cfg = ml_collections.ConfigDict(
        {
            "arch": "unet",  # "unet" (FrameTransformerUnet) or "plain" (FrameTransformer)
            "in_channels": 2,
            "channels": channels,
            "depth": depth,
            "num_transformer_blocks": blocks,  # per U-Net level; encoders for "plain"
            "num_bands": bands,
            "feedforward_dim": ff,
            "n_fft": n_fft,
            "cropsize": cropsize,  # frames per example: position table and FrameNorm size
            "dropout": 0.1,
            "bias": True,
            # Reference quirk: k and v through q_conv. True for imported reference checkpoints.
            "reference_kv_conv": False,
            "dtype": "float32",  # compute dtype; parameters stay param_dtype
            "param_dtype": "float32",
            "remat": False,
        }
    )
    if audio is not None:
        cfg.n_fft = audio.get_ref("n_fft")
    return cfg


def _sizes(name: str):
    if name not in _SIZES:
        raise ValueError(f"unknown model size {name!r}; choose one of {', '.join(NAMES)}")
    return _SIZES[name]
