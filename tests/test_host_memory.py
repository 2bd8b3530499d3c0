import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vocal_remover_jax.host_memory import compiled_on_first_call, release_freed_memory


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
