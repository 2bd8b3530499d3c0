"""The starter model's split of the real-audio pack (configs/starter_split.json) keeps its promises."""

from __future__ import annotations

import json
import os
import re

from tests.paths import benchmark

SPLIT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "starter_split.json")


def test_held_out_is_disjoint_from_train_and_nothing_non_commercial_is_used():
    with open(SPLIT) as f:
        split = json.load(f)
    train, held, excluded = (set(split[k]) for k in ("train", "held_out", "excluded"))
    assert not train & held and not (train | held) & excluded
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for part in ("train", "held_out", "excluded") for h in split[part].values())
    assert not [n for n in train | held if os.path.splitext(n)[0].endswith("_NC-SA")]
    assert sum(n.startswith("vocals/") for n in held) >= 1 and sum(n.startswith("instrumentals/") for n in held) >= 3
    assert sum(n.startswith("vocals/") for n in train) >= 1 and sum(n.startswith("instrumentals/") for n in train) >= 3


def test_held_out_mixtures_are_their_stems_summed_and_reproducible(tmp_path):
    import numpy as np
    import soundfile as sf

    from vocal_remover_jax.audio.io import load_audio

    starter = benchmark("starter_model")
    rate, rng = 8000, np.random.default_rng(0)
    for name, seconds in (("instrumentals/a.flac", 30.0), ("instrumentals/b.flac", 5.0), ("vocals/v.flac", 2.0)):
        os.makedirs(tmp_path / "pack" / os.path.dirname(name), exist_ok=True)
        sf.write(tmp_path / "pack" / name, 0.2 * rng.standard_normal((int(seconds * rate), 2)), rate)
    split = {"held_out": {"instrumentals/a.flac": "", "instrumentals/b.flac": "", "vocals/v.flac": ""}}
    clips = starter.heldout_mixtures(str(tmp_path / "pack"), split, str(tmp_path / "out"))
    assert clips == ["a+v", "b+v"]
    for clip in clips:
        mixture, vocals, inst = (load_audio(str(tmp_path / "out" / clip / f"{s}.wav"))[0] for s in ("mixture", "vocals", "instrumental"))
        assert mixture.shape[1] == min(int(starter.CLIP_SECONDS * rate), 5 * rate if clip == "b+v" else 10**9)
        np.testing.assert_allclose(mixture, vocals + inst, atol=1e-6)
        assert np.abs(mixture).max() <= 0.99 + 1e-6 and np.abs(vocals).max() > 0.01
    first = load_audio(str(tmp_path / "out" / "a+v" / "mixture.wav"))[0]
    starter.heldout_mixtures(str(tmp_path / "pack"), split, str(tmp_path / "again"))
    np.testing.assert_array_equal(first, load_audio(str(tmp_path / "again" / "a+v" / "mixture.wav"))[0])


def test_placed_voices_are_panned_or_reverberated_and_stay_exact_sums(tmp_path, tiny_model, monkeypatch, capsys):
    import numpy as np
    import soundfile as sf

    from vocal_remover_jax.audio.io import load_audio

    starter = benchmark("starter_model")
    rate, rng = 8000, np.random.default_rng(0)
    for name, seconds in (("instrumentals/a.flac", 3.0), ("instrumentals/b.flac", 3.0), ("vocals/v.flac", 2.0)):
        os.makedirs(tmp_path / "pack" / os.path.dirname(name), exist_ok=True)
        wave = 0.2 * rng.standard_normal((int(seconds * rate), 2))
        if name.startswith("vocals/"):
            wave[:, 1] = wave[:, 0]  # mono in both channels, as the pack's singing
        sf.write(tmp_path / "pack" / name, wave, rate)
    split = {"held_out": {"instrumentals/a.flac": "", "instrumentals/b.flac": "", "vocals/v.flac": ""}}
    starter.heldout_mixtures(str(tmp_path / "pack"), split, str(tmp_path / "held"))
    load = lambda root, clip, stem: load_audio(str(tmp_path / root / clip / f"{stem}.wav"))[0]
    for kind in starter.PLACEMENTS:
        out = starter.placed_mixtures(str(tmp_path / "held"), kind, str(tmp_path / kind))
        for i, clip in enumerate(["a+v", "b+v"]):
            mixture, vocals, inst = (load(kind, clip, s) for s in ("mixture", "vocals", "instrumental"))
            np.testing.assert_allclose(mixture, vocals + inst, atol=1e-6)
            left, right = (vocals ** 2).sum(-1)
            if kind == "panned":  # a pan position of +-PAN_POSITION: alternately left and right
                position = 4 / np.pi * np.arctan2(np.sqrt(right), np.sqrt(left)) - 1
                assert np.isclose(position, starter.PAN_POSITION * (1 if i % 2 else -1), atol=1e-3)
            else:  # a stereo room: the channels are no longer one signal
                assert np.corrcoef(vocals)[0, 1] < 0.95 and np.isclose(left, right, rtol=0.3)
        os.remove(tmp_path / kind / "a+v" / "mixture.wav")
        assert starter.placed_mixtures(str(tmp_path / "held"), kind, out) == out  # written once
        assert not os.path.exists(tmp_path / kind / "a+v" / "mixture.wav")
    # the command end to end on one placement: a model's and doing nothing's scores, side by side
    os.rename(tmp_path / "held", tmp_path / "work")
    os.makedirs(tmp_path / "w")
    os.rename(tmp_path / "work", tmp_path / "w" / "heldout")
    monkeypatch.setattr(starter, "PLACEMENTS", ("panned",))
    assert starter.main(["placement", "--workdir", str(tmp_path / "w"), "--model", tiny_model[0]]) == 0
    with open(tmp_path / "w" / "heldout-panned_sdr.json") as f:
        result = json.load(f)
    assert [c["name"] for c in result["clips"]] == ["a+v", "b+v"] and result["model"] == tiny_model[0]
    assert all(isinstance(c[k], float) for c in result["clips"] for k in c if k != "name")
    for s in ("vocals", "instrumental"):  # each clip's own gain, and their median beside the medians' difference
        assert all(c[f"{s}_gain"] == c[f"{s}_model"] - c[f"{s}_do_nothing"] for c in result["clips"])
        assert result["median"][f"{s}_gain"] == np.median([c[f"{s}_gain"] for c in result["clips"]])
    printed = capsys.readouterr().out
    gain, difference = (result["median"]["vocals_gain"],
                        result["median"]["vocals_model"] - result["median"]["vocals_do_nothing"])
    assert f"vocals: gain over doing nothing {gain:+.2f} dB" in printed
    assert f"difference of the medians {difference:+.2f} dB" in printed


def test_the_ideal_mask_separates_far_better_than_doing_nothing(tmp_path):
    """`oracle`'s ceiling: on noise stems with different spectra, the ideal mask at the tiny preset's STFT
    recovers each stem well, half the mixture does not."""
    import numpy as np
    import soundfile as sf

    starter = benchmark("starter_model")
    rate, rng = 22050, np.random.default_rng(0)
    for name, colour in (("vocals", 1.0), ("instrumental", -1.0)):  # rising vs falling spectrum
        spec = np.fft.rfft(rng.standard_normal((2, 4 * rate)))
        spec *= np.linspace(0.05, 1.0, spec.shape[-1]) ** colour
        os.makedirs(tmp_path / "held" / "clip", exist_ok=True)
        sf.write(tmp_path / "held" / "clip" / f"{name}.wav", 0.1 * np.fft.irfft(spec).T / np.abs(np.fft.irfft(spec)).max(), rate, subtype="FLOAT")
    vocals, inst = (sf.read(tmp_path / "held" / "clip" / f"{n}.wav")[0] for n in ("vocals", "instrumental"))
    sf.write(tmp_path / "held" / "clip" / "mixture.wav", vocals + inst, rate, subtype="FLOAT")
    oracle = starter.ideal_mask_scores(str(tmp_path / "held"), "tiny")
    nothing = starter.do_nothing_scores(str(tmp_path / "held"))["clip"]
    for source in ("vocals", "instrumental"):
        assert oracle[source] > nothing[source]["sdr_median"] + 6.0, (source, oracle, nothing)
