"""Paths the tests read, from this file's location, so the suite runs from any working directory."""

import importlib.util
import os
import pathlib
import types

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
PARITY_FIXTURE = pathlib.Path(os.environ.get("SEED_PARITY_FIXTURE",
                                             pathlib.Path(__file__).resolve().parent / "fixtures" / "seed_parity.npz"))


def config(name: str) -> str:
    """`config("model.py:tiny")` -> the absolute config spec `load_config` takes."""
    return str(CONFIGS / name)


def benchmark(name: str) -> types.ModuleType:
    """`benchmark("starter_model")` -> benchmarks/starter_model.py loaded as a module (benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
