"""SDR helpers against fast_bss_eval, and `evaluate` on a generated MUSDB18-HQ style tree."""

import json

import fast_bss_eval
import numpy as np
import pytest

from vocal_remover_jax import cli
from vocal_remover_jax.audio.io import write_audio
from vocal_remover_jax.audio.reference_tracks import find_reference_tracks
from vocal_remover_jax.inference.sdr import track_sdr

RATE = 8000


def _sources(seconds, seed):
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    vocals = np.stack([np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 310 * t)]) * 0.3
    inst = 0.2 * rng.standard_normal((2, n))
    return np.stack([vocals, inst])  # (sources, channels, samples)


def _exact_sdr(refs, est):
    """fast_bss_eval's direct solve, through its torch backend (its numpy one breaks under numpy 2)."""
    torch = pytest.importorskip("torch")
    sdr = fast_bss_eval.bss_eval_sources(torch.from_numpy(refs), torch.from_numpy(est), compute_permutation=False)[0]
    return sdr.numpy()


def test_track_sdr_matches_fast_bss_eval_per_frame_and_whole():
    refs = _sources(3.0, seed=0)
    est = refs + 0.05 * np.random.default_rng(1).standard_normal(refs.shape)
    est[1] += 0.2 * refs[0]  # some vocal leakage into the instrumental
    scores = track_sdr(refs, est, RATE)
    # per channel, then the channels' dB averaged
    whole = np.mean([_exact_sdr(refs[:, c], est[:, c]) for c in range(2)], axis=0)
    np.testing.assert_allclose(scores["whole"], whole, atol=0.01)
    second = slice(RATE, 2 * RATE)
    frame1 = np.mean([_exact_sdr(refs[:, c, second], est[:, c, second]) for c in range(2)], axis=0)
    np.testing.assert_allclose(scores["frames"][:, 1], frame1, atol=0.01)
    assert scores["frames"].shape == (2, 3)
    np.testing.assert_allclose(scores["median"], np.median(scores["frames"], axis=1))
    snr = 10 * np.log10(np.sum(refs[0] ** 2) / np.sum((est[0] - refs[0]) ** 2))
    assert abs(scores["whole"][0] - snr) < 1.5  # distortion filters can only help a little on white noise
    assert scores["whole"][1] < scores["whole"][0]  # leakage costs the instrumental


def test_silent_reference_frames_are_skipped():
    refs = _sources(3.0, seed=2)
    refs[0, :, RATE : 2 * RATE] = 0.0  # vocals silent during the second second
    est = refs + 0.01
    scores = track_sdr(refs, est, RATE)
    assert np.isnan(scores["frames"][:, 1]).all() and np.isfinite(scores["frames"][:, [0, 2]]).all()
    assert np.isfinite(scores["median"]).all()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("musdb")
    for i, name in enumerate(["Artist - Song", "Other - Tune"]):
        refs = _sources(2.0, seed=10 + i).astype(np.float32)
        stems = {"vocals": refs[0], "drums": refs[1] * 0.5, "bass": refs[1] * 0.3, "other": refs[1] * 0.2}
        for stem, wave in {**stems, "mixture": refs.sum(0)}.items():
            write_audio(str(root / "test" / name / f"{stem}.wav"), wave, RATE, subtype="FLOAT")
    triple = _sources(1.5, seed=20).astype(np.float32)
    for stem, wave in {"mixture": triple.sum(0), "vocals": triple[0], "instrumental": triple[1]}.items():
        write_audio(str(root / "extra" / f"live_{stem}.wav"), wave, RATE, subtype="FLOAT")
    return root


def test_find_reference_tracks(dataset):
    tracks = find_reference_tracks(str(dataset))
    assert [t.name for t in tracks] == ["extra/live", "test/Artist - Song", "test/Other - Tune"]
    assert len(tracks[1].instrumental) == 3 and tracks[0].instrumental[0].endswith("live_instrumental.wav")


def test_evaluate_scores_every_track_and_writes_json(tmp_path, dataset, tiny_model, capsys):
    model = tiny_model[0]
    out = tmp_path / "res" / "sdr.json"
    assert cli.main(["evaluate", str(dataset / "test"), "--model", model, "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "Artist - Song" in table and "median of tracks" in table
    results = json.loads(out.read_text())
    assert [t["name"] for t in results["tracks"]] == ["Artist - Song", "Other - Tune"]
    for track in results["tracks"]:
        for source in ("vocals", "instrumental"):
            assert np.isfinite(track[source]["sdr_median"]) and np.isfinite(track[source]["sdr_whole"])
    median = np.median([t["vocals"]["sdr_whole"] for t in results["tracks"]])
    assert results["summary"]["vocals"]["sdr_whole"] == pytest.approx(median)
    assert not results["failed"]
