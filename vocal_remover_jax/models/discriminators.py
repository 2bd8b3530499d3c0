"""Critics for GAN pretraining: judge (masked input, unmasked spectrogram) pairs patch by patch."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from vocal_remover_jax.models.frame_conv import FrameConv
from vocal_remover_jax.models.layers import Dtype, at_least_f32, check_input, leaky_relu
from vocal_remover_jax.models.transformer_encoder import FrameTransformerEncoder


class InstanceNorm(nn.Module):
    """Per-example, per-channel normalisation over (frames, bins) with a learned affine."""

    epsilon: float = 1e-5
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones_init(), ("conv_out",)), (c,),
                           self.param_dtype)
        bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros_init(), ("conv_out",)), (c,),
                          self.param_dtype)
        x32 = x.astype(at_least_f32(self.dtype))
        mean = x32.mean(axis=(1, 2), keepdims=True)
        var = jnp.square(x32 - mean).mean(axis=(1, 2), keepdims=True)
        return ((x32 - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias).astype(self.dtype)


class ConvEncoder(nn.Module):
    """Two 3x3 convolutions over (frames, bins), each normalised and activated; the second
    strides over both axes."""

    features: int
    stride: int = 1
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        init = nn.with_logical_partitioning(nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
                                            ("taps", "taps_bins", "conv_in", "conv_out"))
        for i, stride in enumerate((1, self.stride)):
            x = nn.Conv(self.features, (3, 3), strides=(stride, stride), padding=((1, 1), (1, 1)), use_bias=False,
                        kernel_init=init, name=f"conv{i + 1}", **kw)(x)
            x = leaky_relu(InstanceNorm(name=f"norm{i + 1}", **kw)(x))
        return x


class ConvDiscriminator(nn.Module):
    """A plain convolutional critic that downsamples frames and bins."""

    in_channels: int = 4
    channels: int = 4
    depth: int = 6
    n_fft: int = 2048
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, masked: jax.Array, unmasked: jax.Array, deterministic: bool = True) -> jax.Array:
        del deterministic  # no dropout; same call signature as the other critic
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = jnp.concatenate([masked, unmasked], axis=-1)
        check_input(x, self.n_fft, None, self.in_channels)
        x = x[:, :, : self.n_fft // 2].astype(self.dtype)
        features = self.channels
        x = ConvEncoder(features, 1, name="encoder_0", **kw)(x)
        for level in range(1, self.depth):
            features *= 2
            x = ConvEncoder(features, 2, name=f"encoder_{level}", **kw)(x)
        return FrameConv(1, 3, 1, 1, norm=False, activation=None, name="out", **kw)(x)


class DiscriminatorFrameEncoder(nn.Module):
    """The critic's frame-conv pair: like the U-Net's FrameEncoder, without the residual path."""

    features: int
    stride: int = 1
    cropsize: int = 1024
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(FrameConv, self.features, activation=leaky_relu, cropsize=self.cropsize,
                                 dtype=self.dtype, param_dtype=self.param_dtype)
        return conv(3, self.stride, 1, name="conv2")(conv(3, 1, 1, name="conv1")(x))


class FrameTransformerDiscriminator(nn.Module):
    """The U-Net's encoder half (frame convs and frame transformers) as a critic."""

    in_channels: int = 4
    channels: int = 4
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
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, masked: jax.Array, unmasked: jax.Array, deterministic: bool = True) -> jax.Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = jnp.concatenate([masked, unmasked], axis=-1)
        check_input(x, self.n_fft, self.cropsize, self.in_channels)
        x = x[:, :, : self.n_fft // 2].astype(self.dtype)
        for level in range(self.depth):
            x = DiscriminatorFrameEncoder(self.channels * (level + 1), stride=1 if level == 0 else 2,
                                          cropsize=self.cropsize, name=f"encoder_{level}", **kw)(x)
            for j in range(self.num_transformer_blocks):
                h = FrameTransformerEncoder(self.num_bands, self.cropsize, self.feedforward_dim, bias=self.bias,
                                            dropout=self.dropout, reference_kv_conv=self.reference_kv_conv,
                                            flash_attention=self.flash_attention,
                                            name=f"transformer_encoder_{level}_{j}", **kw)(x, deterministic)
                x = jnp.concatenate([x, h], axis=-1)
        return FrameConv(1, 3, 1, 1, norm=False, activation=None, name="out", **kw)(x)
