"""Vocal variants (`prepare --vocal-variants`): altered, reproducible, in their source's split."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from vocal_remover_jax.data import vocal_variants as vv
from vocal_remover_jax.data.prepare import prepare_records

RATE = 22050


@pytest.fixture(scope="module")
def voice():
    """A sung-like 440 Hz note with harmonics and vibrato, stereo, 1.5 s."""
    t = np.arange(int(1.5 * RATE)) / RATE
    phase = 2 * np.pi * 440 * t + 0.5 * np.sin(2 * np.pi * 5 * t)
    tone = sum(np.sin(k * phase) / k for k in (1, 2, 3)) * np.minimum(1, 10 * t)
    return (0.3 * np.stack([tone, 0.8 * tone])).astype(np.float32)


def _pitch(wave: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(wave[0] * np.hanning(wave.shape[1])))
    freqs = np.fft.rfftfreq(wave.shape[1], 1 / RATE)
    band = (freqs > 250) & (freqs < 700)
    return float(freqs[band][np.argmax(spectrum[band])])


def test_variants_keep_the_contract_move_the_pitch_and_are_reproducible(voice):
    outs = []
    for k in (1, 2, 3):
        p = vv.variant_params(7, "vocals:voice", k)
        out = vv.make_variant(voice, RATE, 7, "vocals:voice", k)
        assert out.dtype == np.float32 and out.shape[0] == 2 and np.all(np.isfinite(out))
        assert out.shape[1] == round(voice.shape[1] / p.stretch)  # same rate, length scaled by the stretch only
        assert np.abs(out).max() <= 0.99 + 1e-6
        assert _pitch(out) == pytest.approx(440 * 2 ** (p.semitones / 12), rel=0.03)
        np.testing.assert_array_equal(out, vv.make_variant(voice, RATE, 7, "vocals:voice", k))
        outs.append(out)
    params = [vv.variant_params(7, "vocals:voice", k) for k in (1, 2, 3)]
    assert len({p.semitones for p in params}) == 3 and len({p.stretch for p in params}) == 3
    assert vv.variant_params(8, "vocals:voice", 1) != params[0]  # the seed matters
    n = min(o.shape[1] for o in outs)
    for a in range(3):
        assert not np.allclose(outs[a][:, :n], voice[:, :n], atol=1e-2)
        for b in range(a):
            assert not np.allclose(outs[a][:, :n], outs[b][:, :n], atol=1e-2)


def test_prepare_adds_variants_as_tracks_in_their_sources_split(voice, tmp_path):
    vocals = tmp_path / "vocals"
    vocals.mkdir()
    for i in range(4):
        sf.write(vocals / f"v{i}.wav", np.roll(voice, 1000 * i, axis=1).T, RATE)
    common = dict(vocals=[str(vocals)], sample_rate=RATE, n_fft=256, hop_length=128, clip_frames=64,
                  block_frames=16, validation_fraction=0.25, progress=False)
    plain = prepare_records(str(tmp_path / "plain"), **common).manifest
    more = prepare_records(str(tmp_path / "more"), vocal_variants=2, **common).manifest

    def tracks(m, split):
        return sorted(t for e in m["sets"]["vocals"].get(split, []) for t in e["tracks"])

    for split in ("train", "validation"):
        sources = tracks(plain, split)
        assert sources and tracks(more, split) == sorted(sources + [f"{s}~v{k}" for s in sources for k in (1, 2)])
    added = sum(more["counts"]["vocals"].values()) - sum(plain["counts"]["vocals"].values())
    assert added >= 2 * sum(plain["counts"]["vocals"].values()) / vv.STRETCH[1] - 2 * 4  # shorter by the stretch at most
