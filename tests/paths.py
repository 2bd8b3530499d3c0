"""Paths the tests read, from this file's location, so the suite runs from any working directory."""

import os
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
PARITY_FIXTURE = pathlib.Path(os.environ.get("SEED_PARITY_FIXTURE",
                                             pathlib.Path(__file__).resolve().parent / "fixtures" / "seed_parity.npz"))


def config(name: str) -> str:
    """`config("model.py:tiny")` -> the absolute config spec `load_config` takes."""
    return str(CONFIGS / name)
