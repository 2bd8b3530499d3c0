"""TensorBoard event files of scalars, written without TensorFlow.

Importing TensorFlow only to log a few numbers cost every training process about 9 s of start-up.
An event file is a TFRecord stream (length, masked CRC-32C of the length, data, masked CRC-32C of
the data) of `tensorflow.Event` protocol buffers; scalars travel as `Summary.Value.simple_value`,
which TensorBoard shows under its Scalars tab. The few fields needed are encoded by hand.
"""

from __future__ import annotations

import os
import socket
import struct
import time

_FILE_VERSION = b"brain.Event:2"


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # Castagnoli, reflected
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", _masked_crc(length)) + data + struct.pack("<I", _masked_crc(data))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits, value = value & 0x7F, value >> 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def event(wall_time: float, step: int = 0, *, file_version: bytes | None = None,
          scalars: dict[str, float] | None = None) -> bytes:
    """An `Event` (wall_time = 1, step = 2, file_version = 3, summary = 5) whose summary holds one
    `Value` (tag = 1, simple_value = 2) per scalar."""
    out = _varint(1 << 3 | 1) + struct.pack("<d", wall_time) + _varint(2 << 3) + _varint(step & (2**64 - 1))
    if file_version is not None:
        out += _field(3, file_version)
    if scalars:
        values = b"".join(_field(1, _field(1, tag.encode()) + _varint(2 << 3 | 5) + struct.pack("<f", value))
                          for tag, value in scalars.items())
        out += _field(5, values)
    return out


class EventFileWriter:
    """One new event file in `logdir` per writer, as TensorFlow's writer makes; flushed at every write
    so a stopped run keeps what it logged."""

    def __init__(self, logdir: str):
        os.makedirs(logdir, exist_ok=True)
        now = time.time()
        self.path = os.path.join(logdir, f"events.out.tfevents.{int(now):010d}.{socket.gethostname()}.{os.getpid()}.v2")
        self._file = open(self.path, "ab")
        self._file.write(tfrecord(event(now, file_version=_FILE_VERSION)))
        self._file.flush()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self._file.write(tfrecord(event(time.time(), step, scalars=values)))
        self._file.flush()

    def close(self) -> None:
        self._file.close()
