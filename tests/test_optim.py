"""The fused AdamW update equals optax's chain(clip_by_global_norm, adamw) (and its AMSGrad form), state included."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from vocal_remover_jax.train.optim import make_optimizer, reference_optimizer


@pytest.mark.parametrize("amsgrad", [False, True])
def test_fused_adamw_matches_optax_below_and_above_the_clip_norm(amsgrad):
    cfg = ml_collections.ConfigDict(dict(learning_rate=1e-2, end_learning_rate=1e-7, warmup_steps=2, decay_power=1.0,
                                         weight_decay=1e-2, b1=0.9, b2=0.999, eps=1e-8, grad_clip_norm=0.5,
                                         amsgrad=amsgrad))
    fused, reference = make_optimizer(cfg, 10), reference_optimizer(cfg, 10)
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32), "b": {"c": jnp.asarray(rng.normal(size=(7,)), jnp.float32)}}
    fused_state, ref_state = fused.init(params), reference.init(params)
    assert jax.tree.structure(fused_state) == jax.tree.structure(ref_state)  # checkpoints keep their layout
    p_fused = p_ref = params
    for step in range(6):
        scale = 0.01 if step % 2 else 10.0  # gradient norm below, then above, the clip norm
        grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape) * scale, jnp.float32), params)
        u_fused, fused_state = jax.jit(fused.update)(grads, fused_state, p_fused)
        u_ref, ref_state = jax.jit(reference.update)(grads, ref_state, p_ref)
        p_fused, p_ref = optax.apply_updates(p_fused, u_fused), optax.apply_updates(p_ref, u_ref)
        if step >= 1:  # (step 0: warm-up's learning rate is 0)
            assert max(float(jnp.max(jnp.abs(u))) for u in jax.tree.leaves(u_ref)) > 0
        for a, b in zip(jax.tree.leaves((u_fused, fused_state, p_fused)), jax.tree.leaves((u_ref, ref_state, p_ref))):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-9)
