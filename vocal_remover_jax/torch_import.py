"""`import-torch`: a reference PyTorch checkpoint (state_dict) -> this project's model file.

Needs the optional `torch` extra, only to unpickle the checkpoint.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

import numpy as np
import ml_collections

from vocal_remover_jax.config import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="reference checkpoint (.pth) holding a FrameTransformerUnet or FrameTransformer state_dict")
    parser.add_argument("--config", required=True,
                        help="config describing the checkpoint's architecture, e.g. configs/model.py:seed "
                             "(override sizes with --config.model.depth=6 etc.)")
    parser.add_argument("--out", required=True, help="model file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def load_torch_state_dict(path: str) -> dict[str, np.ndarray]:
    """Reads a reference checkpoint into name -> float32 array (also unwraps {'state_dict': ...}
    and DataParallel's `module.` prefix)."""
    try:
        import torch
    except ImportError:
        raise SystemExit("import-torch needs PyTorch: pip install 'vocal-remover-jax[torch]' (or pip install torch)") from None
    if not os.path.isfile(path):
        raise SystemExit(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad pickle
        raise SystemExit(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not obj:
        raise SystemExit(f"{path}: expected a state_dict (a mapping of parameter names to tensors)")
    return {k.removeprefix("module."): v.detach().float().numpy() for k, v in obj.items()}


def import_state_dict(state_dict: Mapping[str, np.ndarray], config: ml_collections.ConfigDict) -> tuple[dict, ml_collections.ConfigDict]:
    """Converts a reference state_dict for `config.model`; returns (params, config) with the
    config switched to the reference's behaviour (k and v through q_conv)."""
    from vocal_remover_jax.models import build_model
    from vocal_remover_jax.models.shapes import abstract_params, input_spec
    from vocal_remover_jax.reference_layout import convert_state_dict

    config = ml_collections.ConfigDict(config.to_dict())
    config.model.reference_kv_conv = True
    model = build_model(config.model)
    abstract = abstract_params(model, input_spec(config.model))
    params = convert_state_dict(state_dict, config.model.arch, abstract, depth=config.model.get("depth", 0))
    return params, config


def main(args: argparse.Namespace) -> int:
    from vocal_remover_jax.inference.model_file import save_model_file
    from vocal_remover_jax.reference_layout import ReferenceImportError

    if os.path.exists(args.out) and not args.overwrite:
        raise SystemExit(f"{args.out} exists; pass --overwrite to replace it")
    if os.path.abspath(args.out) == os.path.abspath(args.checkpoint):
        raise SystemExit("--out must not be the input checkpoint")
    config = load_config(args.config, args.config_overrides)
    state_dict = load_torch_state_dict(args.checkpoint)
    try:
        params, config = import_state_dict(state_dict, config)
    except ReferenceImportError as e:
        raise SystemExit(f"{args.checkpoint}: {e}") from None
    save_model_file(args.out, params, config)
    n = sum(int(np.size(p)) for p in _leaves(params))
    print(f"wrote {args.out}: {n:,} parameters ({config.model.arch}, reference_kv_conv=True)")
    return 0


def _leaves(tree):
    import jax

    return jax.tree.leaves(tree)
