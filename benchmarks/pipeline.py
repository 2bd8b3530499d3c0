"""The input path at the `seed` shapes: host examples/s per core, bytes read per example, and
the device-side augmentation's cost per example (CPU time and share of the seed step's FLOPs).

Writes random records of the seed layout (1025 bins, stereo, float16 complex, 64-frame blocks)
to a temporary directory (so reads come from the page cache: this measures the host's work, not
a disk), then reads batches on one thread. Examples/s per core = examples / process CPU seconds.
Bytes read = bytes of the records read (the reader's count; /proc/self/io's rchar agrees);
bytes consumed = the crops the step uses. Usage:
  python benchmarks/pipeline.py [--json] [--clips 8 --batches 10 --batch-size 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np

from vocal_remover_jax.atomic import write_json
from vocal_remover_jax.data import manifest as mf
from vocal_remover_jax.data.defaults import default_data_config
from vocal_remover_jax.data import records

SEED_STEP_FLOP = 1575e9  # one B1 seed train step (3 x the 521 GFLOP forward of a 1024-frame crop)


def _write(root: str, clips: int, clip_frames: int, block_frames: int, bins: int) -> None:
    rng = np.random.default_rng(0)
    block = [(rng.standard_normal((block_frames, bins, 2, 2)) * 0.1).astype(np.float16).tobytes() for _ in range(7)]
    sets = {}
    for role, stems in mf.ROLES.items():
        entries = []
        for shard in range(2):
            name = mf.shard_name(role, "train", shard, 2)
            path = os.path.join(root, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            writer, index, n = records.ShardWriter(path), {k: [] for k in ("record", "frames", "coef", "track", "position")}, 0
            for c in range(clips // 2):
                for k, v in (("record", n), ("frames", clip_frames), ("coef", 100.0), ("track", c // 2), ("position", c % 2)):
                    index[k].append(v)
                for _ in range(len(stems) * clip_frames // block_frames):
                    writer.write(block[n % len(block)])
                    n += 1
            writer.close()
            entries.append({"file": name, "examples": clips // 2, "records": n, "bytes": os.path.getsize(path),
                            "sha256": "", "tracks": [f"{role}{shard}-{t}" for t in range(-(-clips // 4))], "clips": index})
        sets[role] = {"train": entries}
    man = {"format": mf.FORMAT, "version": mf.VERSION, "audio": {"sample_rate": 44100, "n_fft": 2048, "hop_length": 1024},
           "clip_frames": clip_frames, "block_frames": block_frames, "bins": bins, "channels": 2, "dtype": "float16",
           "sets": sets, "counts": {r: {"train": clips} for r in sets}}
    write_json(os.path.join(root, mf.MANIFEST), man, indent=1, sort_keys=True)


def _rchar() -> int:
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar")).split()[1])


def _consumed(kind: str, batch: dict, crop_bytes: int) -> int:
    if kind == "pretrain":
        return len(batch["crop"]) * crop_bytes
    return int(np.sum(1 + batch["is_pair"] + batch["vocal_count"])) * crop_bytes


def host(root: str, kind: str, cropsize: int, batch_size: int, batches: int) -> dict:
    from vocal_remover_jax.data import pipelines

    cfg = default_data_config(kind)
    cfg.cropsize, cfg.verify_checksums, cfg.workers, cfg.prefetch = cropsize, False, 1, 1
    make = pipelines.pretrain_stream if kind == "pretrain" else pipelines.finetune_stream
    stream = make(root, cfg, batch_size=batch_size, seed=0, process_index=0, process_count=1)
    tables = [stream.table] + ([stream.vocals] if kind == "finetune" else [])
    it = stream.batches(0)
    batch = next(it)  # warm-up
    crop_bytes = cropsize * stream.bins * 2 * 2 * 2  # one stem's crop: stereo float16 (re, im)
    read0, rchar0, consumed, cpu, wall = sum(t.bytes_read for t in tables), _rchar(), 0, [], []
    for _ in range(batches):
        c, w = time.process_time(), time.perf_counter()
        batch = next(it)
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
        consumed += _consumed(kind, batch, crop_bytes)
    n = batches * batch_size
    read = sum(t.bytes_read for t in tables) - read0
    return {"examples_per_second_per_core": batch_size / statistics.median(cpu),
            "examples_per_second_wall": batch_size / statistics.median(wall),
            "bytes_read_per_example": read / n, "rchar_per_example": (_rchar() - rchar0) / n,
            "bytes_consumed_per_example": consumed / n, "read_over_consumed": read / consumed}


def _raw(kind: str, b: int, frames: int, bins: int) -> dict:
    rng = np.random.default_rng(0)
    parts = lambda *shape: (rng.standard_normal(shape) * 0.1).astype(np.float16)
    index = np.stack([np.zeros(b, np.uint32), np.arange(b, dtype=np.uint32)], 1)
    if kind == "pretrain":
        return {"index": index, "crop": parts(b, frames, bins, 2, 2), "is_next": np.ones(b, np.int32)}
    return {"index": index, "instrumental": parts(b, frames, bins, 2, 2), "other": parts(b, 2, frames, bins, 2, 2),
            "instrumental_coef": np.ones(b, np.float32), "other_coef": np.ones((b, 2), np.float32),
            "vocal_count": np.full(b, 2, np.int32), "is_pair": np.zeros(b, np.int32)}


def device(kind: str, cropsize: int, batch_size: int, repeats: int) -> dict:
    import jax

    from vocal_remover_jax.train import augment

    cfg = default_data_config(kind)
    cfg.cropsize = cropsize
    if kind == "pretrain":
        fn = lambda b: augment.pretrain_batch(cfg, 0, b, warmup_examples=1e6)  # noqa: E731
    else:
        fn = lambda b: augment.finetune_batch(cfg, 0, b)  # noqa: E731
    raw = jax.device_put(_raw(kind, batch_size, cropsize, 1025))
    compiled = jax.jit(fn).lower(raw).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", 0.0)) / batch_size
    jax.block_until_ready(compiled(raw))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(compiled(raw))
        times.append(time.perf_counter() - t)
    return {"augment_seconds_per_example": statistics.median(times) / batch_size, "augment_flops_per_example": flops,
            "augment_flops_fraction": flops / SEED_STEP_FLOP}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clips", type=int, default=8, help="clips per role")
    p.add_argument("--clip-frames", type=int, default=2048)
    p.add_argument("--block-frames", type=int, default=64)
    p.add_argument("--cropsize", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5, help="timed runs of the augmentation")
    p.add_argument("--json", action="store_true", help="print one JSON object only")
    args = p.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as root:
        _write(root, args.clips, args.clip_frames, args.block_frames, 1025)
        for kind in ("pretrain", "finetune"):
            results[kind] = host(root, kind, args.cropsize, args.batch_size, args.batches)
            results[kind].update(device(kind, args.cropsize, args.batch_size, args.repeats))
    if args.json:
        print(json.dumps(results))
        return
    print(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
