"""FrameTransformerUnet: a frequency-downsampling U-Net with frame transformers at every level."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from vocal_remover_jax.models.frame_conv import FrameConv
from vocal_remover_jax.models.layers import (Dtype, at_least_f32, check_input, is_next_head, leaky_relu,
                                             mask_output)
from vocal_remover_jax.models.transformer_decoder import FrameTransformerDecoder
from vocal_remover_jax.models.transformer_encoder import FrameTransformerEncoder

class FrameEncoder(nn.Module):
    """Residual pair of frame convolutions; the second one strides over bins."""

    features: int
    stride: int = 1
    cropsize: int = 1024
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(FrameConv, self.features, cropsize=self.cropsize, dtype=self.dtype,
                                 param_dtype=self.param_dtype)
        identity = x
        if x.shape[-1] != self.features or self.stride != 1:
            identity = conv(1, self.stride, 0, norm=False, activation=None, name="idnt")(x)
        h = conv(3, 1, 1, activation=leaky_relu, name="conv1")(x)
        h = conv(3, self.stride, 1, activation=leaky_relu, name="conv2")(h)
        return identity + h


class FrameDecoder(nn.Module):
    """Upsamples bins to the skip's size (bilinear, align-corners), concatenates the skip, and
    applies a residual pair of frame convolutions."""

    features: int
    cropsize: int = 1024
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, skip: jax.Array) -> jax.Array:
        conv = functools.partial(FrameConv, self.features, cropsize=self.cropsize, dtype=self.dtype,
                                 param_dtype=self.param_dtype)
        x = jnp.concatenate([resize_bins_align_corners(x, skip.shape[2]), skip.astype(x.dtype)], axis=-1)
        identity = conv(1, 1, 0, norm=False, activation=None, name="idnt")(x)
        h = conv(3, 1, 1, activation=leaky_relu, name="conv1")(x)
        h = conv(3, 1, 1, activation=leaky_relu, name="conv2")(h)
        return identity + h


def resize_bins_align_corners(x: jax.Array, bins: int) -> jax.Array:
    """Linear interpolation along the bins axis (2) with aligned corners (frames keep their size,
    where the reference's bilinear interpolation is the identity)."""
    in_bins = x.shape[2]
    if in_bins == bins:
        return x
    pos = jnp.arange(bins, dtype=at_least_f32(x.dtype)) * ((in_bins - 1) / max(bins - 1, 1))
    lo = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, in_bins - 1)
    hi = jnp.minimum(lo + 1, in_bins - 1)
    frac = (pos - lo).astype(x.dtype)[None, None, :, None]
    return jnp.take(x, lo, axis=2) * (1 - frac) + jnp.take(x, hi, axis=2) * frac


class FrameTransformerUnet(nn.Module):
    """Maps a magnitude spectrogram `(batch, frames, n_fft//2+1, in_channels)` to a mask of the
    same shape, plus is_next log-probabilities `(batch, 2)` for BERT-style pretraining."""

    in_channels: int = 2
    channels: int = 2
    depth: int = 6
    num_transformer_blocks: int = 2
    num_bands: int = 8
    feedforward_dim: int = 2048
    n_fft: int = 2048
    cropsize: int = 1024
    dropout: float = 0.1
    bias: bool = True
    reference_kv_conv: bool = False
    flash_attention: bool = True
    remat: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True, logits: bool = False) -> tuple[jax.Array, jax.Array]:
        """`logits=True` returns the mask's logits instead (losses on them keep their gradient
        where the sigmoid saturates)."""
        check_input(x, self.n_fft, self.cropsize, self.in_channels)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        tf_kw = dict(num_bands=self.num_bands, cropsize=self.cropsize, feedforward_dim=self.feedforward_dim,
                     bias=self.bias, dropout=self.dropout, reference_kv_conv=self.reference_kv_conv,
                     flash_attention=self.flash_attention, **kw)
        encoder_cls = nn.remat(FrameTransformerEncoder, static_argnums=(2,)) if self.remat else FrameTransformerEncoder
        decoder_cls = nn.remat(FrameTransformerDecoder, static_argnums=(3,)) if self.remat else FrameTransformerDecoder
        blocks = range(self.num_transformer_blocks)

        x = nn.with_logical_constraint(x[:, :, : self.n_fft // 2].astype(self.dtype), ("batch", None, None, None))
        skips = []
        for level in range(self.depth):
            x = FrameEncoder(self.channels * (level + 1), stride=1 if level == 0 else 2, cropsize=self.cropsize,
                             name=f"encoder_{level}", **kw)(x)
            for j in blocks:
                x = jnp.concatenate([x, encoder_cls(**tf_kw, name=f"transformer_encoder_{level}_{j}")(x, deterministic)], -1)
            skips.append(x)

        is_next = is_next_head(x, bias=self.bias, **kw)

        for level in reversed(range(self.depth)):
            for j in blocks:
                h = decoder_cls(**tf_kw, name=f"transformer_decoder_{level}_{j}")(x, skips[level], deterministic)
                x = jnp.concatenate([x, h], -1)
            if level > 0:
                x = FrameDecoder(self.channels * level, cropsize=self.cropsize, name=f"decoder_{level}", **kw)(
                    x, skips[level - 1])
        x = FrameConv(self.in_channels, 1, 1, 0, norm=False, activation=None, name="out", **kw)(x)
        return mask_output(x.astype(at_least_f32(self.dtype)), self.n_fft, logits), is_next
