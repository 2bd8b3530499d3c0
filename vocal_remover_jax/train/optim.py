"""AdamW (optionally AMSGrad) with linear warm-up, a decay schedule and global-norm clipping (the
reference's recipe).

The update is optax's `chain(clip_by_global_norm, adamw)` (or its AMSGrad form) computed as one
expression per parameter array with the scalars folded first: the lowered step has about half
the optimizer operations (it is most of the program for a model with hundreds of small arrays),
and the state keeps optax's layout, so checkpoints are unchanged.
"""

from __future__ import annotations

import jax
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


def reference_optimizer(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
    """The same optimizer as plain optax (the fused one's state layout and its test's reference)."""
    schedule = learning_rate_schedule(cfg, total_steps)
    if cfg.get("amsgrad", False):  # the reference's finetuning optimizer: AdamW with AMSGrad
        adam = optax.chain(optax.scale_by_amsgrad(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps),
                           optax.add_decayed_weights(cfg.weight_decay), optax.scale_by_learning_rate(schedule))
    else:
        adam = optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay)
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), adam)


def global_norm(tree) -> jax.Array:
    """optax.tree.norm written as one dot product per array, contracting every axis in place (no
    reshape, so a sharded array stays sharded): the same number, and a third of the lowered
    operations (a reduce costs four)."""
    def square(x):
        axes = tuple(range(x.ndim))
        return jax.lax.dot_general(x, x, ((axes, axes), ((), ())), precision=jax.lax.Precision.HIGHEST,
                                   preferred_element_type=jnp.float32)

    return jnp.sqrt(sum((square(x) for x in jax.tree.leaves(tree)), jnp.zeros((), jnp.float32)))


def make_optimizer(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
    reference = reference_optimizer(cfg, total_steps)
    schedule = learning_rate_schedule(cfg, total_steps)
    b1, b2, eps, max_norm = cfg.b1, cfg.b2, cfg.eps, cfg.grad_clip_norm
    amsgrad = bool(cfg.get("amsgrad", False))

    def update(grads, state, params, grad_norm=None):
        """`grad_norm`: `global_norm(grads)` when the caller has it already (the step reports it)."""
        clip_state, (adam, decay_state, lr_state) = state
        norm = global_norm(grads) if grad_norm is None else grad_norm
        clip = jnp.where(norm < max_norm, 1.0, max_norm / norm)  # optax: g / norm * max_norm above the limit
        count = optax.safe_increment(adam.count)
        lr = schedule(adam.count)
        # u = -lr * (m / bc1 / (sqrt(v / bc2) + eps) + wd * p), with v / bc2 = v * (1 / bc2);
        # AMSGrad divides by the running maximum of v / bc2 instead.
        inv_bc1 = 1 / (1 - b1 ** count.astype(jnp.float32))
        inv_bc2 = 1 / (1 - b2 ** count.astype(jnp.float32))
        scalar = dict(b1=b1, b2=b2, eps=eps, mu_scale=(1 - b1) * clip, nu_scale=(1 - b2) * clip * clip,
                      inv_bc2=inv_bc2, step_scale=-lr * inv_bc1, decay_scale=-lr * cfg.weight_decay)
        broadcasts = {}

        def like(name, x):
            """`scalar[name]` broadcast to x's shape, once per shape: StableHLO broadcasts explicitly, and
            most arrays share their shape with others."""
            key = (name, x.shape, x.dtype)
            if key not in broadcasts:
                broadcasts[key] = jnp.broadcast_to(jnp.asarray(scalar[name], x.dtype), x.shape)
            return broadcasts[key]

        def leaf(g, m, v, p, v_max=None):
            m = m * like("b1", m) + g * like("mu_scale", g)
            v = v * like("b2", v) + g * g * like("nu_scale", g)
            v_hat = v * like("inv_bc2", v)
            if v_max is not None:
                v_hat = v_max = jnp.maximum(v_max, v_hat)
            u = m * like("step_scale", m) / (jnp.sqrt(v_hat) + like("eps", v_hat))
            return (u + p * like("decay_scale", p), m, v) + (() if v_max is None else (v_max,))

        extra = (adam.nu_max,) if amsgrad else ()
        out = jax.tree.map(leaf, grads, adam.mu, adam.nu, params, *extra)
        parts = jax.tree.transpose(jax.tree.structure(grads), jax.tree.structure((0,) * (4 if amsgrad else 3)), out)
        updates, mu, nu = parts[:3]
        adam = adam._replace(count=count, mu=mu, nu=nu, **({"nu_max": parts[3]} if amsgrad else {}))
        if isinstance(lr_state, optax.ScaleByScheduleState):
            lr_state = optax.ScaleByScheduleState(count=optax.safe_increment(lr_state.count))
        return updates, (clip_state, (adam, decay_state, lr_state))

    return optax.GradientTransformationExtraArgs(reference.init, update)
