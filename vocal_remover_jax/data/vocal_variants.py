"""Variants of a vocal stem (pitch, tempo, EQ, reverb), made once at prepare time.

Little isolated singing exists under open licences, so `prepare --vocal-variants N` adds N
altered copies of every vocal track, each a track of its own (its own clips and records), in
the split of its source. Pitch shift and time stretch are phase-vocoder resyntheses of the
whole file: too costly per example on the device, cheap once here. Level is not varied: every
track is normalised by its peak, and the device's mixing already varies the vocal level.
A variant is a pure function of (wave, rate, seed, track id, variant number).
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np

PITCH_SEMITONES = 4.0  # shift uniform in [-4, 4]
STRETCH = (0.85, 1.2)  # time-stretch rate (>1 faster, shorter)
EQ_DB = 6.0  # each of EQ_POINTS control gains uniform in [-6, 6] dB, interpolated over log frequency
EQ_POINTS = 8
REVERB_RATE = 0.5  # fraction of variants with reverb
REVERB_RT60 = (0.2, 1.0)  # seconds
REVERB_WET = (0.1, 0.4)


@dataclasses.dataclass(frozen=True)
class VariantParams:
    semitones: float
    stretch: float
    eq_db: tuple[float, ...]
    rt60: float  # 0: no reverb
    wet: float


def variant_params(seed: int, track_id: str, variant: int) -> VariantParams:
    rng = _rng(seed, track_id, variant, 0)
    semitones = float(rng.uniform(-PITCH_SEMITONES, PITCH_SEMITONES))
    stretch = float(np.exp(rng.uniform(*np.log(STRETCH))))
    eq_db = tuple(float(g) for g in rng.uniform(-EQ_DB, EQ_DB, EQ_POINTS))
    reverb = rng.uniform() < REVERB_RATE
    rt60 = float(rng.uniform(*REVERB_RT60)) if reverb else 0.0
    wet = float(rng.uniform(*REVERB_WET)) if reverb else 0.0
    return VariantParams(semitones, stretch, eq_db, rt60, wet)


def make_variant(wave: np.ndarray, rate: int, seed: int, track_id: str, variant: int) -> np.ndarray:
    """`(2, n)` float32 -> `(2, round(n / stretch))` float32 at the same rate, peak <= 0.99."""
    import librosa

    p = variant_params(seed, track_id, variant)
    out = librosa.effects.time_stretch(wave, rate=p.stretch)
    out = librosa.effects.pitch_shift(out, sr=rate, n_steps=p.semitones)
    out = _equalise(out, rate, p.eq_db)
    if p.rt60 > 0:
        out = reverb(out, rate, p.rt60, p.wet, _rng(seed, track_id, variant, 1))
    peak = float(np.abs(out).max())
    if peak > 0.99:
        out = out * (0.99 / peak)
    return np.ascontiguousarray(out, dtype=np.float32)


def _rng(seed: int, track_id: str, variant: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(track_id.encode()), variant, purpose])


def _equalise(wave: np.ndarray, rate: int, gains_db: tuple[float, ...]) -> np.ndarray:
    """Zero-phase EQ: a smooth gain curve over log frequency (50 Hz-16 kHz control points)."""
    n = wave.shape[-1]
    spectrum = np.fft.rfft(wave, axis=-1)
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    points = np.geomspace(50.0, min(16000.0, rate / 2), len(gains_db))
    curve_db = np.interp(np.log(np.maximum(freqs, 1.0)), np.log(points), gains_db)
    return np.fft.irfft(spectrum * 10 ** (curve_db / 20), n=n, axis=-1)


def reverb(wave: np.ndarray, rate: int, rt60: float, wet: float, rng: np.random.Generator) -> np.ndarray:
    """Exponentially decaying noise per channel (decorrelated stereo) as the room."""
    from scipy.signal import fftconvolve

    t = np.arange(int(rt60 * rate)) / rate
    ir = rng.standard_normal((wave.shape[0], t.size)) * np.exp(-6.9 * t / rt60)
    ir /= np.sqrt(np.sum(ir**2, axis=-1, keepdims=True))
    tail = fftconvolve(wave, ir, axes=-1)[:, : wave.shape[-1]]
    return (1 - wet) * wave + wet * tail
