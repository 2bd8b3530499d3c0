"""Examples/s and bytes read per example of each pipeline at the `seed` shapes (CPU host).

Writes random records of the seed layout (1025 bins, stereo, float16 complex clips) to a
temp directory, then times batches after a warm-up. Usage:
  python benchmarks/pipeline.py --clips 8 --clip-frames 2048 --batches 5 --batch-size 2
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


def _write(root: str, clips: int, clip_frames: int, bins: int) -> None:
    import tensorflow as tf

    from vocal_remover_jax.data import records

    rng = np.random.default_rng(0)
    sets = {}
    for role, stems in mf.ROLES.items():
        entries = []
        for shard in range(2):
            name = mf.shard_name(role, "train", shard, 2)
            path = os.path.join(root, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with tf.io.TFRecordWriter(path) as w:
                for c in range(clips // 2):
                    spec = (rng.standard_normal((len(stems), clip_frames, bins, 2), np.float32) * 0.1).astype(np.complex64)
                    w.write(records.encode(spec, 100.0, clip_frames, f"{role}{shard}", role, c))
            entries.append({"file": name, "examples": clips // 2, "bytes": os.path.getsize(path), "sha256": mf.sha256_file(path)})
        sets[role] = {"train": entries}
    man = {"format": mf.FORMAT, "version": mf.VERSION, "audio": {"sample_rate": 44100, "n_fft": 2048, "hop_length": 1024},
           "clip_frames": clip_frames, "bins": bins, "channels": 2, "dtype": "float16", "sets": sets}
    write_json(os.path.join(root, mf.MANIFEST), man, indent=1, sort_keys=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--clip-frames", type=int, default=2048)
    p.add_argument("--cropsize", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--batches", type=int, default=5)
    args = p.parse_args()
    from vocal_remover_jax.data import pipelines

    with tempfile.TemporaryDirectory() as root:
        _write(root, args.clips, args.clip_frames, 1025)
        man = mf.load_manifest(root)
        record_bytes = {r: man["sets"][r]["train"][0]["bytes"] / man["sets"][r]["train"][0]["examples"] for r in mf.ROLES}
        results = {}
        for kind in ("pretrain", "finetune"):
            cfg = pipelines.default_data_config(kind)
            cfg.cropsize, cfg.verify_checksums = args.cropsize, False
            make = pipelines.pretrain_dataset if kind == "pretrain" else pipelines.finetune_dataset
            it = iter(make(root, cfg, batch_size=args.batch_size, seed=0, process_index=0, process_count=1))
            next(it)  # warm-up: graph build, first reads
            times = []
            for _ in range(args.batches):
                t = time.perf_counter()
                next(it)
                times.append(time.perf_counter() - t)
            # records read per example: pretrain main + next partner (+ mixup); finetune
            # (instrumental + 2 vocals, or 1 pair) doubled by the mixup partner.
            if kind == "pretrain":
                role = max(("instrumental", "pairs"), key=lambda r: man["sets"][r]["train"][0]["examples"])  # as the pipeline picks
                reads = (2 + (cfg.mixup_rate > 0)) * record_bytes[role]
            else:
                n_i = man["sets"]["instrumental"]["train"][0]["examples"] * 2
                frac = n_i and 0.5
                one = (1 - frac) * (record_bytes["instrumental"] + 2 * record_bytes["vocals"]) + frac * record_bytes["pairs"]
                reads = one * (2 if cfg.mixup_rate > 0 else 1)
            med = statistics.median(times)
            results[kind] = {"examples_per_s": args.batch_size / med, "median_batch_s": med, "bytes_read_per_example": reads}
        print(json.dumps({"args": vars(args), "record_bytes": record_bytes, "results": results}, indent=1))


if __name__ == "__main__":
    main()
