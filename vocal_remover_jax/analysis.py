"""What the notebooks look at: attention maps, masks and spectrograms, and how to draw them.

The plotting functions draw on a matplotlib `Axes` they are given, so this module never imports
matplotlib itself (a development dependency) and the notebooks keep only the figure layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np

# Floor of the decibel scale in spectrogram plots: below it nothing a mask model resolves.
DB_FLOOR = -80.0


def attention_maps(model: nn.Module, variables: Mapping[str, Any], x: jax.Array) -> dict[str, np.ndarray]:
    """`{"block/layer": weights}` for every attention layer, weights `(batch, bands, query frame,
    key frame)` with rows summing to 1 (sown by `MultibandFrameAttention`)."""
    @jax.jit
    def run(variables, x):
        _, state = model.apply(variables, x, deterministic=True, mutable=["intermediates"])
        return state["intermediates"]

    flat = jax.tree_util.tree_flatten_with_path(run(variables, x), is_leaf=lambda t: isinstance(t, tuple))[0]
    maps = {}
    for path, value in flat:
        keys = [str(getattr(p, "key", p)) for p in path]
        if keys[-1] == "attention_weights":
            maps["/".join(keys[:-1])] = np.asarray(value[0])
    return maps


def magnitude(wave: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """`(frames, bins, channels)` magnitude spectrogram of a `(channels, samples)` waveform."""
    from vocal_remover_jax.audio.stft import stft

    return np.abs(np.asarray(stft(wave, n_fft, hop_length))).transpose(1, 2, 0)


def effective_mask(mixture: np.ndarray, instrumental: np.ndarray, n_fft: int, hop_length: int,
                   floor: float = 1e-4) -> np.ndarray:
    """`(frames, bins, channels)`: the instrumental's magnitude over the mixture's, clipped to [0, 1],
    where the mixture is louder than `floor` times its peak (NaN elsewhere: no evidence there)."""
    mix, inst = magnitude(mixture, n_fft, hop_length), magnitude(instrumental, n_fft, hop_length)
    frames = min(len(mix), len(inst))
    mix, inst = mix[:frames], inst[:frames]
    audible = mix > floor * mix.max()
    return np.where(audible, np.clip(inst / np.where(audible, mix, 1.0), 0.0, 1.0), np.nan)


def to_db(magnitude: np.ndarray, reference: float | None = None) -> np.ndarray:
    """Decibels relative to `reference` (default: the peak), floored at `DB_FLOOR`."""
    magnitude = np.asarray(magnitude, np.float32)
    reference = float(magnitude.max()) if reference is None else reference
    return np.maximum(20.0 * np.log10(np.maximum(magnitude, 1e-12) / max(reference, 1e-12)), DB_FLOOR)


def show_spectrogram(ax, magnitude: np.ndarray, *, sample_rate: int, hop_length: int, title: str = "",
                     reference: float | None = None, colorbar: bool = True):
    """Draws a `(frames, bins[, channels])` magnitude (channels averaged) in dB, time across,
    frequency up."""
    mag = np.asarray(magnitude, np.float32)
    if mag.ndim == 3:
        mag = mag.mean(axis=-1)
    db = to_db(mag, reference)
    image = ax.imshow(db.T, origin="lower", aspect="auto", cmap="magma", vmin=DB_FLOOR, vmax=0.0,
                      extent=_extent(mag.shape, sample_rate, hop_length))
    _label(ax, title, "frequency (kHz)")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label="dB")
    return image


def show_mask(ax, mask: np.ndarray, *, sample_rate: int, hop_length: int, title: str = "", colorbar: bool = True,
              cmap: str = "viridis"):
    """Draws a `(frames, bins[, channels])` mask in [0, 1] (channels averaged)."""
    mask = np.asarray(mask, np.float32)
    if mask.ndim == 3:  # mean of the channels that have a value (NaN: mixture silent there)
        known = ~np.isnan(mask)
        mask = np.where(known.any(-1), np.nansum(mask, -1) / np.maximum(known.sum(-1), 1), np.nan)
    image = ax.imshow(mask.T, origin="lower", aspect="auto", cmap=cmap, vmin=0.0, vmax=1.0,
                      extent=_extent(mask.shape, sample_rate, hop_length))
    _label(ax, title, "frequency (kHz)")
    if colorbar:
        ax.figure.colorbar(image, ax=ax)
    return image


def show_attention(ax, weights: np.ndarray, title: str = ""):
    """Draws one `(query frame, key frame)` attention map."""
    image = ax.imshow(np.asarray(weights, np.float32), origin="upper", aspect="equal", cmap="Blues")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("key frame")
    ax.set_ylabel("query frame")
    return image


def _extent(shape: tuple[int, ...], sample_rate: int, hop_length: int) -> list[float]:
    frames = shape[0]
    return [0.0, frames * hop_length / sample_rate, 0.0, sample_rate / 2000.0]


def _label(ax, title: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)


# Pretraining token kinds (`mask_kind` of the pretrain pipeline): name and colour.
TOKEN_KINDS = {1: ("set to 1.0", "tab:red"), 2: ("noised", "tab:orange"), 3: ("selected, unchanged", "tab:green")}


def token_runs(kind: np.ndarray) -> list[tuple[int, int, int]]:
    """`(first frame, end frame, kind)` for each run of equal non-zero `mask_kind` values."""
    kind = np.asarray(kind)
    edges = np.flatnonzero(np.diff(kind)) + 1
    starts, ends = np.r_[0, edges], np.r_[edges, len(kind)]
    return [(int(s), int(e), int(kind[s])) for s, e in zip(starts, ends) if kind[s]]


def token_shares(kind: np.ndarray) -> dict[str, float]:
    """Share of frames of each masking kind in a `(batch, frames)` array, for comparison with the
    configured rates."""
    kind = np.asarray(kind)
    return {name: float(np.mean(kind == k)) for k, (name, _) in TOKEN_KINDS.items()}


def show_token_kinds(ax, kind: np.ndarray, *, sample_rate: int, hop_length: int) -> None:
    """Shades the frames a pretraining example masked, by kind, over a spectrogram drawn on `ax`."""
    seconds = hop_length / sample_rate
    for start, end, k in token_runs(kind):
        ax.axvspan(start * seconds, end * seconds, color=TOKEN_KINDS[k][1], alpha=0.35, lw=0)
