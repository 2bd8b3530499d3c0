"""`export`: checkpoint parameters -> model file -> separation, with the trainer's restore stubbed
(restore_params is stubbed to its contract, `(params, config)`; the trainer was not there yet)."""

import sys
import types

import flax.linen as nn
import jax
import numpy as np
import pytest

from tests.paths import config as config_path
from vocal_remover_jax import cli
from vocal_remover_jax.config import load_config
from vocal_remover_jax.inference.model_file import load_model_file
from vocal_remover_jax.inference.random_params import random_params
from vocal_remover_jax.inference.separator import Separator


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fake trainer whose checkpoint holds boxed tiny parameters and a training config."""
    config = load_config(config_path("model.py:tiny"))
    config.model.remat = True
    config.train = {"learning_rate": 1e-4}  # training-only fields must not reach the model file
    params = random_params(config.model, seed=2)
    boxed = {"encoder_0": {k: v if k != "conv1" else {"kernel": nn.Partitioned(v["kernel"], (None, None, None)),
                                                      "norm": v["norm"]}
                           for k, v in params["encoder_0"].items()},
             **{k: v for k, v in params.items() if k != "encoder_0"}}
    calls = []

    def restore_params(path, step=None, best=False):
        calls.append((path, step) + (("best",) if best else ()))
        if step == 999:
            raise FileNotFoundError(f"no checkpoint for step 999 in {path}")
        return boxed, config

    module = types.ModuleType("vocal_remover_jax.train.checkpoint")
    module.restore_params = restore_params
    module.best_step = lambda path: 7
    monkeypatch.setitem(sys.modules, "vocal_remover_jax.train.checkpoint", module)
    (tmp_path / "run").mkdir()
    return tmp_path / "run", params, calls, config


def test_export_writes_inference_parameters_and_model_config(tmp_path, workdir, capsys):
    run, params, calls, config = workdir
    out = tmp_path / "model.safetensors"
    assert cli.main(["export", "--workdir", str(run), "--out", str(out), "--step", "5"]) == 0
    assert calls == [(str(run), 5)]
    loaded, config = load_model_file(str(out))
    np.testing.assert_array_equal(loaded["encoder_0"]["conv1"]["kernel"], params["encoder_0"]["conv1"]["kernel"])
    assert set(config) == {"model", "audio"} and config.model.remat is False
    assert "wrote" in capsys.readouterr().out
    song = np.random.default_rng(0).uniform(-0.3, 0.3, (2, 22050)).astype(np.float32)
    exported = Separator.from_file(str(out)).separate(song, 22050)
    direct = Separator(params, config).separate(song, 22050)
    for got, want in zip(exported, direct):
        np.testing.assert_allclose(got, want, atol=1e-6)

    assert cli.main(["export", "--workdir", str(run), "--out", str(out)]) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["export", "--workdir", str(run), "--out", str(out), "--overwrite"]) == 0


def test_export_best_takes_the_kept_best_checkpoint(tmp_path, workdir, capsys):
    run, _, calls, _ = workdir
    assert cli.main(["export", "--workdir", str(run), "--out", str(tmp_path / "m.safetensors"), "--best"]) == 0
    assert calls == [(str(run), None, "best")] and "step 7 (the best validation score)" in capsys.readouterr().out
    assert cli.main(["export", "--workdir", str(run), "--out", str(tmp_path / "n.safetensors"), "--best", "--step", "3"]) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_export_reports_missing_checkpoints(tmp_path, workdir, capsys):
    run = workdir[0]
    out = tmp_path / "m.safetensors"
    assert cli.main(["export", "--workdir", str(run), "--out", str(out), "--step", "999"]) == 2
    assert "step 999" in capsys.readouterr().err
    assert cli.main(["export", "--workdir", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert not out.exists()


def test_init_from_accepts_a_model_file(tiny_model):
    """`config.init_from` reads through restore_params: a model file gives its own parameters."""
    from vocal_remover_jax.train.checkpoint import restore_params

    path, params, config = tiny_model
    from vocal_remover_jax.train.mesh import make_mesh

    train_config = load_config(config_path("finetune.py:tiny"))
    # inside the trainer's mesh and logical rules, as the trainer calls it
    with jax.set_mesh(make_mesh(train_config.mesh, jax.devices()[:1])), nn.logical_axis_rules(train_config.logical_rules):
        restored, restored_config = restore_params(path)
    np.testing.assert_array_equal(restored["out"]["kernel"], params["out"]["kernel"])
    assert restored_config.model.to_dict() == config.model.to_dict()
    with pytest.raises(ValueError, match="no checkpoint steps"):
        restore_params(path, step=3)


def test_init_from_starts_the_state_at_those_parameters_without_drawing_any(tiny_model):
    """The first state holds the file's parameters and fresh optimizer moments; its program draws
    no random numbers (compiling the initialisers is the slow part of a start on CPU). Parameters
    of another shape of model are refused by name."""
    from vocal_remover_jax.train import mesh as mesh_lib
    from vocal_remover_jax.train.program import build_program
    from vocal_remover_jax.train.trainer import init_from_params

    path, params, _ = tiny_model
    config = load_config(config_path("finetune.py:tiny"), [f"init_from={path}", "mesh.data=1", "mesh.fsdp=1"])
    program = build_program(config, mesh_lib.make_mesh(config.mesh, jax.devices()[:1]))
    with program.context():
        start = init_from_params(config, program)
        jaxpr = str(jax.make_jaxpr(lambda rng, p: program.init(rng, p))(jax.random.key(0), start))
        state = program.init_state(jax.random.key(0), start)
    assert "random_bits" not in jaxpr and "threefry" not in jaxpr
    assert int(state.step) == 0
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not any(np.any(np.asarray(m)) for m in jax.tree.leaves(state.opt_state) if np.ndim(m))

    other = load_config(config_path("finetune.py:tiny"), [f"init_from={path}", "mesh.data=1", "mesh.fsdp=1",
                                                          f"model.channels={config.model.channels * 2}"])
    other_program = build_program(other, mesh_lib.make_mesh(other.mesh, jax.devices()[:1]))
    with pytest.raises(ValueError, match=r"init_from=.*tiny.safetensors: its parameters do not fit config.model"):
        init_from_params(other, other_program)


def test_init_zero_starts_the_mask_head_at_one_half(tiny_model):
    """`config.init_zero="^out/"`: the restored head is zero, so every bin's mask starts at 0.5; nothing
    else changes, and a pattern that matches nothing is an error."""
    from vocal_remover_jax.models import build_model
    from vocal_remover_jax.models.shapes import input_spec
    from vocal_remover_jax.train.checkpoint import restore_params, zero_matching

    path, _, config = tiny_model
    restored, _ = restore_params(path)
    zeroed = zero_matching(restored, "^out/")
    assert np.any(np.asarray(restored["out"]["kernel"])) and not np.any(np.asarray(zeroed["out"]["kernel"]))
    for a, b in zip(jax.tree.leaves({k: v for k, v in restored.items() if k != "out"}),
                    jax.tree.leaves({k: v for k, v in zeroed.items() if k != "out"})):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).uniform(0, 1, input_spec(config.model).shape).astype(np.float32)
    mask, _ = build_model(config.model).apply({"params": zeroed}, x)
    np.testing.assert_allclose(mask, 0.5)
    with pytest.raises(ValueError, match="matches no parameter"):
        zero_matching(restored, "^no_such_layer/")
