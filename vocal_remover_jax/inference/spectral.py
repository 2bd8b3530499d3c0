"""STFT pieces that work on a window of frames, so a song can be transformed block by block.

A whole-song `librosa.stft(x, center=True)` (reflect padding) equals, frame for frame,
`frames_stft` of `pad_song(x)` sliced at `t * hop`; the inverse is overlap-add with the
squared-window envelope of the frames that exist (librosa's `istft`). The separator streams
these over blocks of frames and carries the overlap-add tail between blocks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def hann_window(n_fft: int) -> jax.Array:
    """Periodic Hann window (scipy's `get_window('hann', n, fftbins=True)`, librosa's default)."""
    n = jnp.arange(n_fft, dtype=jnp.float32)
    return 0.5 - 0.5 * jnp.cos(2.0 * jnp.pi * n / n_fft)


def num_frames(num_samples: int, hop_length: int) -> int:
    """Frames of a centred STFT: `1 + samples // hop` (librosa, center=True)."""
    return 1 + num_samples // hop_length


def pad_song(wave: np.ndarray, n_fft: int) -> np.ndarray:
    """Reflect-pads `n_fft // 2` samples at both ends (numpy; the song stays on the host)."""
    pad = n_fft // 2
    mode = "reflect" if wave.shape[-1] > 1 else "edge"
    return np.pad(wave, [(0, 0)] * (wave.ndim - 1) + [(pad, pad)], mode=mode)


def frame(x: jax.Array, n_fft: int, hop_length: int, count: int) -> jax.Array:
    """`(..., samples)` -> `(..., count, n_fft)` frames starting every `hop_length` samples."""
    if n_fft % hop_length == 0:
        r = n_fft // hop_length
        rows = x[..., : (count + r - 1) * hop_length].reshape(*x.shape[:-1], count + r - 1, hop_length)
        return jnp.concatenate([rows[..., j : j + count, :] for j in range(r)], axis=-1)
    idx = np.arange(count)[:, None] * hop_length + np.arange(n_fft)[None, :]
    return x[..., idx]


def frames_stft(x: jax.Array, n_fft: int, hop_length: int, count: int) -> jax.Array:
    """Complex spectra `(..., count, n_fft // 2 + 1)` of `count` windowed frames of `x`."""
    return jnp.fft.rfft(frame(x, n_fft, hop_length, count) * hann_window(n_fft), axis=-1)


def overlap_add(frames: jax.Array, hop_length: int) -> jax.Array:
    """`(..., count, n_fft)` -> `(..., (count - 1) * hop + n_fft)` summed at their offsets."""
    count, n_fft = frames.shape[-2:]
    if n_fft % hop_length == 0:
        r = n_fft // hop_length
        parts = frames.reshape(*frames.shape[:-1], r, hop_length)
        out = jnp.zeros((*frames.shape[:-2], count + r - 1, hop_length), frames.dtype)
        for j in range(r):
            out = out.at[..., j : j + count, :].add(parts[..., j, :])
        return out.reshape(*frames.shape[:-2], (count + r - 1) * hop_length)
    out = jnp.zeros((*frames.shape[:-2], (count - 1) * hop_length + n_fft), frames.dtype)
    for t in range(count):
        out = out.at[..., t * hop_length : t * hop_length + n_fft].add(frames[..., t, :])
    return out


def frames_istft(spec: jax.Array, valid: jax.Array, n_fft: int, hop_length: int) -> tuple[jax.Array, jax.Array]:
    """Windowed inverse frames overlap-added, and the squared-window envelope of the `valid` frames.

    Returns `(signal, envelope)`, both un-normalised so blocks can be summed before dividing.
    """
    window = hann_window(n_fft)
    frames = jnp.fft.irfft(spec, n=n_fft, axis=-1) * window * valid[:, None]
    envelope = overlap_add(jnp.broadcast_to(window**2 * valid[:, None], frames.shape[-2:]), hop_length)
    return overlap_add(frames, hop_length), envelope
