"""benchmarks/train_step.py --reference: argument checks that fail before anything is built."""

import pytest

from tests.paths import REPO, benchmark

BENCHMARKS = REPO / "benchmarks"


@pytest.fixture(scope="module")
def train_step():
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(BENCHMARKS))  # train_step imports reference_step as its neighbour
        yield benchmark("train_step")


def _error(train_step, capsys, argv):
    with pytest.raises(SystemExit) as e:
        train_step.parse_args(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


def test_missing_reference_tree_is_named(train_step, capsys, tmp_path):
    missing = tmp_path / "nowhere"
    assert f"--reference {missing}: no such directory" in _error(train_step, capsys, ["--reference", str(missing)])


def test_tree_without_the_reference_model_is_refused(train_step, capsys, tmp_path):
    err = _error(train_step, capsys, ["--reference", str(tmp_path)])
    assert "lib/frame_transformer_unet.py" in err and "82256e7" in err


def test_reference_compares_pretraining_only(train_step, capsys, tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "frame_transformer_unet.py").write_text("")
    args = train_step.parse_args(["--reference", str(tmp_path), "--size", "tiny"])
    assert args.reference == str(tmp_path) and args.side is None
    assert "pretraining step only" in _error(train_step, capsys, ["--reference", str(tmp_path), "--mode", "gan"])
    assert "float32" in _error(train_step, capsys, ["--reference", str(tmp_path), "--dtype", "bfloat16"])


def test_reference_default_is_changed_by_name(train_step):
    import reference_step

    def frame_conv(self, channels, kernel_size=3, norm=True, cropsize=1024):
        return cropsize

    reference_step._set_default(frame_conv, "cropsize", 256)
    assert frame_conv(None, 2) == 256 and frame_conv.__defaults__ == (3, True, 256)
    with pytest.raises(SystemExit, match="no default for 'crop'"):
        reference_step._set_default(frame_conv, "crop", 256)


def test_reference_is_tried_at_each_threading(train_step):
    # libgomp's default and passive waiting on every core, then one thread; never ACTIVE (it spins
    # while our side runs); a caller's policy is the only one
    assert train_step.reference_settings(2, None) == [(2, None), (2, "PASSIVE"), (1, None)]
    assert train_step.reference_settings(4, "PASSIVE") == [(4, "PASSIVE"), (1, "PASSIVE")]
    assert train_step.reference_settings(1, None) == [(1, None), (1, "PASSIVE")]
