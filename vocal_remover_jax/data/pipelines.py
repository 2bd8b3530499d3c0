"""Host side of the training input: read, decode and crop, nothing else.

Every spectrogram computation (magnitudes, normalisation, vocal mixing, swaps, mixup, token
masks, the separator) happens on the device (`train/augment.py`). The host decides only what
to read, and reads only that: a crop touches the blocks it overlaps (records.py).

Order and resume: a host's examples are the clips of its shards. Epoch `e` visits them in a
permutation drawn from (seed, e), all tracks and roles shuffled together. Example `n` of the
host's stream is clip `permutation(n // N)[n % N]`, and everything else about it (crop start,
stem, is_next partner, vocal clips) comes from a generator seeded with (seed, purpose, global
example index). So a stream resumed at `n` reads the records an uninterrupted one would read
from there on, and nothing before: the cost of a resume does not grow with `n`.

Raw batches (per host, `b` examples, `F` = cfg.cropsize, float16 `(..., bins, 2, 2)` = complex
STFT / track peak as real and imaginary parts):
- pretrain: `index` (b, 2) uint32 global example index (high, low words), `crop` (b, F, ...)
  with the last `cfg.next_chunk` frames from another clip when `is_next` (b,) int32 is 0;
- finetune: `index`, `instrumental` (b, F, ...), `other` (b, 2, F, ...) = (mixture, -) of a
  real pair or up to two vocal crops, `instrumental_coef` (b,), `other_coef` (b, 2),
  `vocal_count` (b,) int32 (0, 1 or 2 vocal crops to mix in), `is_pair` (b,) int32;
- eval batches add `valid` (b,) bool (padding to the same batch count on every host is False).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import os
from collections.abc import Iterator

import numpy as np

from vocal_remover_jax.data import manifest as mf
from vocal_remover_jax.data import records

# Named purposes of the host's random streams (the device's are in train/augment.py).
EPOCH_ORDER = 1  # (seed, EPOCH_ORDER, epoch) -> the epoch's permutation of this host's clips
EXAMPLE_PLAN = 2  # (seed, EXAMPLE_PLAN, global index) -> crop starts, stems, partners, vocal clips
EVAL_PLAN = 3  # the same for validation examples (fixed: every evaluation sees the same crops)


def _host(process_index, process_count):
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    return process_index, process_count


def plan_rng(seed: int, purpose: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, purpose, index])


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return plan_rng(seed, EPOCH_ORDER, epoch).permutation(n)


def global_index(position: int, local_batch: int, process_index: int, process_count: int) -> int:
    """Host stream position -> global example index (step-major, then process, then slot)."""
    step, slot = divmod(position, local_batch)
    return (step * process_count + process_index) * local_batch + slot


def _index_words(g: int) -> tuple[int, int]:
    return g >> 32, g & 0xFFFFFFFF


@dataclasses.dataclass
class ClipTable:
    """The clips of some roles in this host's shards, one row per clip, and their readers."""

    readers: list[records.ShardReader]
    shard: np.ndarray
    record: np.ndarray
    frames: np.ndarray
    coef: np.ndarray
    track: np.ndarray  # host-unique track number
    position: np.ndarray
    stems: np.ndarray
    role: np.ndarray  # index into `roles`
    roles: tuple[str, ...]
    blocks_per_clip: int

    def __len__(self) -> int:
        return len(self.record)

    @property
    def records_read(self) -> int:
        return sum(r.records_read for r in self.readers)

    @property
    def bytes_read(self) -> int:
        return sum(r.bytes_read for r in self.readers)

    def read(self, row: int, stem: int, start: int, out: np.ndarray) -> None:
        first = int(self.record[row]) + stem * self.blocks_per_clip
        self.readers[self.shard[row]].read_into(first, start, out)

    def close(self) -> None:
        for r in self.readers:
            r.close()


def clip_table(records_dir: str, man: dict, roles, split: str, pi: int, pc: int, verify: bool = True) -> ClipTable:
    readers, cols, track_base = [], {k: [] for k in ("shard", "record", "frames", "coef", "track", "position",
                                                      "stems", "role")}, 0
    for r, role in enumerate(roles):
        entries = [e for e in mf.shards(man, role, split) if e["examples"] > 0]
        mine = mf.host_shards(entries, pi, pc)
        mf.verify_shards(records_dir, mine, checksums=verify)
        for entry in mine:
            clips = entry["clips"]
            n = len(clips["record"])
            cols["shard"].append(np.full(n, len(readers)))
            for k in ("record", "frames", "coef", "position"):
                cols[k].append(np.asarray(clips[k]))
            cols["track"].append(np.asarray(clips["track"]) + track_base)
            cols["stems"].append(np.full(n, len(mf.ROLES[role])))
            cols["role"].append(np.full(n, r))
            track_base += len(entry["tracks"])
            path = os.path.join(records_dir, entry["file"])
            readers.append(records.ShardReader(path, man["block_frames"], man["bins"]))
    arrays = {k: (np.concatenate(v) if v else np.zeros(0, np.int64)) for k, v in cols.items()}
    return ClipTable(readers=readers, roles=tuple(roles), blocks_per_clip=man["clip_frames"] // man["block_frames"],
                     **arrays)


def _load(records_dir, cfg, audio):
    man = mf.load_manifest(records_dir, audio)
    if cfg.cropsize > man["clip_frames"]:
        raise mf.ManifestError(f"{records_dir}: clips of {man['clip_frames']} frames are shorter than the crop "
                               f"({cfg.cropsize}); re-run prepare with --clip-frames >= {cfg.cropsize}")
    return man


def _start(rng: np.random.Generator, frames: int, length: int) -> int:
    return int(rng.integers(0, max(int(frames) - length, 0) + 1))


class _Stream:
    """Ordered, prefetched batches of a per-example reader; `start` counts this host's examples."""

    def __init__(self, cfg, batch_size: int, seed: int, pi: int, pc: int):
        self.cfg, self.batch_size, self.seed, self.pi, self.pc = cfg, batch_size, seed, pi, pc
        self._orders: dict[int, np.ndarray] = {}

    def clip_at(self, position: int, n: int) -> int:
        epoch, offset = divmod(position, n)
        orders = self._orders  # (worker threads may replace it meanwhile: read it once)
        order = orders.get(epoch)
        if order is None:
            order = epoch_permutation(self.seed, epoch, n)
            self._orders = {e: o for e, o in orders.items() if e >= epoch - 1} | {epoch: order}
        return int(order[offset])

    def batch(self, first: int) -> dict:
        raise NotImplementedError

    def batches(self, start_example: int = 0) -> Iterator[dict]:
        if start_example % self.batch_size:
            raise ValueError(f"start_example {start_example} is not a multiple of the batch size {self.batch_size}")
        workers = max(int(self.cfg.get("workers", 1)), 1)
        ahead = max(int(self.cfg.get("prefetch", 2)), 1)
        if workers == 1 and ahead == 1:
            position = start_example
            while True:
                yield self.batch(position)
                position += self.batch_size
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            queue, position = collections.deque(), start_example
            while True:
                while len(queue) < ahead:
                    queue.append(pool.submit(self.batch, position))
                    position += self.batch_size
                yield queue.popleft().result()


class PretrainStream(_Stream):
    """Instrumental, pair (either stem) and mixtures-only clips, with is_next partner chunks."""

    def __init__(self, table: ClipTable, man: dict, cfg, batch_size, seed, pi, pc):
        super().__init__(cfg, batch_size, seed, pi, pc)
        self.table, self.bins = table, man["bins"]
        by_track: dict[int, list[int]] = {}
        for row in np.lexsort((table.position, table.track)):
            by_track.setdefault(int(table.track[row]), []).append(int(row))
        self.by_track = {t: np.array(rows) for t, rows in by_track.items()}

    def partner(self, rng: np.random.Generator, row: int) -> int:
        """A clip other than `row`: a nearby clip of the same track (hard) or any other clip."""
        t = self.table
        if rng.random() < self.cfg.hard_negative_rate:
            rows = self.by_track[int(t.track[row])]
            near = rows[(rows != row) & (np.abs(t.position[rows] - t.position[row]) <= self.cfg.hard_negative_distance)]
            if len(near):
                return int(near[rng.integers(len(near))])
        other = int(rng.integers(len(t) - 1))
        return other + (other >= row)

    def example(self, row: int, rng: np.random.Generator, crop: np.ndarray) -> int:
        """Fills `crop`; returns is_next."""
        t, F, nc = self.table, self.cfg.cropsize, self.cfg.next_chunk
        stem = int(rng.integers(t.stems[row]))
        start = _start(rng, t.frames[row], F)
        is_next = not (nc > 0 and len(t) > 1 and rng.random() < self.cfg.not_next_rate)
        if is_next:
            t.read(row, stem, start, crop)
            return 1
        t.read(row, stem, start, crop[: F - nc])
        other = self.partner(rng, row)
        t.read(other, int(rng.integers(t.stems[other])), _start(rng, t.frames[other], nc), crop[F - nc :])
        return 0

    def _empty(self, b):
        F = self.cfg.cropsize
        return {"index": np.zeros((b, 2), np.uint32), "crop": np.zeros((b, F, self.bins, 2, 2), np.float16),
                "is_next": np.zeros((b,), np.int32)}

    def batch(self, first: int) -> dict:
        out = self._empty(self.batch_size)
        for j in range(self.batch_size):
            g = global_index(first + j, self.batch_size, self.pi, self.pc)
            row = self.clip_at(first + j, len(self.table))
            out["index"][j] = _index_words(g)
            out["is_next"][j] = self.example(row, plan_rng(self.seed, EXAMPLE_PLAN, g), out["crop"][j])
        return out


class FinetuneStream(_Stream):
    """Instrumental clips (+ vocal clips to mix in on the device) and real pairs."""

    def __init__(self, table: ClipTable, vocals: ClipTable, man: dict, cfg, batch_size, seed, pi, pc):
        super().__init__(cfg, batch_size, seed, pi, pc)
        self.table, self.vocals, self.bins = table, vocals, man["bins"]
        self.pairs = table.roles.index("pairs") if "pairs" in table.roles else -1

    def example(self, row, rng, out, j) -> None:
        t, F = self.table, self.cfg.cropsize
        start = _start(rng, t.frames[row], F)
        out["instrumental_coef"][j] = t.coef[row]
        if t.role[row] == self.pairs:
            t.read(row, 1, start, out["instrumental"][j])
            t.read(row, 0, start, out["other"][j, 0])
            out["other_coef"][j] = t.coef[row]
            out["is_pair"][j] = 1
            return
        t.read(row, 0, start, out["instrumental"][j])
        count = 0
        if rng.random() < self.cfg.vocal_rate:
            count = 2 if rng.random() < self.cfg.vocal_blend_rate else 1
        for k in range(count):
            v = int(rng.integers(len(self.vocals)))
            self.vocals.read(v, 0, _start(rng, self.vocals.frames[v], F), out["other"][j, k])
            out["other_coef"][j, k] = self.vocals.coef[v]
        out["vocal_count"][j] = count

    def _empty(self, b):
        F, shape = self.cfg.cropsize, (self.bins, 2, 2)
        return {"index": np.zeros((b, 2), np.uint32), "instrumental": np.zeros((b, F, *shape), np.float16),
                "other": np.zeros((b, 2, F, *shape), np.float16), "instrumental_coef": np.ones((b,), np.float32),
                "other_coef": np.ones((b, 2), np.float32), "vocal_count": np.zeros((b,), np.int32),
                "is_pair": np.zeros((b,), np.int32)}

    def batch(self, first: int) -> dict:
        out = self._empty(self.batch_size)
        for j in range(self.batch_size):
            g = global_index(first + j, self.batch_size, self.pi, self.pc)
            out["index"][j] = _index_words(g)
            self.example(self.clip_at(first + j, len(self.table)), plan_rng(self.seed, EXAMPLE_PLAN, g), out, j)
        return out


def pretrain_stream(records_dir, cfg, *, batch_size, seed, process_index=None, process_count=None,
                    split="train", audio=None) -> PretrainStream:
    pi, pc = _host(process_index, process_count)
    man = _load(records_dir, cfg, audio)
    table = clip_table(records_dir, man, mf.PRETRAIN_ROLES, split, pi, pc, cfg.get("verify_checksums", True))
    if not len(table):
        raise mf.ManifestError(f"{records_dir}: no {'/'.join(mf.PRETRAIN_ROLES)} clips in split {split!r} "
                               f"for process {pi} of {pc}")
    return PretrainStream(table, man, cfg, batch_size, seed, pi, pc)


def finetune_stream(records_dir, cfg, *, batch_size, seed, process_index=None, process_count=None,
                    split="train", audio=None) -> FinetuneStream:
    """Mixtures-only clips are never read here: the table holds instrumental and pair clips only."""
    pi, pc = _host(process_index, process_count)
    man = _load(records_dir, cfg, audio)
    verify = cfg.get("verify_checksums", True)
    vocals = clip_table(records_dir, man, ("vocals",), split, pi, pc, verify)
    roles = mf.FINETUNE_ROLES if len(vocals) else ("pairs",)  # instrumentals need vocals to mix in
    table = clip_table(records_dir, man, roles, split, pi, pc, verify)
    if not len(table):
        raise mf.ManifestError(f"{records_dir}: finetuning needs instrumental+vocals or pairs clips "
                               f"({split}, process {pi} of {pc})")
    return FinetuneStream(table, vocals, man, cfg, batch_size, seed, pi, pc)


def epoch_examples(records_dir: str, mode: str, split: str = "train") -> int:
    """Clips in one epoch over all hosts (what the token-size warm-up counts in)."""
    man = mf.load_manifest(records_dir)
    roles = mf.FINETUNE_ROLES if mode == "finetune" else mf.PRETRAIN_ROLES
    return sum(man.get("counts", {}).get(role, {}).get(split, 0) for role in roles)


def eval_batches(records_dir, cfg, mode: str, *, batch_size, process_index=None, process_count=None,
                 split="validation", audio=None, seed: int = 0) -> Iterator[dict]:
    """Finite and the same on every run. Finetuning: every validation pair clip, and every
    instrumental clip with a vocal clip mixed in (one fixed draw), tiled into crops. Pretraining:
    one crop per validation clip with a fixed is_next plan. Every host yields the same number of
    batches; padding and crops past a clip's end have `valid` False."""
    pi, pc = _host(process_index, process_count)
    man = _load(records_dir, cfg, audio)
    F, verify = cfg.cropsize, cfg.get("verify_checksums", True)
    vocals = clip_table(records_dir, man, ("vocals",), split, pi, pc, verify) if mode == "finetune" else None
    if mode == "finetune":
        roles = mf.FINETUNE_ROLES if len(vocals) else ("pairs",)
    else:
        roles = mf.PRETRAIN_ROLES
    per_clip = -(-man["clip_frames"] // F) if mode == "finetune" else 1
    sizes = [sum(e["examples"] for r in roles for e in mf.host_shards(
        [e for e in mf.shards(man, r, split) if e["examples"] > 0], p, pc)) for p in range(pc)]
    table = clip_table(records_dir, man, roles, split, pi, pc, verify)
    n_batches = max(-(-n * per_clip // batch_size) for n in sizes)
    if mode == "finetune":
        stream = FinetuneStream(table, vocals, man, cfg, batch_size, seed, pi, pc)
    else:
        stream = PretrainStream(table, man, cfg, batch_size, seed, pi, pc)
    items = [(row, k) for row in range(len(table)) for k in range(per_clip)]
    for b in range(n_batches):
        out = stream._empty(batch_size)
        out["valid"] = np.zeros((batch_size,), bool)
        for j, (row, k) in enumerate(items[b * batch_size : (b + 1) * batch_size]):
            g = (pi << 40) + b * batch_size + j
            out["index"][j] = _index_words(g)
            rng = plan_rng(seed, EVAL_PLAN, g)
            if mode == "pretrain":
                out["is_next"][j] = stream.example(row, rng, out["crop"][j])
                out["valid"][j] = True
                continue
            out["valid"][j] = valid = k * F < table.frames[row]
            if not valid:
                continue
            length = min(F, man["clip_frames"] - k * F)
            out["instrumental_coef"][j] = out["other_coef"][j] = table.coef[row]
            if table.roles[table.role[row]] == "pairs":
                table.read(row, 1, k * F, out["instrumental"][j, :length])
                table.read(row, 0, k * F, out["other"][j, 0, :length])
                out["is_pair"][j] = 1
            else:
                table.read(row, 0, k * F, out["instrumental"][j, :length])
                v = int(rng.integers(len(vocals)))
                vocals.read(v, 0, k * F, out["other"][j, 0, :length])
                out["other_coef"][j, 0] = vocals.coef[v]
                out["vocal_count"][j] = 1
        yield out
