"""`vocal-remover-jax` entry point.

Each subcommand lives in its own module exposing `add_arguments(parser)` and
`main(args) -> int`. Modules are imported only when their subcommand runs, so
`separate` never pays for TensorFlow or the trainer.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("vocal_remover_jax.quickstart", "generate audio, train tiny models, separate and evaluate, end to end"),
    "prepare": ("vocal_remover_jax.data.prepare", "turn folders of audio into sharded spectrogram records"),
    "train": ("vocal_remover_jax.train.cli", "pretrain (BERT-style or GAN) or finetune from a config"),
    "export": ("vocal_remover_jax.train.export", "write a trained checkpoint as one portable model file"),
    "separate": ("vocal_remover_jax.inference.separate_cli", "split songs into instrumental and vocals"),
    "evaluate": ("vocal_remover_jax.inference.evaluate", "SDR of a model on a MUSDB18-HQ style tree"),
    "import-torch": ("vocal_remover_jax.torch_import", "convert a reference PyTorch state_dict into a model file"),
    "plan": ("vocal_remover_jax.train.plan", "compile a training config for a TPU slice (or GPUs) on any machine: fits? FLOPs, est. speed"),
    "describe": ("vocal_remover_jax.describe", "parameter counts and FLOPs of a config or a model file; a model file's card"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: vocal-remover-jax COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `vocal-remover-jax COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        from vocal_remover_jax import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"vocal-remover-jax: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    _quiet_libraries()
    from vocal_remover_jax.compilation_cache import enable_compilation_cache

    enable_compilation_cache()
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"vocal-remover-jax {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args, unknown = parser.parse_known_args(rest)
    args.config_overrides, stray = split_config_overrides(unknown)
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if args.config_overrides and not hasattr(args, "config"):
        parser.error(f"--{args.config_overrides[0]}: `{name}` takes no config, so no --config.* overrides")
    return int(module.main(args) or 0)


def _quiet_libraries() -> None:
    """Orbax's per-save INFO lines and TensorFlow's start-up banner drown the progress output."""
    import logging
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("absl").setLevel(logging.WARNING)


def split_config_overrides(tokens: list[str]) -> tuple[list[str], list[str]]:
    """Separates `--config.a.b=v` / `--config.a.b v` overrides from other tokens."""
    overrides, stray = [], []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("--config."):
            if "=" in tok:
                overrides.append(tok[len("--"):])
            elif i + 1 < len(tokens):
                overrides.append(f"{tok[len('--'):]}={tokens[i + 1]}")
                i += 1
            else:
                stray.append(tok)
        else:
            stray.append(tok)
        i += 1
    return overrides, stray


if __name__ == "__main__":
    sys.exit(main())
