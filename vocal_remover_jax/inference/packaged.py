"""The model that ships inside the package: what `separate`, `evaluate` and `describe` use when
no --model is given. It is package data (vocal_remover_jax/pretrained/), so nothing is downloaded."""

from __future__ import annotations

import os

PACKAGED_MODEL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "pretrained", "starter.safetensors")

NO_MODEL = """\
no model: pass --model MODEL.safetensors.

This install has no packaged model ({path} is missing). To make one:
  1. train on real songs (mixture + instrumental pairs):  vocal-remover-jax train --config configs/... --workdir DIR
  2. export the checkpoint:                                vocal-remover-jax export --workdir DIR --out model.safetensors
  or convert a reference PyTorch checkpoint:               vocal-remover-jax import-torch model.pth --config configs/model.py:seed --out model.safetensors
`vocal-remover-jax quickstart` trains a demo model on generated audio: it shows the pipeline works,
but it has never heard a real voice and is of no use on real songs."""


def resolve_model(path: str | None) -> str | None:
    """`path` when given, else the packaged model when this install has one, else None
    (then `no_model_message()` says what to do)."""
    if path:
        return path
    return PACKAGED_MODEL if os.path.isfile(PACKAGED_MODEL) else None


def no_model_message() -> str:
    return NO_MODEL.format(path=PACKAGED_MODEL)
