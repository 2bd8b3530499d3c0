"""Short-time Fourier transform in pure jnp, so it jit-compiles and runs on any backend.

Conventions match `librosa.stft(x, n_fft, hop, window="hann", center=True,
pad_mode="reflect")`, with the frame axis before the bin axis (our channels-last layout):
`(..., samples)` -> `(..., 1 + samples // hop, n_fft // 2 + 1)`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann window (librosa's and scipy's `fftbins=True` default)."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def stft(wave: jax.Array, n_fft: int, hop_length: int) -> jax.Array:
    """Complex64 spectrogram `(..., frames, bins)` of a real `(..., samples)` signal."""
    wave = jnp.asarray(wave, jnp.float32)
    pad = n_fft // 2
    if wave.shape[-1] <= pad:
        raise ValueError(f"stft: signal of {wave.shape[-1]} samples is too short for reflect padding of {pad}")
    padded = jnp.pad(wave, [(0, 0)] * (wave.ndim - 1) + [(pad, pad)], mode="reflect")
    count = 1 + wave.shape[-1] // hop_length
    return jnp.fft.rfft(_frames(padded, n_fft, hop_length, count) * hann_window(n_fft), axis=-1)


def istft(spec: jax.Array, n_fft: int, hop_length: int, length: int) -> jax.Array:
    """Float32 `(..., length)` signal from `(..., frames, bins)`: windowed overlap-add.

    Divides by the summed squared window (librosa's least-squares inverse), so
    `istft(stft(x)) == x` wherever at least one frame overlaps.
    """
    count = spec.shape[-2]
    window = hann_window(n_fft)
    frames = jnp.fft.irfft(spec, n=n_fft, axis=-1).astype(jnp.float32) * window
    signal = _overlap_add(frames, hop_length)
    envelope = _window_envelope(window, hop_length, count)
    signal = signal / envelope
    pad = n_fft // 2
    signal = signal[..., pad : pad + length]
    missing = length - signal.shape[-1]
    if missing > 0:
        signal = jnp.pad(signal, [(0, 0)] * (signal.ndim - 1) + [(0, missing)])
    return signal


def _window_envelope(window: np.ndarray, hop_length: int, count: int) -> np.ndarray:
    """Summed squared window of `count` frames, in numpy: a trace-time constant under jit."""
    r = math.ceil(len(window) / hop_length)
    parts = np.pad(window**2, (0, r * hop_length - len(window))).reshape(r, hop_length)
    envelope = np.zeros((count + r - 1, hop_length), np.float32)
    for j in range(r):
        envelope[j : j + count] += parts[j]
    envelope = envelope.reshape(-1)
    return np.where(envelope > np.finfo(np.float32).tiny, envelope, 1.0).astype(np.float32)


def _frames(x: jax.Array, n_fft: int, hop_length: int, count: int) -> jax.Array:
    """`(..., samples)` -> `(..., count, n_fft)` by stacking hop-sized rows (no gather).

    Each frame is `r = ceil(n_fft / hop)` consecutive hop-length rows, trimmed to n_fft;
    slicing shifted views of one reshape is a cheap, layout-friendly op on TPU/GPU.
    """
    r = math.ceil(n_fft / hop_length)
    need = (count + r - 1) * hop_length
    x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, max(0, need - x.shape[-1]))])[..., :need]
    rows = x.reshape(*x.shape[:-1], count + r - 1, hop_length)
    frames = jnp.concatenate([rows[..., j : j + count, :] for j in range(r)], axis=-1)
    return frames[..., :n_fft]


def _overlap_add(frames: jax.Array, hop_length: int) -> jax.Array:
    """`(..., count, n_fft)` -> `(..., (count + r - 1) * hop)`, each frame summed at its offset."""
    count, n_fft = frames.shape[-2:]
    r = math.ceil(n_fft / hop_length)
    frames = jnp.pad(frames, [(0, 0)] * (frames.ndim - 1) + [(0, r * hop_length - n_fft)])
    parts = frames.reshape(*frames.shape[:-1], r, hop_length)
    lead = [(0, 0)] * (frames.ndim - 2)
    out = sum(jnp.pad(parts[..., j, :], lead + [(j, r - 1 - j), (0, 0)]) for j in range(r))
    return out.reshape(*frames.shape[:-2], (count + r - 1) * hop_length)
