"""Named model sizes shared by every config file (`configs/*.py`).

`seed` is the reference's default (kingoomieiii/frame-transformer train-pre.py), `small`
a laptop-sized model, `tiny` the one tests, CI and the quickstart train in seconds, `starter`
the CPU-sized model of the real-audio recipe (README, "A starter model from the real-audio pack").
"""

from __future__ import annotations

import dataclasses

import ml_collections


@dataclasses.dataclass(frozen=True)
class Size:
    sample_rate: int
    n_fft: int
    hop_length: int
    cropsize: int  # frames per example
    channels: int  # U-Net channels at the first level (level i has channels * (i + 1))
    depth: int  # U-Net levels
    num_transformer_blocks: int  # per level
    num_bands: int  # attention heads (bands of bins)
    feedforward_dim: int


_SIZES = {
    "seed": Size(sample_rate=44100, n_fft=2048, hop_length=1024, cropsize=1024, channels=2, depth=7,
                 num_transformer_blocks=2, num_bands=8, feedforward_dim=4096),
    "small": Size(sample_rate=44100, n_fft=1024, hop_length=512, cropsize=256, channels=2, depth=5,
                  num_transformer_blocks=1, num_bands=4, feedforward_dim=1024),
    "tiny": Size(sample_rate=22050, n_fft=256, hop_length=128, cropsize=64, channels=4, depth=3,
                 num_transformer_blocks=1, num_bands=4, feedforward_dim=128),
    # the starter model trained on the real-audio pack: small's shape with a narrower feed-forward, for CPUs,
    # and 8 channels (2 left the held-out vocals 2 dB worse, 4 the instrumental; README runs 23 and 24)
    "starter": Size(sample_rate=44100, n_fft=1024, hop_length=512, cropsize=256, channels=8, depth=5,
                    num_transformer_blocks=1, num_bands=4, feedforward_dim=256),
}
NAMES = tuple(_SIZES)


def audio_config(name: str) -> ml_collections.ConfigDict:
    size = _size(name)
    return ml_collections.ConfigDict({"sample_rate": size.sample_rate, "n_fft": size.n_fft,
                                      "hop_length": size.hop_length})


def model_config(name: str, audio: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
    """The U-Net frame transformer of size `name`; `n_fft` follows `audio.n_fft` when given."""
    size = _size(name)
    cfg = ml_collections.ConfigDict(
        {
            "arch": "unet",  # "unet" (FrameTransformerUnet) or "plain" (FrameTransformer)
            "in_channels": 2,
            "channels": size.channels,
            "depth": size.depth,
            "num_transformer_blocks": size.num_transformer_blocks,  # per U-Net level; encoders for "plain"
            "num_bands": size.num_bands,
            "feedforward_dim": size.feedforward_dim,
            "n_fft": size.n_fft,
            "cropsize": size.cropsize,  # frames per example: position table and FrameNorm size
            "dropout": 0.1,
            "bias": True,
            # Reference quirk: k and v through q_conv. True for imported reference checkpoints.
            "reference_kv_conv": False,
            "dtype": "float32",  # compute dtype; parameters stay param_dtype
            "param_dtype": "float32",
            "remat": False,
            # On TPU, attention as one fused Pallas kernel (models/fused_attention.py); XLA elsewhere.
            "flash_attention": True,
        }
    )
    if audio is not None:
        cfg.n_fft = audio.get_ref("n_fft")
    return cfg


def _size(name: str) -> Size:
    if name not in _SIZES:
        raise ValueError(f"unknown model size {name!r}; choose one of {', '.join(NAMES)}")
    return _SIZES[name]
