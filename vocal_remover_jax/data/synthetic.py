"""Synthetic songs: instrumental-like and voice-like stereo audio, written as real files.

Tests and the quickstart need training data without downloads. The two sources are made
to differ the way real vocals differ from a band, only more so, so a tiny model learns the
split in minutes on a CPU:
- instruments: steady-pitch chords with dark timbres (few harmonics, decaying), a bass
  line, and drums (pitched-down kick, noisy snare, short bright hi-hats), panned around;
- voice: a melody an octave or more above the chords, with 5-6.5 Hz vibrato, vowel
  formants shaping a bright harmonic series, syllable envelopes and phrase gaps, centred.
Everything is a pure function of the seed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from vocal_remover_jax.audio.io import write_audio

# Vowel formants (F1, F2, F3) in Hz, adult voice.
_VOWELS = np.array(
    [[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480], [570, 840, 2410]], np.float64
)
_FORMANT_WIDTHS = np.array([90.0, 110.0, 170.0])
_FORMANT_GAINS = np.array([1.0, 0.6, 0.35])

SeedLike = int | Sequence[int]


def _midi_hz(note: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(note, np.float64) - 69.0) / 12.0)


def _decay(n: int, sample_rate: int, tau: float, attack: float = 0.005) -> np.ndarray:
    t = np.arange(n) / sample_rate
    return np.minimum(t / attack, 1.0) * np.exp(-t / tau)


def _pan(mono: np.ndarray, position: float) -> np.ndarray:
    """Equal-power pan, position in [-1 (left), 1 (right)]."""
    angle = (position + 1.0) * np.pi / 4.0
    return np.stack([np.cos(angle) * mono, np.sin(angle) * mono])


def instrumental_stems(seconds: float, sample_rate: int, seed: SeedLike) -> dict[str, np.ndarray]:
    """`{"drums", "bass", "other"}`, each float32 `(2, samples)`: a band playing a chord loop."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    beat = 60.0 / rng.uniform(90, 140)
    stems = {name: np.zeros((2, n)) for name in ("drums", "bass", "other")}
    t_all = np.arange(n) / sample_rate
    nyquist = sample_rate / 2

    root = rng.integers(45, 52)
    progression = root + rng.choice([0, 3, 5, 7, 8, 10], size=4)
    chord_len = 2 * beat
    for k, start in enumerate(np.arange(0.0, seconds, chord_len)):
        i0, i1 = int(start * sample_rate), min(n, int((start + chord_len) * sample_rate))
        chord_root = progression[k % len(progression)]
        third = 3 if rng.uniform() < 0.5 else 4
        t = t_all[i0:i1] - start
        for note, pan in zip((chord_root, chord_root + third, chord_root + 7), rng.uniform(-0.8, 0.8, 3)):
            f0 = _midi_hz(note)
            tone = sum(np.sin(2 * np.pi * h * f0 * t) / h**1.5 for h in range(1, 7) if h * f0 < nyquist)
            stems["other"][:, i0:i1] += _pan(0.25 * tone * _decay(i1 - i0, sample_rate, rng.uniform(0.4, 1.2)), pan)
        bass_f0 = _midi_hz(chord_root - 12)
        for b in range(2):
            j0 = i0 + int(b * beat * sample_rate)
            if j0 >= i1:
                break
            tb = t_all[j0:i1] - t_all[j0]
            bass = np.sin(2 * np.pi * bass_f0 * tb) + 0.3 * np.sin(4 * np.pi * bass_f0 * tb)
            stems["bass"][:, j0:i1] += _pan(0.4 * bass * _decay(i1 - j0, sample_rate, 0.35), 0.0)

    for k, start in enumerate(np.arange(0.0, seconds, beat / 2)):
        i0 = int(start * sample_rate)
        if k % 4 == 0:  # kick: a sine sweeping down
            m = min(n - i0, int(0.3 * sample_rate))
            tk = np.arange(m) / sample_rate
            phase = 2 * np.pi * (50 * tk + 70 * 0.04 * (1 - np.exp(-tk / 0.04)))
            stems["drums"][:, i0 : i0 + m] += _pan(0.8 * np.sin(phase) * _decay(m, sample_rate, 0.12), 0.0)
        elif k % 4 == 2:  # snare: noise with a short tonal body
            m = min(n - i0, int(0.25 * sample_rate))
            body = np.sin(2 * np.pi * 190 * np.arange(m) / sample_rate)
            hit = (0.5 * rng.standard_normal(m) + 0.3 * body) * _decay(m, sample_rate, 0.07)
            stems["drums"][:, i0 : i0 + m] += _pan(0.5 * hit, rng.uniform(-0.2, 0.2))
        m = min(n - i0, int(0.05 * sample_rate))  # hi-hat: differentiated (bright) noise
        hat = np.diff(rng.standard_normal(m + 1)) * _decay(m, sample_rate, 0.015, attack=0.001)
        stems["drums"][:, i0 : i0 + m] += _pan(0.12 * hat, 0.5)
    return {name: stem.astype(np.float32) for name, stem in stems.items()}


def instrumental(seconds: float, sample_rate: int, seed: SeedLike) -> np.ndarray:
    """Float32 `(2, samples)`: the sum of `instrumental_stems`."""
    return sum(instrumental_stems(seconds, sample_rate, seed).values())


def vocals(seconds: float, sample_rate: int, seed: SeedLike) -> np.ndarray:
    """Float32 `(2, samples)`: a sung melody with vibrato, vowel formants, syllables and gaps."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    out = np.zeros(n)
    nyquist = sample_rate / 2
    key = rng.integers(62, 70)
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    time = rng.uniform(0.0, 0.4)
    while time < seconds:
        phrase_end = time + rng.uniform(1.0, 3.0)
        while time < min(phrase_end, seconds):
            dur = rng.uniform(0.18, 0.6)
            i0, i1 = int(time * sample_rate), min(n, int((time + dur) * sample_rate))
            if i1 - i0 < 16:
                break
            t = np.arange(i1 - i0) / sample_rate
            f_note = _midi_hz(key + rng.choice(scale))
            rate, depth = rng.uniform(5.0, 6.5), rng.uniform(0.3, 0.7)  # vibrato depth in semitones
            onset = np.minimum(t / 0.15, 1.0)  # vibrato grows in after the attack, as singers do
            f0 = f_note * 2.0 ** (depth * onset * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)) / 12.0)
            phase = 2 * np.pi * np.cumsum(f0) / sample_rate
            formants = _VOWELS[rng.integers(len(_VOWELS))] * rng.uniform(0.95, 1.1)
            tone = np.zeros_like(t)
            for h in range(1, 40):
                fh = h * f0
                if fh.max() >= nyquist * 0.95:
                    break
                gain = (_FORMANT_GAINS / (1.0 + ((fh[:, None] - formants) / _FORMANT_WIDTHS) ** 2)).sum(-1)
                tone += (0.25 + gain) / h**0.7 * np.sin(h * phase)
            release = np.clip((t[-1] - t) / 0.06, 0.0, 1.0)
            envelope = np.minimum(t / 0.03, 1.0) * release * (1.0 - 0.2 * t / dur)
            out[i0:i1] += 0.25 * tone * envelope
            time += dur + (rng.uniform(0.02, 0.12) if rng.uniform() < 0.5 else 0.0)
        time = phrase_end + rng.uniform(0.3, 1.0)  # breath between phrases
    width = rng.uniform(0.9, 1.0)
    return np.stack([out, width * out]).astype(np.float32)


# Independent random streams of one dataset seed, by purpose: which song, which part of it.
_FIRST_SONG = {"stems": 0, "musdb": 1000}  # the MUSDB-style songs are other songs than the stems'
_PARTS = {"instrumental": 0, "vocals": 1}


def _stream(seed: int, song_set: str, index: int, part: str) -> tuple[int, int, int]:
    return seed, _FIRST_SONG[song_set] + index, _PARTS[part]


def write_synthetic_dataset(
    root: str, n_tracks: int = 4, seconds: float = 8.0, sample_rate: int = 22050, seed: int = 0
) -> dict[str, str]:
    """Writes `n_tracks` songs in every layout `prepare` reads; returns the folder of each.

    - `instrumental/track_XXX.wav` and `vocals/track_XXX.wav`: stems of the same songs;
    - `mixtures/` + `instruments/`: the paired layout (mixture = instrumental + vocals);
    - `musdb/track_XXX/{mixture,vocals,drums,bass,other}.wav`: MUSDB18-HQ style, from other
      random streams than the tracks above, so it can serve as held-out evaluation data.
    Stems share one gain per song, so a mixture is the sum of its stems (up to 16-bit rounding), peak 0.9.
    """
    dirs = {name: os.path.join(root, name) for name in ("instrumental", "vocals", "mixtures", "instruments", "musdb")}
    for i in range(n_tracks):
        name = f"track_{i:03d}"
        inst = instrumental(seconds, sample_rate, _stream(seed, "stems", i, "instrumental"))
        vox = vocals(seconds, sample_rate, _stream(seed, "stems", i, "vocals"))
        gain = 0.9 / max(np.abs(inst + vox).max(), np.abs(inst).max(), np.abs(vox).max(), 1e-6)
        inst, vox = inst * gain, vox * gain
        write_audio(os.path.join(dirs["instrumental"], f"{name}.wav"), inst, sample_rate)
        write_audio(os.path.join(dirs["vocals"], f"{name}.wav"), vox, sample_rate)
        write_audio(os.path.join(dirs["mixtures"], f"{name}.wav"), inst + vox, sample_rate)
        write_audio(os.path.join(dirs["instruments"], f"{name}.wav"), inst, sample_rate)

        stems = instrumental_stems(seconds, sample_rate, _stream(seed, "musdb", i, "instrumental"))
        stems["vocals"] = vocals(seconds, sample_rate, _stream(seed, "musdb", i, "vocals"))
        mixture = sum(stems.values())
        gain = 0.9 / max(np.abs(mixture).max(), *(np.abs(s).max() for s in stems.values()), 1e-6)
        for stem, wave in {**stems, "mixture": mixture}.items():
            write_audio(os.path.join(dirs["musdb"], name, f"{stem}.wav"), wave * gain, sample_rate)
    return dirs
