"""The portable model file: round trip and clear errors for every kind of bad file."""

import struct

import numpy as np
import pytest

from vocal_remover_jax.config import load_config
from vocal_remover_jax.inference import model_file
from vocal_remover_jax.inference.model_file import ModelFileError, load_model_file, read_header, save_model_file
from vocal_remover_jax.inference.random_params import random_params


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    config = load_config("configs/model.py:tiny")
    params = random_params(config.model, seed=1)
    path = str(tmp_path_factory.mktemp("model") / "tiny.vrj")
    save_model_file(path, params, config)
    return path, params, config


def _leaves(tree, prefix=""):
    for k, v in tree.items():
        yield from _leaves(v, f"{prefix}{k}/") if isinstance(v, dict) else [(prefix + k, v)]


def test_round_trip(tiny):
    path, params, config = tiny
    loaded, loaded_config = load_model_file(path)
    assert dict(_leaves(loaded)).keys() == dict(_leaves(params)).keys()
    for name, value in _leaves(params):
        np.testing.assert_array_equal(dict(_leaves(loaded))[name], value, err_msg=name)
    assert loaded_config.model.to_dict() == config.model.to_dict()
    assert loaded_config.audio.to_dict() == config.audio.to_dict()
    header = read_header(path)
    assert header["format_version"] == model_file.FORMAT_VERSION
    assert header["num_params"] == sum(v.size for _, v in _leaves(params))


def _variant(tmp_path, path, edit):
    data = bytearray(open(path, "rb").read())
    data = edit(data)
    out = tmp_path / "bad.vrj"
    out.write_bytes(bytes(data))
    return str(out)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d[: len(d) // 2], "truncated"),
    (lambda d: d[:20], "truncated"),
    (lambda d: d + b"junk", "trailing data"),
    (lambda d: d[:-1] + bytes([d[-1] ^ 0xFF]), "checksum"),
    (lambda d: b"RIFF" + d[4:], "not a vocal-remover-jax model file"),
    (lambda d: d[:8] + struct.pack("<I", 99) + d[12:], "version 99"),
])
def test_bad_files_name_the_file_and_the_problem(tmp_path, tiny, edit, message):
    bad = _variant(tmp_path, tiny[0], edit)
    with pytest.raises(ModelFileError, match=message) as info:
        load_model_file(bad)
    assert bad in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="cannot read"):
        load_model_file(str(tmp_path / "nope.vrj"))


def test_parameters_of_another_model_are_refused(tmp_path, tiny):
    _, params, config = tiny
    other = load_config("configs/model.py:tiny", ["model.depth=2"])
    path = str(tmp_path / "mismatch.vrj")
    save_model_file(path, params, other)  # tiny's parameters under a config that builds another model
    with pytest.raises(ModelFileError, match="do not fit a 'unet' model.*unexpected"):
        load_model_file(path)
    arch = load_config("configs/model.py:tiny", ["model.arch=plain"])
    save_model_file(path, params, arch)
    with pytest.raises(ModelFileError, match="'plain' model"):
        load_model_file(path)


def test_save_is_atomic_and_leaves_no_temporaries(tmp_path, tiny):
    _, params, config = tiny
    path = tmp_path / "m.vrj"
    save_model_file(str(path), params, config)
    save_model_file(str(path), params, config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.vrj"]
