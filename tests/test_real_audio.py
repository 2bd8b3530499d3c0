"""Real audio end to end: a held-out clip of the real-audio pack (tests/data/ATTRIBUTION.md) through
`separate` with the packaged model, and the shapes real files come in (long, quiet, mono, 48 and
22.05 kHz, MP3) through `separate` and `prepare` with the tiny session model."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from tests.paths import REPO
from vocal_remover_jax import cli
from vocal_remover_jax.inference import packaged

CLIP = str(REPO / "tests" / "data" / "brahms_vocadito14_8s.flac")  # 44100 Hz, stereo, 8 s
QUIET_DB = -50.0  # peak level of the quiet variant, dBFS
LONG_REPEATS = 8  # 64 s


def _clip():
    wave, rate = sf.read(CLIP, dtype="float32", always_2d=True)
    return wave, rate


def _stems(out_dir, name):
    return {stem: sf.read(os.path.join(out_dir, f"{name}_{stem}.wav"), dtype="float32", always_2d=True)
            for stem in ("Instruments", "Vocals")}


def _check_stems(out_dir, name, frames, rate, channels=2):
    """Both stems written: right length, channels and rate, finite, not silent; returns them."""
    stems = _stems(out_dir, name)
    for stem, (wave, r) in stems.items():
        assert (wave.shape, r) == ((frames, channels), rate), (name, stem, wave.shape, r)
        assert np.all(np.isfinite(wave)), (name, stem)
        assert np.sqrt(np.mean(wave**2)) > 1e-4, (name, stem, "silent")
    return {stem: wave for stem, (wave, _) in stems.items()}


def test_the_packaged_model_separates_a_real_song_it_never_heard(tmp_path):
    """What a user does first: `separate SONG -o OUT`, no --model."""
    if not os.path.isfile(packaged.PACKAGED_MODEL):
        pytest.skip(f"no model is packaged yet ({packaged.PACKAGED_MODEL} is made by "
                    "`python benchmarks/starter_model.py ship`)")
    song = tmp_path / "song.flac"
    shutil.copy(CLIP, song)
    assert cli.main(["separate", str(song), "-o", str(tmp_path / "out"), "--quiet", "--bit-depth", "float"]) == 0
    mixture, rate = _clip()
    stems = _check_stems(tmp_path / "out", "song", len(mixture), rate)
    np.testing.assert_allclose(stems["Instruments"] + stems["Vocals"], mixture, atol=1e-4)
    # a separation, not a copy: each stem differs from the mixture and from half of it
    for wave in stems.values():
        for trivial in (mixture, mixture / 2):
            assert np.sqrt(np.mean((wave - trivial) ** 2)) > 0.01 * np.sqrt(np.mean(mixture**2))


# ---- the shapes real files come in, with the tiny model ------------------------------------------

def _variants(folder):
    """name -> (file, frames, rate): the clip as it is, 64 s long, at -50 dBFS, mono, 48 kHz,
    22.05 kHz (the tiny model's own rate: the streaming path) and MP3."""
    import librosa

    wave, rate = _clip()
    files = {}

    def write(name, data, r, **kwargs):
        path = os.path.join(folder, name)
        sf.write(path, data, r, **kwargs)
        files[os.path.splitext(name)[0]] = (path, sf.info(path).frames, r)

    write("clip.flac", wave, rate)
    write("long.wav", np.tile(wave, (LONG_REPEATS, 1)), rate)
    write("quiet.wav", wave * (10 ** (QUIET_DB / 20) / np.abs(wave).max()), rate, subtype="FLOAT")
    write("mono.flac", wave.mean(1), rate)
    for r in (48000, 22050):
        write(f"rate{r}.wav", librosa.resample(wave.T, orig_sr=rate, target_sr=r, axis=-1).T, r, subtype="FLOAT")
    if "MP3" in sf.available_formats():
        write("song.mp3", wave, rate, format="MP3", subtype="MPEG_LAYER_III")
    return files


@pytest.fixture(scope="module")
def separated(tmp_path_factory, tiny_model):
    """Every variant through one `separate` call (one compile): (inputs, output folder)."""
    inputs = tmp_path_factory.mktemp("real_inputs")
    out = tmp_path_factory.mktemp("real_outputs")
    files = _variants(str(inputs))
    rc = cli.main(["separate", *(f[0] for f in files.values()), "-o", str(out), "--model", tiny_model[0],
                   "--quiet", "--bit-depth", "float"])
    assert rc == 0
    return files, str(out)


@pytest.mark.parametrize("name", ["clip", "long", "quiet", "mono", "rate48000", "rate22050", "song"])
def test_every_shape_of_real_file_gives_both_stems_summing_to_the_input(separated, name):
    files, out = separated
    if name not in files:
        pytest.skip("this libsndfile cannot write MP3")
    path, frames, rate = files[name]
    mixture, _ = sf.read(path, dtype="float32", always_2d=True)
    stems = _check_stems(out, name, frames, rate, channels=mixture.shape[1])  # a mono song: mono stems
    np.testing.assert_allclose(stems["Instruments"] + stems["Vocals"], mixture, atol=1e-5 * max(1.0, len(mixture) / 1e6))


def test_a_quiet_file_is_separated_like_a_loud_one(separated):
    """The song's largest magnitude normalises the network input: a -50 dBFS copy gives the same
    stems, scaled."""
    files, out = separated
    loud, quiet = _stems(out, "clip"), _stems(out, "quiet")
    gain = 10 ** (QUIET_DB / 20) / np.abs(_clip()[0]).max()
    for stem in loud:
        np.testing.assert_allclose(quiet[stem][0] / gain, loud[stem][0], atol=2e-4 * np.abs(loud[stem][0]).max())


def test_a_long_file_is_chunked_like_a_short_one(separated):
    """The first 6 s of the 64-second file (the clip, repeated) match the clip separated alone:
    crops far from the end do not depend on the file's length."""
    files, out = separated
    rate = files["clip"][2]
    short, long = _stems(out, "clip"), _stems(out, "long")
    for stem in short:
        n = 6 * rate
        # (not bit-equal: the song's largest STFT magnitude, which scales the network input, comes from
        # frames that fall differently on the repeats; a crop misplaced in time would differ by ~100%)
        np.testing.assert_allclose(long[stem][0][:n], short[stem][0][:n], atol=1e-2 * np.abs(short[stem][0]).max())


def test_another_rate_is_resampled_back_block_by_block(tiny_model):
    """At a rate other than the model's, the stems come back in blocks (memory does not grow with
    the song), equal to resampling the whole instrumental at once."""
    import librosa

    from vocal_remover_jax.inference.separator import Separator, fit_length, resample

    wave, rate = _clip()
    wave = librosa.resample(wave.T, orig_sr=rate, target_sr=48000, axis=-1).astype(np.float32)
    separator = Separator(tiny_model[1], tiny_model[2], batch_size=1)
    blocks = list(separator.stream_at(wave, 48000))
    assert len(blocks) > 1
    inst = np.concatenate([b[0] for b in blocks], axis=1)
    vocals = np.concatenate([b[1] for b in blocks], axis=1)
    model_rate = separator.sample_rate
    whole = np.concatenate([b[0] for b in separator.stream(resample(wave, 48000, model_rate))], axis=1)
    whole = fit_length(resample(whole, model_rate, 48000), wave.shape[1])
    np.testing.assert_allclose(inst, whole, atol=1e-5)
    np.testing.assert_allclose(inst + vocals, wave, atol=1e-6)


def test_prepare_takes_the_same_shapes_of_real_file(tmp_path):
    """Quiet, mono, 48 kHz and MP3 files all make records; a quiet file's clips are the loud one's,
    with its level in the clip's coefficient."""
    from vocal_remover_jax.data.prepare import prepare_records

    files = _variants(str(tmp_path))
    inst, vocals = tmp_path / "instrumental", tmp_path / "vocals"
    inst.mkdir(), vocals.mkdir()
    for name in ("clip", "quiet", "mono", "rate48000", "song"):
        if name in files:
            os.rename(files[name][0], inst / os.path.basename(files[name][0]))
    shutil.copy(CLIP, vocals / "voice.flac")
    result = prepare_records(str(tmp_path / "records"), instrumental=[str(inst)], vocals=[str(vocals)],
                             sample_rate=22050, n_fft=256, hop_length=128, clip_frames=128, block_frames=16,
                             tracks_per_shard=1, validation_fraction=0.0, progress=False)
    assert not result.skipped
    coefs = {}
    for entry in result.manifest["sets"]["instrumental"]["train"]:
        (track,) = entry["tracks"]
        coefs[track.split(":", 1)[1]] = entry["clips"]["coef"]
    assert set(coefs) == {n for n in ("clip", "quiet", "mono", "rate48000", "song") if n in files}
    gain = 10 ** (QUIET_DB / 20) / np.abs(_clip()[0]).max()
    assert len(coefs["quiet"]) == len(coefs["clip"]) > 0
    np.testing.assert_allclose(np.array(coefs["quiet"]) / gain, coefs["clip"], rtol=1e-4)
