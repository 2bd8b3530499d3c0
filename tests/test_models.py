"""Behaviour of the Flax modules beyond reference parity: shapes, options, dtypes, errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

from tests.cpu_jit import cpu_jit
from tests.paths import config
from vocal_remover_jax.config import load_config
from vocal_remover_jax.describe import parameter_counts
from vocal_remover_jax.inference.random_params import random_params
from vocal_remover_jax.models import build_discriminator, build_model
from vocal_remover_jax.models.shapes import input_spec

REFERENCE_SEED_PARAMETERS = 191_124_797  # FrameTransformerUnet(train-pre.py defaults), unused ones included


def tiny(*overrides):
    return load_config(config("model.py:tiny"), overrides)


@pytest.fixture(scope="module")
def tiny_model():
    """Parameters from numpy (`random_params`): compiling `model.init` would cost more than these
    tests; what init itself gives (shapes, dtypes, logical axes) is checked through `jax.eval_shape`."""
    cfg = tiny()
    model = build_model(cfg.model)
    x = jax.random.uniform(jax.random.key(1), input_spec(cfg.model, 2).shape)
    return cfg, model, {"params": random_params(cfg.model)}, x


def _abstract_init(cfg):
    return jax.eval_shape(build_model(cfg.model).init, jax.random.key(0), input_spec(cfg.model))


def test_unet_shapes_and_ranges(tiny_model):
    cfg, model, variables, x = tiny_model
    mask, is_next = cpu_jit(model.apply)(variables, x)
    assert mask.shape == x.shape
    assert float(mask.min()) >= 0 and float(mask.max()) <= 1
    assert is_next.shape == (2, 2)
    # The Nyquist bin replicates the last computed bin.
    np.testing.assert_array_equal(mask[:, :, -1], mask[:, :, -2])


def test_dropout_follows_deterministic_flag(tiny_model):
    _, model, variables, x = tiny_model
    apply = cpu_jit(lambda v, x, deterministic, key: model.apply(v, x, deterministic=deterministic,
                                                                 rngs={"dropout": key}), static_argnums=2)
    a, _ = apply(variables, x, True, jax.random.key(0))
    b, _ = apply(variables, x, True, jax.random.key(0))
    c, _ = apply(variables, x, False, jax.random.key(3))
    np.testing.assert_array_equal(a, b)
    assert float(jnp.abs(a - c).max()) > 1e-4


def test_kv_conv_option_changes_parameters():
    cfg = tiny()
    ours = traverse_util.flatten_dict(nn.unbox(_abstract_init(cfg))["params"])
    faithful = traverse_util.flatten_dict(nn.unbox(_abstract_init(tiny("model.reference_kv_conv=True")))["params"])
    assert any("k_conv" in p for p in ours) and any("v_conv" in p for p in ours)
    assert not any("k_conv" in p or "v_conv" in p for p in faithful)


def test_seed_parameter_count_matches_reference():
    """Ours equals the reference's 191,124,797 less the parameters the reference never reads."""
    cfg = load_config(config("model.py:seed"), ["model.reference_kv_conv=True"])
    counts = parameter_counts(cfg.model)
    ours = sum(counts.values())
    flat = traverse_util.flatten_dict(nn.unbox(_abstract_init(cfg))["params"])
    frame_conv_taps = sum(v.shape[0] for p, v in flat.items() if p[-1] == "kernel" and len(v.shape) == 3)
    kv_convs = sum(2 * v.size for p, v in flat.items() if p[-2] == "q_conv")
    assert ours + frame_conv_taps + kv_convs == REFERENCE_SEED_PARAMETERS


def test_wrong_input_shape_is_a_clear_error(tiny_model):
    cfg, model, variables, _ = tiny_model
    with pytest.raises(ValueError, match="expected input"):
        model.apply(variables, jnp.zeros((1, cfg.model.cropsize, 100, 2)))
    with pytest.raises(ValueError, match="expected input"):
        model.apply(variables, jnp.zeros((1, cfg.model.cropsize + 1, cfg.model.n_fft // 2 + 1, 2)))


def test_bfloat16_compute_keeps_float32_parameters(tiny_model):
    cfg, _, variables, x = tiny_model
    cfg16 = tiny("model.dtype='bfloat16'")
    model16 = build_model(cfg16.model)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nn.unbox(_abstract_init(cfg16))))
    m32, _ = cpu_jit(build_model(cfg.model).apply)(variables, x)
    m16, _ = cpu_jit(model16.apply)(variables, x)
    assert m16.dtype == jnp.float32  # masks leave in float32
    assert float(jnp.abs(m32 - m16).max()) < 0.1


def test_remat_gives_same_gradients():
    cfg = tiny("model.depth=1")  # one level keeps the two gradient compiles short
    x = jax.random.uniform(jax.random.key(1), input_spec(cfg.model, 1).shape)
    model, remat_model = build_model(cfg.model), build_model(tiny("model.depth=1", "model.remat=True").model)
    variables = {"params": random_params(cfg.model)}

    def grads(m):
        return cpu_jit(jax.grad(lambda v: jnp.mean(m.apply(v, x)[0])))(variables)

    for a, b in zip(jax.tree.leaves(grads(model)), jax.tree.leaves(grads(remat_model))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_parameters_carry_logical_axes():
    specs = traverse_util.flatten_dict(nn.get_partition_spec(_abstract_init(tiny()))["params"])
    names = {axis for spec in specs.values() for axis in spec if axis}
    assert {"embed", "mlp", "taps", "conv_in", "conv_out", "frames"} <= names


def test_plain_arch_and_discriminators():
    """Output shapes only: traced, never compiled."""
    cfg = tiny("model.arch='plain'")
    model = build_model(cfg.model)
    x = jax.ShapeDtypeStruct(input_spec(cfg.model, 1).shape, jnp.float32)
    mask, is_next = jax.eval_shape(lambda x: model.apply(model.init(jax.random.key(0), x), x), x)
    assert mask.shape == x.shape and is_next.shape == (1, 2)
    base = dict(in_channels=4, channels=4, depth=3, n_fft=cfg.model.n_fft, cropsize=cfg.model.cropsize,
                num_transformer_blocks=1, num_bands=4, feedforward_dim=64, dropout=0.0, bias=True)
    bins = (cfg.model.n_fft // 2) // 4
    for arch, frames in (("conv", cfg.model.cropsize // 4), ("transformer", cfg.model.cropsize)):
        disc = build_discriminator(ml_collections.ConfigDict(dict(base, arch=arch)))
        out = jax.eval_shape(lambda x: disc.apply(disc.init(jax.random.key(0), x, x), x, x), x)
        assert out.shape == (1, frames, bins, 1)


@pytest.mark.parametrize("taps,groups,cin,cout,pad", [(9, 4, 2, 2, 4), (3, 6, 1, 1, 1), (7, 3, 2, 3, 3), (4, 2, 2, 2, 1)])
def test_grouped_temporal_conv_gradient(taps, groups, cin, cout, pad):
    """The hand-written VJP against finite differences, in float64."""
    from jax.test_util import check_grads

    from vocal_remover_jax.models.layers import grouped_temporal_conv

    with jax.enable_x64(True):
        rng = np.random.RandomState(taps)
        x = jnp.asarray(rng.randn(2, 11, groups * cin))
        w = jnp.asarray(rng.randn(taps, groups, cin, cout))
        check_grads(lambda x, w: grouped_temporal_conv(x, w, pad), (x, w), order=1, modes=["rev"])


@pytest.mark.parametrize("taps,groups,cin,cout", [(9, 4, 2, 2), (7, 6, 1, 1), (5, 4, 3, 3), (7, 3, 2, 3), (3, 1, 6, 3)])
def test_temporal_conv_formulations_agree(taps, groups, cin, cout):
    """CPU's shifted products, the accelerators' formulation and one lax.conv: same values and
    gradients."""
    from vocal_remover_jax.models.layers import accelerator_temporal_conv, shifted_temporal_conv, xla_temporal_conv

    rng = np.random.RandomState(taps)
    x = jnp.asarray(rng.randn(2, 13, groups * cin), jnp.float32)
    w = jnp.asarray(rng.randn(taps, groups, cin, cout), jnp.float32)
    pad = (taps - 1) // 2
    loss = lambda conv: lambda x, w: jnp.sum(jnp.sin(conv(x, w, pad)))  # noqa: E731
    for conv in (shifted_temporal_conv, accelerator_temporal_conv):
        np.testing.assert_allclose(conv(x, w, pad), xla_temporal_conv(x, w, pad), rtol=1e-5, atol=1e-5)
        for a, b in zip(jax.grad(loss(conv), (0, 1))(x, w), jax.grad(loss(xla_temporal_conv), (0, 1))(x, w)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_temporal_conv_lowers_per_platform():
    """Only the lowering platform's formulation reaches its compiler: no convolution on CPU, none
    on TPU for grouped ones (shifted products there too), one for a single group."""
    from vocal_remover_jax.models.layers import TemporalConv

    x = jnp.ones((1, 16, 8))
    for groups, tpu_convolutions in ((8, 0), (1, 1)):
        conv = TemporalConv(8, 7, groups=groups)
        params = conv.init(jax.random.key(0), x)
        text = jax.jit(lambda p, x: conv.apply(p, x)).lower(params, x).as_text()
        assert "stablehlo.convolution" not in text
        tpu = jax.jit(lambda p, x: conv.apply(p, x)).trace(params, x).lower(lowering_platforms=("tpu",)).as_text()
        assert tpu.count("stablehlo.convolution") == tpu_convolutions


@pytest.mark.parametrize("taps,stride,padding,cin,cout", [(3, 1, 1, 2, 4), (3, 2, 1, 5, 3), (1, 2, 0, 4, 4), (1, 1, 0, 6, 2)])
def test_frame_conv_formulations_agree(taps, stride, padding, cin, cout):
    """The accelerators' per-tap products over bins-last arrays and CPU's `lax.conv` with its own
    VJP, against a plain `lax.conv`: same values and gradients, strided or not."""
    from vocal_remover_jax.models.frame_conv import cpu_frame_conv, frame_conv_products, xla_frame_conv

    rng = np.random.RandomState(taps + stride + cin)
    x = jnp.asarray(rng.randn(2, 5, 17, cin), jnp.float32)
    w = jnp.asarray(rng.randn(taps, cin, cout), jnp.float32)
    loss = lambda conv: lambda x, w: jnp.sum(jnp.sin(conv(x, w, stride, padding)))  # noqa: E731
    for conv in (frame_conv_products, cpu_frame_conv):
        np.testing.assert_allclose(conv(x, w, stride, padding), xla_frame_conv(x, w, stride, padding),
                                   rtol=1e-5, atol=1e-5)
        for a, b in zip(jax.grad(loss(conv), (0, 1))(x, w), jax.grad(loss(xla_frame_conv), (0, 1))(x, w)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_frame_conv_lowers_per_platform():
    """CPU gets one `lax.conv`, and one more for the input gradient but none for the kernel's
    (matmuls); TPU products (no convolution)."""
    from vocal_remover_jax.models.frame_conv import FrameConv

    x = jnp.ones((1, 4, 16, 3))
    conv = FrameConv(5, cropsize=4)
    params = conv.init(jax.random.key(0), x)
    step = jax.jit(lambda p, x: conv.apply(p, x))
    assert step.lower(params, x).as_text().count("stablehlo.convolution") == 1
    train = jax.jit(jax.value_and_grad(lambda p, x: conv.apply(p, x).sum(), (0, 1)))
    assert train.lower(params, x).as_text().count("stablehlo.convolution") == 2
    assert "stablehlo.convolution" not in step.trace(params, x).lower(lowering_platforms=("tpu",)).as_text()


@pytest.mark.parametrize("frames,width,value_width", [(256, 4, 2), (128, 16, 16)])
def test_flash_attention_matches_attend(frames, width, value_width):
    """The TPU's fused kernel, run by Pallas' interpreter, against `attend`: same values and
    gradients over several blocks of frames, with values narrower than the queries (zero-padded
    for the kernel), inside a mesh whose `batch` rule makes it run under `shard_map`."""
    from jax.experimental.pallas import tpu as pltpu

    from vocal_remover_jax.models.attention import attend
    from vocal_remover_jax.models.fused_attention import flash_attend

    rng = np.random.RandomState(frames)
    q, k = (jnp.asarray(rng.randn(2, 2, frames, width), jnp.float32) for _ in range(2))
    v = jnp.asarray(rng.randn(2, 2, frames, value_width), jnp.float32)
    loss = lambda f: lambda *a: jnp.sum(jnp.sin(f(*a)))  # noqa: E731
    xla = lambda *a: attend(*a, 3.0)[0]  # noqa: E731
    flash = lambda *a: flash_attend(*a, temperature=3.0)  # noqa: E731
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))  # as the trainer's
    with pltpu.force_tpu_interpret_mode(), jax.set_mesh(mesh), nn.logical_axis_rules([("batch", "data")]):
        out = jax.jit(flash)(q, k, v)
        grads = jax.jit(jax.grad(loss(flash), (0, 1, 2)))(q, k, v)
    np.testing.assert_allclose(out, xla(q, k, v), rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, jax.grad(loss(xla), (0, 1, 2))(q, k, v)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_attention_lowers_per_platform():
    """TPU gets the fused kernel (a Mosaic custom call, no frames x frames product of XLA's), CPU
    XLA's attention; `flash_attention=False` keeps XLA's on TPU too."""
    from vocal_remover_jax.models import MultibandFrameAttention

    x = jnp.ones((1, 128, 8))
    for flash, kernels in ((True, 1), (False, 0)):
        attention = MultibandFrameAttention(2, 128, flash_attention=flash)
        params = attention.init(jax.random.key(0), x)
        step = jax.jit(lambda p, x: attention.apply(p, x))
        assert "tpu_custom_call" not in step.lower(params, x).as_text()
        tpu = step.trace(params, x).lower(lowering_platforms=("tpu",)).as_text()
        assert tpu.count("tpu_custom_call") == kernels
        assert ("tensor<1x2x128x128xf32>" in tpu) != flash  # the scores of 2 bands x 128 x 128 frames


def test_traced_for_platform_traces_only_that_platforms_branch():
    """A function jitted for one platform's devices traces one branch per layer, not all with a
    runtime switch; the branch it keeps computes the same values."""
    from vocal_remover_jax.models import MultibandFrameAttention
    from vocal_remover_jax.models.layers import traced_for_platform

    x = jax.random.normal(jax.random.key(1), (1, 128, 8))
    attention = MultibandFrameAttention(2, 128)
    params = attention.init(jax.random.key(0), x)
    apply = lambda p, x: attention.apply(p, x)  # noqa: E731
    assert "platform_index" in str(jax.make_jaxpr(apply)(params, x))
    for platform, kernel in (("cpu", False), ("tpu", True)):
        jaxpr = str(jax.make_jaxpr(traced_for_platform(apply, platform))(params, x))
        assert "platform_index" not in jaxpr and ("pallas_call" in jaxpr) == kernel, platform
    np.testing.assert_array_equal(jax.jit(traced_for_platform(apply, "cpu"))(params, x), jax.jit(apply)(params, x))


def test_attention_vjp_matches_autodiff():
    """`attend`'s hand-written backward (it recomputes the weights) against autodiff of the same
    expression, through both outputs; no frames x frames array is kept for it."""
    import contextlib
    import io

    from jax.ad_checkpoint import print_saved_residuals

    from vocal_remover_jax.models.attention import attend

    def autodiff(q, k, v, temperature):
        weights = jax.nn.softmax(jnp.matmul(q, k.swapaxes(-1, -2)) / temperature, axis=-1)
        return jnp.matmul(weights, v), weights

    rng = np.random.RandomState(0)
    q, k = (jnp.asarray(rng.randn(2, 3, 16, 10), jnp.float32) for _ in range(2))
    v = jnp.asarray(rng.randn(2, 3, 16, 5), jnp.float32)
    loss = lambda fn: lambda *a: jnp.sum(jnp.sin(fn(*a, 3.0)[0])) + jnp.sum(fn(*a, 3.0)[1] ** 2)  # noqa: E731
    for a, b in zip(jax.grad(loss(attend), (0, 1, 2))(q, k, v), jax.grad(loss(autodiff), (0, 1, 2))(q, k, v)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    kept = io.StringIO()
    with contextlib.redirect_stdout(kept):
        print_saved_residuals(lambda *a: jnp.sum(jnp.sin(attend(*a, 3.0)[0])), q, k, v)
    assert "[2,3,16,1]" in kept.getvalue() and "[2,3,16,16]" not in kept.getvalue()  # log-sum-exp, no weights


@pytest.mark.parametrize("bias", [True, False])
def test_pointwise_feedforward_recomputes_to_the_same_gradients(bias):
    """The feed-forward whose backward recomputes its hidden layer against plain autodiff: the
    same values and gradients (inputs, kernels, biases), and its backward keeps only its inputs."""
    import contextlib
    import io

    from jax.ad_checkpoint import print_saved_residuals

    from vocal_remover_jax.models.layers import pointwise_feedforward

    rng = np.random.RandomState(1)
    x = jnp.asarray(rng.randn(2, 8, 6), jnp.float32)
    w_in = (jnp.asarray(rng.randn(6, 20), jnp.float32), jnp.asarray(rng.randn(20), jnp.float32) if bias else None)
    w_out = (jnp.asarray(rng.randn(20, 6), jnp.float32), jnp.asarray(rng.randn(6), jnp.float32) if bias else None)
    act = lambda a: jnp.square(jax.nn.relu(a))  # noqa: E731

    def plain(x, w_in, w_out):
        h = x @ w_in[0] + (0 if w_in[1] is None else w_in[1])
        return act(h) @ w_out[0] + (0 if w_out[1] is None else w_out[1])

    loss = lambda fn: lambda *a: jnp.sum(jnp.sin(fn(*a)))  # noqa: E731
    ours = lambda x, w_in, w_out: pointwise_feedforward(x, w_in, w_out, act, jnp.float32)  # noqa: E731
    np.testing.assert_allclose(ours(x, w_in, w_out), plain(x, w_in, w_out), rtol=1e-5, atol=1e-5)
    got, want = jax.grad(loss(ours), (0, 1, 2))(x, w_in, w_out), jax.grad(loss(plain), (0, 1, 2))(x, w_in, w_out)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    def kept(fn):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            print_saved_residuals(loss(fn), x, w_in, w_out)
        return out.getvalue()

    assert "[2,8,20]" in kept(plain) and "[2,8,20]" not in kept(ours)  # no hidden activation kept
