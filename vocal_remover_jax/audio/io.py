"""Reading and writing audio files as `(2, samples)` float32 arrays.

Every consumer (prepare, separate, evaluate) wants stereo at a known rate, so the
conversion happens once, here: mono is duplicated (unless asked to keep it: `separate` writes
mono stems for a mono song), extra channels dropped, and the rate resampled with librosa when asked.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator

import librosa
import numpy as np
import soundfile as sf

from vocal_remover_jax.atomic import atomic_path


class AudioReadError(ValueError):
    """A file could not be used as audio; the message names the file and the reason."""


def load_audio(path: str, sample_rate: int | None = None, keep_mono: bool = False) -> tuple[np.ndarray, int]:
    """Returns `(wave, rate)`: float32 `(2, samples)` (`(1, samples)` for a mono file with
    `keep_mono`), at `sample_rate` when given."""
    if not os.path.exists(path):
        raise AudioReadError(f"{path}: file not found")
    if os.path.isdir(path):
        raise AudioReadError(f"{path}: is a directory, not an audio file")
    if os.path.getsize(path) == 0:
        raise AudioReadError(f"{path}: file is empty (0 bytes)")
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)  # (samples, channels)
        wave = data.T
    except (sf.LibsndfileError, RuntimeError, TypeError) as sf_error:
        # Formats libsndfile lacks (m4a, some mp3) go through librosa's audioread fallback.
        try:
            with warnings.catch_warnings():  # librosa's audioread deprecation notice
                warnings.simplefilter("ignore")
                wave, rate = librosa.load(path, sr=None, mono=False, dtype=np.float32)
        except Exception as error:  # audioread raises many unrelated types
            raise AudioReadError(f"{path}: not a readable audio file ({sf_error}; {error})") from error
        wave = np.atleast_2d(wave)
    if wave.shape[-1] == 0 or wave.shape[0] == 0:
        raise AudioReadError(f"{path}: contains no samples")
    if not np.all(np.isfinite(wave)):
        raise AudioReadError(f"{path}: contains NaN or infinite samples")
    wave = (wave if keep_mono else np.concatenate([wave, wave])) if wave.shape[0] == 1 else wave[:2]
    if sample_rate is not None and int(rate) != int(sample_rate):
        wave = librosa.resample(wave, orig_sr=int(rate), target_sr=int(sample_rate), axis=-1)
        rate = sample_rate
    return np.ascontiguousarray(wave, dtype=np.float32), int(rate)


def write_audio(path: str, wave: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Writes `(channels, samples)` (or mono `(samples,)`) audio atomically; see `audio_writer`."""
    wave = np.asarray(wave, dtype=np.float32)
    wave = wave[None] if wave.ndim == 1 else wave
    with audio_writer(path, sample_rate, wave.shape[0], subtype) as write:
        write(wave)


@contextlib.contextmanager
def audio_writer(path: str, sample_rate: int, channels: int = 2,
                 subtype: str = "PCM_16") -> Iterator[Callable[[np.ndarray], None]]:
    """Yields `write(block)` that appends `(channels, samples)` blocks; `path` appears, complete,
    only when the block ends without error. The format follows the extension.

    A subtype the format cannot hold (PCM_16 in Ogg) falls back to the format's default.
    Integer subtypes get the wave clipped to [-1, 1] so loud peaks saturate, not wrap.
    """
    ext = os.path.splitext(path)[1].lstrip(".").upper()
    fmt = {"OGA": "OGG", "AIF": "AIFF"}.get(ext, ext)
    if fmt not in sf.available_formats():
        raise ValueError(f"{path}: unsupported audio extension {ext!r} (try wav, flac or ogg)")
    if not sf.check_format(fmt, subtype):
        subtype = sf.default_subtype(fmt)
    clip = subtype.startswith("PCM") or subtype in ("ALAW", "ULAW", "VORBIS", "OPUS")
    with atomic_path(path) as tmp, sf.SoundFile(tmp, "w", samplerate=int(sample_rate), channels=channels,
                                                subtype=subtype, format=fmt) as f:
        def write(block: np.ndarray) -> None:
            block = np.asarray(block, dtype=np.float32)
            f.write(np.ascontiguousarray((np.clip(block, -1.0, 1.0) if clip else block).T))

        yield write
