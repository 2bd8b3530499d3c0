"""The GAN step's order of updates, checked in-process against a plain sequential computation.

The reference (train-gan.py) steps the critic on (real, detached fake) first, then judges the
generator with the updated critic. Dropout is off so the expected values need no random keys.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.cpu_jit import cpu_jit
from vocal_remover_jax.config import load_config
from vocal_remover_jax.inference.random_params import random_params
from vocal_remover_jax.train import inputs, losses, mesh as mesh_lib, steps
from vocal_remover_jax.train.program import build_program

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "pretrain_gan.py:tiny")
SMALL = ["data.source=random", "model.depth=1", "model.cropsize=16", "audio.n_fft=64", "model.feedforward_dim=32", "model.dropout=0.0",
         "batch_size=4", "mesh.data=1", "mesh.fsdp=1"]


def _setup(*overrides):
    """Plain SGD for both players, so parameter updates are linear in the gradients (Adam's
    first step, about lr * sign(g), would hide the gradients' differences)."""
    config = load_config(CONFIG, SMALL + list(overrides))
    program = build_program(config, mesh_lib.make_mesh(config.mesh))
    model, disc = program.model, program.disc
    tx = disc_tx = optax.sgd(0.1)
    state = program.init_state(jax.random.key(0), random_params(config.model))  # only the critic's drawn
    state = state.replace(opt_state=tx.init(state.params), disc_opt_state=disc_tx.init(state.disc_params))
    batch = next(inputs.train_batches(config, config.batch_size, 0, 0, 1))
    step = cpu_jit(steps.make_train_step(config, model, tx, disc, disc_tx))
    return config, model, tx, disc, disc_tx, state, batch, step


@pytest.fixture(scope="module")
def gan():
    return _setup()


def _close(a, b, rtol=1e-5, atol=1e-7):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol), a, b)


def test_critic_steps_first_and_judges_the_generator(gan):
    config, model, tx, disc, disc_tx, state, batch, step = gan
    new, metrics = step(state, batch)
    x, y, labels = batch["input"], batch["target"], batch["is_next"]
    mask = cpu_jit(lambda p: model.apply({"params": p}, x, deterministic=True)[0])(state.params)

    def critic_loss(d):
        real = disc.apply({"params": d}, x, y, deterministic=True)
        fake = disc.apply({"params": d}, x, x * mask, deterministic=True)
        return (losses.bce_with_logits(real, 1.0) + losses.bce_with_logits(fake, 0.0)) / 2

    d_updates, _ = disc_tx.update(cpu_jit(jax.grad(critic_loss))(state.disc_params), state.disc_opt_state,
                                  state.disc_params)
    critic = jax.tree.map(lambda p, u: p + u, state.disc_params, d_updates)

    def generator_loss(params, disc_params):
        m, nxt = model.apply({"params": params}, x, deterministic=True)
        fake = disc.apply({"params": disc_params}, x, x * m, deterministic=True)
        return (losses.bce_with_logits(fake, 1.0) + config.loss.gan_l1_weight * losses.masked_l1(x, m, y)
                + losses.is_next_loss(nxt, labels))

    generator_grads = cpu_jit(jax.grad(generator_loss))
    grads = generator_grads(state.params, critic)
    stale = generator_grads(state.params, state.disc_params)  # what judging by the old critic gives
    norm = lambda g: float(np.sqrt(sum(np.sum(np.square(v)) for v in jax.tree.leaves(g))))
    assert abs(norm(stale) - norm(grads)) > 1e-4 * norm(grads), "the test cannot tell the two orders apart"
    np.testing.assert_allclose(float(metrics["grad_norm"]), norm(grads), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["critic"]), float(cpu_jit(critic_loss)(state.disc_params)), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["loss"]), float(cpu_jit(generator_loss)(state.params, critic)), rtol=1e-5)
    updates, _ = tx.update(grads, state.opt_state, state.params)
    _close(new.params, jax.tree.map(lambda p, u: p + u, state.params, updates))
    _close(new.disc_params, critic)


def test_accumulated_gan_step_matches_one_batch(gan):
    """Two micro-batches (generator forward recomputed after the critic steps) give the one-batch step."""
    *_, state, batch, step = gan
    _, _, _, _, _, _, _, accum_step = _setup("grad_accum_steps=2")
    (one, m1), (two, m2) = step(state, batch), accum_step(state, batch)
    for key in ("loss", "critic", "grad_norm", "l1", "adversarial"):
        np.testing.assert_allclose(float(m2[key]), float(m1[key]), rtol=1e-5, err_msg=key)
    _close(two.params, one.params)
    _close(two.disc_params, one.disc_params)


def test_compounding_decay_matches_the_reference_recurrence():
    """The reference's scheduler: lr_k = (lr_{k-1} - end) * (1 - k/N)^p + end, step by step."""
    from vocal_remover_jax.train.optim import compounding_decay

    start, end, power, n = 1e-3, 1e-7, 1.5, 200
    schedule = compounding_decay(start, end, power, n)
    lr, expected = start, []
    for k in range(1, n + 5):
        lr = (lr - end) * max(1 - k / n, 0.0) ** power + end
        expected.append(lr)
    np.testing.assert_allclose([float(schedule(k)) for k in range(1, n + 5)], expected, rtol=1e-3, atol=1e-12)
    assert float(schedule(0)) == pytest.approx(start)


def test_vocal_l1_weighs_vocals_as_if_as_loud_as_the_instrumental():
    rng = np.random.default_rng(0)
    inst, voc, est = (rng.uniform(0, 1, (2, 4, 6, 2)).astype(np.float32) for _ in range(3))
    mask_for = lambda x, vocal_estimate: 1.0 - vocal_estimate / x
    x = inst + voc + 1.0  # any mixture; the mask makes x * (1 - mask) the vocal estimate
    loss = lambda c, floor=-20.0: float(losses.vocal_l1_at_instrumental_level(
        x, mask_for(x, c * est), inst, c * voc, floor))
    plain = float(np.mean(np.abs(est - voc)))
    np.testing.assert_allclose(loss(1.0), np.mean(np.mean(inst, (1, 2, 3)) / np.mean(voc, (1, 2, 3))
                                                  * np.mean(np.abs(est - voc), (1, 2, 3))), rtol=1e-5)
    np.testing.assert_allclose(loss(0.2), loss(1.0), rtol=1e-4)  # a quieter voice, the same weight of its errors
    assert loss(0.2) > 3 * 0.2 * plain  # ... where the plain L1 would shrink with it
    np.testing.assert_allclose(loss(0.001), 10.0 * 0.001 * plain, rtol=1e-4)  # -60 dB: floored at -20 dB
    np.testing.assert_allclose(loss(0.001, floor=-70.0), loss(1.0), rtol=1e-3)


def test_ideal_mask_bce_keeps_its_gradient_where_the_sigmoid_saturates():
    rng = np.random.default_rng(2)
    inst, voc = (rng.uniform(0, 1, (2, 4, 6, 2)).astype(np.float32) for _ in range(2))
    x = inst + voc
    ideal = inst / x
    loss = lambda z: losses.ideal_mask_bce(z, x, inst)
    at_ideal = jax.grad(loss)(jnp.log(ideal / (1 - ideal)))
    np.testing.assert_allclose(at_ideal, 0.0, atol=1e-6)  # minimised by the ideal ratio mask
    saturated = np.full_like(x, 30.0)  # sigmoid(30) == 1 in float32: keep everything
    weight = x / x.mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(jax.grad(loss)(saturated), weight * (1 - ideal) / x.size, rtol=1e-4)
    silent = losses.ideal_mask_bce(saturated, np.zeros_like(x), inst)  # no mixture: no weight, no NaN
    assert np.isfinite(float(silent)) and float(silent) == 0.0
    # power 2: the magnitude's squared error's gradient, without the sigmoid's saturation factor
    mask = jax.nn.sigmoid(jnp.zeros_like(x))
    squared = jax.grad(lambda z: jnp.sum(jnp.square(x * jax.nn.sigmoid(z) - inst)))(jnp.zeros_like(x))
    bce = jax.grad(lambda z: losses.ideal_mask_bce(z, x, inst, power=2.0))(jnp.zeros_like(x))
    unsaturated = squared / (mask * (1 - mask))  # 2 x^2 (mask - ideal)
    scale = 2 * x.size * np.mean(x ** 2, axis=(1, 2, 3), keepdims=True)  # undoes the mean and the normalised weight
    np.testing.assert_allclose(bce * scale, unsaturated, rtol=1e-4, atol=1e-7)
    # per frame: a frame's level does not change its weight
    logits = rng.normal(size=x.shape).astype(np.float32)
    gain = rng.uniform(0.01, 10, (2, 4, 1, 1)).astype(np.float32)
    per_frame = lambda x, y: losses.ideal_mask_bce(logits, x, y, power=2.0, per_frame=True)  # noqa: E731
    np.testing.assert_allclose(per_frame(x * gain, inst * gain), per_frame(x, inst), rtol=1e-5)
    assert abs(float(losses.ideal_mask_bce(logits, x * gain, inst * gain, 2.0))
               - float(losses.ideal_mask_bce(logits, x, inst, 2.0))) > 1e-3  # per example it does


def test_finetune_step_adds_the_weighted_vocal_removal_and_mask_terms():
    finetune = os.path.join(os.path.dirname(__file__), "..", "configs", "finetune.py:tiny")
    config = load_config(finetune, SMALL + ["loss.vocal_weight=0.5", "loss.removal_weight=3.0",
                                                 "loss.mask_bce_weight=0.25", "loss.mask_bce_power=2.0",
                                                 "loss.mask_bce_per_frame=True"])
    program = build_program(config, mesh_lib.make_mesh(config.mesh))
    state = program.init_state(jax.random.key(0), random_params(config.model))
    batch = next(inputs.train_batches(config, config.batch_size, 0, 0, 1))
    _, metrics = cpu_jit(steps.make_train_step(config, program.model, optax.sgd(0.1)))(
        state.replace(opt_state=optax.sgd(0.1).init(state.params)), batch)
    x, y, v = batch["mixture"], batch["instrumental"], batch["vocals"]
    apply = cpu_jit(lambda p, logits: program.model.apply({"params": p}, x, deterministic=True, logits=logits)[0],
                    static_argnums=1)
    mask, logits = apply(state.params, False), apply(state.params, True)
    np.testing.assert_allclose(jax.nn.sigmoid(logits), mask, rtol=1e-6)
    np.testing.assert_allclose(float(metrics["mask_bce"]), float(losses.ideal_mask_bce(logits, x, y, 2.0, True)), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["vocal_l1"]),
                               float(losses.vocal_l1_at_instrumental_level(x, mask, y, v, -20.0)), rtol=1e-5)
    removed = np.maximum(np.asarray(y) - np.asarray(x * mask), 0.0)
    np.testing.assert_allclose(float(metrics["removal_l1"]), removed.mean(), rtol=1e-5)
    weighted_l1 = np.mean(np.abs(np.asarray(x * mask) - y) + 2.0 * removed)  # 3x where accompaniment is removed
    np.testing.assert_allclose(float(metrics["loss"]), weighted_l1 + 0.5 * float(metrics["vocal_l1"])
                               + 0.25 * float(metrics["mask_bce"]), rtol=1e-5)
    assert float(metrics["vocal_l1"]) > 0.1 * float(metrics["l1"])
    assert 0.05 * float(metrics["l1"]) < float(metrics["removal_l1"]) < 0.95 * float(metrics["l1"])


def test_vocal_sdr_gain_weighs_crops_by_energy():
    """Doing nothing scores 0 dB; keeping everything does not win from crops without singing."""
    rng = np.random.default_rng(1)
    inst = rng.uniform(0, 1, (2, 3, 5, 2))
    vocals = np.stack([rng.uniform(0, 1, (3, 5, 2)), np.zeros((3, 5, 2))])  # the second crop: no singing
    x = inst + vocals

    def gain(mask):
        sums = {"count": 2, "energy/vocals_error": np.sum(losses.error_energy(x, 1.0 - mask, vocals)),
                "energy/vocals_error_do_nothing": np.sum(losses.error_energy(x, 0.5, vocals))}
        return steps.eval_metrics(sums)["sdr_gain_vocals"]

    assert gain(np.full_like(x, 0.5)) == pytest.approx(0.0, abs=1e-6)
    keep_everything = gain(np.ones_like(x))  # no vocal estimate at all
    expected = 10 * np.log10(np.sum((x / 2 - vocals) ** 2) / np.sum(vocals**2))
    assert keep_everything == pytest.approx(expected, rel=1e-6) and keep_everything < 3.0
    assert gain(inst / x) > 60  # the exact instrumental mask


def test_compiler_effort_reaches_the_train_steps_options():
    from vocal_remover_jax.train.program import train_step_compiler_options

    finetune = os.path.join(os.path.dirname(__file__), "..", "configs", "finetune.py:tiny")
    mesh = mesh_lib.make_mesh(load_config(finetune, SMALL).mesh)
    default = train_step_compiler_options(load_config(finetune, SMALL), mesh)
    # CPU: region analysis and no YNNPACK fusions, nothing else
    assert default == {"xla_cpu_copy_insertion_use_region_analysis": True, "xla_cpu_experimental_ynn_fusion_type": ""}
    fast = train_step_compiler_options(load_config(finetune, SMALL + ["compiler.exec_time_optimization_effort=-1"]),
                                       mesh)
    assert fast == dict(default, exec_time_optimization_effort=-1.0)
    with pytest.raises(ValueError, match="memory_fitting_effort=2.0"):
        train_step_compiler_options(load_config(finetune, SMALL + ["compiler.memory_fitting_effort=2"]), mesh)


@pytest.mark.parametrize("spec,mesh,batch", [("pretrain.py:seed_v5p", (8, 8), 64), ("pretrain.py:seed_v5e", (16, 16), 256),
                                             ("finetune.py:seed_v5p_slice", (1, 4), 8)])
def test_pod_configs_are_the_seed_model_in_bf16_on_their_mesh(spec, mesh, batch):
    config = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", spec), [])
    seed = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", spec.split(":")[0] + ":seed"), [])
    assert (config.mesh.data, config.mesh.fsdp, config.batch_size) == (*mesh, batch)
    assert config.model.dtype == "bfloat16" and config.compiler.exec_time_optimization_effort == -1.0
    assert dict(config.model, dtype="float32") == dict(seed.model) and config.mode == seed.mode
