"""Train and eval steps as pure functions of (state, batch); jitted once by the trainer."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from vocal_remover_jax.train import losses
from vocal_remover_jax.train.state import TrainState

MODES = ("pretrain", "gan", "finetune")


def inputs_and_targets(batch: dict, mode: str) -> tuple[jax.Array, jax.Array]:
    if mode == "finetune":
        return batch["mixture"], batch["instrumental"]
    return batch["input"], batch["target"]


def make_train_step(config: ml_collections.ConfigDict, model: nn.Module, tx: optax.GradientTransformation,
                    disc: nn.Module | None = None, disc_tx: optax.GradientTransformation | None = None) -> Callable:
    """(state, batch) -> (state, metrics). Dropout keys derive from the step, so a resumed run
    draws the same masks as an uninterrupted one. A non-finite loss skips the update."""
    mode, accum = config.mode, config.grad_accum_steps
    loss_cfg = config.loss

    def generator_loss(params, disc_params, batch, rng):
        x, y = inputs_and_targets(batch, mode)
        mask, is_next = model.apply({"params": params}, x, deterministic=False, rngs={"dropout": rng})
        l1 = losses.masked_l1(x, mask, y)
        metrics = {"l1": l1}
        loss = l1
        if mode in ("pretrain", "gan"):
            nxt = losses.is_next_loss(is_next, batch["is_next"], loss_cfg.reference_double_log_softmax)
            metrics["is_next_nll"] = nxt
            loss = loss_cfg.l1_weight * l1 + loss_cfg.is_next_weight * nxt
        if mode == "gan":
            fake = disc.apply({"params": disc_params}, x, x * mask, deterministic=False,
                              rngs={"dropout": jax.random.fold_in(rng, 1)})
            adversarial = losses.bce_with_logits(fake, 1.0)
            metrics["adversarial"] = adversarial
            loss = adversarial + loss_cfg.gan_l1_weight * l1 + loss_cfg.is_next_weight * nxt
        metrics["loss"] = loss
        return loss, (metrics, mask)

    def critic_loss(disc_params, batch, mask, rng):
        x, y = inputs_and_targets(batch, mode)
        real = disc.apply({"params": disc_params}, x, y, deterministic=False, rngs={"dropout": rng})
        fake = disc.apply({"params": disc_params}, x, x * jax.lax.stop_gradient(mask), deterministic=False,
                          rngs={"dropout": jax.random.fold_in(rng, 1)})
        return (losses.bce_with_logits(real, 1.0) + losses.bce_with_logits(fake, 0.0)) / 2

    def micro_grads(state, batch, rng):
        grad_fn = jax.value_and_grad(generator_loss, has_aux=True)
        (_, (metrics, mask)), grads = grad_fn(state.params, state.disc_params, batch, rng)
        out = {"params": grads}
        if mode == "gan":
            d_loss, d_grads = jax.value_and_grad(critic_loss)(state.disc_params, batch, mask, jax.random.fold_in(rng, 2))
            metrics["critic"] = d_loss
            out["disc"] = d_grads
        return out, metrics

    def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        rng = jax.random.fold_in(jax.random.key(config.seed), state.step)
        if accum == 1:
            grads, metrics = micro_grads(state, batch, rng)
        else:
            micro = jax.tree.map(lambda a: a.reshape(accum, a.shape[0] // accum, *a.shape[1:]), batch)

            def body(carry, xs):
                i, mb = xs
                g, m = micro_grads(state, mb, jax.random.fold_in(rng, i))
                return jax.tree.map(jnp.add, carry, (g, m)), None

            zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(micro_grads, state, jax.tree.map(lambda a: a[0], micro), rng))
            (grads, metrics), _ = jax.lax.scan(body, zeros, (jnp.arange(accum), micro))
            grads, metrics = jax.tree.map(lambda a: a / accum, (grads, metrics))

        finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics.get("critic", 0.0))
        updates, opt_state = tx.update(grads["params"], state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        if mode == "gan":
            d_updates, d_opt = disc_tx.update(grads["disc"], state.disc_opt_state, state.disc_params)
            new = new.replace(disc_params=optax.apply_updates(state.disc_params, d_updates), disc_opt_state=d_opt)
        # A non-finite loss leaves the state as it was; the trainer stops on the flag.
        new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)
        metrics = dict(metrics, grad_norm=optax.tree.norm(grads["params"]), finite=finite.astype(jnp.float32))
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
        elif "is_next" in batch:
            correct = (jnp.argmax(is_next, -1) == batch["is_next"]).astype(jnp.float32)
            sums["is_next_accuracy"] = jnp.sum(correct * valid)
        return sums

    return eval_step
