"""AdamW with linear warm-up, polynomial decay and global-norm clipping (the reference's recipe).

The update is optax's `chain(clip_by_global_norm, adamw)` computed as one expression per
parameter array with the scalars folded first: the lowered step has about half the optimizer
operations (it is most of the program for a model with hundreds of small arrays) and the state
keeps optax's layout, so checkpoints are unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax


def learning_rate_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """`cfg` is a config's `optimizer` (or `disc_optimizer`) section."""
    warmup = optax.linear_schedule(0.0, cfg.learning_rate, max(cfg.warmup_steps, 1))
    decay = optax.polynomial_schedule(cfg.learning_rate, cfg.end_learning_rate, cfg.decay_power,
                                      max(total_steps - cfg.warmup_steps, 1))
    return optax.join_schedules([warmup, decay], [cfg.warmup_steps])


def reference_optimizer(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
    """The same optimizer as plain optax (the fused one's state layout and its test's reference)."""
    return optax.chain(
        optax.clip_by_global_norm(cfg.grad_clip_norm),
        optax.adamw(learning_rate_schedule(cfg, total_steps), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                    weight_decay=cfg.weight_decay),
    )


def make_optimizer(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
    reference = reference_optimizer(cfg, total_steps)
    schedule = learning_rate_schedule(cfg, total_steps)
    b1, b2, eps, max_norm = cfg.b1, cfg.b2, cfg.eps, cfg.grad_clip_norm

    def update(grads, state, params):
        clip_state, (adam, decay_state, lr_state) = state
        norm = optax.tree.norm(grads)
        clip = jnp.where(norm < max_norm, 1.0, max_norm / norm)  # optax: g / norm * max_norm above the limit
        count = optax.safe_increment(adam.count)
        lr = schedule(adam.count)
        # u = -lr * (m / bc1 / (sqrt(v / bc2) + eps) + wd * p), with v / bc2 = v * (1 / bc2)
        mu_scale, nu_scale = (1 - b1) * clip, (1 - b2) * clip * clip
        inv_bc1 = 1 / (1 - b1 ** count.astype(jnp.float32))
        inv_bc2 = 1 / (1 - b2 ** count.astype(jnp.float32))
        step_scale, decay_scale = -lr * inv_bc1, -lr * cfg.weight_decay

        def leaf(g, m, v, p):
            m = m * b1 + g * mu_scale.astype(g.dtype)
            v = v * b2 + g * g * nu_scale.astype(g.dtype)
            u = m * step_scale.astype(m.dtype) / (jnp.sqrt(v * inv_bc2.astype(v.dtype)) + eps)
            return u + p * decay_scale.astype(p.dtype), m, v

        out = jax.tree.map(leaf, grads, adam.mu, adam.nu, params)
        updates, mu, nu = jax.tree.transpose(jax.tree.structure(grads), jax.tree.structure((0, 0, 0)), out)
        if isinstance(lr_state, optax.ScaleByScheduleState):
            lr_state = optax.ScaleByScheduleState(count=optax.safe_increment(lr_state.count))
        return updates, (clip_state, (adam._replace(count=count, mu=mu, nu=nu), decay_state, lr_state))

    return optax.GradientTransformation(reference.init, update)
