"""Small building blocks shared by the frame-transformer modules.

Every parameter carries logical axis names (see `partitioning.py`) so a mesh can shard it.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any

# PyTorch's initialisers, so freshly initialised models train like the reference.
torch_linear_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")

# The reference's nn.LeakyReLU default slope.
leaky_relu = functools.partial(nn.leaky_relu, negative_slope=0.01)


def _dense_inits(axes: tuple[str | None, str | None]):
    """PyTorch's Linear initialisers, with the logical axes of the kernel and the bias."""
    return (nn.with_logical_partitioning(torch_linear_init, axes),
            nn.with_logical_partitioning(nn.initializers.zeros_init(), (axes[1],)))


def dense(features: int, axes: tuple[str | None, str | None], *, use_bias: bool, dtype: Dtype,
          param_dtype: Dtype, name: str | None = None) -> nn.Dense:
    kernel_init, bias_init = _dense_inits(axes)
    return nn.Dense(features, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, kernel_init=kernel_init,
                    bias_init=bias_init, name=name)


class DenseParams(nn.Module):
    """`nn.Dense`'s parameters (same names, shapes, initialisers and random streams) without its
    product, for functions that apply them themselves (`pointwise_feedforward`)."""

    features: int
    axes: tuple[str | None, str | None]
    use_bias: bool
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, in_features: int) -> tuple[jax.Array, jax.Array | None]:
        kernel_init, bias_init = _dense_inits(self.axes)
        kernel = self.param("kernel", kernel_init, (in_features, self.features), self.param_dtype)
        bias = self.param("bias", bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        return kernel, bias


def pointwise_feedforward(x: jax.Array, w_in: tuple, w_out: tuple, activation, dtype: Dtype) -> jax.Array:
    """`dense_out(activation(dense_in(x)))`, with `w_*` the `(kernel, bias)` of `DenseParams`.

    Its backward pass recomputes the wide hidden activations from `x` instead of keeping them
    (the feed-forward's hidden layer is 4x the model width; in the seed step these were the
    largest activations left). The recomputation waits for the incoming gradient (`after`).
    """
    def apply(x, w_in, w_out):
        def linear(h, w):
            kernel, bias = w
            y = jax.lax.dot_general(h.astype(dtype), kernel.astype(dtype), (((h.ndim - 1,), (0,)), ((), ())))
            return y if bias is None else y + bias.astype(dtype)

        return linear(activation(linear(x, w_in)), w_out)

    return _late_recompute(apply)(x, w_in, w_out)


def after(tree, dependency):
    """`tree` made to depend on `dependency` (adds zero times one of its elements), so that work a
    backward pass does with its residuals waits until the gradient arrives.

    Without it XLA:CPU's scheduler runs such work (slices, transposes, recomputation) as soon as
    the residuals exist, in the forward pass, and keeps every layer's result alive until its
    backward: gigabytes in the seed step. `optimization_barrier` does not help there: XLA:CPU
    removes barriers before it schedules."""
    first = jax.tree.leaves(dependency)[0]
    zero = jax.lax.stop_gradient(first.reshape(-1)[0]) * 0

    def tie(a):
        return a + zero.astype(a.dtype) if a is not None and jnp.issubdtype(a.dtype, jnp.inexact) else a

    return jax.tree.map(tie, tree)


def _late_recompute(fn):
    """`fn` whose VJP keeps only its inputs and recomputes the rest once the output gradient arrives."""
    @jax.custom_vjp
    def wrapped(*args):
        return fn(*args)

    def forward(*args):
        return fn(*args), args

    def backward(args, dy):
        return jax.vjp(fn, *after(args, dy))[1](dy)

    wrapped.defvjp(forward, backward)
    return wrapped


def layer_norm(axis_name: str, *, dtype: Dtype, param_dtype: Dtype, name: str | None = None) -> nn.LayerNorm:
    return nn.LayerNorm(
        epsilon=1e-5,  # PyTorch's default, not Flax's 1e-6
        dtype=dtype,
        param_dtype=param_dtype,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), (axis_name,)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (axis_name,)),
        name=name,
    )


class TemporalConv(nn.Module):
    """Grouped 1-D convolution along the frame axis of a `(batch, frames, features)` array.

    The groups here are tiny (depthwise, or 2 channels), which no compiler's grouped convolution
    serves well: they are sums of shifted products everywhere (with a hand-written VJP on CPU),
    and only the one-group convolution is a `lax.conv`.
    Kernel layout: `(taps, groups, in_per_group, out_per_group)`.
    """

    features: int
    kernel_size: int
    groups: int = 1
    use_bias: bool = False
    axes: tuple[str | None, ...] = ("taps", "embed", None, None)
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_features = x.shape[-1]
        if in_features % self.groups or self.features % self.groups:
            raise ValueError(f"{self.name}: {in_features}->{self.features} features do not split into {self.groups} groups")
        cin, cout = in_features // self.groups, self.features // self.groups
        fan_in = cin * self.kernel_size
        init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform", in_axis=(0, 2), out_axis=3)
        kernel = self.param(
            "kernel",
            nn.with_logical_partitioning(init, self.axes),
            (self.kernel_size, self.groups, cin, cout),
            self.param_dtype,
        )
        pad = (self.kernel_size - 1) // 2
        # The platform the step is lowered for picks one of two equal formulations.
        y = per_platform(x.astype(self.dtype), kernel.astype(self.dtype),
                         cpu=functools.partial(shifted_temporal_conv, pad_left=pad),
                         default=functools.partial(accelerator_temporal_conv, pad_left=pad))
        if self.use_bias:
            bias = self.param(
                "bias",
                nn.with_logical_partitioning(symmetric_uniform(1 / fan_in**0.5), (self.axes[1],)),
                (self.features,),
                self.param_dtype,
            )
            y = y + bias.astype(self.dtype)
        return y


def accelerator_temporal_conv(x: jax.Array, kernel: jax.Array, pad_left: int) -> jax.Array:
    """TPU and GPU: one group is a `lax.conv` (the MXU's work); tiny groups are shifted products,
    differentiated by JAX. Their grouped `lax.conv` costs the TPU cost model 6x the time and
    38x the temporaries for the seed model's 2-channel groups, 3x the time when depthwise
    (forward and backward; README, "Checking a run fits")."""
    if kernel.shape[1] == 1:
        return xla_temporal_conv(x, kernel, pad_left)
    if kernel.shape[2] == kernel.shape[3]:
        return rotated_products(x, kernel, pad_left)
    return grouped_products(x, kernel, pad_left)


def rotated_products(x: jax.Array, kernel: jax.Array, pad_left: int) -> jax.Array:
    """`grouped_products` for groups with as many outputs as inputs, on the flat feature axis:
    output f of a group takes input (f + d) mod c of the same group, for each offset d, from the
    features rotated within their groups. No axis of c (1 or 2) channels appears, which a TPU
    would pad to 128 lanes."""
    taps, groups, c, _ = kernel.shape
    frames, features = x.shape[-2:]
    out = np.arange(c)
    # per offset d and tap k, the weight of each output feature g*c+o: kernel[k, g, (o+d)%c, o]
    weights = [kernel[:, :, (out + d) % c, out].reshape(taps, features) for d in range(c)]
    in_group = jnp.arange(features) % c
    pad = [(0, 0)] * (x.ndim - 2) + [(pad_left, taps - 1 - pad_left), (0, 0)]
    y = 0.0
    for d in range(c):
        rotated = x if d == 0 else jnp.where(in_group + d < c, jnp.roll(x, -d, axis=-1), jnp.roll(x, c - d, axis=-1))
        rotated = jnp.pad(rotated, pad)
        for k in range(taps):
            y = y + rotated[..., k : k + frames, :] * weights[d][k]
    return y


def xla_temporal_conv(x: jax.Array, kernel: jax.Array, pad_left: int) -> jax.Array:
    """The grouped convolution as one `lax.conv`; layouts as `shifted_temporal_conv`."""
    taps, groups, cin, cout = kernel.shape
    return jax.lax.conv_general_dilated(
        x, kernel.transpose(0, 2, 1, 3).reshape(taps, cin, groups * cout), window_strides=(1,),
        padding=((pad_left, taps - 1 - pad_left),), dimension_numbers=("NWC", "WIO", "NWC"),
        feature_group_count=groups)


def shifted_temporal_conv(x: jax.Array, kernel: jax.Array, pad_left: int) -> jax.Array:
    """The grouped convolution as a sum of shifted products (CPU): matmuls for one group,
    `grouped_temporal_conv` for many."""
    taps = kernel.shape[0]
    if kernel.shape[1] > 1:
        return grouped_temporal_conv(x, kernel, pad_left)
    frames = x.shape[-2]
    xp = jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(pad_left, taps - 1 - pad_left), (0, 0)])
    return sum(xp[..., k : k + frames, :] @ kernel[k, 0] for k in range(taps))


def grouped_products(x: jax.Array, kernel: jax.Array, pad_left: int) -> jax.Array:
    """`y[t] = sum_k x[t + k - pad_left] @ kernel[k]` per group, as shifted elementwise products;
    x `(..., frames, G * cin)`, kernel `(taps, G, cin, cout)`."""
    taps, groups, cin, cout = kernel.shape
    frames = x.shape[-2]
    xp = jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(pad_left, taps - 1 - pad_left), (0, 0)])
    xp = xp.reshape(*xp.shape[:-1], groups, cin)
    y = 0.0
    for k in range(taps):
        for i in range(cin):
            y = y + xp[..., k : k + frames, :, i : i + 1] * kernel[k, :, i, :]
    return y.reshape(*x.shape[:-1], groups * cout)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def grouped_temporal_conv(x: jax.Array, kernel: jax.Array, pad_left: int) -> jax.Array:
    """`grouped_products` with its own VJP, for CPU: autodiff of the shifted products leaves
    XLA:CPU a weight gradient of broadcasts and transposes that ran ~50x slower than the forward."""
    return grouped_products(x, kernel, pad_left)


def _grouped_temporal_conv_fwd(x, kernel, pad_left):
    return grouped_temporal_conv(x, kernel, pad_left), (x, kernel)


def _grouped_temporal_conv_bwd(pad_left, residuals, dy):
    x, kernel = after(residuals, dy)
    taps, groups, cin, cout = kernel.shape
    # dx is the same convolution of dy with the taps reversed and in/out swapped.
    dx = grouped_temporal_conv(dy, kernel[::-1].transpose(0, 1, 3, 2), taps - 1 - pad_left)
    frames = x.shape[-2]
    xp = jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(pad_left, taps - 1 - pad_left), (0, 0)])
    n = int(np.prod(x.shape[:-2])) * frames
    xp = xp.reshape(-1, xp.shape[-2], groups, cin)
    d = dy.reshape(n, groups, cout)
    dkernel = jnp.stack([
        jnp.stack([jnp.stack([(xp[:, k : k + frames, :, i].reshape(n, groups) * d[:, :, o]).sum(0)
                              for o in range(cout)], -1) for i in range(cin)], 1)
        for k in range(taps)])
    return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


grouped_temporal_conv.defvjp(_grouped_temporal_conv_fwd, _grouped_temporal_conv_bwd)


_LOWERING_PLATFORM: contextvars.ContextVar[str | None] = contextvars.ContextVar("lowering_platform", default=None)


def traced_for_platform(fn: Callable, platform: str) -> Callable:
    """`fn`, whose traces take `per_platform`'s branch for `platform` ("cpu", "gpu", "tpu") alone,
    for a function jitted for devices of that platform. Tracing every branch and differentiating
    the `cond` that holds them was most of a train step's trace time (the tiny step: 15 of 24 s)."""
    @functools.wraps(fn)
    def traced(*args, **kwargs):
        token = _LOWERING_PLATFORM.set(platform)
        try:
            return fn(*args, **kwargs)
        finally:
            _LOWERING_PLATFORM.reset(token)

    return traced


def per_platform(*args, **branches) -> jax.Array:
    """`jax.lax.platform_dependent` for a layer whose result leads with the batch axis, pinned to
    the batch sharding of the model's input: the partitioner does not carry that sharding
    through the branches, and replicated every example on every device after them (the pin is
    a no-op without a mesh and rules). Under `traced_for_platform` only that platform's branch
    is traced."""
    platform = _LOWERING_PLATFORM.get()
    if platform is None:
        y = jax.lax.platform_dependent(*args, **branches)
    else:
        y = branches.get(platform, branches["default"])(*args)
    return nn.with_logical_constraint(y, ("batch",) + (None,) * (y.ndim - 1))


def symmetric_uniform(bound: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def at_least_f32(dtype: Dtype) -> jnp.dtype:
    """Precision for statistics, softmax and outputs: float32, or wider when computing in float64."""
    return jnp.promote_types(dtype, jnp.float32)


def pad_features(x: jax.Array, features: int) -> jax.Array:
    """Zero-pads the last axis to `features` (the reference's F.pad of the narrow branch)."""
    return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, features - x.shape[-1])])


def replicate_last_bin(x: jax.Array, bins: int) -> jax.Array:
    """Pads the bins axis (2) up to `bins` by repeating the last bin (mask for the Nyquist bin)."""
    extra = bins - x.shape[2]
    return jnp.concatenate([x, jnp.repeat(x[:, :, -1:], extra, axis=2)], axis=2) if extra > 0 else x


def mask_output(logits: jax.Array, n_fft: int, as_logits: bool) -> jax.Array:
    """The mask over all `n_fft // 2 + 1` bins (sigmoid of the logits), or its logits."""
    return replicate_last_bin(logits if as_logits else jax.nn.sigmoid(logits), n_fft // 2 + 1)


def is_next_head(x: jax.Array, *, bias: bool, dtype: Dtype, param_dtype: Dtype) -> jax.Array:
    """Per-bin log-probabilities that the second chunk continues the first, averaged over the
    spectrogram (the reference averages log-softmax outputs)."""
    logits = dense(2, ("conv_in", None), use_bias=bias, dtype=dtype, param_dtype=param_dtype, name="is_next")(x)
    return jax.nn.log_softmax(logits.astype(at_least_f32(dtype)), axis=-1).mean(axis=(1, 2))


def check_input(x: jax.Array, n_fft: int, cropsize: int | None, channels: int) -> None:
    """A wrong input shape fails here with the shape expected, not deep inside a convolution."""
    expected = (cropsize if cropsize else x.shape[1], n_fft // 2 + 1, channels)
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"expected input (batch, frames, bins, channels) = (B, {expected[0]}, {expected[1]}, {expected[2]}) "
            f"for n_fft={n_fft}, got {tuple(x.shape)}")
