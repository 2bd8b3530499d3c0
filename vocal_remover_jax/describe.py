"""`describe`: parameter counts (per block) and forward FLOPs of a config's or a model file's model;
for a model file also its sha256 and its card (training data and attributions, steps, held-out SDR).

    vocal-remover-jax describe --config configs/model.py:seed [--flops]
    vocal-remover-jax describe --model model.safetensors
    vocal-remover-jax describe                # the model packaged with vocal-remover-jax
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping

import jax
import ml_collections

from vocal_remover_jax.config import load_config
from vocal_remover_jax.models import build_model
from vocal_remover_jax.models.layers import traced_for_platform
from vocal_remover_jax.models.shapes import abstract_params, input_spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", help="config file, e.g. configs/model.py:seed (overrides: --config.model.depth=5)")
    source.add_argument("-m", "--model", help="model file (.safetensors); with neither option, the packaged model")
    parser.add_argument("--flops", action="store_true", help="also compile the forward pass and report its FLOPs")
    parser.add_argument("--batch-size", type=int, default=1, help="batch size for --flops (default 1)")


def parameter_counts(model_cfg: ml_collections.ConfigDict) -> dict[str, int]:
    """Parameters per top-level block, without allocating them."""
    params = abstract_params(build_model(model_cfg), input_spec(model_cfg))
    return {name: sum(leaf.size for leaf in jax.tree.leaves(sub)) for name, sub in params.items()}


def forward_flops(model_cfg: ml_collections.ConfigDict, batch_size: int = 1) -> float:
    """FLOPs of one jitted forward pass, from XLA's cost analysis of the compiled program."""
    model = build_model(model_cfg)
    x = input_spec(model_cfg, batch_size)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    apply = traced_for_platform(lambda v, x: model.apply(v, x), jax.default_backend())
    compiled = jax.jit(apply).lower(variables, x).compile()
    return float(cost_of(compiled).get("flops", 0.0))


def cost_of(compiled) -> Mapping[str, float]:
    cost = compiled.cost_analysis()
    return (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}


def main(args: argparse.Namespace) -> int:
    card = None
    if args.config_overrides and not args.config:
        print("describe: --config.* overrides need --config (a model file's config is fixed)", file=sys.stderr)
        return 2
    if args.config:
        config = load_config(args.config, args.config_overrides)
        counts = parameter_counts(config.model)
    else:
        from vocal_remover_jax.inference.model_file import ModelFileError, file_sha256, load_model_file, read_header
        from vocal_remover_jax.inference.packaged import no_model_message, resolve_model

        path = resolve_model(args.model)
        if path is None:
            print(f"describe: {no_model_message()}", file=sys.stderr)
            return 2
        try:
            load_model_file(path)  # checksum (card included) and shapes, before anything is shown
            header = read_header(path)
        except ModelFileError as e:
            print(f"describe: {e}", file=sys.stderr)
            return 2
        config, card = ml_collections.ConfigDict(header["config"]), header["card"]
        counts = _file_counts(header["params"])
        print(f"model file: {path}")
        print(f"sha256: {file_sha256(path)}")
    width = max(map(len, counts))
    print(f"model: {config.model.arch}, n_fft {config.model.n_fft}, {config.model.cropsize} frames, "
          f"reference_kv_conv={config.model.get('reference_kv_conv')}")
    for name in sorted(counts, key=_block_order):
        print(f"  {name:<{width}}  {counts[name]:>13,}")
    print(f"  {'total':<{width}}  {sum(counts.values()):>13,}")
    if args.flops:
        flops = forward_flops(config.model, args.batch_size)
        print(f"forward FLOPs (batch {args.batch_size}): {flops / 1e9:,.1f} GFLOP")
    if not args.config:
        from vocal_remover_jax.inference.model_card import format_card

        print(format_card(card) if card else "no model card in this file")
    return 0


def _file_counts(params: Mapping[str, Mapping]) -> dict[str, int]:
    """Parameters per top-level block, from a model file's header (names are '/'-joined paths)."""
    counts: dict[str, int] = {}
    for name, info in params.items():
        block = name.split("/")[0]
        counts[block] = counts.get(block, 0) + math.prod(info["shape"])
    return counts


def _block_order(name: str):
    parts = name.split("_")
    digits = [int(p) for p in parts if p.isdigit()]
    return ("_".join(p for p in parts if not p.isdigit()), digits)
