"""The portable model file (`.vrj`): inference parameters plus the model and STFT config.

Layout (little endian):

    magic      8 bytes   b"\\x89VRJ\\r\\n\\x1a\\n" (PNG-style: catches text-mode and truncating copies)
    version    u32       FORMAT_VERSION
    header_len u64       length of the JSON header
    payload_len u64      length of the msgpack payload
    sha256     32 bytes  digest of header + payload
    header     JSON      {"format_version", "config": {"model", "audio"}, "params": {name: {shape, dtype}}}
    payload    msgpack   flat {"module/sub/param": array} (flax.serialization)

The header alone describes the model, so a reader can check a file against its config without
deserialising the arrays, and any tool can list the parameters with a JSON parser.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
from collections.abc import Mapping
from typing import Any

import ml_collections
import numpy as np
from flax import serialization

from vocal_remover_jax.atomic import atomic_path

MAGIC = b"\x89VRJ\r\n\x1a\n"
FORMAT_VERSION = 1
EXTENSION = ".vrj"
_PREFIX = struct.Struct("<8sIQQ32s")


class ModelFileError(ValueError):
    """A model file that cannot be used; the message names the file and the problem."""


def save_model_file(path: str, params: Mapping[str, Any], config: ml_collections.ConfigDict) -> None:
    """Writes `params` (the 'params' collection, boxed or not) and `config.model`/`config.audio` atomically."""
    import flax.linen as nn

    flat = {name: np.asarray(leaf) for name, leaf in _flatten(nn.unbox(dict(params))).items()}
    _check_config(config, path)
    header = {
        "format": "vocal-remover-jax model",
        "format_version": FORMAT_VERSION,
        "config": {"model": config.model.to_dict(), "audio": config.audio.to_dict()},
        "params": {name: {"shape": list(a.shape), "dtype": a.dtype.name} for name, a in flat.items()},
        "num_params": int(sum(a.size for a in flat.values())),
    }
    header_bytes = json.dumps(header, sort_keys=True).encode()
    payload = serialization.msgpack_serialize(flat)
    digest = hashlib.sha256(header_bytes)
    digest.update(payload)
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header_bytes), len(payload), digest.digest())
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(prefix)
        f.write(header_bytes)
        f.write(payload)


def read_header(path: str) -> dict:
    """The JSON header alone (config and parameter shapes), after checking magic, version and size."""
    return _read(path, payload=False)[0]


def load_model_file(path: str, check_shapes: bool = True) -> tuple[dict, ml_collections.ConfigDict]:
    """Returns (params, config): params a nested dict of numpy arrays, config with `.model` and `.audio`.

    Raises ModelFileError for a missing, truncated, corrupt or foreign file, another format version,
    or parameters that do not fit the model the config describes.
    """
    header, payload, checksum = _read(path, payload=True)
    try:
        flat = serialization.msgpack_restore(payload)
    except Exception as e:  # noqa: BLE001 - msgpack raises several kinds for bad data
        checksum.verify()
        raise ModelFileError(f"{path}: unreadable parameters ({type(e).__name__}: {e})") from None
    checksum.verify()
    listed = {name: (tuple(v["shape"]), v["dtype"]) for name, v in header["params"].items()}
    stored = {name: (tuple(np.shape(a)), np.asarray(a).dtype.name) for name, a in flat.items()}
    if listed != stored:
        raise ModelFileError(f"{path}: parameters do not match the file's own header")
    config = ml_collections.ConfigDict(header["config"])
    if check_shapes:
        _check_shapes(path, config, {name: shape for name, (shape, _) in stored.items()})
    return _unflatten(flat), config


def _read(path: str, payload: bool) -> tuple[dict, bytes | None, _Checksum | None]:
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            prefix = f.read(_PREFIX.size)
            if len(prefix) < _PREFIX.size:
                raise ModelFileError(f"{path}: truncated or not a model file ({size} bytes)")
            magic, version, header_len, payload_len, digest = _PREFIX.unpack(prefix)
            if magic != MAGIC:
                raise ModelFileError(f"{path}: not a vocal-remover-jax model file (bad magic bytes)")
            if version != FORMAT_VERSION:
                raise ModelFileError(
                    f"{path}: model file format version {version}, this program reads version {FORMAT_VERSION}; "
                    "re-export it with a matching vocal-remover-jax")
            expected = _PREFIX.size + header_len + payload_len
            if size != expected:
                what = "truncated" if size < expected else "has trailing data"
                raise ModelFileError(f"{path}: {what}: {size} bytes, the header says {expected}")
            header_bytes = f.read(header_len)
            body = f.read(payload_len) if payload else None
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read model file ({e.strerror or e})") from None
    checksum = _Checksum(path, header_bytes, body, digest) if body is not None else None
    try:
        header = json.loads(header_bytes)
        _check_config(ml_collections.ConfigDict(header.get("config", {})), path)
    except ValueError as e:  # ModelFileError included; corruption explains it first
        if checksum is not None:
            checksum.verify()
        raise e if isinstance(e, ModelFileError) else ModelFileError(f"{path}: corrupt header ({e})") from None
    return header, body, checksum


class _Checksum:
    """Hashes the payload on a thread while the caller decodes it (hashlib releases the GIL);
    `verify()` waits and raises on a mismatch."""

    def __init__(self, path: str, header_bytes: bytes, body: bytes, digest: bytes):
        self.path, self.ok = path, None

        def check():
            h = hashlib.sha256(header_bytes)
            h.update(body)
            self.ok = h.digest() == digest

        self.thread = threading.Thread(target=check, daemon=True)
        self.thread.start()

    def verify(self) -> None:
        self.thread.join()
        if not self.ok:
            raise ModelFileError(f"{self.path}: checksum mismatch: the file is corrupt")


def _check_config(config: ml_collections.ConfigDict, path: str) -> None:
    for section, fields in (("model", ("arch", "n_fft", "cropsize")), ("audio", ("sample_rate", "n_fft", "hop_length"))):
        if section not in config or any(k not in config[section] for k in fields):
            raise ModelFileError(f"{path}: config lacks {section} fields ({', '.join(fields)})")
    if config.model.n_fft != config.audio.n_fft:
        raise ModelFileError(f"{path}: model.n_fft {config.model.n_fft} != audio.n_fft {config.audio.n_fft}")


def _check_shapes(path: str, config: ml_collections.ConfigDict, shapes: Mapping[str, tuple]) -> None:
    """The stored parameters must be exactly those of the model the config builds."""
    import jax

    from vocal_remover_jax.models import build_model

    try:
        model = build_model(config.model)
    except (ValueError, KeyError, AttributeError) as e:
        raise ModelFileError(f"{path}: config describes no known model ({e})") from None
    cfg = config.model
    x = jax.ShapeDtypeStruct((1, cfg.cropsize, cfg.n_fft // 2 + 1, cfg.in_channels), np.float32)
    abstract = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    import flax.linen as nn

    expected = {name: tuple(a.shape) for name, a in _flatten(nn.unbox(abstract)["params"]).items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong = sorted(k for k in set(expected) & set(shapes) if expected[k] != tuple(shapes[k]))
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {_few(missing)}")
        if unexpected:
            details.append(f"unexpected {_few(unexpected)}")
        if wrong:
            details.append("shape mismatch " + _few([f"{k} {tuple(shapes[k])} vs {expected[k]}" for k in wrong]))
        raise ModelFileError(f"{path}: parameters do not fit a {cfg.arch!r} model with this config: " + "; ".join(details))


def _few(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "/"))
        else:
            out[name] = value
    return out


def _unflatten(flat: Mapping[str, Any]) -> dict:
    tree: dict = {}
    for name, value in flat.items():
        *parents, leaf = name.split("/")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = np.asarray(value)
    return tree
