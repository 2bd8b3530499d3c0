"""tf.data pipelines for pretraining, finetuning and evaluation, per host, resumable.

Determinism contract: example `i` of a stream is a pure function of (seed, i, this host's
shards). Record streams visit the host's shards epoch by epoch in a seeded order, reading
a few shards round-robin (deterministic interleave); every random choice of example `i`
(crop, swaps, masks, partner clips, mixing weights) comes from stateless RNG seeded with
`(seed, purpose, i)`. So `start_example=N` rebuilds exactly the stream an uninterrupted
iterator shows after N examples, with no iterator state to checkpoint (the price: a
restart re-reads at most one epoch of this host's records to reach its position).

Outputs (channels-last, per-host local batch `b`, `F = cfg.cropsize` = model.cropsize):
- pretrain: `input` (b, F, bins, 2) masked normalised magnitude in [0, 1]; `target`
  (b, F, bins, 2) unmasked; `is_next` (b,) int32, 1 when the last `cfg.next_chunk`
  frames continue the first part; `mask_kind` (b, F) int32: 0 untouched, 1 set to 1.0,
  2 noised, 3 selected but left unchanged (the BERT 80/10/10 split).
- finetune: `mixture`, `instrumental` (b, F, bins, 2) normalised magnitudes in [0, 1].
- eval: `mixture`, `instrumental`, `valid` (b,) bool; finite, every host the same length.
"""

from __future__ import annotations

import fractions

import tensorflow as tf

from vocal_remover_jax.data import manifest as mf
from vocal_remover_jax.data import records
from vocal_remover_jax.data.defaults import default_data_config  # noqa: F401  (lives apart: no TensorFlow)

_PURPOSES = {"crop": 1, "swap": 2, "next": 3, "mask": 4, "noise": 5, "mixup": 6, "vocal": 7, "drop": 8, "blend": 9, "pick": 10}


# ----------------------------------------------------------------------------- records


def _host(process_index, process_count):
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    return process_index, process_count


def _shards(records_dir, man, role, split, cfg, pi, pc):
    entries = [e for e in mf.shards(man, role, split) if e["examples"] > 0]
    mine = mf.host_shards(entries, pi, pc)
    mf.verify_shards(records_dir, mine, checksums=cfg.get("verify_checksums", True))
    return mine


def _decode_fn(man, role):
    stems, frames, bins = len(mf.ROLES[role]), man["clip_frames"], man["bins"]

    def decode(serialized):
        rec = records.decode(serialized, stems, frames, bins)
        return {"spec": rec["spec"], "coef": rec["coef"], "frames": rec["frames"]}

    return decode


def record_stream(records_dir: str, man: dict, entries: list[dict], role: str, seed: int, start: int, interleave: int) -> tf.data.Dataset:
    """Infinite, deterministic stream of decoded records starting at position `start`."""
    if not entries:
        raise mf.ManifestError(f"{records_dir}: this process has no non-empty {role} shards to read")
    import os

    files = tf.constant([os.path.join(records_dir, e["file"]) for e in entries])
    total = sum(e["examples"] for e in entries)
    k = max(1, min(interleave, len(entries)))

    def epoch(e):
        order = tf.argsort(tf.random.stateless_uniform([len(entries)], seed=tf.stack([tf.cast(seed, tf.int64), e])))
        shuffled = tf.gather(files, order)
        return tf.data.Dataset.from_tensor_slices(shuffled).interleave(
            tf.data.TFRecordDataset, cycle_length=k, block_length=1, num_parallel_calls=k, deterministic=True
        )

    first, offset = divmod(start, total)
    head = epoch(tf.constant(first, tf.int64)).skip(offset)
    rest = tf.data.Dataset.range(first + 1, 2**62).flat_map(epoch)
    return head.concatenate(rest).map(_decode_fn(man, role), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


# ----------------------------------------------------------------------------- per example


def _seed(seed, purpose, index):
    return tf.stack([tf.cast(seed, tf.int64) * 1000 + _PURPOSES[purpose], tf.cast(index, tf.int64)])


def _u(seed, purpose, index, shape=()):
    return tf.random.stateless_uniform(shape, seed=_seed(seed, purpose, index))


def _complex(spec16):
    parts = tf.cast(spec16, tf.float32)
    return tf.complex(parts[..., 0], parts[..., 1])


def _crop(rec, length, u, stem=None):
    """Random `length`-frame crop within the clip's real frames; returns complex (F, bins, 2) * coef."""
    stems = tf.shape(rec["spec"])[0]
    s = tf.minimum(tf.cast(u[1] * tf.cast(stems, tf.float32), tf.int32), stems - 1) if stem is None else stem
    room = tf.maximum(rec["frames"] - length, 0)
    start = tf.minimum(tf.cast(u[0] * tf.cast(room + 1, tf.float32), tf.int32), room)
    clip = rec["spec"][s, start : start + length]
    return _complex(clip) * tf.complex(rec["coef"], 0.0)


def _swap(x, flip):
    return tf.cond(flip, lambda: x[..., ::-1], lambda: x)


def _beta(seed, purpose, index, alpha):
    g = tf.random.stateless_gamma([2], seed=_seed(seed, purpose, index), alpha=alpha)
    return g[0] / (g[0] + g[1])


def pretrain_example(cfg, seed, index, main, partner, mix=None):
    F, nc, ts = cfg.cropsize, cfg.next_chunk, max(int(cfg.token_size), 1)  # crops under 32 frames: 1-frame tokens
    u = _u(seed, "crop", index, [4])
    x = tf.abs(_crop(main, F, u[:2])) / main["coef"]
    x = tf.clip_by_value(_swap(x, _u(seed, "swap", index) < cfg.swap_rate), 0.0, 1.0)
    if mix is not None:
        m = tf.clip_by_value(tf.abs(_crop(mix, F, _u(seed, "mixup", index, [2]))) / mix["coef"], 0.0, 1.0)
        a = _beta(seed, "mixup", index, cfg.mixup_alpha)
        x = tf.where(_u(seed, "pick", index) < cfg.mixup_rate, a * x + (1 - a) * m, x)
    is_next = tf.cast(_u(seed, "next", index) >= cfg.not_next_rate, tf.int32)
    if nc > 0:
        other = tf.clip_by_value(tf.abs(_crop(partner, nc, u[2:])) / partner["coef"], 0.0, 1.0)
        tail = tf.where(is_next == 1, x[F - nc :], other)
        x = tf.concat([x[: F - nc], tail], axis=0)
    else:
        is_next = tf.constant(1, tf.int32)
    y = x
    n_tok = F // ts
    sel = _u(seed, "mask", index, [2, n_tok])
    chosen = sel[0] < cfg.mask_rate
    kind = tf.where(
        chosen,
        tf.where(sel[1] < cfg.noise_rate, 2, tf.where(sel[1] < cfg.noise_rate + cfg.unchanged_rate, 3, 1)),
        0,
    )
    kind = tf.concat([tf.repeat(kind, ts), tf.zeros([F - n_tok * ts], tf.int32)], axis=0)
    noise = _u(seed, "noise", index, tf.shape(x)) * cfg.noise_scale
    k3 = kind[:, None, None]
    x = tf.where(k3 == 1, 1.0, tf.where(k3 == 2, tf.clip_by_value(y + noise, 0.0, 1.0), x))
    if nc > 0:  # separator token: alternate bins on/off around the chunk boundary
        frames = tf.range(F)[:, None, None]
        at = (frames >= F - nc - ts // 2) & (frames < F - nc + ts // 2)
        pattern = tf.cast(tf.range(tf.shape(x)[1]) % 2 == 0, tf.float32)[None, :, None]
        x = tf.where(at, pattern, x)
        y = tf.where(at, pattern, y)
    return {"input": x, "target": y, "is_next": is_next, "mask_kind": kind}


def _vocal(cfg, seed, index, rec, salt):
    F = cfg.cropsize
    v = _crop(rec, F, _u(seed, "vocal", index * 2 + salt, [2]))
    v = _swap(v, _u(seed, "swap", index * 2 + salt + 7) < 0.5)
    d = _u(seed, "drop", index * 2 + salt, [2])
    keep = tf.where(d[0] < cfg.vocal_channel_drop_rate, tf.where(d[1] < 0.5, [0.0, 1.0], [1.0, 0.0]), [1.0, 1.0])
    return v * tf.complex(keep, 0.0)


def voxaug_complex(cfg, seed, index, inst, vocal_a, vocal_b):
    """Complex (mixture, instrumental, coef) before normalisation: tested for mixture = inst + vocals."""
    i = _crop(inst, cfg.cropsize, _u(seed, "crop", index, [2]))
    v1, v2 = _vocal(cfg, seed, index, vocal_a, 0), _vocal(cfg, seed, index, vocal_b, 1)
    a = _u(seed, "blend", index, [2])
    w = tf.where(a[0] < cfg.vocal_blend_rate, a[1], 1.0)  # Beta(1, 1) is uniform
    v = tf.complex(w, 0.0) * v1 + tf.complex(1 - w, 0.0) * v2
    vc = w * vocal_a["coef"] + (1 - w) * vocal_b["coef"]
    use = _u(seed, "pick", index, [2])
    with_vocals = use[0] < cfg.vocal_rate
    mixture = tf.where(with_vocals, i + v, i)
    coef = tf.where(with_vocals, tf.maximum(inst["coef"], vc), inst["coef"])
    only = use[1] < cfg.instrumental_only_rate
    mixture = tf.where(only, i, mixture)
    coef = tf.where(only, inst["coef"], coef)
    flip = _u(seed, "swap", index) < cfg.swap_rate
    return _swap(mixture, flip), _swap(i, flip), coef


def _norm(x, coef):
    return tf.clip_by_value(tf.abs(x) / coef, 0.0, 1.0)


def _mixup(cfg, seed, index, ex, other):
    a = _beta(seed, "mixup", index, cfg.mixup_alpha)
    on = _u(seed, "mixup", index + (1 << 40)) < cfg.mixup_rate
    return {k: tf.where(on, a * ex[k] + (1 - a) * other[k], ex[k]) for k in ex}


# ----------------------------------------------------------------------------- datasets


def _batch(ds, batch_size, cfg):
    return ds.batch(batch_size, drop_remainder=True).prefetch(cfg.get("prefetch", 2))


def role_of_example(index, counts: list[int]):
    """Which of two record roles example `index` reads: a fixed interleaving in proportion to
    their example counts (so any example's source and position follow from its index)."""
    total, second = sum(counts), counts[1]
    return (index + 1) * second // total - index * second // total


def role_position(start: int, role: int, counts: list[int]) -> int:
    """How many of the first `start` examples read `role` (where its stream resumes)."""
    if len(counts) == 1:
        return start
    second = start * counts[1] // sum(counts)
    return second if role == 1 else start - second


def pretrain_dataset(records_dir, cfg, *, batch_size, seed, start_example=0, process_index=None, process_count=None, split="train", audio=None) -> tf.data.Dataset:
    """Infinite masked-pretraining batches from instrumental clips and both stems of pairs."""
    pi, pc = _host(process_index, process_count)
    man = mf.load_manifest(records_dir, audio)
    streams = []
    for role in ("instrumental", "pairs"):
        entries = _shards(records_dir, man, role, split, cfg, pi, pc)
        if entries:
            streams.append((role, entries))
    if not streams:
        raise mf.ManifestError(f"{records_dir}: no instrumental or pairs records in split {split!r} for process {pi}")
    counts = [sum(e["examples"] for e in entries) for _, entries in streams]

    def stream(tag):
        parts = [record_stream(records_dir, man, entries, role, seed * 7 + tag,
                               role_position(start_example, i, counts), cfg.interleave)
                 for i, (role, entries) in enumerate(streams)]
        if len(parts) == 1:
            return parts[0]
        choice = tf.data.Dataset.range(start_example, 2**62).map(lambda n: role_of_example(n, counts))
        return tf.data.Dataset.choose_from_datasets(parts, choice)

    idx = tf.data.Dataset.range(start_example, 2**62)
    parts = [idx, stream(0), stream(1)]
    if cfg.mixup_rate > 0:
        parts.append(stream(2))
    ds = tf.data.Dataset.zip(tuple(parts)).map(
        lambda i, m, p, *mix: pretrain_example(cfg, seed, i, m, p, mix[0] if mix else None),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return _batch(ds, batch_size, cfg)


def finetune_dataset(records_dir, cfg, *, batch_size, seed, start_example=0, process_index=None, process_count=None, split="train", audio=None) -> tf.data.Dataset:
    """Infinite (mixture, instrumental) batches: instrumentals + on-the-fly vocals, and real pairs."""
    pi, pc = _host(process_index, process_count)
    man = mf.load_manifest(records_dir, audio)
    inst = _shards(records_dir, man, "instrumental", split, cfg, pi, pc)
    vox = _shards(records_dir, man, "vocals", split, cfg, pi, pc)
    pairs = _shards(records_dir, man, "pairs", split, cfg, pi, pc)
    if not (inst and vox):
        inst = []
    if not inst and not pairs:
        raise mf.ManifestError(f"{records_dir}: finetuning needs instrumental+vocals or pairs records ({split}, process {pi})")
    n_inst, n_pairs = sum(e["examples"] for e in inst), sum(e["examples"] for e in pairs)
    p = cfg.pair_fraction if cfg.pair_fraction >= 0 else n_pairs / (n_inst + n_pairs)
    p = 0.0 if not pairs else (1.0 if not inst else p)
    frac = fractions.Fraction(p).limit_denominator(1000)
    num, den = frac.numerator, frac.denominator
    pair_start = start_example * num // den  # pair examples before `start_example`
    vox_start = start_example - pair_start

    def voxaug(start, tag):
        st = lambda entries, role, t: record_stream(records_dir, man, entries, role, seed * 7 + t, start, cfg.interleave)
        idx = tf.data.Dataset.range(start, 2**62)

        def one(i, a, b, c):
            m, y, coef = voxaug_complex(cfg, seed + tag, i, a, b, c)
            return {"mixture": _norm(m, coef), "instrumental": _norm(y, coef)}

        return tf.data.Dataset.zip((idx, st(inst, "instrumental", 10 + tag), st(vox, "vocals", 20 + tag), st(vox, "vocals", 30 + tag))).map(
            one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )

    def paired(start, tag):
        idx = tf.data.Dataset.range(start, 2**62)

        def one(i, r):
            u = _u(seed + tag, "crop", i + (1 << 41), [2])
            m, y = _crop(r, cfg.cropsize, u, stem=0), None
            room = tf.maximum(r["frames"] - cfg.cropsize, 0)
            start_f = tf.minimum(tf.cast(u[0] * tf.cast(room + 1, tf.float32), tf.int32), room)
            y = _complex(r["spec"][1, start_f : start_f + cfg.cropsize]) * tf.complex(r["coef"], 0.0)
            flip = _u(seed + tag, "swap", i + (1 << 41)) < cfg.swap_rate
            return {"mixture": _swap(_norm(m, r["coef"]), flip), "instrumental": _swap(_norm(y, r["coef"]), flip)}

        stream = record_stream(records_dir, man, pairs, "pairs", seed * 7 + 40 + tag, start, cfg.interleave)
        return tf.data.Dataset.zip((idx, stream)).map(one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def mixed(v_start, p_start, g_start, tag):
        branches = []
        if inst:
            branches.append(voxaug(v_start, tag))
        if pairs:
            branches.append(paired(p_start, tag))
        if len(branches) == 1:
            return branches[0]
        choice = tf.data.Dataset.range(g_start, 2**62).map(lambda i: tf.cast((i + 1) * num // den - i * num // den, tf.int64))
        return tf.data.Dataset.choose_from_datasets(branches, choice)

    ds = mixed(vox_start, pair_start, start_example, 0)
    if cfg.mixup_rate > 0:
        idx = tf.data.Dataset.range(start_example, 2**62)
        ds = tf.data.Dataset.zip((idx, ds, mixed(vox_start, pair_start, start_example, 1))).map(
            lambda i, a, b: _mixup(cfg, seed, i, a, b), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
    return _batch(ds, batch_size, cfg)


def eval_dataset(records_dir, cfg, *, batch_size, process_index=None, process_count=None, split="validation", audio=None) -> tf.data.Dataset:
    """Finite, deterministic: every validation pair clip tiled into `cropsize` crops (zero
    padded); crops past a clip's real frames and the padding up to the common number of
    batches across hosts have `valid` False."""
    pi, pc = _host(process_index, process_count)
    man = mf.load_manifest(records_dir, audio)
    F, clip = cfg.cropsize, man["clip_frames"]
    per_clip = -(-clip // F)
    all_entries = [e for e in mf.shards(man, "pairs", split) if e["examples"] > 0]
    per_host = [sum(e["examples"] for e in mf.host_shards(all_entries, p, pc)) * per_clip for p in range(pc)]
    n_batches = max(-(-n // batch_size) for n in per_host) if per_host else 0
    mine = mf.host_shards(all_entries, pi, pc)
    mf.verify_shards(records_dir, mine, checksums=cfg.get("verify_checksums", True))
    import os

    decode = _decode_fn(man, "pairs")

    def tiles(r):
        padded = tf.pad(r["spec"], [[0, 0], [0, per_clip * F - clip], [0, 0], [0, 0], [0, 0]])
        x = tf.abs(_complex(tf.reshape(padded, [2, per_clip, F, man["bins"], 2, 2])))
        valid = tf.range(per_clip) * F < r["frames"]
        return tf.data.Dataset.from_tensor_slices({"mixture": tf.clip_by_value(x[0], 0.0, 1.0), "instrumental": tf.clip_by_value(x[1], 0.0, 1.0), "valid": valid})

    empty = {"mixture": tf.zeros([F, man["bins"], 2]), "instrumental": tf.zeros([F, man["bins"], 2]), "valid": tf.constant(False)}
    pad = tf.data.Dataset.from_tensors(empty).repeat(n_batches * batch_size - per_host[pi])
    if mine:
        files = [os.path.join(records_dir, e["file"]) for e in mine]
        ds = tf.data.TFRecordDataset(files).map(decode).flat_map(tiles).concatenate(pad)
    else:
        ds = pad
    return ds.batch(batch_size, drop_remainder=True)
