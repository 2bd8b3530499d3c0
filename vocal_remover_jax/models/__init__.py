"""Flax Linen frame-transformer modules (channels-last: batch, frames, bins, channels)."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from vocal_remover_jax.models.attention import MultibandFrameAttention
from vocal_remover_jax.models.discriminators import ConvDiscriminator, FrameTransformerDiscriminator
from vocal_remover_jax.models.frame_conv import FrameConv, FrameNorm
from vocal_remover_jax.models.plain import FrameTransformer
from vocal_remover_jax.models.transformer_decoder import FrameTransformerDecoder
from vocal_remover_jax.models.transformer_encoder import FrameTransformerEncoder
from vocal_remover_jax.models.unet import FrameDecoder, FrameEncoder, FrameTransformerUnet

__all__ = [
    "ConvDiscriminator", "FrameConv", "FrameDecoder", "FrameEncoder", "FrameNorm", "FrameTransformer",
    "FrameTransformerDecoder", "FrameTransformerDiscriminator", "FrameTransformerEncoder", "FrameTransformerUnet",
    "MultibandFrameAttention", "build_discriminator", "build_model",
]


def build_model(cfg: ml_collections.ConfigDict) -> nn.Module:
    """The separation model described by a `config.model` (see `presets.model_config`)."""
    common = dict(in_channels=cfg.in_channels, num_bands=cfg.num_bands, feedforward_dim=cfg.feedforward_dim,
                  n_fft=cfg.n_fft, cropsize=cfg.cropsize, dropout=cfg.dropout, bias=cfg.bias,
                  reference_kv_conv=cfg.reference_kv_conv, remat=cfg.get("remat", False),
                  flash_attention=cfg.get("flash_attention", True),
                  dtype=jnp.dtype(cfg.get("dtype", "float32")), param_dtype=jnp.dtype(cfg.get("param_dtype", "float32")))
    if cfg.arch == "unet":
        return FrameTransformerUnet(channels=cfg.channels, depth=cfg.depth,
                                    num_transformer_blocks=cfg.num_transformer_blocks, **common)
    if cfg.arch == "plain":
        return FrameTransformer(num_encoders=cfg.num_transformer_blocks, **common)
    raise ValueError(f"unknown model.arch {cfg.arch!r}: expected 'unet' or 'plain'")


def build_discriminator(cfg: ml_collections.ConfigDict) -> nn.Module:
    """The GAN critic described by a `config.discriminator`."""
    dtypes = dict(dtype=jnp.dtype(cfg.get("dtype", "float32")), param_dtype=jnp.dtype(cfg.get("param_dtype", "float32")))
    if cfg.arch == "conv":
        return ConvDiscriminator(in_channels=cfg.in_channels, channels=cfg.channels, depth=cfg.depth, n_fft=cfg.n_fft,
                                 **dtypes)
    if cfg.arch == "transformer":
        return FrameTransformerDiscriminator(
            in_channels=cfg.in_channels, channels=cfg.channels, depth=cfg.depth,
            num_transformer_blocks=cfg.num_transformer_blocks, num_bands=cfg.num_bands,
            feedforward_dim=cfg.feedforward_dim, n_fft=cfg.n_fft, cropsize=cfg.cropsize, dropout=cfg.dropout,
            bias=cfg.bias, reference_kv_conv=cfg.get("reference_kv_conv", False),
            flash_attention=cfg.get("flash_attention", True), **dtypes)
    raise ValueError(f"unknown discriminator.arch {cfg.arch!r}: expected 'conv' or 'transformer'")
