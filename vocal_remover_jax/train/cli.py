"""`vocal-remover-jax train --config configs/pretrain.py:tiny --workdir DIR [--config.a.b=v ...]`."""

from __future__ import annotations

import argparse
import logging
import sys

from vocal_remover_jax.config import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True,
                        help="configs/pretrain.py|pretrain_gan.py|finetune.py[:seed|small|tiny]")
    parser.add_argument("--workdir", required=True, help="checkpoints, config.json, metrics; reruns resume here")


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config = load_config(args.config, getattr(args, "config_overrides", ()))
    from vocal_remover_jax.train.trainer import NonFiniteLossError, train_and_evaluate

    try:
        train_and_evaluate(config, args.workdir)
    except NonFiniteLossError as e:
        print(f"train: {e}", file=sys.stderr)
        return 3
    return 0
