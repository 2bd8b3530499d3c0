"""Separator API and the `separate` command on generated audio with a random tiny model file."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from vocal_remover_jax import cli
from vocal_remover_jax.audio.io import write_audio
from vocal_remover_jax.config import load_config
from vocal_remover_jax.inference.model_file import save_model_file
from vocal_remover_jax.inference.random_params import random_params
from vocal_remover_jax.inference.separator import Separator

RATE = 22050  # the tiny preset's


def _song(seconds, rate=RATE, seed=0):
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    voice = np.sin(2 * np.pi * 440 * t + 3 * np.sin(2 * np.pi * 5 * t)) * (t % 1.0 < 0.6)
    band = 0.3 * rng.standard_normal(t.shape) * np.exp(-8 * (t % 0.5))
    return (0.3 * np.stack([voice + band, 0.8 * voice + band])).astype(np.float32)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    config = load_config("configs/model.py:tiny")
    path = str(tmp_path_factory.mktemp("model") / "tiny.vrj")
    save_model_file(path, random_params(config.model, seed=0), config)
    return path


@pytest.fixture(scope="module")
def separator(model_path):
    return Separator.from_file(model_path, batch_size=2)


def test_file_to_separation_round_trip_is_complementary(separator):
    song = _song(3.0)
    inst, vocals = separator.separate(song, RATE)
    assert inst.shape == vocals.shape == song.shape
    assert inst.dtype == np.float32
    np.testing.assert_allclose(inst + vocals, song, atol=1e-4)
    # an untrained but real network: the mask is neither all 0 nor all 1
    assert 0.05 < np.sqrt(np.mean(inst**2) / np.mean(song**2)) < 0.95


def test_separation_is_deterministic(separator):
    song = _song(2.0, seed=3)
    first = separator.separate(song, RATE)
    np.testing.assert_array_equal(separator.separate(song, RATE)[0], first[0])


@pytest.mark.parametrize("shape", [(2, 0.0), (1, 1.5), (0, 1.5)])
def test_silent_and_mono_inputs(separator, shape):
    channels, seconds = shape
    song = _song(seconds)[0] if channels == 0 else _song(seconds)[:channels]  # (n,), (1, n) or (2, n)
    if seconds == 0.0:
        song = np.zeros((2, RATE), np.float32)
    inst, vocals = separator.separate(song, RATE)
    assert inst.shape == song.shape and np.all(np.isfinite(inst)) and np.all(np.isfinite(vocals))
    np.testing.assert_allclose(inst + vocals, song, atol=1e-4)
    if seconds == 0.0:
        assert not inst.any() and not vocals.any()


@pytest.mark.parametrize("rate, samples", [(44100, 44100), (16000, 12345), (RATE, 1)])
def test_other_rates_and_a_single_sample(separator, rate, samples):
    song = _song(1.0, rate)[:, :samples] if samples > 1 else np.full((2, 1), 0.25, np.float32)
    inst, vocals = separator.separate(song, rate)
    assert inst.shape == song.shape
    assert np.all(np.isfinite(inst))
    np.testing.assert_allclose(inst + vocals, song, atol=1e-4)


def test_tta_postprocess_and_aggressiveness_paths_run(model_path):
    song = _song(3.0, seed=1)
    sep = Separator.from_file(model_path, batch_size=3, tta=True, postprocess=True, aggressiveness=0.3)
    inst, vocals = sep.separate(song, RATE)
    np.testing.assert_allclose(inst + vocals, song, atol=1e-4)
    assert np.all(np.isfinite(inst))


def _write_inputs(folder):
    os.makedirs(folder / "album" / "disc2", exist_ok=True)
    write_audio(str(folder / "album" / "one.wav"), _song(1.5, seed=4), RATE)
    write_audio(str(folder / "album" / "disc2" / "two.flac"), _song(1.0, 44100, seed=5)[:1], 44100)  # mono 44.1k
    (folder / "album" / "notes.wav").write_text("not audio at all")
    data = open(folder / "album" / "one.wav", "rb").read()
    (folder / "corrupt.wav").write_bytes(data[:30])  # truncated inside the header


def test_cli_folders_globs_bad_files_and_no_overwrite(tmp_path, model_path, capsys):
    _write_inputs(tmp_path)
    out = tmp_path / "out"
    args = ["separate", str(tmp_path / "album"), str(tmp_path / "*.wav"), "-o", str(out), "--model", model_path,
            "--quiet", "--output-image", "--bit-depth", "24"]
    assert cli.main(args) == 1  # two inputs are bad
    err = capsys.readouterr()
    text = err.out + err.err
    assert "notes.wav" in text and "corrupt.wav" in text and "2 of 4 input(s) failed" in text
    one, two = out / "one_Instruments.wav", out / "disc2" / "two_Instruments.wav"
    for path in (one, out / "one_Vocals.wav", two, out / "disc2" / "two_Vocals.wav", out / "one_Vocals.png"):
        assert path.exists(), path
    info = sf.info(str(two))
    assert (info.samplerate, info.channels, info.subtype) == (44100, 2, "PCM_24")
    inst, _ = sf.read(str(one), always_2d=True)
    voc, _ = sf.read(str(out / "one_Vocals.wav"), always_2d=True)
    mix, _ = sf.read(str(tmp_path / "album" / "one.wav"), always_2d=True)
    np.testing.assert_allclose(inst + voc, mix, atol=2e-4)  # 24-bit outputs of a 16-bit input
    assert not [p for p in out.rglob(".tmp-*")]

    before = one.stat().st_mtime_ns
    assert cli.main(["separate", str(tmp_path / "album" / "one.wav"), "-o", str(out), "--model", model_path,
                     "--quiet"]) == 1
    assert "exists" in capsys.readouterr().out and one.stat().st_mtime_ns == before
    assert cli.main(["separate", str(tmp_path / "album" / "one.wav"), "-o", str(out), "--model", model_path,
                     "--quiet", "--overwrite", "--stems", "vocals", "--format", "flac"]) == 0
    assert (out / "one_Vocals.flac").exists() and not (out / "one_Instruments.flac").exists()


def test_cli_without_a_model_explains_how_to_get_one(tmp_path, capsys):
    assert cli.main(["separate", str(tmp_path / "x.wav")]) == 2
    err = capsys.readouterr().err
    assert "export" in err and "train" in err and "quickstart" in err


def test_cli_bad_model_file(tmp_path, capsys):
    bad = tmp_path / "bad.vrj"
    bad.write_bytes(open(__file__, "rb").read())
    song = tmp_path / "s.wav"
    write_audio(str(song), _song(0.5), RATE)
    assert cli.main(["separate", str(song), "--model", str(bad), "-o", str(tmp_path)]) == 2
    assert "not a vocal-remover-jax model file" in capsys.readouterr().err


def test_separate_command_never_imports_tensorflow(tmp_path, model_path):
    song = tmp_path / "s.wav"
    write_audio(str(song), _song(0.5), RATE)
    code = ("import sys; from vocal_remover_jax import cli; "
            f"rc = cli.main(['separate', {str(song)!r}, '-o', {str(tmp_path)!r}, '--model', {model_path!r}, '--quiet']); "
            "import vocal_remover_jax.inference.evaluate; "
            "assert rc == 0, rc; "
            "bad = [m for m in ('tensorflow', 'tensorflow_datasets', 'vocal_remover_jax.train', 'vocal_remover_jax.data') "
            "if m in sys.modules]; assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "s_Vocals.wav").exists()


def test_separator_refuses_parameters_of_another_model(tmp_path):
    config = load_config("configs/model.py:tiny")
    other = load_config("configs/model.py:tiny", ["model.channels=6"])
    path = str(tmp_path / "other.vrj")
    save_model_file(path, random_params(config.model), other)
    with pytest.raises(ValueError, match="other.vrj: parameters do not fit"):
        Separator.from_file(path)
