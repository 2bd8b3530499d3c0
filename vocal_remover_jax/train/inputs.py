"""Host-local batches for the trainer, and the device transform that finishes them.

Prepared records give raw crops (data/pipelines.py) that `device_transform` turns into model
inputs on the device (train/augment.py); the built-in "random" source gives finished batches
(its transform is the identity). Both are pure functions of (seed, example index), so a resumed
run sees the batches an uninterrupted one would. The "random" source needs no files: tests and
benchmarks use it. Its target is the input under a fixed spectral mask, which a model can learn
in a few steps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import ml_collections
import numpy as np

_EVAL_OFFSET = 1 << 40  # random-source eval examples never overlap training ones


def _random_example(seed: int, index: int, frames: int, bins: int, mode: str) -> dict:
    rng = np.random.default_rng([seed, index])
    x = rng.random((frames, bins, 2), dtype=np.float32)
    keep = (np.arange(bins) % 3 != 0).astype(np.float32)[None, :, None]  # the "instrumental" bins
    y = x * keep * 0.8
    if mode == "finetune":
        return {"mixture": x, "instrumental": y, "vocals": x - y}
    return {"input": x, "target": y, "is_next": np.int32(index % 2)}


def _random_batches(config: ml_collections.ConfigDict, local_batch: int, start_example: int,
                    process_index: int, process_count: int, offset: int = 0) -> Iterator[dict]:
    """Global example i of step s is s*global + i; this host takes its contiguous slice."""
    frames, bins = config.model.cropsize, config.model.n_fft // 2 + 1
    global_batch = local_batch * process_count
    step = start_example // local_batch
    while True:
        first = offset + step * global_batch + process_index * local_batch
        examples = [_random_example(config.seed, first + i, frames, bins, config.mode) for i in range(local_batch)]
        yield {k: np.stack([e[k] for e in examples]) for k in examples[0]}
        step += 1


def train_batches(config: ml_collections.ConfigDict, local_batch: int, start_example: int,
                  process_index: int, process_count: int) -> Iterator[dict]:
    """`start_example` counts this host's examples already consumed (the checkpointed position)."""
    if config.data.get("source") == "random":
        return _random_batches(config, local_batch, start_example, process_index, process_count)
    if not config.data.records:
        raise ValueError("config.data.records is empty: pass --config.data.records=DIR (written by "
                         "`vocal-remover-jax prepare`), or --config.data.source=random for a run without data")
    from vocal_remover_jax.data import pipelines

    make = pipelines.finetune_stream if config.mode == "finetune" else pipelines.pretrain_stream
    stream = make(config.data.records, config.data, batch_size=local_batch, seed=config.seed,
                  process_index=process_index, process_count=process_count, audio=config.audio)
    return stream.batches(start_example)


def eval_batches(config: ml_collections.ConfigDict, local_batch: int, process_index: int,
                 process_count: int) -> Iterator[dict]:
    """`config.eval_batches` batches (0: the whole split) with a "valid" flag per example."""
    if config.data.get("source") == "random":
        it = _random_batches(config, local_batch, 0, process_index, process_count, offset=_EVAL_OFFSET)
        return (dict(next(it), valid=np.ones((local_batch,), bool)) for _ in range(config.eval_batches or 4))
    from vocal_remover_jax.data import pipelines

    mode = "finetune" if config.mode == "finetune" else "pretrain"
    batches = pipelines.eval_batches(config.data.records, config.data, mode, batch_size=local_batch,
                                     process_index=process_index, process_count=process_count,
                                     audio=config.audio, seed=config.seed)
    return batches if not config.eval_batches else (b for _, b in zip(range(config.eval_batches), batches))


def device_transform(config: ml_collections.ConfigDict, train: bool) -> Callable[[dict], dict]:
    """Host batch -> model batch, to jit next to the step (identity for the random source)."""
    if config.data.get("source") == "random":
        return lambda batch: batch
    from vocal_remover_jax.train import augment

    if config.mode == "finetune":
        return functools.partial(augment.finetune_batch, config.data, config.seed, train=train)
    from vocal_remover_jax.data import pipelines

    warmup = config.data.token_warmup_epochs * pipelines.epoch_examples(config.data.records, "pretrain")
    return functools.partial(augment.pretrain_batch, config.data, config.seed, warmup_examples=warmup, train=train)
