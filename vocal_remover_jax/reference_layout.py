"""The reference PyTorch layout: state_dict keys and weight layouts of kingoomieiii/frame-transformer
(commit 82256e7), mapped onto this package's channels-last Flax parameters.

The mapping runs from our parameter tree to the reference keys, so every parameter we need is
named, any reference key we do not use is an error, and the only keys skipped are the ones the
reference itself never reads: FrameConv.weight (a per-tap vector beside FrameConv.conv.weight)
and MultibandFrameAttention's k_conv/v_conv weights (k and v go through q_conv).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from vocal_remover_jax import models

KINDS = ("attention", "encoder", "decoder", "unet", "plain", "conv_discriminator", "transformer_discriminator")

_INNER = {
    "conv1_left": "conv1L", "conv1_right": "conv1R",
    "conv1_left_depthwise": "conv1L.0", "conv1_left_pointwise": "conv1L.1",
    "conv1_right_depthwise": "conv1R.0", "conv1_right_pointwise": "conv1R.1",
    "conv2_grouped": "conv2.0", "conv2_depthwise": "conv2.0", "conv2_pointwise": "conv2.1",
    "glu": "glu.0", "is_next": "is_next.0",
}
_CONV_DISC_BODY = {"conv1": "body.0", "norm1": "body.1", "conv2": "body.3", "norm2": "body.4"}


# The reference FrameTransformerUnet's constructor arguments with its defaults; our model config
# and our FrameTransformerUnet use the same names.
UNET_ARGUMENTS = dict(in_channels=2, channels=2, depth=6, num_transformer_blocks=2, num_bands=8,
                      feedforward_dim=2048, n_fft=2048, cropsize=1024, dropout=0.1, bias=True)


class ReferenceImportError(ValueError):
    pass


def unet_arguments(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The reference FrameTransformerUnet constructor arguments for our unet model config."""
    return {k: model_cfg[k] for k in UNET_ARGUMENTS}


def module_from_reference(kind: str, kwargs: Mapping[str, Any], dtype=jnp.float32) -> nn.Module:
    """Our module equivalent to the reference class `kind` built with constructor `kwargs`,
    faithful to the reference (k/v through q_conv; eval-mode so no dropout)."""
    kw = dict(kwargs)
    faithful = dict(reference_kv_conv=True, dtype=dtype, param_dtype=dtype)
    if kind == "attention":
        return models.MultibandFrameAttention(kw["num_bands"], kw["cropsize"], **faithful)
    if kind in ("encoder", "decoder"):
        cls = models.FrameTransformerEncoder if kind == "encoder" else models.FrameTransformerDecoder
        return cls(kw.get("num_bands", 4), kw.get("cropsize", 1024), kw.get("feedforward_dim", 2048),
                   bias=kw.get("bias", False), dropout=kw.get("dropout", 0.1), **faithful)
    if kind == "unet":
        return models.FrameTransformerUnet(**{k: kw.get(k, d) for k, d in UNET_ARGUMENTS.items()}, **faithful)
    if kind == "plain":
        return models.FrameTransformer(
            in_channels=kw.get("channels", 2), num_encoders=kw.get("num_encoders", 1), num_bands=kw.get("num_bands", 4),
            feedforward_dim=kw.get("feedforward_dim", 512), n_fft=kw.get("n_fft", 2048),
            cropsize=kw.get("cropsize", 1024), dropout=kw.get("dropout", 0.1), bias=kw.get("bias", False), **faithful)
    if kind == "conv_discriminator":
        return models.ConvDiscriminator(in_channels=kw.get("in_channels", 4), channels=kw.get("channels", 4),
                                        depth=kw.get("depth", 6), n_fft=kw.get("n_fft", 2048), dtype=dtype,
                                        param_dtype=dtype)
    if kind == "transformer_discriminator":
        return models.FrameTransformerDiscriminator(
            in_channels=kw.get("in_channels", 4), channels=kw.get("channels", 4), depth=kw.get("depth", 6),
            num_transformer_blocks=kw.get("num_transformer_blocks", 2), num_bands=kw.get("num_bands", 8),
            feedforward_dim=kw.get("feedforward_dim", 2048), n_fft=kw.get("n_fft", 2048),
            cropsize=kw.get("cropsize", 1024), dropout=kw.get("dropout", 0.1), bias=kw.get("bias", True), **faithful)
    raise ReferenceImportError(f"unknown reference module kind {kind!r}; expected one of {', '.join(KINDS)}")


def reference_key(path: tuple[str, ...], kind: str, depth: int = 0, kernel_ndim: int = 2) -> str:
    """The reference state_dict key holding our parameter at `path`."""
    parts: list[str] = []
    names = list(path)
    leaf = names.pop()
    for i, name in enumerate(names):
        if m := re.fullmatch(r"(transformer_encoder|transformer_decoder|encoder|decoder)_(\d+)(?:_(\d+))?", name) \
                if i == 0 else None:
            block, level, j = m.group(1), int(m.group(2)), m.group(3)
            if block in ("decoder", "transformer_decoder"):
                level = depth - 1 - level  # the reference stores its decoders deepest first
            parts.append(f"{block}.{level}" + (f".{j}" if j is not None else ""))
        elif i == 0 and name == "out" and kind == "unet":
            parts.append(f"decoder.{depth - 1}")
        elif kind == "conv_discriminator" and name in _CONV_DISC_BODY:
            parts.append(_CONV_DISC_BODY[name])
        elif name == "norm" and leaf in ("scale", "bias"):  # FrameNorm wraps an InstanceNorm2d
            parts.append("norm.norm")
        else:
            parts.append(_INNER.get(name, name))
    if leaf == "kernel" and kernel_ndim == 3:  # FrameConv's nn.Conv2d
        parts.append("conv")
    parts.append({"kernel": "weight", "scale": "weight"}.get(leaf, leaf))
    return ".".join(parts)


def is_reference_unused(key: str, state_dict: Mapping[str, Any]) -> bool:
    if re.search(r"(^|\.)(k_conv|v_conv)\.weight$", key):
        return True
    return key.endswith(".weight") and (key[: -len("weight")] + "conv.weight") in state_dict


def to_flax(value: np.ndarray, target_shape: tuple[int, ...], leaf: str) -> np.ndarray:
    """Converts one reference tensor to our layout (shape checked by the caller)."""
    w = np.asarray(value)
    if leaf != "kernel":
        return w
    if w.ndim == 2 and len(target_shape) == 2:  # nn.Linear (out, in)
        return w.T
    if w.ndim == 3 and len(target_shape) == 2:  # pointwise nn.Conv1d (out, in, 1)
        return w[..., 0].T
    if w.ndim == 3 and len(target_shape) == 4:  # grouped nn.Conv1d (out, in/G, taps)
        taps, groups, cin, cout = target_shape
        return w.reshape(groups, cout, cin, taps).transpose(3, 0, 2, 1) if w.size == np.prod(target_shape) else w
    if w.ndim == 4 and len(target_shape) == 3:  # FrameConv (out, in, taps, 1)
        return w[..., 0].transpose(2, 1, 0)
    if w.ndim == 4 and len(target_shape) == 4:  # nn.Conv2d (out, in, bins, frames) -> (frames, bins, in, out)
        return w.transpose(3, 2, 1, 0)
    return w


def convert_state_dict(state_dict: Mapping[str, Any], kind: str, abstract_params: Mapping[str, Any],
                       depth: int = 0, dtype=np.float32) -> dict:
    """Reference `state_dict` (name -> array) into our `params` tree shaped like `abstract_params`."""
    flat_targets = traverse_util.flatten_dict(nn.unbox(abstract_params))
    used: set[str] = set()
    out = {}
    for path, target in flat_targets.items():
        key = reference_key(path, kind, depth, kernel_ndim=len(target.shape))
        if key not in state_dict:
            raise ReferenceImportError(f"missing key {key!r} (for parameter {'/'.join(path)}, shape {target.shape})")
        value = to_flax(np.asarray(state_dict[key]), tuple(target.shape), path[-1])
        if tuple(value.shape) != tuple(target.shape):
            raise ReferenceImportError(
                f"key {key!r} has shape {tuple(np.shape(state_dict[key]))}, which does not fit parameter "
                f"{'/'.join(path)} of shape {tuple(target.shape)}: is the config the one the checkpoint was trained with?")
        out[path] = value.astype(dtype)
        used.add(key)
    unknown = sorted(k for k in state_dict if k not in used and not is_reference_unused(k, state_dict))
    if unknown:
        raise ReferenceImportError(f"unexpected key {unknown[0]!r}" + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
                                   + ": the checkpoint does not match the config's architecture")
    return traverse_util.unflatten_dict(out)

