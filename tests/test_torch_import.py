"""`import-torch` end to end: a real `.pth` written by PyTorch -> model file -> same outputs."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from tests.paths import PARITY_FIXTURE as FIXTURE, config as config_path
from tests.test_parity import TOLERANCE
from vocal_remover_jax.cli import main as cli_main

torch = pytest.importorskip("torch", reason="import-torch needs the optional torch extra")


def _unet_fixture():
    with np.load(FIXTURE) as data:
        entries = {k[len("unet/"):]: data[k] for k in data.files if k.startswith("unet/")}
    config = json.loads(str(entries.pop("config")))
    x, mask, is_next = entries.pop("input0"), entries.pop("output0"), entries.pop("output1")
    return config, x, mask, is_next, entries


def _overrides(ref_config):
    """The fixture's reference constructor arguments as our config overrides."""
    names = ("in_channels", "channels", "depth", "num_transformer_blocks", "num_bands", "feedforward_dim",
             "cropsize", "bias")
    overrides = [f"--config.model.{k}={ref_config[k]}" for k in names if k in ref_config]
    return overrides + [f"--config.audio.n_fft={ref_config['n_fft']}"]


def test_import_torch_round_trip(tmp_path):
    from vocal_remover_jax.inference.model_file import load_model_file
    from vocal_remover_jax.models import build_model

    ref_config, x, want_mask, want_is_next, state_dict = _unet_fixture()
    pth = tmp_path / "reference.pth"
    torch.save({"state_dict": {k: torch.from_numpy(v) for k, v in state_dict.items()}}, pth)
    out = tmp_path / "imported.safetensors"
    args = ["import-torch", str(pth), "--config", config_path("model.py:tiny"), "--out", str(out)] + _overrides(ref_config)
    assert cli_main(args) == 0

    params, config = load_model_file(str(out))
    assert config.model.reference_kv_conv is True
    mask, is_next = build_model(config.model).apply({"params": params}, jnp.asarray(x.transpose(0, 3, 2, 1)))
    assert np.max(np.abs(np.asarray(mask).transpose(0, 3, 2, 1) - want_mask)) <= TOLERANCE
    assert np.max(np.abs(np.asarray(is_next) - want_is_next)) <= TOLERANCE

    with pytest.raises(SystemExit, match="exists"):  # never overwrites without --overwrite
        cli_main(args)


def test_import_torch_names_the_offending_key(tmp_path):
    ref_config, _, _, _, state_dict = _unet_fixture()
    key = "transformer_encoder.0.0.attn.q_proj.weight"
    state_dict[key] = state_dict[key][:, :-1]
    pth = tmp_path / "broken.pth"
    torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state_dict.items()}, pth)
    args = ["import-torch", str(pth), "--config", config_path("model.py:tiny"), "--out", str(tmp_path / "x.safetensors")]
    with pytest.raises(SystemExit, match=key.replace(".", r"\.")):
        cli_main(args + _overrides(ref_config))
    with pytest.raises(SystemExit, match="not a readable PyTorch checkpoint"):
        (tmp_path / "junk.pth").write_bytes(b"not a pickle")
        cli_main(["import-torch", str(tmp_path / "junk.pth"), "--config", config_path("model.py:tiny"),
                  "--out", str(tmp_path / "y.safetensors")])
