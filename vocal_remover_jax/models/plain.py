"""FrameTransformer: the plain (non-U-Net) stack of frame-transformer encoders."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vocal_remover_jax.models.layers import Dtype, at_least_f32, check_input, dense, is_next_head, mask_output
from vocal_remover_jax.models.transformer_encoder import FrameTransformerEncoder


class FrameTransformer(nn.Module):
    """Encoders at full resolution, each adding one channel; a linear map of the channels gives
    the mask. Same inputs and outputs as FrameTransformerUnet."""

    in_channels: int = 2
    num_encoders: int = 1
    num_bands: int = 4
    feedforward_dim: int = 512
    n_fft: int = 2048
    cropsize: int = 1024
    dropout: float = 0.1
    bias: bool = False
    reference_kv_conv: bool = False
    flash_attention: bool = True
    remat: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True, logits: bool = False) -> tuple[jax.Array, jax.Array]:
        check_input(x, self.n_fft, self.cropsize, self.in_channels)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        encoder_cls = nn.remat(FrameTransformerEncoder, static_argnums=(2,)) if self.remat else FrameTransformerEncoder
        x = nn.with_logical_constraint(x[:, :, : self.n_fft // 2].astype(self.dtype), ("batch", None, None, None))
        for i in range(self.num_encoders):
            h = encoder_cls(self.num_bands, self.cropsize, self.feedforward_dim, bias=self.bias, dropout=self.dropout,
                            reference_kv_conv=self.reference_kv_conv,
                            flash_attention=self.flash_attention, name=f"encoder_{i}", **kw)(x, deterministic)
            x = jnp.concatenate([x, h], axis=-1)
        out = dense(self.in_channels, ("conv_in", None), use_bias=self.bias, name="out", **kw)(x)
        return mask_output(out.astype(at_least_f32(self.dtype)), self.n_fft, logits), is_next_head(x, bias=self.bias, **kw)
