"""Finding tracks in the input folders `prepare` accepts, each tagged with its role.

A track is a list of files whose sum or difference makes its stems. Discovery never opens
audio; problems found here (a mixture without its instrumental) are reported as skips.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence

from vocal_remover_jax.audio.files import is_audio_file

_MUSDB_VOCALS = "vocals"
_MUSDB_MIXTURE = "mixture"


@dataclasses.dataclass(frozen=True)
class Track:
    """`role` in manifest.ROLES; `files[stem]` lists files summed into that stem.

    `subtract` names files subtracted from the instrumental (MUSDB without other stems).
    """

    track_id: str
    role: str
    files: dict[str, tuple[str, ...]]
    subtract: tuple[str, ...] = ()
    split_hint: str | None = None  # MUSDB's own train/test folders win over the hash split
    variant: int = 0  # > 0: an altered copy of a vocal track (data/vocal_variants.py), seeded by variant_seed
    variant_seed: int = 0


@dataclasses.dataclass(frozen=True)
class Skip:
    path: str
    reason: str


def _audio_files(directory: str) -> list[str]:
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"input folder {directory!r} does not exist")
    found = []
    for base, dirs, names in os.walk(directory):
        dirs.sort()
        found += [os.path.join(base, n) for n in sorted(names) if not n.startswith(".")]
    return found


def _key(path: str, root: str) -> str:
    return os.path.splitext(os.path.relpath(path, root))[0]


def single_role(directory: str, role: str) -> tuple[list[Track], list[Skip]]:
    """Every file under `directory` is one track of `role` (instrumental or vocals), its one stem."""
    tracks, skips = [], []
    for path in _audio_files(directory):
        if is_audio_file(path):
            tracks.append(Track(f"{role}:{_key(path, directory)}", role, {role: (path,)}))
        else:
            skips.append(Skip(path, "not an audio file extension"))
    return tracks, skips


def mixtures_only(directory: str) -> tuple[list[Track], list[Skip]]:
    """Songs without stems: read by pretraining only, never mistaken for clean instrumentals."""
    tracks, skips = single_role(directory, "mixture")
    return [Track(f"mixtures:{t.track_id.split(':', 1)[1]}", "mixtures", t.files) for t in tracks], skips


def pairs(mixtures: str, instruments: str) -> tuple[list[Track], list[Skip]]:
    """Mixture and instrumental files matched by relative name without extension."""
    mix = {_key(p, mixtures): p for p in _audio_files(mixtures) if is_audio_file(p)}
    inst = {_key(p, instruments): p for p in _audio_files(instruments) if is_audio_file(p)}
    tracks = [Track(f"pairs:{k}", "pairs", {"mixture": (mix[k],), "instrumental": (inst[k],)}) for k in sorted(mix.keys() & inst.keys())]
    skips = [Skip(mix[k], f"no instrumental named {k}.* in {instruments}") for k in sorted(mix.keys() - inst.keys())]
    skips += [Skip(inst[k], f"no mixture named {k}.* in {mixtures}") for k in sorted(inst.keys() - mix.keys())]
    return tracks, skips


def musdb(root: str) -> tuple[list[Track], list[Skip]]:
    """MUSDB18-HQ style: a folder per track holding `mixture.*`, `vocals.*` and other stems.

    Yields a pair (mixture, instrumental = sum of the non-vocal stems, or mixture - vocals
    when there are none) and a vocals track. A `test` folder on the path marks validation.
    """
    by_folder: dict[str, dict[str, str]] = {}
    for path in _audio_files(root):
        if is_audio_file(path):
            stem = os.path.splitext(os.path.basename(path))[0].lower()
            by_folder.setdefault(os.path.dirname(path), {})[stem] = path
    tracks, skips = [], []
    for folder, stems in sorted(by_folder.items()):
        key = os.path.relpath(folder, root)
        if _MUSDB_MIXTURE not in stems or _MUSDB_VOCALS not in stems:
            skips += [Skip(p, f"MUSDB track folder {folder} lacks mixture.* or vocals.*") for p in stems.values()]
            continue
        hint = "validation" if "test" in key.split(os.sep) else ("train" if "train" in key.split(os.sep) else None)
        others = tuple(p for s, p in sorted(stems.items()) if s not in (_MUSDB_MIXTURE, _MUSDB_VOCALS))
        mixture, vocal = stems[_MUSDB_MIXTURE], stems[_MUSDB_VOCALS]
        if others:
            tracks.append(Track(f"musdb:{key}", "pairs", {"mixture": (mixture,), "instrumental": others}, (), hint))
        else:
            tracks.append(Track(f"musdb:{key}", "pairs", {"mixture": (mixture,), "instrumental": (mixture,)}, (vocal,), hint))
        tracks.append(Track(f"musdb:{key}", "vocals", {"vocals": (vocal,)}, (), hint))
    return tracks, skips


def assign_splits(tracks: Sequence[Track], validation_fraction: float) -> list[str]:
    """Validation = the first round(fraction * n) track ids in sha1 order (at least one when
    fraction > 0 and there are two or more): stable under reruns and across roles, so a
    MUSDB track's pair and vocals land in the same split."""
    ids = sorted({t.track_id.split(":", 1)[1] for t in tracks if t.split_hint is None})
    ranked = sorted(ids, key=lambda k: hashlib.sha1(k.encode()).hexdigest())
    count = round(validation_fraction * len(ranked))
    if validation_fraction > 0 and len(ranked) >= 2:
        count = max(count, 1)
    validation = set(ranked[:count])
    return [t.split_hint or ("validation" if t.track_id.split(":", 1)[1] in validation else "train") for t in tracks]
