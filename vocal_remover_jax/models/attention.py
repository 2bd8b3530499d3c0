"""MultibandFrameAttention: attention between frames, with the bins split into bands (heads)."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from vocal_remover_jax.models.fused_attention import FRAMES_PER_BLOCK, flash_attend
from vocal_remover_jax.models.layers import Dtype, TemporalConv, after, at_least_f32, dense, per_platform


class MultibandFrameAttention(nn.Module):
    """Frames attend to frames (of `x`, or of `mem` for skip-memory attention).

    q, k and v are linear projections of the bins followed by a depthwise convolution over
    3 frames. The learned position table `er` (head_dim x cropsize) adds `q_j . er[:, i]` to
    the score of query i and key j, as the reference computes it (its pad-and-slice of
    `q @ er` reduces to that transpose; it is not Music Transformer's relative skew), and
    scores are scaled by sqrt(all bins), as in the reference.

    `reference_kv_conv=True` reproduces the reference's use of `q_conv` for k and v (needed for
    its checkpoints); the default gives k and v their own convolutions, as intended.

    `flash_attention=True` runs the scores, softmax and weighted sum as one fused kernel on TPU
    (`fused_attention.py`); other platforms, and calls that collect the weights, use `attend`.
    """

    num_bands: int
    cropsize: int
    kernel_size: int = 3
    reference_kv_conv: bool = False
    flash_attention: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mem: jax.Array | None = None) -> jax.Array:
        batch, frames, bins = x.shape
        if frames != self.cropsize:
            raise ValueError(f"{self.name}: got {frames} frames, the model was built for cropsize={self.cropsize}")
        if bins % self.num_bands:
            raise ValueError(f"{self.name}: {bins} bins do not split into {self.num_bands} bands")
        kv_source = x if mem is None else mem
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        proj = lambda name, axes: dense(bins, axes, use_bias=False, name=name, **kw)  # noqa: E731
        conv = lambda name: TemporalConv(bins, self.kernel_size, groups=bins, name=name, **kw)  # noqa: E731

        q_conv = conv("q_conv")
        k_conv = q_conv if self.reference_kv_conv else conv("k_conv")
        v_conv = q_conv if self.reference_kv_conv else conv("v_conv")
        q = q_conv(proj("q_proj", ("embed", "qkv"))(x))
        k = k_conv(proj("k_proj", ("embed", "qkv"))(kv_source))
        v = v_conv(proj("v_proj", ("embed", "qkv"))(kv_source))

        head_dim = bins // self.num_bands
        # (batch, bands, frames, head_dim): batched matmuls beat einsum's layout choices on CPU.
        heads = lambda t: t.reshape(batch, frames, self.num_bands, head_dim).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = heads(q), heads(k), heads(v)
        er = self.param("er", nn.with_logical_partitioning(nn.initializers.normal(1.0), (None, "frames")),
                        (head_dim, self.cropsize), self.param_dtype).astype(self.dtype)

        # score[i, j] = q_i . k_j + er[:, i] . q_j, as one matmul over concatenated features:
        # [q_i, er_i] . [k_j, q_j]. That avoids materialising and transposing a second
        # frames x frames array for the position term.
        queries = jnp.concatenate([q, jnp.broadcast_to(er.T, q.shape)], axis=-1)
        keys = jnp.concatenate([k, q], axis=-1)
        temperature = bins**0.5
        if self.is_mutable_collection("intermediates"):
            out, weights = attend(queries, keys, v, temperature)
            self.sow("intermediates", "attention_weights", weights)
        elif self.flash_attention and frames % FRAMES_PER_BLOCK == 0:
            out = per_platform(queries, keys, v, tpu=functools.partial(flash_attend, temperature=temperature),
                               default=lambda *a: attend(*a, temperature)[0])
        else:
            out = attend(queries, keys, v, temperature)[0]
        out = out.transpose(0, 2, 1, 3).reshape(batch, frames, bins)
        return proj("o_proj", ("qkv", "embed"))(out)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def attend(queries: jax.Array, keys: jax.Array, values: jax.Array, temperature: float) -> tuple[jax.Array, jax.Array]:
    """softmax(queries . keys / temperature) . values, and the weights, accumulated in at least float32.

    Its own VJP keeps the inputs and each query's log-sum-exp, and recomputes the weights (a
    frames x frames array per band) once the gradient arrives: under autodiff XLA kept about 2.5
    of them per attention module, the seed step's largest share of memory (70 modules, 1,024
    frames at every level), for one more scores matmul per module in the backward pass."""
    return _attend_fwd(queries, keys, values, temperature)[0]


def _scores(queries, keys, temperature):
    acc = at_least_f32(queries.dtype)
    scores = jnp.matmul(queries, keys.swapaxes(-1, -2), preferred_element_type=acc)
    return scores / jnp.asarray(temperature, acc)


def _attend_fwd(queries, keys, values, temperature):
    scores = _scores(queries, keys, temperature)
    log_norm = jax.nn.logsumexp(scores, axis=-1, keepdims=True)
    weights = jnp.exp(scores - log_norm)
    out = jnp.matmul(weights.astype(values.dtype), values)
    return (out, weights), (queries, keys, values, log_norm)


def _attend_bwd(temperature, residuals, cotangents):
    d_out, d_weights = cotangents
    queries, keys, values, log_norm = after(residuals, d_out)
    weights = jnp.exp(_scores(queries, keys, temperature) - log_norm)
    acc = weights.dtype
    d_values = jnp.matmul(weights.astype(values.dtype).swapaxes(-1, -2), d_out)
    d_weights = d_weights + jnp.matmul(d_out, values.swapaxes(-1, -2), preferred_element_type=acc)
    # softmax's VJP from its output alone, then the temperature
    d_scores = weights * (d_weights - jnp.sum(d_weights * weights, axis=-1, keepdims=True)) / jnp.asarray(temperature, acc)
    d_scores = d_scores.astype(queries.dtype)
    d_queries = jnp.matmul(d_scores, keys, preferred_element_type=acc).astype(queries.dtype)
    d_keys = jnp.matmul(d_scores.swapaxes(-1, -2), queries, preferred_element_type=acc).astype(keys.dtype)
    return d_queries, d_keys, d_values.astype(values.dtype)


attend.defvjp(_attend_fwd, _attend_bwd)
