"""Loading `ml_collections` config files (big_vision's `path.py:arg` convention)."""

from __future__ import annotations

import ast
import importlib.util
import os
from collections.abc import Sequence

import ml_collections


class ConfigError(ValueError):
    pass


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Loads `path/to/file.py[:arg]` by calling its `get_config(arg)`, then applies overrides.

    Overrides are `config.a.b=value` (or `a.b=value`); values are Python literals where they
    parse as one, strings otherwise, and must keep the field's type.
    """
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    module_name = "_vrj_config_" + os.path.splitext(os.path.basename(path))[0]
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path!r} defines no get_config()")
    config = module.get_config(arg) if arg else module.get_config()
    return apply_overrides(config, overrides)


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(config)  # copy: the preset stays untouched
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not of the form config.key=value")
        key = key.removeprefix("config.")
        parent, _, leaf = key.rpartition(".")
        node = config
        for part in filter(None, parent.split(".")):
            if part not in node:
                raise ConfigError(f"override {item!r}: config has no field {part!r}")
            node = node[part]
        if leaf not in node:
            raise ConfigError(f"override {item!r}: config has no field {key!r}")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        old = node[leaf]
        if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(old, str) and not isinstance(value, str):
            value = raw
        try:
            node[leaf] = value
        except TypeError as e:
            raise ConfigError(f"override {item!r}: {e}") from None
    return config
