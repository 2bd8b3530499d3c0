"""Shard files: ArrayRecord files of fixed-size blocks of a clip's complex STFT.

One record = `block_frames` frames of one stem, raw float16, C-order `(block_frames, bins,
channels=2, re/im=2)`: the complex STFT divided by the track's peak magnitude (`coef` in the
manifest), so |values| <= 1 and float16 keeps every bin within 2^-11 of the track peak (-66 dB)
at half of float32's bytes; phase is kept so stems can be mixed in the complex domain. A clip is
`stems x blocks_per_clip` consecutive records, stem-major. Why blocks: a crop reads only the
blocks it overlaps (a 1024-frame crop over 64-frame blocks reads at most 1088 frames), and
ArrayRecord (one record per chunk, uncompressed) reads any record by index, so a shuffled
order and a resume at any position cost the same as reading in file order.
"""

from __future__ import annotations

import numpy as np
from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter

WRITER_OPTIONS = "group_size:1,uncompressed"  # one record per chunk: random access reads one block
READER_OPTIONS = "readahead_buffer_size:0"  # random access: no read-ahead past what is asked


def block_shape(block_frames: int, bins: int) -> tuple[int, int, int, int]:
    return block_frames, bins, 2, 2


def encode_block(spec: np.ndarray) -> bytes:
    """`spec`: complex `(block_frames, bins, 2)`, already divided by the track's coef."""
    return np.stack([spec.real, spec.imag], axis=-1).astype(np.float16).tobytes()


class ShardWriter:
    def __init__(self, path: str):
        self._writer = ArrayRecordWriter(path, WRITER_OPTIONS)

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    def close(self) -> None:
        self._writer.close()


class ShardReader:
    """Reads blocks by record index; counts the records and bytes it reads (tests, benchmarks)."""

    def __init__(self, path: str, block_frames: int, bins: int):
        self.path = path
        self._reader = ArrayRecordReader(path, READER_OPTIONS)
        self._shape = block_shape(block_frames, bins)
        self.records_read = 0
        self.bytes_read = 0

    def read_into(self, first_record: int, start: int, out: np.ndarray) -> None:
        """Copies frames `start .. start + len(out)` of the stem whose frame 0 opens record
        `first_record` into `out` (float16 `(frames, bins, 2, 2)`), reading only the blocks they overlap."""
        b = self._shape[0]
        lo, hi = start // b, -(-(start + len(out)) // b)
        raw = self._reader.read(first_record + lo, first_record + hi)
        self.records_read += hi - lo
        self.bytes_read += sum(len(r) for r in raw)
        at = 0
        for k, data in enumerate(raw):
            block = np.frombuffer(data, np.float16).reshape(self._shape)
            begin = start - (lo + k) * b if k == 0 else 0
            piece = block[begin : begin + len(out) - at]
            out[at : at + len(piece)] = piece
            at += len(piece)

    def __len__(self) -> int:
        return self._reader.num_records()

    def close(self) -> None:
        self._reader.close()
