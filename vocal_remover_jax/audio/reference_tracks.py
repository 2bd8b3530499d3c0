"""Songs with their reference stems, for scoring a separation: MUSDB18-HQ style trees.

A track is a folder holding `mixture.*` and `vocals.*`; its instrumental reference is
`instrumental.*` (or `accompaniment.*`) when present, else the sum of the other stems
(MUSDB18-HQ's drums, bass, other), else mixture minus vocals. Flat triples
`<name>_mixture.*`, `<name>_vocals.*`, `<name>_instrumental.*` work too.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from vocal_remover_jax.audio.files import is_audio_file

SOURCES = ("vocals", "instrumental")  # the order of references and estimates everywhere
_INSTRUMENTAL = ("instrumental", "accompaniment")
_NOT_INSTRUMENTAL = ("mixture", "vocals", *_INSTRUMENTAL)


@dataclasses.dataclass
class ReferenceTrack:
    name: str
    mixture: str
    vocals: str
    instrumental: list[str]  # summed; empty: mixture - vocals


def find_reference_tracks(root: str) -> list[ReferenceTrack]:
    tracks = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        audio = {os.path.splitext(f)[0].lower(): os.path.join(folder, f) for f in sorted(files) if is_audio_file(f)}
        if "mixture" in audio and "vocals" in audio:
            inst = [audio[k] for k in _INSTRUMENTAL if k in audio][:1]
            inst = inst or [p for k, p in sorted(audio.items()) if k not in _NOT_INSTRUMENTAL]
            name = os.path.relpath(folder, root)
            tracks.append(ReferenceTrack(name if name != "." else os.path.basename(os.path.abspath(root)),
                                         audio["mixture"], audio["vocals"], inst))
            continue
        for key, path in sorted(audio.items()):
            if key.endswith("_mixture"):
                base = key[: -len("_mixture")]
                if f"{base}_vocals" in audio:
                    inst = [audio[f"{base}_{k}"] for k in _INSTRUMENTAL if f"{base}_{k}" in audio][:1]
                    name = os.path.join(os.path.relpath(folder, root), base) if folder != root else base
                    tracks.append(ReferenceTrack(name, path, audio[f"{base}_vocals"], inst))
    return tracks


def load_reference_track(track: ReferenceTrack) -> tuple[np.ndarray, np.ndarray, int]:
    """Mixture `(2, n)`, references `(2 sources: vocals, instrumental; 2, n)` at the mixture's rate."""
    from vocal_remover_jax.audio.io import load_audio

    mixture, rate = load_audio(track.mixture)
    vocals, _ = load_audio(track.vocals, sample_rate=rate)
    stems = [load_audio(p, sample_rate=rate)[0] for p in track.instrumental]
    n = min([mixture.shape[-1], vocals.shape[-1], *(s.shape[-1] for s in stems)])
    mixture, vocals = mixture[:, :n], vocals[:, :n]
    inst = np.sum([s[:, :n] for s in stems], axis=0) if stems else mixture - vocals
    return mixture, np.stack([vocals, inst]), rate
