"""Audio I/O and the jnp STFT against librosa."""

from __future__ import annotations

import os

import jax
import librosa
import numpy as np
import pytest
import soundfile as sf

from vocal_remover_jax.audio.io import AudioReadError, load_audio, write_audio
from vocal_remover_jax.audio.stft import istft, stft


@pytest.mark.parametrize("n_fft,hop,length", [(256, 128, 5000), (2048, 1024, 9000), (400, 160, 3001), (256, 100, 777)])
def test_stft_matches_librosa_and_inverts(n_fft, hop, length):
    x = np.random.default_rng(n_fft + length).uniform(-1, 1, (2, length)).astype(np.float32)
    ref = librosa.stft(x, n_fft=n_fft, hop_length=hop, center=True, pad_mode="reflect").swapaxes(-1, -2)
    spec = jax.jit(stft, static_argnums=(1, 2))(x, n_fft, hop)
    assert spec.dtype == np.complex64 and spec.shape == ref.shape
    np.testing.assert_allclose(np.asarray(spec), ref, atol=1e-4)
    back = jax.jit(istft, static_argnums=(1, 2, 3))(spec, n_fft, hop, length)
    np.testing.assert_allclose(np.asarray(back), x, atol=1e-5)


def test_stft_batches_leading_axes():
    x = np.random.default_rng(0).normal(size=(3, 2, 1000)).astype(np.float32)
    batched = np.asarray(stft(x, 256, 128))
    np.testing.assert_allclose(batched[1, 0], np.asarray(stft(x[1, 0], 256, 128)), atol=1e-5)
    np.testing.assert_allclose(np.asarray(istft(batched, 256, 128, 900)), x[..., :900], atol=1e-5)


def test_load_audio_makes_stereo_and_resamples(tmp_path):
    t = np.arange(22050) / 22050
    mono = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = str(tmp_path / "mono.flac")
    sf.write(path, mono, 22050)
    wave, sr = load_audio(path)
    assert sr == 22050 and wave.shape == (2, 22050) and wave.dtype == np.float32
    np.testing.assert_array_equal(wave[0], wave[1])
    wave, sr = load_audio(path, sample_rate=44100)
    assert sr == 44100 and abs(wave.shape[1] - 44100) <= 1


def test_load_audio_keeps_first_two_of_many_channels(tmp_path):
    data = np.stack([np.full(100, v, np.float32) for v in (0.1, 0.2, 0.3)], axis=1)
    path = str(tmp_path / "three.wav")
    sf.write(path, data, 8000, subtype="FLOAT")
    wave, _ = load_audio(path)
    np.testing.assert_allclose(wave[:, 0], [0.1, 0.2])


@pytest.mark.parametrize(
    "name,content,reason",
    [("missing.wav", None, "not found"), ("empty.wav", b"", "empty"), ("junk.wav", b"not audio at all" * 50, "not a readable")],
)
def test_load_audio_errors_name_file(tmp_path, name, content, reason):
    path = str(tmp_path / name)
    if content is not None:
        with open(path, "wb") as f:
            f.write(content)
    with pytest.raises(AudioReadError, match=reason) as info:
        load_audio(path)
    assert name in str(info.value) and isinstance(info.value, ValueError)


def test_load_audio_rejects_zero_samples(tmp_path):
    path = str(tmp_path / "nothing.wav")
    sf.write(path, np.zeros((0, 2), np.float32), 8000)
    with pytest.raises(AudioReadError, match="no samples"):
        load_audio(path)


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg"])
def test_write_audio_round_trip_atomic(tmp_path, ext):
    wave = np.stack([np.linspace(-0.5, 0.5, 4000), np.linspace(0.5, -0.5, 4000)]).astype(np.float32)
    path = str(tmp_path / f"out.{ext}")
    write_audio(path, wave * 3.0 if ext == "wav" else wave, 16000)  # wav: clipped, not wrapped
    assert sorted(os.listdir(tmp_path)) == [f"out.{ext}"]  # no temp file left behind
    back, sr = load_audio(path)
    assert sr == 16000 and back.shape == (2, 4000)
    if ext == "wav":
        np.testing.assert_allclose(back, np.clip(wave * 3.0, -1, 1), atol=1e-3)
    elif ext == "flac":
        np.testing.assert_allclose(back, wave, atol=1e-4)


def test_write_audio_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match="unsupported"):
        write_audio(str(tmp_path / "x.xyz"), np.zeros((2, 10)), 8000)
