"""Train and eval steps as pure functions of (state, batch); jitted once by the trainer."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from vocal_remover_jax.train import losses
from vocal_remover_jax.train.optim import global_norm, learning_rate_schedule
from vocal_remover_jax.train.state import TrainState

MODES = ("pretrain", "gan", "finetune")


def inputs_and_targets(batch: dict, mode: str) -> tuple[jax.Array, jax.Array]:
    if mode == "finetune":
        return batch["mixture"], batch["instrumental"]
    return batch["input"], batch["target"]


def microbatches(batch: dict, accum: int) -> dict:
    """Leading axis `accum`; micro-batch k holds examples k, k + accum, k + 2 * accum, ...

    Strided, not contiguous: each device's share of the batch splits into `accum` parts locally,
    so every micro-batch spans every device (a contiguous block would sit on a few of them)."""
    def split(a):
        micro = jnp.swapaxes(a.reshape(a.shape[0] // accum, accum, *a.shape[1:]), 0, 1)
        return nn.with_logical_constraint(micro, (None, "batch"))  # no-op without a mesh and rules

    return jax.tree.map(split, batch)


def make_train_step(config: ml_collections.ConfigDict, model: nn.Module, tx: optax.GradientTransformation,
                    disc: nn.Module | None = None, disc_tx: optax.GradientTransformation | None = None,
                    grad_shardings: tuple = (None, None)) -> Callable:
    """(state, batch) -> (state, metrics).

    `grad_shardings` (the generator's and the critic's parameter shardings) keep the
    gradient accumulators sharded like the parameters.

    Dropout keys derive from the step, so a resumed run draws the same masks as an
    uninterrupted one. A non-finite loss leaves the state as it was (the trainer stops on the
    `finite` metric). In GAN mode the critic steps first and the generator's adversarial loss
    is judged by the updated critic, as in the reference's train-gan.py.
    """
    mode, accum = config.mode, config.grad_accum_steps
    loss_cfg = config.loss
    schedule = learning_rate_schedule(config.optimizer, config.total_steps)

    def forward(params, batch, rng):
        x, _ = inputs_and_targets(batch, mode)
        return model.apply({"params": params}, x, deterministic=False, rngs={"dropout": rng}, logits=True)

    def generator_loss(outputs, disc_params, batch, rng):
        """The generator's loss as a function of its outputs (mask logits, is_next log-probabilities)."""
        logits, is_next = outputs
        mask = jax.nn.sigmoid(logits)
        x, y = inputs_and_targets(batch, mode)
        metrics = {"l1": losses.masked_l1(x, mask, y)}
        loss = {"pretrain": loss_cfg.l1_weight, "gan": loss_cfg.gan_l1_weight, "finetune": 1.0}[mode] * metrics["l1"]
        if mode == "finetune" and loss_cfg.removal_weight != 1.0:
            metrics["removal_l1"] = losses.removal_l1(x, mask, y)
            loss += (loss_cfg.removal_weight - 1.0) * metrics["removal_l1"]
        if mode == "finetune" and loss_cfg.vocal_weight:
            metrics["vocal_l1"] = losses.vocal_l1_at_instrumental_level(x, mask, y, batch["vocals"],
                                                                        loss_cfg.vocal_floor_db)
            loss += loss_cfg.vocal_weight * metrics["vocal_l1"]
        if mode == "finetune" and loss_cfg.mask_bce_weight:
            metrics["mask_bce"] = losses.ideal_mask_bce(logits, x, y, loss_cfg.mask_bce_power,
                                                        loss_cfg.mask_bce_per_frame)
            loss += loss_cfg.mask_bce_weight * metrics["mask_bce"]
        if mode != "finetune":
            metrics["is_next_nll"] = losses.is_next_loss(is_next, batch["is_next"], loss_cfg.reference_double_log_softmax)
            loss += loss_cfg.is_next_weight * metrics["is_next_nll"]
        if mode == "gan":
            fake = disc.apply({"params": disc_params}, x, x * mask, deterministic=False,
                              rngs={"dropout": jax.random.fold_in(rng, 1)})
            metrics["adversarial"] = losses.bce_with_logits(fake, 1.0)
            loss += metrics["adversarial"]
        metrics["loss"] = loss
        return loss, metrics

    def generator_grads(params, disc_params, batch, rng):
        loss_fn = lambda p: generator_loss(forward(p, batch, rng), disc_params, batch, rng)
        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return grads, metrics

    def critic_grads(disc_params, batch, mask_logits, rng):
        def loss_fn(d):
            x, y = inputs_and_targets(batch, mode)
            real = disc.apply({"params": d}, x, y, deterministic=False, rngs={"dropout": rng})
            fake = disc.apply({"params": d}, x, x * jax.nn.sigmoid(mask_logits), deterministic=False,
                              rngs={"dropout": jax.random.fold_in(rng, 1)})
            return (losses.bce_with_logits(real, 1.0) + losses.bce_with_logits(fake, 0.0)) / 2

        loss, grads = jax.value_and_grad(loss_fn)(disc_params)
        return grads, {"critic": loss}

    def mean_over_microbatches(fn, batch, rng, sharding=None):
        """fn(batch, rng) -> (grads, metrics), averaged over `accum` sequential micro-batches
        (bounded memory); the grads' running sum is laid out by `sharding`."""
        if accum == 1:
            return fn(batch, rng)
        micro = microbatches(batch, accum)
        like_params = lambda t: (t if sharding is None else
                                 (jax.lax.with_sharding_constraint(t[0], sharding), t[1]))

        def body(carry, xs):
            i, mb = xs
            return like_params(jax.tree.map(jnp.add, carry, fn(mb, jax.random.fold_in(rng, i)))), None

        zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(fn, jax.tree.map(lambda a: a[0], micro), rng))
        total, _ = jax.lax.scan(body, like_params(zeros), (jnp.arange(accum), micro))
        return jax.tree.map(lambda a: a / accum, total)

    def critic_first(state, batch, rng):
        """Critic update on (real, detached fake), then generator gradients against the new critic."""
        critic_rng = lambda r: jax.random.fold_in(r, 2)
        if accum == 1:
            # One generator forward serves both updates: its pullback is applied after the critic steps.
            outputs, pullback = jax.vjp(lambda p: forward(p, batch, rng), state.params)
            d_grads, d_metrics = critic_grads(state.disc_params, batch, jax.lax.stop_gradient(outputs[0]),
                                              critic_rng(rng))
        else:
            # Keeping every micro-batch's activations would defeat accumulation: the generator's
            # forward runs again in the second pass (same dropout keys, so the same masks).
            d_grads, d_metrics = mean_over_microbatches(
                lambda b, r: critic_grads(state.disc_params, b, forward(state.params, b, r)[0], critic_rng(r)),
                batch, rng, grad_shardings[1])
        d_updates, disc_opt_state = disc_tx.update(d_grads, state.disc_opt_state, state.disc_params)
        disc_params = optax.apply_updates(state.disc_params, d_updates)
        if accum == 1:
            (_, metrics), out_grads = jax.value_and_grad(generator_loss, has_aux=True)(outputs, disc_params, batch, rng)
            (grads,) = pullback(out_grads)
        else:
            grads, metrics = mean_over_microbatches(lambda b, r: generator_grads(state.params, disc_params, b, r),
                                                    batch, rng, grad_shardings[0])
        return grads, dict(metrics, **d_metrics), state.replace(disc_params=disc_params, disc_opt_state=disc_opt_state)

    def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        rng = jax.random.fold_in(jax.random.key(config.seed, impl=config.dropout_rng), state.step)
        if mode == "gan":
            grads, metrics, new = critic_first(state, batch, rng)
        else:
            grads, metrics = mean_over_microbatches(lambda b, r: generator_grads(state.params, None, b, r), batch, rng,
                                                    grad_shardings[0])
            new = state
        grad_norm = global_norm(grads)
        finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics.get("critic", 0.0)) & jnp.isfinite(grad_norm)
        updates, opt_state = tx.update(grads, state.opt_state, state.params, grad_norm=grad_norm)
        new = new.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates), opt_state=opt_state)
        new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)
        metrics = dict(metrics, grad_norm=grad_norm, learning_rate=schedule(state.step), finite=finite.astype(jnp.float32))
        return new, metrics

    return train_step


def make_eval_step(config: ml_collections.ConfigDict, model: nn.Module) -> Callable:
    """(params, batch) -> sums of per-example metrics over valid examples, and their count."""

    def eval_step(params, batch):
        x, y = inputs_and_targets(batch, config.mode)
        mask, is_next = model.apply({"params": params}, x, deterministic=True)
        valid = batch["valid"].astype(jnp.float32)
        per_example_l1 = jnp.mean(jnp.abs(x * mask - y), axis=(1, 2, 3))
        sums = {"l1": jnp.sum(per_example_l1 * valid), "count": jnp.sum(valid)}
        if config.mode == "finetune":
            sums["sdr_magnitude"] = jnp.sum(losses.magnitude_sdr(x, mask, y) * valid)
            sums["energy/vocals_error"] = jnp.sum(losses.error_energy(x, 1.0 - mask, batch["vocals"]) * valid)
            sums["energy/vocals_error_do_nothing"] = jnp.sum(losses.error_energy(x, 0.5, batch["vocals"]) * valid)
        elif "is_next" in batch:
            correct = (jnp.argmax(is_next, -1) == batch["is_next"]).astype(jnp.float32)
            sums["is_next_accuracy"] = jnp.sum(correct * valid)
        return sums

    return eval_step


def eval_metrics(sums: dict) -> dict[str, float]:
    """Summed eval_step outputs over a validation set -> its metrics: per-example means, and
    `sdr_gain_vocals`, the dB by which the vocal estimate's error energy over the whole set
    undercuts doing nothing's (half the mixture)."""
    sums = {k: float(v) for k, v in sums.items()}
    count = sums.pop("count")
    if count == 0:
        return {}
    out = {k: v / count for k, v in sums.items() if not k.startswith("energy/")}
    if "energy/vocals_error" in sums:
        out["sdr_gain_vocals"] = float(10.0 * np.log10((sums["energy/vocals_error_do_nothing"] + 1e-12)
                                                       / (sums["energy/vocals_error"] + 1e-12)))
    return out
