"""FrameConv and FrameNorm: convolutions that mix bins (and channels) within one frame only.

Layout is `(batch, frames, bins, channels)`; the kernel spans `kernel_size` bins and one frame,
so a stride downsamples frequency and never time.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from vocal_remover_jax.models.layers import Dtype, at_least_f32


class FrameNorm(nn.Module):
    """Normalises each frame over (bins, channels), with a learned scale and shift per frame.

    The affine is indexed by absolute frame position, so the module is tied to `cropsize`
    frames (the reference's InstanceNorm2d over the transposed spectrogram).
    """

    cropsize: int
    epsilon: float = 1e-5
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.shape[1] != self.cropsize:
            raise ValueError(f"{self.name}: got {x.shape[1]} frames, the model was built for cropsize={self.cropsize}")
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones_init(), ("frames",)),
                           (self.cropsize,), self.param_dtype)
        bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros_init(), ("frames",)),
                          (self.cropsize,), self.param_dtype)
        x32 = x.astype(at_least_f32(self.dtype))
        mean = x32.mean(axis=(2, 3), keepdims=True)
        var = jnp.square(x32 - mean).mean(axis=(2, 3), keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon)
        y = y * scale[None, :, None, None] + bias[None, :, None, None]
        return y.astype(self.dtype)


class FrameConv(nn.Module):
    """Convolution over bins within each frame, then optional FrameNorm and activation."""

    features: int
    kernel_size: int = 3
    stride: int = 1
    padding: int = 1
    norm: bool = True
    activation: Callable[[jax.Array], jax.Array] | None = nn.relu
    cropsize: int = 1024
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_features = x.shape[-1]
        init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform", in_axis=(0, 1), out_axis=2)
        kernel = self.param("kernel", nn.with_logical_partitioning(init, ("taps", "conv_in", "conv_out")),
                            (self.kernel_size, in_features, self.features), self.param_dtype)
        h = jax.lax.conv_general_dilated(
            x.astype(self.dtype),
            kernel.astype(self.dtype)[None],  # (1 frame, taps, in, out)
            window_strides=(1, self.stride),
            padding=((0, 0), (self.padding, self.padding)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        if self.norm:
            h = FrameNorm(self.cropsize, dtype=self.dtype, param_dtype=self.param_dtype, name="norm")(h)
        if self.activation is not None:
            h = self.activation(h)
        return h
