"""The portable model file: a safetensors file holding the inference parameters, with the model and
STFT config, a format version and a checksum in its metadata.

safetensors (https://github.com/huggingface/safetensors) is a JSON header followed by raw
little-endian arrays: any safetensors reader lists and loads the parameters (names are the
Flax parameter paths joined with '/'), nothing is unpickled, and the header alone describes the
model. Metadata (all strings, as the format requires):

    format          "vocal-remover-jax model"
    format_version  FORMAT_VERSION
    config          JSON {"model": {...}, "audio": {...}}
    card            optional JSON object: what the model was trained on, how, and how well it
                    does (data attributions, steps, held-out SDR); `describe --model` prints it
    sha256          digest of the config, the card (when there is one) and every parameter
                    (name, dtype, shape, bytes)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
from collections.abc import Iterator, Mapping
from typing import Any

import ml_collections
import numpy as np
from flax import traverse_util

from vocal_remover_jax.atomic import atomic_path

FORMAT = "vocal-remover-jax model"
FORMAT_VERSION = 2  # 1 was the project's own `.vrj` container
SEPARATOR = "/"


class ModelFileError(ValueError):
    """A model file that cannot be used; the message names the file and the problem."""


def save_model_file(path: str, params: Mapping[str, Any], config: ml_collections.ConfigDict,
                    card: Mapping[str, Any] | None = None) -> None:
    """Writes `params` (the 'params' collection, boxed or not), `config.model`/`config.audio` and
    the optional model `card` (a JSON-serialisable dict) atomically."""
    import flax.linen as nn
    from safetensors.numpy import save_file

    _check_config(config, path)
    flat = {name: np.ascontiguousarray(leaf) for name, leaf in _flatten(nn.unbox(dict(params))).items()}
    config_json = json.dumps({"model": config.model.to_dict(), "audio": config.audio.to_dict()}, sort_keys=True)
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "config": config_json}
    card_json = None
    if card is not None:
        card_json = metadata["card"] = json.dumps(dict(card), sort_keys=True, allow_nan=False)
    metadata["sha256"] = _digest(config_json, flat, card_json)
    with atomic_path(path) as tmp:
        save_file(flat, tmp, metadata=metadata)


def read_header(path: str) -> dict:
    """The file's description without loading the arrays: {"format_version", "config", "card" (a dict,
    or None), "params": {name: {"shape", "dtype"}}, "num_params"}, after checking it is a model file
    of this version (the checksum is checked by `load_model_file`, which reads the arrays)."""
    from safetensors import safe_open

    with _errors_name(path):
        with safe_open(path, "np") as f:
            metadata = f.metadata() or {}
            config = _check_metadata(path, metadata)
            card = _card(path, metadata)
            params = {}
            for name in f.keys():
                view = f.get_slice(name)
                params[name] = {"shape": list(view.get_shape()), "dtype": _dtype_name(view.get_dtype())}
    return {"format_version": FORMAT_VERSION, "config": config.to_dict(), "card": card, "params": params,
            "num_params": int(sum(np.prod(p["shape"], dtype=np.int64) for p in params.values()))}


def load_model_file(path: str, check_shapes: bool = True) -> tuple[dict, ml_collections.ConfigDict]:
    """Returns (params, config): params a nested dict of numpy arrays, config with `.model` and `.audio`.

    Raises ModelFileError for a missing, truncated, corrupt or foreign file, another format version,
    or parameters that do not fit the model the config describes.
    """
    from safetensors import safe_open

    with _errors_name(path):
        with safe_open(path, "np") as f:
            metadata = f.metadata() or {}
            config = _check_metadata(path, metadata)
            flat = {name: f.get_tensor(name) for name in f.keys()}
    _card(path, metadata)
    if _digest(metadata["config"], flat, metadata.get("card")) != metadata.get("sha256"):
        raise ModelFileError(f"{path}: checksum mismatch: the file is corrupt")
    if check_shapes:
        _check_shapes(path, config, {name: a.shape for name, a in flat.items()})
    return traverse_util.unflatten_dict(flat, sep=SEPARATOR), config


def _digest(config_json: str, flat: Mapping[str, np.ndarray], card_json: str | None = None) -> str:
    """A file without a card has the digest it had before cards existed."""
    h = hashlib.sha256(config_json.encode())
    if card_json is not None:
        h.update(b"\ncard\n" + card_json.encode())
    for name in sorted(flat):
        a = np.ascontiguousarray(flat[name])
        h.update(f"\n{name}:{a.dtype.str}:{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _check_metadata(path: str, metadata: Mapping[str, str]) -> ml_collections.ConfigDict:
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{path}: a safetensors file, but not a vocal-remover-jax model file "
                             "(no vocal-remover-jax metadata)")
    version = metadata.get("format_version")
    if version != str(FORMAT_VERSION):
        raise ModelFileError(f"{path}: model file format version {version}, this program reads version "
                             f"{FORMAT_VERSION}; re-export it with a matching vocal-remover-jax")
    try:
        config = ml_collections.ConfigDict(json.loads(metadata["config"]))
    except (KeyError, ValueError) as e:
        raise ModelFileError(f"{path}: corrupt config in the metadata ({e})") from None
    _check_config(config, path)
    return config


def _card(path: str, metadata: Mapping[str, str]) -> dict | None:
    if "card" not in metadata:
        return None
    try:
        card = json.loads(metadata["card"])
    except ValueError as e:
        raise ModelFileError(f"{path}: corrupt model card in the metadata ({e})") from None
    if not isinstance(card, dict):
        raise ModelFileError(f"{path}: corrupt model card in the metadata (a JSON {type(card).__name__}, "
                             "not an object)")
    return card


def file_sha256(path: str) -> str:
    """The whole file's sha256, as `sha256sum` prints it (what a README lists next to a model)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def _errors_name(path: str) -> Iterator[None]:
    """Turns OS and safetensors errors into a ModelFileError naming the file and what is wrong."""
    from safetensors import SafetensorError

    try:
        yield
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read model file ({e.strerror or e})") from None
    except SafetensorError as e:
        raise ModelFileError(f"{path}: {_diagnose(path, e)}") from None


def _diagnose(path: str, error: Exception) -> str:
    """Why safetensors refused the file, in words: truncated, trailing data, or another kind of file."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        prefix = f.read(8)
        header_len = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else None
        first = f.read(1)
        if header_len is None or first != b"{":
            return f"truncated or not a model file: not a safetensors file ({size} bytes; {error})"
        if 8 + header_len > size:
            return f"truncated: {size} bytes, shorter than its own header says"
        f.seek(8)
        try:
            header = json.loads(f.read(header_len))
            end = max([v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"] or [0])
        except (ValueError, KeyError, TypeError):
            return f"corrupt safetensors header ({error})"
    expected = 8 + header_len + end
    if size < expected:
        return f"truncated: {size} bytes, its header says {expected}"
    if size > expected:
        return f"has trailing data: {size} bytes, its header says {expected}"
    return f"corrupt safetensors file ({error})"


def _check_config(config: ml_collections.ConfigDict, path: str) -> None:
    for section, fields in (("model", ("arch", "n_fft", "cropsize")), ("audio", ("sample_rate", "n_fft", "hop_length"))):
        if section not in config or any(k not in config[section] for k in fields):
            raise ModelFileError(f"{path}: config lacks {section} fields ({', '.join(fields)})")
    if config.model.n_fft != config.audio.n_fft:
        raise ModelFileError(f"{path}: model.n_fft {config.model.n_fft} != audio.n_fft {config.audio.n_fft}")


def _check_shapes(path: str, config: ml_collections.ConfigDict, shapes: Mapping[str, tuple]) -> None:
    """The stored parameters must be exactly those of the model the config builds."""
    from vocal_remover_jax.models import build_model
    from vocal_remover_jax.models.shapes import abstract_params, input_spec

    try:
        model = build_model(config.model)
    except (ValueError, KeyError, AttributeError) as e:
        raise ModelFileError(f"{path}: config describes no known model ({e})") from None
    expected = {name: tuple(a.shape) for name, a in _flatten(abstract_params(model, input_spec(config.model))).items()}
    if problem := shape_mismatch(expected, shapes):
        raise ModelFileError(f"{path}: parameters do not fit a {config.model.arch!r} model with this config: {problem}")


def shape_mismatch(expected: Mapping[str, tuple], shapes: Mapping[str, tuple]) -> str:
    """What differs between two sets of flat parameter shapes ("" when none): the names missing,
    unexpected, and of another shape."""
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong = sorted(k for k in set(expected) & set(shapes) if tuple(expected[k]) != tuple(shapes[k]))
    details = []
    if missing:
        details.append(f"missing {_few(missing)}")
    if unexpected:
        details.append(f"unexpected {_few(unexpected)}")
    if wrong:
        details.append("shape mismatch " + _few([f"{k} {tuple(shapes[k])} vs {tuple(expected[k])}" for k in wrong]))
    return "; ".join(details)


def _few(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def _flatten(tree: Mapping[str, Any]) -> dict[str, Any]:
    return traverse_util.flatten_dict(dict(tree), sep=SEPARATOR)


def _dtype_name(safetensors_dtype: str) -> str:
    names = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64", "I32": "int32", "I64": "int64"}
    return names.get(safetensors_dtype, safetensors_dtype.lower())
