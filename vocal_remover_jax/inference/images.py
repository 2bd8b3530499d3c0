"""Spectrogram images (`--output-image`): PNG written with zlib alone, no imaging library."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from vocal_remover_jax.atomic import atomic_path


def spectrogram_image(log_power: np.ndarray) -> np.ndarray:
    """`(2 channels, frames, bins)` log10 power -> `(bins, frames, 3)` uint8, low frequencies at the bottom.

    Like the reference's images: scaled to the full 0-255 range; red is the right channel, green
    the left, blue the louder of the two.
    """
    y = np.asarray(log_power, np.float32)
    y = y - y.min()
    peak = y.max()
    img = np.uint8(y * (255.0 / peak)) if peak > 0 else np.zeros(y.shape, np.uint8)
    rgb = np.stack([img[1], img[0], img.max(axis=0)], axis=-1)  # (frames, bins, 3)
    return rgb.transpose(1, 0, 2)[::-1]


def write_png(path: str, rgb: np.ndarray) -> None:
    """Writes an `(height, width, 3)` uint8 image atomically."""
    height, width, _ = rgb.shape
    rows = np.concatenate([np.zeros((height, 1), np.uint8), np.ascontiguousarray(rgb).reshape(height, -1)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(png)
