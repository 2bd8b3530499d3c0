"""Session-wide test setup.

One persistent XLA compilation cache for the whole run, subprocesses included: every test
that builds the tiny model would otherwise recompile the same initialiser (tens of seconds on
CPU, one threefry kernel per parameter).
"""

import os
import tempfile

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "vocal-remover-jax-test-xla-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # tests run on CPU even where a GPU exists

import jax  # noqa: E402  (after the environment above)

from vocal_remover_jax.compilation_cache import enable_compilation_cache  # noqa: E402

enable_compilation_cache()
jax.config.update("jax_platforms", "cpu")

import pytest  # noqa: E402

from tests import once_per_run  # noqa: E402
from tests.paths import config  # noqa: E402

TINY_MODEL_SEED = 0


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """One model file of the tiny preset with random parameters, shared by every inference test:
    `(path, params, config)`."""
    from vocal_remover_jax.config import load_config
    from vocal_remover_jax.inference.model_file import save_model_file
    from vocal_remover_jax.inference.random_params import random_params

    cfg = load_config(config("model.py:tiny"))
    params = random_params(cfg.model, seed=TINY_MODEL_SEED)
    path = str(tmp_path_factory.mktemp("tiny_model") / "tiny.safetensors")
    save_model_file(path, params, cfg)
    return path, params, cfg


@pytest.fixture(scope="session")
def prepared_records(tmp_path_factory):
    """Records made by `prepare` from generated songs (22050 Hz, n_fft 64, hop 32, 64-frame clips:
    the trainer tests' STFT), with a validation split: the records folder."""
    from vocal_remover_jax.data.prepare import prepare_records
    from vocal_remover_jax.data.synthetic import write_synthetic_dataset

    def make(root):
        dirs = write_synthetic_dataset(str(root / "audio"), n_tracks=4, seconds=3.0, sample_rate=22050, seed=0)
        prepare_records(str(root / "records"), instrumental=[dirs["instrumental"]], vocals=[dirs["vocals"]],
                        sample_rate=22050, n_fft=64, hop_length=32, clip_frames=64, tracks_per_shard=2,
                        validation_fraction=0.25, progress=False)

    return str(once_per_run.folder(tmp_path_factory, "records", make) / "records")
