"""One record = one fixed-length clip of a track's complex STFT, as a `tf.train.Example`.

Features:
- `spec`: bytes, float16, C-order `(stems, clip_frames, bins, channels=2, re/im=2)`, the
  complex STFT divided by `coef` (so |values| <= 1: float16's 11-bit mantissa keeps every
  bin within 2^-11 of its value relative to the track peak, -66 dB, far below what a
  mask model resolves, at half of float32's bytes; phase is kept so stems can be mixed
  in the complex domain on the fly);
- `coef`: float, the track's peak STFT magnitude over all its stems (the normaliser);
- `frames`: int, frames of real audio in the clip (the rest is zero padding);
- `track`, `role`: bytes; `clip`: int, the clip's position in its track.
Stems per role are listed in `manifest.ROLES` (pairs: mixture, then instrumental).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

try:  # JAX owns the accelerators; tf.data runs on the host CPU.
    tf.config.set_visible_devices([], "GPU")
except RuntimeError:  # devices already initialised by an earlier TF user: nothing to hide now
    pass


def encode(spec: np.ndarray, coef: float, frames: int, track: str, role: str, clip: int) -> bytes:
    """`spec`: complex `(stems, clip_frames, bins, 2)` already divided by `coef`."""
    parts = np.stack([spec.real, spec.imag], axis=-1).astype(np.float16)
    feature = {
        "spec": tf.train.Feature(bytes_list=tf.train.BytesList(value=[parts.tobytes()])),
        "coef": tf.train.Feature(float_list=tf.train.FloatList(value=[coef])),
        "frames": tf.train.Feature(int64_list=tf.train.Int64List(value=[frames])),
        "clip": tf.train.Feature(int64_list=tf.train.Int64List(value=[clip])),
        "track": tf.train.Feature(bytes_list=tf.train.BytesList(value=[track.encode()])),
        "role": tf.train.Feature(bytes_list=tf.train.BytesList(value=[role.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


_FEATURES = {
    "spec": tf.io.FixedLenFeature([], tf.string),
    "coef": tf.io.FixedLenFeature([], tf.float32),
    "frames": tf.io.FixedLenFeature([], tf.int64),
    "clip": tf.io.FixedLenFeature([], tf.int64),
    "track": tf.io.FixedLenFeature([], tf.string),
    "role": tf.io.FixedLenFeature([], tf.string),
}


def decode(serialized: tf.Tensor, stems: int, clip_frames: int, bins: int) -> dict[str, tf.Tensor]:
    """Graph-mode parse: `spec` float16 `(stems, clip_frames, bins, 2, 2)`, `coef`, `frames`, ..."""
    record = tf.io.parse_single_example(serialized, _FEATURES)
    spec = tf.io.decode_raw(record["spec"], tf.float16)
    record["spec"] = tf.reshape(spec, [stems, clip_frames, bins, 2, 2])
    record["frames"] = tf.cast(record["frames"], tf.int32)
    return record


def decode_numpy(serialized: bytes, stems: int, clip_frames: int, bins: int) -> dict:
    """Eager helper for tests and tools: complex64 `spec` `(stems, clip_frames, bins, 2)`."""
    record = {k: v.numpy() for k, v in decode(tf.constant(serialized), stems, clip_frames, bins).items()}
    parts = record["spec"].astype(np.float32)
    record["spec"] = parts[..., 0] + 1j * parts[..., 1]
    return record
