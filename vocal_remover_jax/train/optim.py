"""AdamW (optionally AMSGrad) with linear warm-up, a decay schedule and global-norm clipping (the reference's recipe)."""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import optax
from jax.scipy.special import gammaln

SCHEDULES = ("polynomial", "compounding")


def compounding_decay(start: float, end: float, power: float, steps: int) -> optax.Schedule:
    """The reference's PolynomialDecayScheduler: each step multiplies the distance to `end` by
    (1 - k / steps) ** power, so after k steps it is prod_{j<=k} (1 - j / steps) ** power, written
    here in closed form with log-gamma. It falls like exp(-power k^2 / 2 steps): most of the way to
    `end` within a few sqrt(steps), unlike `optax.polynomial_schedule`, which gets there at `steps`."""
    n = max(int(steps), 1)

    def schedule(count):
        k = jnp.clip(jnp.asarray(count, jnp.float32), 0.0, n)
        log_factor = gammaln(float(n)) - gammaln(n - k) - k * jnp.log(float(n))
        return end + (start - end) * jnp.exp(power * log_factor)

    return schedule


def learning_rate_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """`cfg` is a config's `optimizer` (or `disc_optimizer`) section."""
    kind = cfg.get("schedule", "polynomial")
    if kind not in SCHEDULES:
        raise ValueError(f"optimizer.schedule {kind!r}: expected one of {SCHEDULES}")
    warmup = optax.linear_schedule(0.0, cfg.learning_rate, max(cfg.warmup_steps, 1))
    make = optax.polynomial_schedule if kind == "polynomial" else compounding_decay
    decay = make(cfg.learning_rate, cfg.end_learning_rate, cfg.decay_power, max(total_steps - cfg.warmup_steps, 1))
    return optax.join_schedules([warmup, decay], [cfg.warmup_steps])


def make_optimizer(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
    schedule = learning_rate_schedule(cfg, total_steps)
    if cfg.get("amsgrad", False):  # the reference's finetuning optimizer: AdamW with AMSGrad
        adam = optax.chain(optax.scale_by_amsgrad(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps),
                           optax.add_decayed_weights(cfg.weight_decay), optax.scale_by_learning_rate(schedule))
    else:
        adam = optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay)
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), adam)
