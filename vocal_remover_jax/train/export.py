"""`export`: a training checkpoint -> one portable model file (inference parameters only).

    vocal-remover-jax export --workdir runs/finetune --out model.safetensors [--step 120000]

Only the generator's 'params' leave the checkpoint: no optimizer state, no discriminator.
"""

from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, help="training workdir holding the checkpoints")
    parser.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    parser.add_argument("--best", action="store_true",
                        help="the checkpoint with the best validation score (WORKDIR/best: config.checkpoint.best_metric)")
    parser.add_argument("--out", required=True, help="model file to write (.safetensors)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def main(args: argparse.Namespace) -> int:
    import jax
    import ml_collections
    import numpy as np

    from vocal_remover_jax.inference.model_file import ModelFileError, load_model_file, save_model_file

    if os.path.exists(args.out) and not args.overwrite:
        print(f"export: {args.out} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    if not os.path.isdir(args.workdir):
        print(f"export: {args.workdir}: no such training workdir", file=sys.stderr)
        return 2
    from vocal_remover_jax.train.checkpoint import best_step, restore_params

    if args.best and args.step is not None:
        print("export: --best and --step exclude each other", file=sys.stderr)
        return 2
    try:
        params, config = restore_params(args.workdir, step=args.step, best=args.best)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"export: {args.workdir}: cannot restore a checkpoint ({e})", file=sys.stderr)
        return 2
    params = jax.tree.map(np.asarray, params)
    source = (f" step {best_step(args.workdir)} (the best validation score)" if args.best
              else f" step {args.step}" if args.step is not None else " (latest step)")
    config = ml_collections.ConfigDict({"model": config.model.to_dict(), "audio": config.audio.to_dict()})
    config.model.remat = False  # a training-memory trade, useless for inference
    try:
        save_model_file(args.out, params, config)
        load_model_file(args.out)  # a file that does not load must not look exported
    except ModelFileError as e:
        if os.path.exists(args.out):
            os.remove(args.out)
        print(f"export: {e}", file=sys.stderr)
        return 2
    count = sum(int(np.size(p)) for p in jax.tree.leaves(params))
    print(f"wrote {args.out}: {count:,} parameters, {config.model.arch} model, "
          f"{config.audio.sample_rate} Hz, n_fft {config.audio.n_fft}, from {args.workdir}{source}")
    return 0
