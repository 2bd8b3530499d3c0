"""FrameTransformerDecoder: self-attention plus attention over the U-Net skip as memory."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vocal_remover_jax.models.attention import MultibandFrameAttention
from vocal_remover_jax.models.layers import (Dtype, DenseParams, TemporalConv, dense, layer_norm, pad_features,
                                             pointwise_feedforward)


class FrameTransformerDecoder(nn.Module):
    """Lets the upsampling path query the skip connection of the same level, which still holds
    the detail lost by downsampling. Returns one new `(batch, frames, bins, 1)` channel."""

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
    def __call__(self, x: jax.Array, skip: jax.Array, deterministic: bool = True) -> jax.Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        ff = self.feedforward_dim
        drop = lambda h: nn.Dropout(self.dropout)(h, deterministic=deterministic)  # noqa: E731
        attention = lambda name: MultibandFrameAttention(  # noqa: E731
            self.num_bands, self.cropsize, reference_kv_conv=self.reference_kv_conv,
            flash_attention=self.flash_attention, name=name, **kw)
        depthwise = lambda features, taps, name, axis: TemporalConv(  # noqa: E731
            features, taps, groups=features, use_bias=self.bias, axes=("taps", axis, None, None), name=name, **kw)

        x = dense(1, ("conv_in", None), use_bias=self.bias, name="in_project", **kw)(x)[..., 0]
        skip = dense(1, ("conv_in", None), use_bias=self.bias, name="skip_project", **kw)(skip)[..., 0]
        bins = x.shape[-1]

        h = layer_norm("embed", name="norm1", **kw)(x)
        x = x + drop(attention("self_attn1")(h) + attention("skip_attn1")(h, mem=skip))

        h = layer_norm("embed", name="norm2", **kw)(x)
        wide = depthwise(bins, 11, "conv1_left_depthwise", "embed")(h)
        wide = nn.relu(dense(ff // 2, ("embed", "mlp"), use_bias=self.bias, name="conv1_left_pointwise", **kw)(wide))
        narrow = depthwise(bins, 7, "conv1_right_depthwise", "embed")(h)
        narrow = dense(ff // 4, ("embed", "mlp"), use_bias=self.bias, name="conv1_right_pointwise", **kw)(narrow)
        h = layer_norm("mlp", name="norm3", **kw)(wide + pad_features(narrow, ff // 2))
        h = depthwise(ff // 2, 7, "conv2_depthwise", "mlp")(h)
        h = dense(bins, ("mlp", "embed"), use_bias=self.bias, name="conv2_pointwise", **kw)(h)
        x = x + drop(h)

        h = layer_norm("embed", name="norm4", **kw)(x)
        x = x + drop(attention("self_attn2")(h))

        h = layer_norm("embed", name="norm5", **kw)(x)
        x = x + drop(attention("skip_attn2")(h, mem=skip))

        h = layer_norm("embed", name="norm6", **kw)(x)
        w_in = DenseParams(ff, ("embed", "mlp"), self.bias, self.param_dtype, name="conv3")(bins)
        w_out = DenseParams(bins, ("mlp", "embed"), self.bias, self.param_dtype, name="conv4")(ff)
        h = pointwise_feedforward(h, w_in, w_out, nn.silu, self.dtype)
        x = x + drop(h)
        return x[..., None]
