"""Which files are audio, and finding them in folders: shared by `separate`, `evaluate` and `prepare`."""

from __future__ import annotations

import os
from collections.abc import Iterator

# Extensions read through libsndfile or, failing that, librosa's audioread fallback.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif", ".aiff", ".wma", ".caf")


def is_audio_file(path: str) -> bool:
    """By extension, case-insensitive; hidden files (`.name`, e.g. macOS `._song.wav`) never count."""
    name = os.path.basename(path)
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


def walk_audio_files(folder: str) -> Iterator[str]:
    """Audio files under `folder`, recursively, in a stable (sorted) order."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if is_audio_file(name):
                yield os.path.join(root, name)
