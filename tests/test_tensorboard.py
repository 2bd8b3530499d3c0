"""The trainer's TensorBoard scalars, written without TensorFlow, read back by TensorFlow's own
event reader (which checks every record's CRC)."""

import glob
import sys

import pytest

from vocal_remover_jax.train.metric_writer import MetricWriter, read_metrics
from vocal_remover_jax.train.tensorboard import crc32c


def test_crc32c_known_answers():
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283  # the Castagnoli check value
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720, B.4: 32 bytes of zeros


def test_metric_writer_events_read_back_with_tensorflow(tmp_path):
    tf = pytest.importorskip("tensorflow")
    writer = MetricWriter(str(tmp_path))
    writer.write(1, {"loss": 0.75, "grad_norm": 3.5}, total_steps=300)
    writer.write(300, {"l1": 1e-3}, total_steps=300, prefix="eval/")
    writer.close()
    assert [m["step"] for m in read_metrics(str(tmp_path))] == [1, 300]

    [path] = glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))
    events = list(tf.compat.v1.train.summary_iterator(path))
    assert events[0].file_version == "brain.Event:2" and events[0].wall_time > 0
    scalars = [(e.step, v.tag, v.simple_value) for e in events[1:] for v in e.summary.value]
    assert scalars == [(1, "loss", 0.75), (1, "grad_norm", 3.5), (300, "eval/l1", pytest.approx(1e-3))]


def test_writing_metrics_imports_no_tensorflow(tmp_path):
    """What the writer replaced: the import alone took about 9 s of every training run's start."""
    import subprocess

    code = ("import sys; from vocal_remover_jax.train.metric_writer import MetricWriter; "
            f"w = MetricWriter({str(tmp_path)!r}); w.write(1, {{'loss': 1.0}}, 1); w.close(); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
