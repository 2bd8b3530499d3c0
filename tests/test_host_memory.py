import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vocal_remover_jax.host_memory import (compiled_on_first_call, peak_rss_bytes, release_freed_memory,
                                           reset_peak_rss, rss_bytes)


def test_compiled_on_first_call_runs_the_jitted_function_compiled_once():
    traced = []

    def f(x, y):
        traced.append(x.shape)
        return x * 2 + y

    call = compiled_on_first_call(jax.jit(f))
    x = jnp.arange(4.0)
    np.testing.assert_allclose(call(x, 1.0), np.arange(4.0) * 2 + 1)
    np.testing.assert_allclose(call(x + 1, 2.0), (np.arange(4.0) + 1) * 2 + 2)
    assert traced == [(4,)]
    with pytest.raises(TypeError):  # the compiled program takes only the first call's shapes
        call(jnp.arange(5.0), 1.0)
    release_freed_memory()  # callable again, and harmless


def test_a_peak_rss_window_sees_its_own_peak_not_an_earlier_one():
    big = np.ones(50 * 2**20 // 8)  # 50 MiB, touched
    del big
    before = peak_rss_bytes()
    if not reset_peak_rss():
        pytest.skip("no /proc/self/clear_refs: the peak is the process's")
    assert rss_bytes() <= peak_rss_bytes() < before
    small = np.ones(20 * 2**20 // 8)
    assert peak_rss_bytes() >= rss_bytes() >= small.nbytes


def test_freed_memory_goes_back_under_a_preloaded_tcmalloc_too():
    import subprocess
    import sys

    from vocal_remover_jax.host_memory import allocator, rerun_with_tcmalloc, tcmalloc_library

    assert allocator() in ("glibc", "tcmalloc", "jemalloc", "system")
    rerun_with_tcmalloc("plan")  # a process not started as `vocal-remover-jax plan` is never replaced
    lib = tcmalloc_library()
    if lib is None:
        pytest.skip("no tcmalloc on this machine (Debian: libtcmalloc-minimal4)")
    code = ("import numpy as np\nfrom vocal_remover_jax import host_memory as h\n"
            "a = np.ones(50 * 2**20 // 8); a += 1; del a\nheld = h.rss_bytes()\nh.release_freed_memory()\n"
            "print(h.allocator(), held - h.rss_bytes())")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "LD_PRELOAD": lib},
                          capture_output=True, text=True, check=True)
    name, released = done.stdout.split()
    assert name == "tcmalloc" and int(released) > 40 * 2**20


def test_malloc_arenas_are_limited_on_glibc_only():
    """glibc takes the limit (mallopt succeeds), an explicit MALLOC_ARENA_MAX wins, and a preloaded
    tcmalloc is left alone."""
    import subprocess
    import sys

    from vocal_remover_jax.host_memory import allocator, tcmalloc_library

    if allocator() != "glibc":
        pytest.skip("this process is not on glibc's malloc")
    code = "from vocal_remover_jax import host_memory as h\nprint(h.limit_malloc_arenas(2))"
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "LD_PRELOAD")}
    run = lambda **extra: subprocess.run([sys.executable, "-c", code], env={**env, **extra},  # noqa: E731
                                         capture_output=True, text=True, check=True).stdout.strip()
    assert run() == "2"
    assert run(MALLOC_ARENA_MAX="3") == "3"
    if tcmalloc_library():
        assert run(LD_PRELOAD=tcmalloc_library()) == "None"
