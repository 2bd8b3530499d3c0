"""Numerical parity with the reference PyTorch modules, on tests/fixtures/seed_parity.npz (any sizes)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.paths import PARITY_FIXTURE as FIXTURE
from vocal_remover_jax import reference_layout as ref
from vocal_remover_jax.models.shapes import abstract_params

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def fixture():
    if not FIXTURE.exists():
        pytest.fail(f"parity fixture {FIXTURE} not found (set SEED_PARITY_FIXTURE)")
    with np.load(FIXTURE) as data:
        return {k: data[k] for k in data.files}


def _module_entries(fixture, kind):
    prefix = kind + "/"
    entries = {k[len(prefix):]: v for k, v in fixture.items() if k.startswith(prefix)}
    config = json.loads(str(entries.pop("config")))
    inputs = [entries.pop(f"input{i}") for i in range(10) if f"input{i}" in entries]
    outputs = [entries.pop(f"output{i}") for i in range(10) if f"output{i}" in entries]
    return config, inputs, outputs, entries


def _to_ours(x, kind):
    return x if kind == "attention" else np.transpose(x, (0, 3, 2, 1))  # NCHW -> (B, frames, bins, C)


def _to_reference(y, kind):
    y = np.asarray(y, np.float64)
    return y if kind == "attention" or y.ndim != 4 else np.transpose(y, (0, 3, 2, 1))


@pytest.mark.parametrize("kind", ref.KINDS)
def test_reference_parity(fixture, kind):
    """float32, as the port runs: within 1e-5 of the exact outputs."""
    _check_parity(fixture, kind, np.float32, TOLERANCE)


@pytest.mark.parametrize("kind", ["unet", "transformer_discriminator"])
def test_reference_parity_float64_is_exact(fixture, kind):
    """In float64 the port must agree to rounding (the fixture outputs are exact), so a small
    systematic difference cannot hide under the float32 tolerance."""
    with jax.enable_x64(True):
        _check_parity(fixture, kind, np.float64, 1e-10)


def _check_parity(fixture, kind, dtype, tolerance):
    config, inputs, outputs, state_dict = _module_entries(fixture, kind)
    module = ref.module_from_reference(kind, config, dtype=dtype)
    xs = [jnp.asarray(_to_ours(x, kind), dtype) for x in inputs]
    call_inputs = xs[:1] if kind == "attention" else xs
    abstract = abstract_params(module, *[jax.ShapeDtypeStruct(x.shape, x.dtype) for x in call_inputs])
    params = ref.convert_state_dict(state_dict, kind, abstract, depth=config.get("depth", 0), dtype=dtype)

    if kind == "attention":
        got = [module.apply({"params": params}, xs[0]), module.apply({"params": params}, xs[0], mem=xs[1])]
    elif kind in ("encoder", "plain", "unet"):
        got = module.apply({"params": params}, xs[0], deterministic=True)
    elif kind == "decoder":
        got = module.apply({"params": params}, xs[0], xs[1], deterministic=True)
    else:
        got = module.apply({"params": params}, xs[0], xs[1], deterministic=True)
    got = list(got) if isinstance(got, (tuple, list)) else [got]

    assert len(got) == len(outputs)
    for i, (g, want) in enumerate(zip(got, outputs)):
        g = _to_reference(g, kind)
        assert g.shape == want.shape, f"{kind} output{i}: shape {g.shape} != {want.shape}"
        err = float(np.max(np.abs(g - want)))
        assert err <= tolerance, f"{kind} output{i}: max abs error {err:.3g} > {tolerance}"


def test_every_fixture_weight_is_used_or_known_unused(fixture):
    """A reference key that our mapping ignored would have made the parity test vacuous."""
    for kind in ref.KINDS:
        config, inputs, _, state_dict = _module_entries(fixture, kind)
        module = ref.module_from_reference(kind, config)
        xs = [jax.ShapeDtypeStruct(_to_ours(x, kind).shape, jnp.float32) for x in inputs]
        abstract = abstract_params(module, *(xs[:1] if kind == "attention" else xs))
        params = ref.convert_state_dict(state_dict, kind, abstract, depth=config.get("depth", 0))
        n_ours = sum(np.size(p) for p in jax.tree.leaves(params))
        n_used = sum(v.size for k, v in state_dict.items() if not ref.is_reference_unused(k, state_dict))
        assert n_ours == n_used, kind


def test_mismatched_key_is_named(fixture):
    config, inputs, _, state_dict = _module_entries(fixture, "encoder")
    module = ref.module_from_reference("encoder", config)
    abstract = abstract_params(module, jax.ShapeDtypeStruct(_to_ours(inputs[0], "encoder").shape, jnp.float32))
    broken = dict(state_dict)
    broken["attn.q_proj.weight"] = broken["attn.q_proj.weight"][:-1]
    with pytest.raises(ref.ReferenceImportError, match="attn.q_proj.weight"):
        ref.convert_state_dict(broken, "encoder", abstract)
    extra = dict(state_dict, **{"attn.extra.weight": np.zeros(3)})
    with pytest.raises(ref.ReferenceImportError, match="attn.extra.weight"):
        ref.convert_state_dict(extra, "encoder", abstract)
    missing = {k: v for k, v in state_dict.items() if k != "norm3.bias"}
    with pytest.raises(ref.ReferenceImportError, match="norm3.bias"):
        ref.convert_state_dict(missing, "encoder", abstract)
