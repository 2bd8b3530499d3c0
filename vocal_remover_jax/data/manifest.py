"""`manifest.json` of a records directory: settings, shard lists, clip index and checksums.

Readers trust nothing but the manifest: it fixes the STFT settings (checked against the
config), the block and clip shapes, and per shard the byte size, sha256 and the index of its
clips (first record, real frames, peak, track, position in the track), so each host plans
its share of the data, its epoch order and any resume position without reading a shard.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence

MANIFEST = "manifest.json"
FORMAT = "vocal-remover-jax/records"
VERSION = 2
# role -> stems stored per clip, in order. `mixtures` are songs without stems: pretraining only.
ROLES: dict[str, tuple[str, ...]] = {
    "instrumental": ("instrumental",),
    "vocals": ("vocals",),
    "pairs": ("mixture", "instrumental"),
    "mixtures": ("mixture",),
}
PRETRAIN_ROLES = ("instrumental", "pairs", "mixtures")
FINETUNE_ROLES = ("instrumental", "pairs")  # + vocals, mixed in
SPLITS = ("train", "validation")


class ManifestError(ValueError):
    """A records directory is missing, inconsistent, corrupt, or made with other settings."""


def shard_name(role: str, split: str, index: int, count: int) -> str:
    return f"{role}/{split}-{index:05d}-of-{count:05d}.array_record"


def sha256_file(path: str, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def load_manifest(records_dir: str, audio: Mapping[str, int] | None = None) -> dict:
    """Reads `records_dir/manifest.json`; with `audio`, checks sample_rate, n_fft and hop_length."""
    path = os.path.join(records_dir, MANIFEST)
    if not os.path.isfile(path):
        raise ManifestError(f"{path}: no manifest; run `vocal-remover-jax prepare --out {records_dir}` first")
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise ManifestError(f"{path}: unreadable manifest ({error})") from error
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ManifestError(f"{path}: not a version-{VERSION} {FORMAT} manifest (version {manifest.get('version')}: "
                            f"records from an older release; re-run prepare into a new folder)")
    if audio is not None:
        check_audio_settings(manifest, audio, path)
    return manifest


def check_audio_settings(manifest: Mapping, audio: Mapping[str, int], where: str) -> None:
    stored = manifest["audio"]
    wrong = [f"{k}={stored[k]} (config says {audio[k]})" for k in ("sample_rate", "n_fft", "hop_length") if int(audio[k]) != stored[k]]
    if wrong:
        raise ManifestError(f"{where}: records were made with other STFT settings: {', '.join(wrong)}; re-run prepare")


def shards(manifest: Mapping, role: str, split: str) -> list[dict]:
    """Shard entries (`file`, `examples`, `records`, `bytes`, `sha256`, `tracks`, `clips`) of one
    role and split, in order. `clips` holds per clip `record` (its first), `frames`, `coef`,
    `track` (index into `tracks`) and `position` (clip number within its track)."""
    return list(manifest["sets"].get(role, {}).get(split, []))


def host_shards(entries: Sequence[dict], process_index: int, process_count: int) -> list[dict]:
    """This process's share: every `process_count`-th shard, so shares are disjoint and cover all."""
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} is outside [0, {process_count})")
    return list(entries[process_index::process_count])


def verify_shards(records_dir: str, entries: Sequence[dict], checksums: bool = True) -> None:
    """Sizes always (catches truncation for free); sha256 too when `checksums` (one full read)."""
    for entry in entries:
        path = os.path.join(records_dir, entry["file"])
        if not os.path.isfile(path):
            raise ManifestError(f"{path}: shard listed in the manifest is missing")
        size = os.path.getsize(path)
        if size != entry["bytes"]:
            raise ManifestError(f"{path}: shard is {size} bytes, manifest says {entry['bytes']} (truncated or replaced)")
        if checksums and sha256_file(path) != entry["sha256"]:
            raise ManifestError(f"{path}: sha256 does not match the manifest (corrupt shard)")
