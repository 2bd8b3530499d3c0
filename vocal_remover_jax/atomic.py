"""Atomic file writes: a temporary file beside the target, renamed onto it only once complete,
so an interrupted job never leaves a half-written output or spoils a good one."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temporary path in `path`'s folder (created if needed) with the same extension;
    it replaces `path` when the block ends and is removed if the block raises. The result has the
    mode a plain `open` gives (0666 minus the umask), whatever the writer did to the temporary."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = _create_temporary(directory, os.path.splitext(path)[1])
    mode = stat.S_IMODE(os.stat(tmp).st_mode)
    try:
        yield tmp
        os.chmod(tmp, mode)  # some writers (safetensors) replace the file with a private one
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _create_temporary(directory: str, suffix: str) -> str:
    """An empty new file created with mode 0666 minus the umask, as a plain `open` would make it
    (`tempfile.mkstemp` makes 0600, which other users, web servers and sync tools cannot read)."""
    while True:
        tmp = os.path.join(directory, f".tmp-{secrets.token_hex(8)}{suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def write_json(path: str, obj: Any, **dump_options: Any) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, **{"indent": 2, **dump_options})
