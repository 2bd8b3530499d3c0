"""prepare -> records -> pipelines, on generated audio files (no downloads)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from vocal_remover_jax.data import manifest as mf
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
    result = prepare_records(out, instrumental=[inst], vocals=[dirs["vocals"]], musdb=[dirs["musdb"]], clip_frames=128,
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
                            musdb=[os.path.join(audio_root, "musdb")], clip_frames=128, tracks_per_shard=1,
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

    cfg = pipelines.default_data_config("finetune")
    with pytest.raises(mf.ManifestError, match="truncated") as info:
        pipelines.finetune_dataset(copy, cfg, batch_size=2, seed=0, process_index=0, process_count=1)
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


def _cfg(kind):
    from vocal_remover_jax.data import pipelines

    cfg = pipelines.default_data_config(kind)
    cfg.cropsize = 64
    return cfg


def test_pretrain_mask_rates(records):
    from vocal_remover_jax.data import pipelines

    cfg = _cfg("pretrain")
    cfg.token_size = 2
    ds = pipelines.pretrain_dataset(records[0], cfg, batch_size=16, seed=5, process_index=0, process_count=1)
    batches = list(ds.take(8).as_numpy_iterator())
    kind = np.concatenate([b["mask_kind"][:, ::2] for b in batches])  # one entry per token
    n = kind.size
    chosen = (kind > 0).mean()
    assert abs(chosen - cfg.mask_rate) < 4 * np.sqrt(cfg.mask_rate * (1 - cfg.mask_rate) / n)
    sel = kind[kind > 0]
    for code, rate in ((2, cfg.noise_rate), (3, cfg.unchanged_rate)):
        assert abs((sel == code).mean() - rate) < 4 * np.sqrt(rate * (1 - rate) / sel.size) + 1e-9
    b = batches[0]
    masked = b["mask_kind"] == 1
    boundary = cfg.cropsize - cfg.next_chunk
    masked[:, boundary - cfg.token_size // 2 : boundary + cfg.token_size // 2] = False  # separator token
    assert np.all(b["input"][masked] == 1.0)
    assert b["input"].min() >= 0 and b["input"].max() <= 1 and b["target"].max() <= 1
    is_next = np.concatenate([x["is_next"] for x in batches])
    assert 0.3 < is_next.mean() < 0.7


def test_finetune_mixture_is_instrumental_plus_vocals(records):
    import tensorflow as tf

    from vocal_remover_jax.data import pipelines, records as rec

    out, result = records
    man = result.manifest
    first = lambda role: next(e["file"] for e in man["sets"][role]["train"] if e["examples"])
    read = lambda role: next(iter(tf.data.TFRecordDataset(os.path.join(out, first(role)))))
    inst = rec.decode(read("instrumental"), 1, 128, 129)
    voc = rec.decode(read("vocals"), 1, 128, 129)
    cfg = _cfg("finetune")
    cfg.vocal_rate, cfg.instrumental_only_rate = 1.0, 0.0
    for i in range(4):
        mixture, instrumental, coef = pipelines.voxaug_complex(cfg, 0, i, inst, voc, voc)
        vocals = mixture - instrumental
        assert float(tf.reduce_max(tf.abs(vocals))) > 0
        # vocals come from the vocal clip only: zero where that clip is silent at every crop
        np.testing.assert_allclose((instrumental + vocals).numpy(), mixture.numpy(), atol=1e-5)
        assert abs(float(coef) - max(float(inst["coef"]), float(voc["coef"]))) < 1e-3 * float(coef)
    ds = pipelines.finetune_dataset(out, cfg, batch_size=4, seed=0, process_index=0, process_count=1)
    b = next(ds.as_numpy_iterator())
    assert b["mixture"].shape == (4, 64, 129, 2) and 0 <= b["mixture"].min() and b["mixture"].max() <= 1


@pytest.mark.parametrize("kind", ["pretrain", "finetune"])
def test_resume_matches_uninterrupted(records, kind):
    from vocal_remover_jax.data import pipelines

    cfg = _cfg(kind)
    make = pipelines.pretrain_dataset if kind == "pretrain" else pipelines.finetune_dataset
    full = list(make(records[0], cfg, batch_size=4, seed=7, process_index=1, process_count=2).take(6).as_numpy_iterator())
    resumed = next(make(records[0], cfg, batch_size=4, seed=7, start_example=20, process_index=1, process_count=2).as_numpy_iterator())
    for key in resumed:
        np.testing.assert_array_equal(resumed[key], full[5][key])
    other = next(make(records[0], cfg, batch_size=4, seed=8, start_example=20, process_index=1, process_count=2).as_numpy_iterator())
    assert not np.array_equal(other[next(iter(other))], resumed[next(iter(resumed))])


def test_eval_is_finite_padded_and_equal_across_hosts(records):
    from vocal_remover_jax.data import pipelines

    cfg = _cfg("finetune")
    runs = [list(pipelines.eval_dataset(records[0], cfg, batch_size=3, process_index=p, process_count=2).as_numpy_iterator()) for p in range(2)]
    assert len(runs[0]) == len(runs[1]) > 0
    total = sum(records[1].manifest["counts"]["pairs"]["validation"] for _ in [0]) * 2  # 128 frames -> 2 crops
    assert sum(len(b["valid"]) for r in runs for b in r) >= total
    assert sum(b["valid"].sum() for r in runs for b in r) <= total
    again = list(pipelines.eval_dataset(records[0], cfg, batch_size=3, process_index=0, process_count=2).as_numpy_iterator())
    np.testing.assert_array_equal(again[0]["mixture"], runs[0][0]["mixture"])


def test_tfds_builder_reads_records(records, tmp_path):
    import tensorflow_datasets as tfds

    from vocal_remover_jax.data.tfds_builder import VocalRemoverRecords

    builder = VocalRemoverRecords(records_dir=records[0], role="pairs", data_dir=str(tmp_path))
    builder.download_and_prepare()
    n = records[1].manifest["counts"]["pairs"]["train"]
    assert builder.info.splits["train_pairs"].num_examples == n
    ex = next(iter(builder.as_dataset(split=tfds.split_for_jax_process("train_pairs")).take(1)))
    assert tuple(ex["spec"].shape) == (2, 128, 129, 2, 2)


def test_pretraining_reads_both_roles_in_proportion():
    """Instrumental clips and pairs interleave by a fixed pattern; a resumed stream starts each
    role where the uninterrupted one would be."""
    from vocal_remover_jax.data.pipelines import role_of_example, role_position

    counts = [7, 3]
    roles = [role_of_example(i, counts) for i in range(1000)]
    assert sum(roles) == 300 and set(roles) == {0, 1}
    for start in (0, 1, 9, 10, 11, 537):
        assert role_position(start, 1, counts) == sum(roles[:start])
        assert role_position(start, 0, counts) == start - sum(roles[:start])
