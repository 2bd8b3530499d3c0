"""FrameTransformerEncoder: a Primer/Evolved-Transformer style block over the frames of one channel."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vocal_remover_jax.models.attention import MultibandFrameAttention
from vocal_remover_jax.models.layers import (Dtype, DenseParams, TemporalConv, dense, layer_norm, pad_features,
                                             pointwise_feedforward)


class FrameTransformerEncoder(nn.Module):
    """Projects `(batch, frames, bins, channels)` to one channel, transforms it, returns it as a
    `(batch, frames, bins, 1)` channel that callers concatenate to their input (a DenseNet-like
    growth of one channel per block)."""

    num_bands: int
    cropsize: int
    feedforward_dim: int
    bias: bool = False
    dropout: float = 0.1
    reference_kv_conv: bool = False
    flash_attention: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        ff = self.feedforward_dim
        drop = lambda h: nn.Dropout(self.dropout)(h, deterministic=deterministic)  # noqa: E731

        x = dense(1, ("conv_in", None), use_bias=self.bias, name="in_project", **kw)(x)[..., 0]
        bins = x.shape[-1]
        if ff < bins // 2:
            raise ValueError(f"{self.name}: feedforward_dim={ff} must be at least half the bins ({bins})")

        h = layer_norm("embed", name="norm1", **kw)(x)
        h = dense(2 * bins, ("embed", "mlp"), use_bias=self.bias, name="glu", **kw)(h)
        x = x + drop(nn.glu(h, axis=-1))

        h = layer_norm("embed", name="norm2", **kw)(x)
        wide = nn.relu(dense(ff, ("embed", "mlp"), use_bias=self.bias, name="conv1_left", **kw)(h))
        narrow = TemporalConv(bins // 2, 3, use_bias=self.bias, axes=("taps", None, "embed", "mlp"),
                              name="conv1_right", **kw)(h)
        h = layer_norm("mlp", name="norm3", **kw)(wide + pad_features(narrow, ff))
        h = TemporalConv(ff, 9, groups=ff // 2, use_bias=self.bias, axes=("taps", "mlp", None, None),
                         name="conv2_grouped", **kw)(h)
        h = dense(bins, ("mlp", "embed"), use_bias=self.bias, name="conv2_pointwise", **kw)(h)
        x = x + drop(h)

        h = layer_norm("embed", name="norm4", **kw)(x)
        h = MultibandFrameAttention(self.num_bands, self.cropsize, reference_kv_conv=self.reference_kv_conv,
                                    flash_attention=self.flash_attention, name="attn", **kw)(h)
        x = x + drop(h)

        h = layer_norm("embed", name="norm5", **kw)(x)
        w_in = DenseParams(ff, ("embed", "mlp"), self.bias, self.param_dtype, name="conv3")(bins)
        w_out = DenseParams(bins, ("mlp", "embed"), self.bias, self.param_dtype, name="conv4")(ff)
        h = pointwise_feedforward(h, w_in, w_out, lambda a: jnp.square(nn.relu(a)), self.dtype)
        x = x + drop(h)
        return x[..., None]
