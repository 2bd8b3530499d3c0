"""Losses of the three training modes, as pure functions of model outputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def masked_l1(x: jax.Array, mask: jax.Array, target: jax.Array) -> jax.Array:
    """L1 between the masked input and the target (the reference's `L1Loss(src * mask, tgt)`)."""
    return jnp.mean(jnp.abs(x * mask - target))


def removal_l1(x: jax.Array, mask: jax.Array, target: jax.Array) -> jax.Array:
    """The part of `masked_l1` where the masked input falls below the target: for finetuning,
    accompaniment taken out of the instrumental, which bss_eval scores as interference in the
    vocals (the vocals left in the instrumental count against the instrumental instead)."""
    return jnp.mean(jax.nn.relu(target - x * mask))


def vocal_l1_at_instrumental_level(x: jax.Array, mask: jax.Array, instrumental: jax.Array, vocals: jax.Array,
                                   floor_db: float) -> jax.Array:
    """L1 of the vocal estimate `x * (1 - mask)`, each example's weighted as if its vocals were as
    loud as its instrumental (mean magnitudes; vocals floored at `floor_db` below it).

    The instrumental's L1 barely notices an accompaniment removed under a quiet voice, while the
    vocal estimate, and its SDR, is then mostly that accompaniment; quiet or silent vocals get
    the most weight (up to 10 ** (-floor_db / 20))."""
    axes = tuple(range(1, x.ndim))
    level_inst = jnp.mean(instrumental, axis=axes)
    level_voc = jnp.maximum(jnp.mean(vocals, axis=axes), level_inst * 10.0 ** (floor_db / 20.0))
    weight = level_inst / jnp.maximum(level_voc, 1e-12)
    return jnp.mean(weight * jnp.mean(jnp.abs(x * (1.0 - mask) - vocals), axis=axes))


def ideal_mask_bce(logits: jax.Array, x: jax.Array, target: jax.Array, power: float = 1.0,
                   per_frame: bool = False) -> jax.Array:
    """Binary cross-entropy of the mask's logits against the ideal ratio mask `target / x`
    (clipped to [0, 1]), each bin weighted by its share of the example's mixture magnitude raised
    to `power` (`per_frame`: of its frame's, so every frame weighs the same, as in an SDR taken
    per frame, whatever its level).

    L1 of the masked magnitude is minimised by the median ratio where the model is unsure,
    which is 1 (keep everything) wherever most training bins hold no voice, and its gradient
    vanishes once the sigmoid saturates there; the cross-entropy is minimised by the mean ratio,
    and its gradient in the logits is `weight * (mask - ideal)`, however saturated. With `power=2`
    that gradient is the squared magnitude error's (what SDR counts: loud bins dominate) without
    the sigmoid's saturation factor `mask * (1 - mask)`."""
    ideal = jnp.where(x > 0, jnp.clip(target / jnp.where(x > 0, x, 1.0), 0.0, 1.0), 1.0)
    axes = tuple(range(2, x.ndim)) if per_frame else tuple(range(1, x.ndim))
    level = x if power == 1.0 else x ** power
    weight = level / jnp.maximum(jnp.mean(level, axis=axes, keepdims=True), 1e-12)
    return jnp.mean(weight * optax.sigmoid_binary_cross_entropy(logits, ideal))


def is_next_loss(log_probs: jax.Array, labels: jax.Array, reference_double_log_softmax: bool = False) -> jax.Array:
    """Negative log-likelihood of the is_next head's (averaged) log-probabilities.

    The reference feeds those log-probabilities to CrossEntropyLoss, which applies log-softmax a
    second time; `reference_double_log_softmax=True` reproduces that."""
    if reference_double_log_softmax:
        log_probs = jax.nn.log_softmax(log_probs, axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None].astype(jnp.int32), axis=-1))


def bce_with_logits(logits: jax.Array, target: float) -> jax.Array:
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, target)))


def error_energy(x: jax.Array, mask: jax.Array, target: jax.Array) -> jax.Array:
    """Per-example squared error of the masked magnitude; summed over a validation set it gives
    an energy-weighted SDR, which crops without singing cannot dominate (a per-crop SDR of
    silent vocals is minus infinity, or plus infinity for an estimate of exactly zero)."""
    return jnp.sum(jnp.square(x * mask - target), axis=tuple(range(1, target.ndim)))


def magnitude_sdr(x: jax.Array, mask: jax.Array, target: jax.Array) -> jax.Array:
    """Per-example SDR (dB) of the masked magnitude against the target magnitude: a cheap
    validation proxy for the waveform SDR that `evaluate` measures."""
    axes = tuple(range(1, target.ndim))
    signal = jnp.sum(jnp.square(target), axis=axes)
    noise = jnp.sum(jnp.square(x * mask - target), axis=axes)
    return 10.0 * jnp.log10((signal + 1e-8) / (noise + 1e-8))
