"""The chunked separation core against whole-song librosa computations, with injected mask functions."""

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from vocal_remover_jax.inference import postprocess
from vocal_remover_jax.inference.chunking import ChunkConfig, ChunkedSeparator, crop_plan, padded_segment

N_FFT, HOP, CROP = 256, 128, 64
LENGTHS = (1, 300, CROP * HOP, 3 * 22050 + 17)  # 1 sample, under one crop, one crop, many crops


def _run(mask_fn, wave, **kw):
    cfg = ChunkConfig(n_fft=N_FFT, hop_length=HOP, cropsize=CROP, batch_size=kw.pop("batch_size", 3), **kw)
    parts = list(ChunkedSeparator(mask_fn, {}, cfg).stream(wave))
    return tuple(np.concatenate([p[i] for p in parts], axis=-1) for i in (0, 1))


def _noise(n, seed=0):
    return (np.random.default_rng(seed).standard_normal((2, n)) * 0.3).astype(np.float32)


@pytest.mark.parametrize("tta", [False, True])
@pytest.mark.parametrize("overlap", [0, 16])
def test_identity_mask_reproduces_the_input_across_every_seam(tta, overlap):
    ones = lambda params, x: jnp.ones_like(x)
    for n in LENGTHS:
        wave = _noise(n)
        inst, vocals = _run(ones, wave, overlap=overlap, tta=tta)
        assert inst.shape == wave.shape
        np.testing.assert_allclose(inst, wave, atol=1e-4, err_msg=f"{n} samples")
        np.testing.assert_allclose(vocals, 0.0, atol=1e-4)


def _pointwise(params, x):
    return jnp.clip(3.0 * x, 0.0, 1.0)  # depends on each bin's normalised magnitude only


def _per_frame(params, x):
    # each frame's mask from that frame alone (all bins alike), so every crop agrees, and a frame's
    # minimum is high in loud passages: what merge_artifacts acts on
    return jnp.broadcast_to(jnp.clip(1.5 * x.mean(axis=(2, 3), keepdims=True), 0.0, 1.0), x.shape)


def _librosa_reference(wave, merge=False, per_frame=False):
    """Instrumental and vocals of the whole song through librosa: the mask and its complement."""
    spec = librosa.stft(wave, n_fft=N_FFT, hop_length=HOP, center=True, pad_mode="reflect")  # (2, bins, frames)
    mag = np.abs(spec) / np.abs(spec).max()
    if per_frame:
        mask = np.broadcast_to(np.clip(1.5 * mag.mean(axis=(0, 1), keepdims=True), 0.0, 1.0), mag.shape)
    else:
        mask = np.clip(3.0 * mag, 0.0, 1.0)
    if merge:
        mask = mask + postprocess.merge_weights(mask.min(axis=(0, 1))) * (1.0 - mask)
    istft = lambda s: librosa.istft(s, n_fft=N_FFT, hop_length=HOP, length=wave.shape[-1])
    return istft(spec * mask), istft(spec * (1.0 - mask))


@pytest.mark.parametrize("tta, overlap, batch_size", [(False, 0, 1), (False, 24, 3), (True, 16, 4)])
def test_chunked_masks_equal_the_whole_song_computation(tta, overlap, batch_size):
    """A pointwise mask makes every crop agree, so any seam, offset or normalisation error shows."""
    wave = _noise(3 * 22050 + 17, seed=1)
    inst, vocals = _run(_pointwise, wave, overlap=overlap, tta=tta, batch_size=batch_size)
    want_inst, want_vocals = _librosa_reference(wave)
    np.testing.assert_allclose(inst, want_inst, atol=1e-4)
    np.testing.assert_allclose(vocals, want_vocals, atol=1e-4)


def test_postprocess_in_the_stream_equals_merging_the_whole_mask():
    n = 6 * 22050
    t = np.arange(n) / 22050
    level = np.where((t % 2.0) < 1.4, 1.0, 0.02)  # loud passages long enough to count as artifacts
    wave = (_noise(n, seed=2) * level).astype(np.float32)
    reference = _librosa_reference(wave, merge=True, per_frame=True)
    assert np.abs(reference[0] - _librosa_reference(wave, per_frame=True)[0]).max() > 0.1  # merging acts here
    inst, vocals = _run(_per_frame, wave, overlap=16, postprocess=True)
    np.testing.assert_allclose(inst, reference[0], atol=1e-4)
    np.testing.assert_allclose(vocals, reference[1], atol=1e-4)


def test_merge_weights_from_a_prefix_are_final_after_lookahead():
    rng = np.random.default_rng(3)
    frame_min = (rng.random(2000) < 0.97).astype(np.float32) * 0.5  # long runs with short gaps
    full = postprocess.merge_weights(frame_min)
    assert full.max() == 1.0 and full.min() == 0.0
    for known in (300, 777, 1500):
        prefix = postprocess.merge_weights(frame_min[:known])
        settled = known - postprocess.LOOKAHEAD
        np.testing.assert_array_equal(prefix[:settled], full[:settled])
    assert not postprocess.merge_weights(np.zeros(100)).any()  # no frame above threshold


def test_merge_weights_shape_of_one_run():
    frame_min = np.zeros(300, np.float32)
    frame_min[100:200] = 1.0
    w = postprocess.merge_weights(frame_min)
    assert not w[:100].any() and not w[200:].any()
    np.testing.assert_allclose(w[100:132], np.linspace(0, 1, 32))  # fade in
    assert (w[132:167] == 1).all()
    np.testing.assert_allclose(w[167:199], np.linspace(1, 0, 32))  # fade out ends at the run's last frame


def test_aggressiveness_only_cuts_where_vocals_dominate():
    mask = jnp.array([0.1, 0.3, 0.5, 0.9])
    out = np.asarray(postprocess.apply_aggressiveness(mask, 0.2))
    np.testing.assert_allclose(out, [0.0, 0.16, 0.5, 0.9], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(postprocess.apply_aggressiveness(mask, 0.0)), np.asarray(mask))


def test_silence_gives_silence_without_nan():
    inst, vocals = _run(lambda p, x: jnp.full_like(x, 0.5), np.zeros((2, 5000), np.float32), overlap=16)
    assert np.all(inst == 0) and np.all(vocals == 0)


def test_crop_plan_covers_every_frame_in_each_grid():
    cfg = ChunkConfig(n_fft=N_FFT, hop_length=HOP, cropsize=CROP, overlap=16, tta=True)
    for frames in (1, 63, 64, 65, 500):
        plan = crop_plan(frames, cfg)
        for grid in (0, 1):
            covered = np.zeros(frames, bool)
            for start, g in plan:
                if g == grid:
                    covered[max(start, 0) : start + CROP] = True
            assert covered.all(), (frames, grid)
        assert [s for s, _ in plan] == sorted(s for s, _ in plan)


def test_padded_segment_is_a_slice_of_the_reflect_padded_song():
    wave = _noise(1000)
    padded = np.pad(wave, ((0, 0), (N_FFT // 2, N_FFT // 2)), mode="reflect")
    padded = np.pad(padded, ((0, 0), (0, 500)))
    for start in (0, 37, 900):
        np.testing.assert_array_equal(padded_segment(wave, start, 600, N_FFT), padded[:, start : start + 600])
    assert not padded_segment(wave, -50, 50, N_FFT).any()


def test_set_params_changes_the_weights_without_recompiling():
    cfg = ChunkConfig(n_fft=N_FFT, hop_length=HOP, cropsize=CROP, batch_size=2)
    core = ChunkedSeparator(lambda p, x: jnp.clip(jnp.ones_like(x) * p["gain"], 0, 1), {"gain": jnp.float32(1.0)}, cfg)
    compiled = core._accumulate
    wave = _noise(3000)
    run = lambda: tuple(np.concatenate([p[i] for p in core.stream(wave)], axis=-1) for i in (0, 1))  # noqa: E731
    inst, vocals = run()
    np.testing.assert_allclose(inst, wave, atol=1e-4)
    core.set_params({"gain": jnp.float32(0.25)})
    inst, vocals = run()
    np.testing.assert_allclose(inst, 0.25 * wave, atol=1e-4)
    np.testing.assert_allclose(vocals, 0.75 * wave, atol=1e-4)
    assert core._accumulate is compiled
    with pytest.raises(ValueError, match="shapes"):
        core.set_params({"gain": jnp.ones(2, jnp.float32)})


def test_cpu_programs_compile_without_ynnpack_fusions():
    """XLA:CPU's own kernels, not YNNPACK's (xla_cpu.py): a reduction over the song is one such fusion."""
    core = ChunkedSeparator(lambda p, x: jnp.clip(x / (1 + x.mean()), 0, 1), {}, ChunkConfig(
        n_fft=N_FFT, hop_length=HOP, cropsize=CROP, batch_size=2))
    texts = [core._song_max.as_text(), core._accumulate.as_text(), core._finalize.as_text()]
    assert all("HloModule" in t for t in texts)
    assert not [t for t in texts if "ynn_fusion" in t]
    default = jax.jit(lambda x: jnp.abs(x).max()).lower(jnp.ones((4096,))).compile().as_text()
    if "ynn_fusion" not in default:
        pytest.skip("this jaxlib makes no YNNPACK fusion of a reduction by default")
