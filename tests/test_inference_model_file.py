"""The portable model file (safetensors): round trip, standard readers, and clear errors for every
kind of bad file."""

import json
import os
import stat
import struct

import numpy as np
import pytest
from flax import traverse_util

from tests.paths import config
from vocal_remover_jax.config import load_config
from vocal_remover_jax.inference import model_file
from vocal_remover_jax.inference.model_file import ModelFileError, load_model_file, read_header, save_model_file


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return tiny_model


def _leaves(tree):
    return traverse_util.flatten_dict(tree, sep="/")


def test_round_trip(tiny):
    path, params, config_ = tiny
    loaded, loaded_config = load_model_file(path)
    assert _leaves(loaded).keys() == _leaves(params).keys()
    for name, value in _leaves(params).items():
        np.testing.assert_array_equal(_leaves(loaded)[name], value, err_msg=name)
    assert loaded_config.model.to_dict() == config_.model.to_dict()
    assert loaded_config.audio.to_dict() == config_.audio.to_dict()
    header = read_header(path)
    assert header["format_version"] == model_file.FORMAT_VERSION
    assert header["num_params"] == sum(v.size for v in _leaves(params).values())
    assert {p["dtype"] for p in header["params"].values()} == {"float32"}


def test_any_safetensors_reader_sees_parameters_and_config(tiny):
    from safetensors import safe_open

    path, params, config_ = tiny
    with safe_open(path, "np") as f:
        metadata = f.metadata()
        assert set(f.keys()) == set(_leaves(params))
    assert metadata["format"] == "vocal-remover-jax model"
    assert metadata["format_version"] == str(model_file.FORMAT_VERSION)
    assert json.loads(metadata["config"])["audio"] == config_.audio.to_dict()
    assert len(metadata["sha256"]) == 64


def _variant(tmp_path, path, edit):
    data = bytearray(open(path, "rb").read())
    out = tmp_path / "bad.safetensors"
    out.write_bytes(bytes(edit(data)))
    return str(out)


def _with_metadata(data, **changes):
    """The same file with metadata fields changed (header rewritten, arrays untouched)."""
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(bytes(data[8 : 8 + n]))
    header["__metadata__"].update(changes)
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    return struct.pack("<Q", len(new)) + new + bytes(data[8 + n :])


@pytest.mark.parametrize("edit, message", [
    (lambda d: d[: len(d) // 2], "truncated: .* its header says"),
    (lambda d: d[:20], "truncated"),
    (lambda d: d[:4], "truncated or not a model file"),
    (lambda d: d + b"junk", "trailing data"),
    (lambda d: d[:-1] + bytes([d[-1] ^ 0xFF]), "checksum"),
    (lambda d: b"RIFF" + b"\0" * 100, "not a safetensors file"),
    (lambda d: _with_metadata(d, format_version="99"), "version 99"),
    (lambda d: _with_metadata(d, format="something else"), "not a vocal-remover-jax model file"),
    (lambda d: _with_metadata(d, config="{not json"), "corrupt config"),
])
def test_bad_files_name_the_file_and_the_problem(tmp_path, tiny, edit, message):
    bad = _variant(tmp_path, tiny[0], edit)
    with pytest.raises(ModelFileError, match=message) as info:
        load_model_file(bad)
    assert bad in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="cannot read"):
        load_model_file(str(tmp_path / "nope.safetensors"))


def test_parameters_of_another_model_are_refused(tmp_path, tiny):
    _, params, _ = tiny
    other = load_config(config("model.py:tiny"), ["model.depth=2"])
    path = str(tmp_path / "mismatch.safetensors")
    save_model_file(path, params, other)  # tiny's parameters under a config that builds another model
    with pytest.raises(ModelFileError, match="do not fit a 'unet' model.*unexpected"):
        load_model_file(path)
    arch = load_config(config("model.py:tiny"), ["model.arch=plain"])
    save_model_file(path, params, arch)
    with pytest.raises(ModelFileError, match="'plain' model"):
        load_model_file(path)


def test_save_is_atomic_leaves_no_temporaries_and_follows_the_umask(tmp_path, tiny):
    _, params, config_ = tiny
    path = tmp_path / "m.safetensors"
    save_model_file(str(path), params, config_)
    old = os.umask(0o027)
    try:
        save_model_file(str(path), params, config_)
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
