"""prepare -> records -> pipelines, on generated audio files (no downloads)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from vocal_remover_jax.data import manifest as mf
from vocal_remover_jax.data.defaults import default_data_config
from vocal_remover_jax.data import synthetic
from vocal_remover_jax.data.prepare import prepare_records

AUDIO = {"sample_rate": 22050, "n_fft": 256, "hop_length": 128}


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    dirs = synthetic.write_synthetic_dataset(str(root / "audio"), n_tracks=4, seconds=3.0, sample_rate=44100, seed=1)
    inst = dirs["instrumental"]
    with open(os.path.join(inst, "corrupt.wav"), "wb") as f:
        f.write(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 10)
    open(os.path.join(inst, "empty.wav"), "wb").close()
    sf.write(os.path.join(inst, "silent.wav"), np.zeros((20000, 2), np.float32), 44100)
    mono = synthetic.instrumental(3.0, 22050, 99)[0]
    sf.write(os.path.join(inst, "mono22k.flac"), 0.5 * mono / np.abs(mono).max(), 22050)
    out = str(root / "records")
    result = prepare_records(out, instrumental=[inst], vocals=[dirs["vocals"]], musdb=[dirs["musdb"]],
                             mixtures_only=[dirs["mixtures"]], clip_frames=128, block_frames=16,
                             tracks_per_shard=1, validation_fraction=0.25, progress=False, **AUDIO)
    return out, result


def test_prepare_skips_bad_files_and_keeps_mono(records):
    out, result = records
    reasons = {os.path.basename(s.path): s.reason for s in result.skipped}
    assert set(reasons) == {"corrupt.wav", "empty.wav", "silent.wav"}
    assert "empty" in reasons["empty.wav"] and "silent" in reasons["silent.wav"]
    tracks = [t for by in result.manifest["sets"]["instrumental"].values() for e in by for t in e["tracks"]]
    assert "instrumental:mono22k" in tracks
    assert result.manifest["audio"] == AUDIO
    mf.verify_shards(out, [e for by in result.manifest["sets"].values() for es in by.values() for e in es])


def test_rerun_resumes_without_rewriting(records, tmp_path):
    out, result = records
    copy = str(tmp_path / "copy")
    shutil.copytree(out, copy)
    victim = result.manifest["sets"]["vocals"]["train"][0]["file"]
    os.remove(os.path.join(copy, victim))  # as if killed before this shard was renamed in
    kept = os.path.join(copy, result.manifest["sets"]["vocals"]["train"][1]["file"])
    before = os.stat(kept).st_mtime_ns
    audio_root = os.path.dirname(result.skipped[0].path).rsplit(os.sep, 1)[0]
    again = prepare_records(copy, instrumental=[os.path.join(audio_root, "instrumental")], vocals=[os.path.join(audio_root, "vocals")],
                            musdb=[os.path.join(audio_root, "musdb")], mixtures_only=[os.path.join(audio_root, "mixtures")],
                            clip_frames=128, block_frames=16, tracks_per_shard=1,
                            validation_fraction=0.25, progress=False, **AUDIO)
    assert os.stat(kept).st_mtime_ns == before
    assert again.manifest["sets"] == result.manifest["sets"]


def test_checksum_and_truncation_errors_name_the_shard(records, tmp_path):
    out, result = records
    copy = str(tmp_path / "copy")
    shutil.copytree(out, copy)
    entry = result.manifest["sets"]["pairs"]["train"][0]
    path = os.path.join(copy, entry["file"])
    with open(path, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(mf.ManifestError, match="sha256") as info:
        mf.verify_shards(copy, [entry])
    assert entry["file"] in str(info.value)
    with open(path, "r+b") as f:
        f.truncate(entry["bytes"] // 2)
    from vocal_remover_jax.data import pipelines

    cfg = default_data_config("finetune")
    cfg.cropsize = 64
    with pytest.raises(mf.ManifestError, match="truncated") as info:
        pipelines.finetune_stream(copy, cfg, batch_size=2, seed=0, process_index=0, process_count=1)
    assert entry["file"] in str(info.value)


def test_settings_mismatch_is_an_error(records):
    with pytest.raises(mf.ManifestError, match="n_fft=256"):
        mf.load_manifest(records[0], {"sample_rate": 22050, "n_fft": 512, "hop_length": 128})


def test_hosts_read_disjoint_shards_covering_all(records):
    entries = mf.shards(records[1].manifest, "vocals", "train")
    shares = [mf.host_shards(entries, p, 2) for p in range(2)]
    files = [{e["file"] for e in s} for s in shares]
    assert files[0] and files[1] and not files[0] & files[1]
    assert files[0] | files[1] == {e["file"] for e in entries}


def _cfg(kind, **overrides):
    cfg = default_data_config(kind)
    cfg.cropsize = 64
    cfg.verify_checksums = False
    cfg.update(overrides)
    return cfg


def _stream(records, kind, **kwargs):
    from vocal_remover_jax.data import pipelines

    make = pipelines.pretrain_stream if kind == "pretrain" else pipelines.finetune_stream
    options = dict(batch_size=4, seed=7, process_index=0, process_count=1)
    options.update(kwargs)
    return make(records[0], _cfg(kind, workers=1, prefetch=1), **options)


def test_shuffle_visits_every_example_once_per_epoch_not_in_file_order(records):
    stream = _stream(records, "pretrain")
    n = len(stream.table)
    first, second = [[stream.clip_at(e * n + i, n) for i in range(n)] for e in range(2)]
    assert sorted(first) == list(range(n)) and sorted(second) == list(range(n))
    assert first != list(range(n)) and first != second
    # consecutive examples come from many tracks and roles, not blocks of one track
    assert len(set(stream.table.track[first[:8]])) >= 4
    assert len(set(stream.table.role[first[: n // 2]])) == len(set(stream.table.role))
    # the batches read those clips: each example's crop is a crop of its clip
    batch = next(stream.batches(0))
    assert batch["crop"].shape == (4, 64, 129, 2, 2) and np.abs(batch["crop"]).max() > 0


@pytest.mark.parametrize("kind", ["pretrain", "finetune"])
def test_resume_matches_uninterrupted_and_costs_the_same_at_any_position(records, kind):
    full = _stream(records, kind)
    n = len(full.table)
    wanted = {8: None, 4 * ((3 * n) // 4) + 8: None}  # early in epoch 0, and about three epochs later
    reads = {}
    spent = lambda s: s.table.records_read + (s.vocals.records_read if kind == "finetune" else 0)
    it = full.batches(0)
    for position in range(0, max(wanted) + 4, 4):
        before = spent(full)
        batch = next(it)
        after = spent(full)
        if position in wanted:
            wanted[position], reads[position] = batch, after - before
    for position, batch in wanted.items():
        resumed = _stream(records, kind)
        again = next(resumed.batches(position))
        for key in batch:
            np.testing.assert_array_equal(again[key], batch[key], err_msg=f"{key} at {position}")
        assert spent(resumed) == reads[position], (position, spent(resumed), reads[position])  # nothing before
    other = next(_stream(records, kind, seed=8).batches(8))
    crop = "crop" if kind == "pretrain" else "instrumental"
    assert not np.array_equal(other[crop], wanted[8][crop])


def test_mixtures_only_songs_never_reach_finetuning(records):
    out, result = records
    assert result.manifest["counts"]["mixtures"]["train"] > 0
    stream = _stream(records, "finetune", batch_size=8)
    opened = [r.path for r in stream.table.readers + stream.vocals.readers]
    assert opened and not any(f"{os.sep}mixtures{os.sep}" in p for p in opened)
    assert "mixtures" not in stream.table.roles
    it = stream.batches(0)
    for _ in range(3):
        next(it)
    assert stream.table.records_read > 0
    pretrain = _stream(records, "pretrain")
    assert "mixtures" in pretrain.table.roles
    rows = [pretrain.clip_at(i, len(pretrain.table)) for i in range(len(pretrain.table))]
    assert any(pretrain.table.roles[pretrain.table.role[r]] == "mixtures" for r in rows)


def test_is_next_negatives_include_hard_ones_and_never_the_clip_itself(records):
    stream = _stream(records, "pretrain")
    t = stream.table
    same = 0
    for i in range(400):
        rng = np.random.default_rng(i)
        row = int(rng.integers(len(t)))
        other = stream.partner(rng, row)
        assert other != row
        same += t.track[other] == t.track[row]
    assert 0.4 < same / 400 < 0.75  # half hard (same track, nearby), plus chance


def _random_raw(kind, b, frames, bins, seed=0):
    rng = np.random.default_rng(seed)
    parts = lambda *shape: (rng.standard_normal(shape) * 0.3).astype(np.float16)
    index = np.stack([np.zeros(b, np.uint32), np.arange(b, dtype=np.uint32) + 1000], 1)
    if kind == "pretrain":
        return {"index": index, "crop": parts(b, frames, bins, 2, 2), "is_next": (np.arange(b) % 2).astype(np.int32)}
    return {"index": index, "instrumental": parts(b, frames, bins, 2, 2), "other": parts(b, 2, frames, bins, 2, 2),
            "instrumental_coef": rng.uniform(1, 2, b).astype(np.float32),
            "other_coef": rng.uniform(1, 2, (b, 2)).astype(np.float32),
            "vocal_count": (np.arange(b) % 3).astype(np.int32), "is_pair": (np.arange(b) % 4 == 3).astype(np.int32)}


def test_device_mixtures_are_instrumental_plus_vocals_in_the_complex_domain():
    import jax

    from vocal_remover_jax.train import augment

    cfg = _cfg("finetune", vocal_rate=1.0, instrumental_only_rate=0.0, mixup_rate=0.0, vocal_channel_drop_rate=0.0)
    raw = _random_raw("finetune", 12, 8, 9)
    raw["other"][..., 1, :] = raw["other"][..., 0, :]  # vocals the same in both channels: their swaps are invisible
    mixture, inst, coef = jax.jit(lambda b: augment.finetune_complex(cfg, 3, b))(raw)
    mixture, inst, coef = map(np.asarray, (mixture, inst, coef))
    ci, co = raw["instrumental_coef"], raw["other_coef"]
    for j in range(12):
        own = raw["instrumental"][j].astype(np.float32) * ci[j]
        assert np.allclose(inst[j], own, atol=1e-5) or np.allclose(inst[j], own[..., ::-1, :], atol=1e-5)
        flipped = not np.allclose(inst[j], own, atol=1e-5)
        v = raw["other"][j].astype(np.float32) * co[j][:, None, None, None, None]
        if flipped:
            v = v[..., ::-1, :]
        vocals = mixture[j] - inst[j]
        if raw["is_pair"][j]:
            np.testing.assert_allclose(mixture[j], v[0], atol=1e-5)
            assert np.isclose(coef[j], ci[j])
            continue
        count = raw["vocal_count"][j]
        if count == 0:
            np.testing.assert_allclose(vocals, 0, atol=1e-6)
            continue
        basis = np.stack([v[0].ravel(), v[1].ravel()] if count == 2 else [v[0].ravel()], 1)
        w, *_ = np.linalg.lstsq(basis, vocals.ravel(), rcond=None)
        np.testing.assert_allclose(basis @ w, vocals.ravel(), atol=1e-4)  # a mix of exactly those stems
        assert np.all(w > -1e-5) and abs(w.sum() - 1) < 1e-4  # a convex blend
        assert np.isclose(coef[j], max(ci[j], float(w @ co[j][:count])), rtol=1e-5)
    out = jax.jit(lambda b: augment.finetune_batch(cfg, 3, b))(raw)
    magnitude = np.sqrt((mixture.astype(np.float32) ** 2).sum(-1)) / coef[:, None, None, None]
    np.testing.assert_allclose(np.asarray(out["mixture"]), np.clip(magnitude, 0, 1), atol=1e-5)


def test_vocal_level_draws_the_configured_vocal_to_instrumental_ratio():
    import jax

    from vocal_remover_jax.train import augment

    cfg = _cfg("finetune", vocal_rate=1.0, instrumental_only_rate=0.0, mixup_rate=0.0, vocal_channel_drop_rate=0.0,
               vocal_to_instrumental_db=(-8.0, 4.0))
    raw = _random_raw("finetune", 64, 8, 9)
    raw["vocal_count"][:] = 1
    raw["is_pair"][:] = 0
    raw["other_coef"][:, 0] *= 1e-3  # vocals 60 dB under: the draw must bring them up
    mixture, inst, _ = map(np.asarray, jax.jit(lambda b: augment.finetune_complex(cfg, 3, b))(raw))
    vocals = mixture - inst
    db = 10 * np.log10((vocals ** 2).sum((1, 2, 3, 4)) / (inst ** 2).sum((1, 2, 3, 4)))
    capped = db < -8.0 - 1e-3  # 30 dB of gain at most
    assert capped.all()  # 60 dB under: every gain is at the cap
    raw["other_coef"][:, 0] = raw["instrumental_coef"]
    mixture, inst, _ = map(np.asarray, jax.jit(lambda b: augment.finetune_complex(cfg, 3, b))(raw))
    db = 10 * np.log10(((mixture - inst) ** 2).sum((1, 2, 3, 4)) / (inst ** 2).sum((1, 2, 3, 4)))
    assert db.min() >= -8.0 - 1e-3 and db.max() <= 4.0 + 1e-3
    assert db.max() - db.min() > 8.0  # spread over the range, not one level
    val = map(np.asarray, jax.jit(lambda b: augment.finetune_complex(cfg, 3, b, train=False))(raw))
    again = map(np.asarray, jax.jit(lambda b: augment.finetune_complex(cfg, 3, b, train=False))(raw))
    for a, b in zip(val, again):
        np.testing.assert_array_equal(a, b)  # validation mixtures are fixed
    with pytest.raises(ValueError, match="vocal_to_instrumental_db"):
        augment.finetune_complex(_cfg("finetune", vocal_to_instrumental_db=(4.0, -8.0)), 3, raw)


def test_vocal_pan_moves_centred_vocals_within_the_width_at_constant_power():
    import jax

    from vocal_remover_jax.train import augment

    cfg = _cfg("finetune", vocal_rate=1.0, instrumental_only_rate=0.0, mixup_rate=0.0, vocal_channel_drop_rate=0.0,
               swap_rate=0.0, vocal_pan=0.5)
    raw = _random_raw("finetune", 64, 8, 9)
    raw["vocal_count"][:] = 1
    raw["is_pair"][:] = 0
    raw["other"][..., 1, :] = raw["other"][..., 0, :]  # centred (mono) vocals
    run = lambda c, train=True: map(np.asarray, jax.jit(lambda b: augment.finetune_complex(c, 3, b, train))(raw))
    mixture, inst, _ = run(cfg)
    vocals = mixture - inst
    left, right = ((vocals[..., c, :] ** 2).sum((1, 2, 3)) for c in (0, 1))
    centred = 2 * (raw["other"][:, 0, ..., 0, :].astype(np.float32) ** 2).sum((1, 2, 3)) * raw["other_coef"][:, 0] ** 2
    np.testing.assert_allclose(left + right, centred, rtol=1e-4)  # constant power
    position = 4 / np.pi * np.arctan2(np.sqrt(right), np.sqrt(left)) - 1  # -1 hard left, +1 hard right
    assert np.abs(position).max() <= 0.5 + 1e-4 and position.min() < -0.3 and position.max() > 0.3
    for c in (cfg.copy_and_resolve_references(), None):  # no pan at width 0, nor in validation
        if c is not None:
            c.vocal_pan = 0.0
        mixture, inst, _ = run(c or cfg, train=c is not None)
        np.testing.assert_allclose((mixture - inst)[..., 0, :], (mixture - inst)[..., 1, :], atol=1e-6)
    with pytest.raises(ValueError, match="vocal_pan"):
        bad = cfg.copy_and_resolve_references()
        bad.vocal_pan = 1.5
        augment.finetune_complex(bad, 3, raw)


def test_device_mixtures_mask_rates_and_token_warmup():
    import jax

    from vocal_remover_jax.train import augment

    cfg = _cfg("pretrain", token_size=2, next_chunk=32)
    raw = _random_raw("pretrain", 256, 64, 5)
    out = jax.jit(lambda b: augment.pretrain_batch(cfg, 5, b))(raw)
    kind = np.asarray(out["mask_kind"])[:, ::2]  # one entry per token
    n = kind.size
    chosen = (kind > 0).mean()
    assert abs(chosen - cfg.mask_rate) < 4 * np.sqrt(cfg.mask_rate * (1 - cfg.mask_rate) / n)
    sel = kind[kind > 0]
    for code, rate in ((2, cfg.noise_rate), (3, cfg.unchanged_rate)):
        assert abs((sel == code).mean() - rate) < 4 * np.sqrt(rate * (1 - rate) / sel.size)
    masked = np.asarray(out["mask_kind"]) == 1
    boundary = cfg.cropsize - cfg.next_chunk
    masked[:, boundary - 1 : boundary + 1] = False  # the separator token
    x, y = np.asarray(out["input"]), np.asarray(out["target"])
    assert np.all(x[masked] == 1.0)
    untouched = np.asarray(out["mask_kind"]) == 0
    untouched[:, boundary - 1 : boundary + 1] = False
    np.testing.assert_array_equal(x[untouched], y[untouched])
    assert 0 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal(np.asarray(out["is_next"]), raw["is_next"])
    sizes = np.asarray(augment.token_size(_cfg("pretrain", token_size=8), jax.numpy.asarray(
        np.array([[0, 0], [0, 1], [0, 50], [0, 100], [1, 0]], np.uint32)), 100.0))
    assert list(sizes) == [1, 1, 4, 8, 8]


def test_eval_is_padded_and_equal_across_hosts(records):
    from vocal_remover_jax.data import pipelines

    for kind in ("finetune", "pretrain"):
        cfg = _cfg(kind)
        runs = [list(pipelines.eval_batches(records[0], cfg, kind, batch_size=3, process_index=p, process_count=2))
                for p in range(2)]
        assert len(runs[0]) == len(runs[1]) > 0
        counts = records[1].manifest["counts"]
        roles = ("instrumental", "pairs") if kind == "finetune" else ("instrumental", "pairs", "mixtures")
        total = sum(counts.get(r, {}).get("validation", 0) for r in roles) * (2 if kind == "finetune" else 1)
        assert 0 < sum(b["valid"].sum() for r in runs for b in r) <= total
        if kind == "finetune":  # validation instrumentals get a vocal mixed in, pairs are as they are
            flags = {(int(b["is_pair"][i]), int(b["vocal_count"][i]))
                     for r in runs for b in r for i in np.flatnonzero(b["valid"])}
            assert flags == {(1, 0), (0, 1)}
        again = list(pipelines.eval_batches(records[0], cfg, kind, batch_size=3, process_index=0, process_count=2))
        for key in again[0]:
            np.testing.assert_array_equal(again[0][key], runs[0][0][key])


def test_tfds_builder_reads_records(records, tmp_path):
    import tensorflow_datasets as tfds

    from vocal_remover_jax.data.tfds_builder import VocalRemoverRecords

    builder = VocalRemoverRecords(records_dir=records[0], role="pairs", data_dir=str(tmp_path))
    builder.download_and_prepare()
    n = records[1].manifest["counts"]["pairs"]["train"]
    assert builder.info.splits["train_pairs"].num_examples == n
    ex = next(iter(builder.as_dataset(split=tfds.split_for_jax_process("train_pairs")).take(1)))
    assert tuple(ex["spec"].shape) == (2, 128, 129, 2, 2)
