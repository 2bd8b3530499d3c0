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
