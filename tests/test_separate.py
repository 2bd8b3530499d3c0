"""Separator API and the `separate` command on generated audio, with a random tiny model file and
with known masks."""

import os
import stat
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from tests.paths import config
from vocal_remover_jax import cli
from vocal_remover_jax.audio.io import write_audio
from vocal_remover_jax.config import load_config
from vocal_remover_jax.inference.model_file import save_model_file
from vocal_remover_jax.inference.separator import Separator

RATE = 22050  # the tiny preset's


def _song(seconds, rate=RATE, seed=0):
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    voice = np.sin(2 * np.pi * 440 * t + 3 * np.sin(2 * np.pi * 5 * t)) * (t % 1.0 < 0.6)
    band = 0.3 * rng.standard_normal(t.shape) * np.exp(-8 * (t % 0.5))
    return (0.3 * np.stack([voice + band, 0.8 * voice + band])).astype(np.float32)


@pytest.fixture(scope="module")
def model_path(tiny_model):
    return tiny_model[0]


@pytest.fixture(scope="module")
def separator(model_path):
    return Separator.from_file(model_path, batch_size=2)


@pytest.fixture(scope="module")
def quarter_mask_separator(tiny_model):
    """The tiny model's STFT and crops with a known mask: a quarter of every bin is instrumental."""
    return Separator({}, tiny_model[2], batch_size=2, mask_fn=lambda params, x: jnp.full_like(x, 0.25))


def _tones(seconds, rate):
    """Tones well inside every rate's band, so resampling keeps them."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 1250 * t + 1.0)])).astype(np.float32)


@pytest.mark.parametrize("rate, shape", [(RATE, (2,)), (RATE, (1,)), (RATE, ()), (44100, (2,)), (16000, (2,))])
def test_a_known_mask_gives_known_stems_at_any_rate_and_layout(quarter_mask_separator, rate, shape):
    song = _tones(1.3, rate)
    song = song[0] if shape == () else song[: shape[0]]
    inst, vocals = quarter_mask_separator.separate(song, rate)
    assert inst.shape == vocals.shape == song.shape and inst.dtype == np.float32
    edge = rate // 50  # resampling filters ring at the ends
    np.testing.assert_allclose(inst[..., edge:-edge], 0.25 * song[..., edge:-edge], atol=2e-3)
    np.testing.assert_allclose(vocals[..., edge:-edge], 0.75 * song[..., edge:-edge], atol=2e-3)


def test_an_untrained_model_separates_something(separator):
    song = _song(3.0)
    inst, vocals = separator.separate(song, RATE)
    assert inst.shape == vocals.shape == song.shape
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
    if seconds == 0.0:
        assert not inst.any() and not vocals.any()


@pytest.mark.parametrize("rate, samples", [(44100, 44100), (16000, 12345), (RATE, 1)])
def test_other_rates_and_a_single_sample(separator, rate, samples):
    song = _song(1.0, rate)[:, :samples] if samples > 1 else np.full((2, 1), 0.25, np.float32)
    inst, vocals = separator.separate(song, rate)
    assert inst.shape == vocals.shape == song.shape
    assert np.all(np.isfinite(inst)) and np.all(np.isfinite(vocals))


def test_tta_postprocess_and_aggressiveness_paths_run(model_path):
    song = _song(3.0, seed=1)
    sep = Separator.from_file(model_path, batch_size=3, tta=True, postprocess=True, aggressiveness=0.3)
    inst, vocals = sep.separate(song, RATE)
    plain, _ = Separator.from_file(model_path, batch_size=3).separate(song, RATE)
    assert np.all(np.isfinite(inst)) and np.all(np.isfinite(vocals))
    assert np.abs(inst - plain).max() > 1e-3  # the options change the result


def _write_inputs(folder):
    os.makedirs(folder / "album" / "disc2", exist_ok=True)
    write_audio(str(folder / "album" / "one.wav"), _song(1.5, seed=4), RATE)
    write_audio(str(folder / "album" / "disc2" / "two.flac"), _song(1.0, 44100, seed=5)[:1], 44100)  # mono 44.1k
    (folder / "album" / "notes.wav").write_text("not audio at all")
    data = open(folder / "album" / "one.wav", "rb").read()
    (folder / "corrupt.wav").write_bytes(data[:30])  # truncated inside the header


def test_cli_folders_globs_bad_files_and_no_overwrite(tmp_path, model_path, separator, capsys):
    _write_inputs(tmp_path)
    out = tmp_path / "out"
    args = ["separate", str(tmp_path / "album"), str(tmp_path / "*.wav"), "-o", str(out), "--model", model_path,
            "--quiet", "--output-image", "--bit-depth", "24"]
    assert cli.main(args) == 1  # two inputs are bad
    err = capsys.readouterr()
    text = err.out + err.err
    assert "notes.wav" in text and "corrupt.wav" in text and "2 of 4 input(s) failed" in text
    one, two = out / "one_Instruments.wav", out / "disc2" / "two_Instruments.wav"
    for path in (one, out / "one_Vocals.wav", two, out / "disc2" / "two_Vocals.wav", out / "one_Spectrograms.png"):
        assert path.exists(), path
    info = sf.info(str(two))
    assert (info.samplerate, info.channels, info.subtype) == (44100, 1, "PCM_24")  # a mono song: mono stems
    mix, _ = sf.read(str(tmp_path / "album" / "one.wav"), always_2d=True, dtype="float32")
    want = separator.separate(mix.T, RATE)
    for written, expected in zip((one, out / "one_Vocals.wav"), want):
        got, _ = sf.read(str(written), always_2d=True)
        np.testing.assert_allclose(got.T, expected, atol=1e-5)  # the API's result, in 24 bits
    assert not [p for p in out.rglob(".tmp-*")]

    before = one.stat().st_mtime_ns
    assert cli.main(["separate", str(tmp_path / "album" / "one.wav"), "-o", str(out), "--model", model_path,
                     "--quiet"]) == 1
    assert "exists" in capsys.readouterr().out and one.stat().st_mtime_ns == before
    assert cli.main(["separate", str(tmp_path / "album" / "one.wav"), "-o", str(out), "--model", model_path,
                     "--quiet", "--overwrite", "--stems", "vocals", "--format", "flac"]) == 0
    assert (out / "one_Vocals.flac").exists() and not (out / "one_Instruments.flac").exists()


def test_cli_without_a_model_explains_how_to_get_one(tmp_path, capsys, monkeypatch):
    from vocal_remover_jax.inference import packaged

    monkeypatch.setattr(packaged, "PACKAGED_MODEL", str(tmp_path / "not-packaged.safetensors"))
    assert cli.main(["separate", str(tmp_path / "x.wav")]) == 2
    err = capsys.readouterr().err
    assert "export" in err and "train" in err and "quickstart" in err


def test_cli_bad_model_file(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(open(__file__, "rb").read())
    song = tmp_path / "s.wav"
    write_audio(str(song), _song(0.5), RATE)
    assert cli.main(["separate", str(song), "--model", str(bad), "-o", str(tmp_path)]) == 2
    assert "bad.safetensors: truncated or not a model file" in capsys.readouterr().err


def test_separate_command_never_imports_tensorflow(tmp_path, model_path):
    song = tmp_path / "s.wav"
    write_audio(str(song), _song(0.5), RATE)
    code = ("import sys; from vocal_remover_jax import cli; "
            f"rc = cli.main(['separate', {str(song)!r}, '-o', {str(tmp_path)!r}, '--model', {model_path!r}, '--quiet']); "
            "import vocal_remover_jax.inference.evaluate; "
            "assert rc == 0, rc; "
            "bad = [m for m in ('tensorflow', 'tensorflow_datasets', 'orbax.checkpoint', 'vocal_remover_jax.train', "
            "'vocal_remover_jax.data') "
            "if m in sys.modules]; assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "s_Vocals.wav").exists()


def test_separator_refuses_parameters_of_another_model(tmp_path, tiny_model):
    _, params, _ = tiny_model
    other = load_config(config("model.py:tiny"), ["model.channels=6"])
    path = str(tmp_path / "other.safetensors")
    save_model_file(path, params, other)
    with pytest.raises(ValueError, match="other.safetensors: parameters do not fit"):
        Separator.from_file(path)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_outputs_get_the_users_umask(tmp_path, model_path, umask):
    song = tmp_path / "s.wav"
    write_audio(str(song), _song(0.5), RATE)
    old = os.umask(umask)
    try:
        assert cli.main(["separate", str(song), "-o", str(tmp_path / "out"), "--model", model_path, "--quiet",
                         "--output-image"]) == 0
    finally:
        os.umask(old)
    written = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in written] == ["s_Instruments.wav", "s_Spectrograms.png", "s_Vocals.wav"]
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path  # 0o644: others can read


def test_spectrogram_picture_is_readable_size(tmp_path, separator):
    from matplotlib.image import imread

    from vocal_remover_jax.inference.images import write_spectrogram_image

    images = []
    list(separator.stream(_song(20.0), images=images))
    log_power = np.concatenate(images, axis=1)
    assert log_power.shape[0] == 3 and log_power.shape[2] == 129  # mixture, instrumental, vocals; bins
    path = str(tmp_path / "s.png")
    write_spectrogram_image(path, log_power, RATE, 128, title="s.wav")
    height, width = imread(path).shape[:2]
    assert 700 <= width <= 2000 and 600 <= height <= 1200, (width, height)


def test_config_overrides_on_a_command_without_config_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["separate", str(tmp_path / "x.wav"), "--model", "m.safetensors", "--config.model.depth=3"])
    assert info.value.code == 2
    assert "--config.model.depth=3" in capsys.readouterr().err


def test_inference_and_a_random_data_training_config_import_no_tensorflow():
    code = ("import sys; from vocal_remover_jax.config import load_config; "
            "import vocal_remover_jax.inference.separator; "
            f"c = load_config({config('finetune.py:tiny')!r}, ['config.data.source=random']); "
            "assert c.data.source == 'random'; "
            "bad = [m for m in ('tensorflow', 'tensorflow_datasets', 'orbax.checkpoint') if m in sys.modules]; "
            "assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
