"""FrameConv and FrameNorm: convolutions that mix bins (and channels) within one frame only.

Layout is `(batch, frames, bins, channels)`; the kernel spans `kernel_size` bins and one frame,
so a stride downsamples frequency and never time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from vocal_remover_jax.models.layers import Dtype, after, at_least_f32, per_platform


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
        h = frame_conv(x.astype(self.dtype), kernel.astype(self.dtype), self.stride, self.padding)
        if self.norm:
            h = FrameNorm(self.cropsize, dtype=self.dtype, param_dtype=self.param_dtype, name="norm")(h)
        if self.activation is not None:
            h = self.activation(h)
        return h


def frame_conv(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """`x (batch, frames, bins, in)` convolved over bins with `kernel (taps, in, out)`; the platform
    the step is lowered for picks one of three equal formulations (only that one is compiled)."""
    return per_platform(x, kernel, cpu=functools.partial(cpu_frame_conv, stride=stride, padding=padding),
                        tpu=functools.partial(frame_conv_products, stride=stride, padding=padding),
                        default=functools.partial(xla_frame_conv, stride=stride, padding=padding))


def xla_frame_conv(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """One `lax.conv`: GPU (unmeasured: the GPU compiler gives `plan` no cost model), and CPU's
    forward, where its channels-last kernels are the fastest."""
    return jax.lax.conv_general_dilated(x, kernel[None], window_strides=(1, stride), padding=((0, 0), (padding, padding)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def cpu_frame_conv(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """`xla_frame_conv` whose kernel gradient is one matmul per tap. XLA:CPU computes a `lax.conv`'s
    kernel gradient as a convolution with a frames x bins window, at well under 1 GFLOP/s: 134 of
    the small train step's 1,276 ms of kernel time (its input gradient, a plain convolution, is fast)."""
    return xla_frame_conv(x, kernel, stride, padding)


def _cpu_frame_conv_fwd(x, kernel, stride, padding):
    return xla_frame_conv(x, kernel, stride, padding), (x, kernel)


def _cpu_frame_conv_bwd(stride, padding, residuals, dy):
    x, kernel = after(residuals, dy)
    (dx,) = jax.vjp(lambda x: xla_frame_conv(x, kernel, stride, padding), x)[1](dy)
    taps, cin, cout = kernel.shape
    bins = dy.shape[2]
    xp = jnp.pad(x, ((0, 0), (0, 0), (padding, padding), (0, 0)))
    dy = dy.reshape(-1, cout)
    contract_rows = (((0,), (0,)), ((), ()))
    dkernel = jnp.stack([
        jax.lax.dot_general(_tap(xp, t, bins, stride, axis=2).reshape(-1, cin), dy, contract_rows,
                            preferred_element_type=at_least_f32(x.dtype))
        for t in range(taps)])
    return dx, dkernel.astype(kernel.dtype)


cpu_frame_conv.defvjp(_cpu_frame_conv_fwd, _cpu_frame_conv_bwd)


def frame_conv_products(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """TPU: per-tap products summed over the input channels, with the bins as the minor axis. A
    `lax.conv` over 2-30 channels keeps them in the TPU's 128 lanes (mostly padding): the cost
    model gave a FrameEncoder's convolutions 10x the time (README, "Checking a run fits")."""
    taps = kernel.shape[0]
    x = jnp.pad(x.transpose(0, 3, 1, 2), ((0, 0), (0, 0), (0, 0), (padding, padding)))  # (batch, in, frames, bins)
    bins = (x.shape[3] - taps) // stride + 1
    y = 0.0
    for t in range(taps):
        shifted = _tap(x, t, bins, stride, axis=3)
        y = y + jnp.sum(shifted[:, :, None] * kernel[t][None, :, :, None, None], axis=1,
                        dtype=at_least_f32(x.dtype))
    return y.astype(x.dtype).transpose(0, 2, 3, 1)


def _tap(padded: jax.Array, tap: int, bins: int, stride: int, axis: int) -> jax.Array:
    """The `bins` input bins (along `axis` of the padded input) that tap `tap` meets."""
    return jax.lax.slice_in_dim(padded, tap, tap + (bins - 1) * stride + 1, stride, axis=axis)
