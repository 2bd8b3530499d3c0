"""AdamW with linear warm-up, polynomial decay and global-norm clipping (the reference's recipe)."""

from __future__ import annotations

import ml_collections
import optax


def learning_rate_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """`cfg` is a config's `optimizer` (or `disc_optimizer`) section."""
    warmup = optax.linear_schedule(0.0, cfg.learning_rate, max(cfg.warmup_steps, 1))
    decay = optax.polynomial_schedule(cfg.learning_rate, cfg.end_learning_rate, cfg.decay_power,
                                      max(total_steps - cfg.warmup_steps, 1))
    return optax.join_schedules([warmup, decay], [cfg.warmup_steps])


def make_optimizer(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(cfg.grad_clip_norm),
        optax.adamw(learning_rate_schedule(cfg, total_steps), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                    weight_decay=cfg.weight_decay),
    )
