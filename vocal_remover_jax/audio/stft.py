"""The one short-time Fourier transform of the project, in pure jnp (jit-compiles on any backend).

Conventions match `librosa.stft(x, n_fft, hop, window="hann", center=True, pad_mode="reflect")`
and `librosa.istft`, with the frame axis before the bin axis (our channels-last layout):
`(..., samples)` -> `(..., 1 + samples // hop, n_fft // 2 + 1)`.

Two levels: `frames_stft`/`frames_istft` transform a window of frames (what the separator
streams, block by block, carrying the overlap-add tail between blocks); `stft`/`istft` are the
whole-signal transforms built from them (what `prepare` and the notebooks use).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

_TINY = float(np.finfo(np.float32).tiny)


def hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann window (librosa's and scipy's `fftbins=True` default)."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def num_frames(num_samples: int, hop_length: int) -> int:
    """Frames of a centred STFT: `1 + samples // hop` (librosa, center=True)."""
    return 1 + num_samples // hop_length


def frames_stft(x: jax.Array, n_fft: int, hop_length: int, count: int) -> jax.Array:
    """Complex spectra `(..., count, n_fft // 2 + 1)` of the `count` windowed frames of `x` that
    start every `hop_length` samples from its first sample (no padding: the caller pads)."""
    return jnp.fft.rfft(_frames(jnp.asarray(x, jnp.float32), n_fft, hop_length, count) * hann_window(n_fft), axis=-1)


def frames_istft(spec: jax.Array, valid: jax.Array, n_fft: int, hop_length: int) -> tuple[jax.Array, jax.Array]:
    """Windowed inverse frames of `spec (..., count, bins)` overlap-added, and the squared-window
    envelope of the frames where `valid (count,)` is 1: `(signal, envelope)`, each of
    `(count - 1) * hop + n_fft` samples, un-normalised so blocks can be summed before dividing."""
    window = hann_window(n_fft)
    frames = jnp.fft.irfft(spec, n=n_fft, axis=-1).astype(jnp.float32) * window * valid[:, None]
    envelope = _overlap_add(jnp.broadcast_to(window**2 * valid[:, None], frames.shape[-2:]), hop_length)
    return _overlap_add(frames, hop_length), envelope


def stft(wave: jax.Array, n_fft: int, hop_length: int) -> jax.Array:
    """Complex64 spectrogram `(..., frames, bins)` of a real `(..., samples)` signal."""
    wave = jnp.asarray(wave, jnp.float32)
    pad = n_fft // 2
    if wave.shape[-1] <= pad:
        raise ValueError(f"stft: signal of {wave.shape[-1]} samples is too short for reflect padding of {pad}")
    padded = jnp.pad(wave, [(0, 0)] * (wave.ndim - 1) + [(pad, pad)], mode="reflect")
    return frames_stft(padded, n_fft, hop_length, num_frames(wave.shape[-1], hop_length))


def istft(spec: jax.Array, n_fft: int, hop_length: int, length: int) -> jax.Array:
    """Float32 `(..., length)` signal from `(..., frames, bins)`: windowed overlap-add divided by the
    summed squared window (librosa's least-squares inverse), so `istft(stft(x)) == x`."""
    signal, envelope = frames_istft(spec, jnp.ones(spec.shape[-2], jnp.float32), n_fft, hop_length)
    signal = signal / jnp.where(envelope > _TINY, envelope, 1.0)
    pad = n_fft // 2
    signal = signal[..., pad : pad + length]
    missing = length - signal.shape[-1]
    if missing > 0:
        signal = jnp.pad(signal, [(0, 0)] * (signal.ndim - 1) + [(0, missing)])
    return signal


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
    """`(..., count, n_fft)` -> `(..., (count - 1) * hop + n_fft)`, each frame summed at its offset."""
    count, n_fft = frames.shape[-2:]
    r = math.ceil(n_fft / hop_length)
    frames = jnp.pad(frames, [(0, 0)] * (frames.ndim - 1) + [(0, r * hop_length - n_fft)])
    parts = frames.reshape(*frames.shape[:-1], r, hop_length)
    lead = [(0, 0)] * (frames.ndim - 2)
    out = sum(jnp.pad(parts[..., j, :], lead + [(j, r - 1 - j), (0, 0)]) for j in range(r))
    return out.reshape(*frames.shape[:-2], (count + r - 1) * hop_length)[..., : (count - 1) * hop_length + n_fft]
