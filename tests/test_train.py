"""The trainer: learning, sharding equivalence, multi-process, preemption and resume.

Jobs run in subprocesses so each has its own simulated device count. The model is the tiny
preset cut to two levels and 16 frames; data is the trainer's random source (a pure function
of seed and example index), except where a test needs records made by `prepare`.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests import once_per_run
from tests.cpu_jit import UNOPTIMISED_XLA_FLAGS
from vocal_remover_jax.train.checkpoint import restore_params
from vocal_remover_jax.train.metric_writer import read_metrics

RUNNER = os.path.join(os.path.dirname(__file__), "train_run.py")
BASE = ["--config.data.source=random", "--config.model.depth=1", "--config.model.cropsize=16",
        "--config.audio.n_fft=64", "--config.model.feedforward_dim=32",
        "--config.model.dropout=0.0", "--config.batch_size=8", "--config.log_every_steps=1",
        "--config.checkpoint.asynchronous=False", "--config.optimizer.warmup_steps=2"]


def run(workdir, mode="pretrain", *overrides, devices=1, env=None, wait=True, expect_failure=False):
    env = dict(os.environ, **(env or {}))
    # Unoptimised XLA code: these jobs are tiny, and compiling dominates their run time.
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices} {UNOPTIMISED_XLA_FLAGS}"
    args = [sys.executable, RUNNER, str(workdir), mode, *BASE, *overrides]
    if not wait:
        return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert (done.returncode != 0) == expect_failure, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def losses(workdir, key="loss"):
    return [m[key] for m in read_metrics(workdir) if key in m]


def params(workdir):
    with np.load(os.path.join(workdir, "params.npz")) as data:
        return {k: data[k] for k in data.files}


def max_param_diff(a, b):
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


@pytest.mark.parametrize("mode", ["pretrain", "pretrain_gan", "finetune"])
def test_loss_falls_on_prepared_records(tmp_path, mode, prepared_records):
    """Logged every 10 steps, each value the mean over its 10 steps (real batches vary a lot)."""
    # finetuning also separates and scores held-out songs (other generated songs, MUSDB layout)
    heldout = os.path.join(os.path.dirname(prepared_records), "audio", "musdb")
    run(tmp_path, mode, "--config.data.source=records", f"--config.data.records={prepared_records}",
        "--config.audio.hop_length=32", "--config.total_steps=40", "--config.optimizer.learning_rate=1e-2",
        "--config.log_every_steps=10", "--config.checkpoint.every_steps=40", "--config.eval_every_steps=40",
        *([f"--config.heldout_dir={heldout}"] if mode == "finetune" else []))
    history = losses(tmp_path, "l1")
    assert len(history) == 4
    assert history[-1] < 0.7 * history[0], history
    # validation runs in every mode: masked L1 (+ is_next accuracy when pretraining) on the validation split
    evaluated = [m for m in read_metrics(tmp_path) if "eval/l1" in m]
    assert [m["step"] for m in evaluated] == [40]
    expected = {"eval/sdr_magnitude", "eval/sdr_gain_vocals"} if mode == "finetune" else {"eval/is_next_accuracy"}
    assert expected <= set(evaluated[0])
    if mode == "finetune":
        [scored] = [m for m in read_metrics(tmp_path) if "heldout/vocals_gain" in m]
        assert scored["step"] == 40 and all(np.isfinite(scored[f"heldout/{k}"]) for k in
                                            ("vocals_sdr", "vocals_gain", "instrumental_sdr", "instrumental_gain",
                                             "vocals_clip_gain", "instrumental_clip_gain"))
        # the kept best (`export --best`) is the one evaluated step's parameters
        from vocal_remover_jax.train.checkpoint import best_step, restore_params

        assert best_step(str(tmp_path)) == 40
        best, latest = restore_params(str(tmp_path), best=True)[0], restore_params(str(tmp_path))[0]
        assert jax.tree.structure(best) == jax.tree.structure(latest)
        for a, b in zip(jax.tree.leaves(best), jax.tree.leaves(latest)):
            np.testing.assert_array_equal(a, b)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    """A learning rate of 1e30 overflows the parameters within a few steps."""
    done = run(tmp_path, "pretrain", "--config.total_steps=20", "--config.checkpoint.every_steps=1",
               "--config.optimizer.learning_rate=1e30", "--config.optimizer.warmup_steps=0", expect_failure=True)
    found = re.findall(r"NonFiniteLossError: non-finite loss at step (\d+) ", done.stderr)
    assert found, done.stderr[-3000:]
    bad = int(found[-1])
    saved = [m["step"] for m in read_metrics(tmp_path) if "loss" in m]
    assert saved == list(range(1, bad)), (bad, saved)
    params_, _ = restore_params(str(tmp_path))
    assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(params_))
    assert max(ocp.utils.checkpoint_steps(str(tmp_path / "checkpoints"))) == bad - 1


def test_data_parallel_and_fsdp_match_one_device(tmp_path):
    steps = ["--config.total_steps=5", "--config.checkpoint.every_steps=5"]
    run(tmp_path / "one", "pretrain", *steps, devices=1)
    run(tmp_path / "dp", "pretrain", *steps, "--config.mesh.data=8", "--config.mesh.fsdp=1", devices=8)
    run(tmp_path / "fsdp", "pretrain", *steps, "--config.mesh.data=1", "--config.mesh.fsdp=8", devices=8)
    reference = np.array(losses(tmp_path / "one"))
    for name in ("dp", "fsdp"):
        np.testing.assert_allclose(np.array(losses(tmp_path / name)), reference, rtol=1e-5, err_msg=name)
    assert max_param_diff(params(tmp_path / "fsdp"), params(tmp_path / "one")) < 1e-5

    # The 8-device checkpoint restores on one device (and trains on from it).
    run(tmp_path / "fsdp", "pretrain", "--config.total_steps=6", "--config.checkpoint.every_steps=5", devices=1)
    assert [m["step"] for m in read_metrics(tmp_path / "fsdp") if "loss" in m][-1] == 6


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def resume_steps(tmp_path_factory) -> list[str]:
    """The finetuning runs compared below: 12 steps starting from a short pretraining run
    (`init_from`, which every process of a multi-process run reads whole)."""
    pretrained = once_per_run.folder(tmp_path_factory, "pretrained", lambda d: run(
        d, "pretrain", "--config.total_steps=2", "--config.checkpoint.every_steps=2"))
    return ["--config.total_steps=12", "--config.checkpoint.every_steps=3", "--config.model.dropout=0.1",
            f"--config.init_from={pretrained}"]


@pytest.fixture(scope="session")
def uninterrupted_workdir(tmp_path_factory, resume_steps):
    return once_per_run.folder(tmp_path_factory, "uninterrupted", lambda d: run(d, "finetune", *resume_steps))


@pytest.fixture(scope="session")
def uninterrupted(uninterrupted_workdir):
    return params(uninterrupted_workdir)


def start_two_processes(workdir, *overrides, env=None) -> list:
    """Two processes of 2 CPU devices each, one run over gloo collectives on loopback."""
    port = _free_port()
    return [run(workdir, "finetune", *overrides, "--config.distributed.enabled=True",
                f"--config.distributed.coordinator_address=127.0.0.1:{port}", "--config.distributed.num_processes=2",
                f"--config.distributed.process_id={pid}", "--config.distributed.cpu_collectives=gloo",
                devices=2, wait=False, env=env) for pid in range(2)]


def finish(procs) -> list[str]:
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out[-3000:]
        outs.append(out)
    return outs


@pytest.fixture(scope="session")
def two_process_workdir(tmp_path_factory, resume_steps):
    return once_per_run.folder(tmp_path_factory, "two-process",
                               lambda d: finish(start_two_processes(d, *resume_steps)))


def test_two_processes_match_one_process(two_process_workdir, uninterrupted_workdir, uninterrupted):
    """2 processes x 2 devices over gloo train like 1 process on 1 device (up to reduction order)."""
    np.testing.assert_allclose(losses(two_process_workdir), losses(uninterrupted_workdir), rtol=1e-5)
    # Adam divides by the gradient's own size, so a parameter whose gradient is near zero turns the
    # reduction order's rounding into a fraction of a step (learning rate 1e-3, AMSGrad): 1.1e-5 for 5
    # of 36,129 parameters with XLA:CPU's reductions. Gradients summed wrongly move whole steps.
    assert max_param_diff(two_process_params(two_process_workdir), uninterrupted) < 3e-5


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_interrupted_run_resumes_to_the_same_parameters(tmp_path, sig, uninterrupted, resume_steps):
    steps = resume_steps
    target = np.random.default_rng(int(sig)).integers(4, 10)  # kill after this step is logged
    proc = run(tmp_path / "killed", "finetune", *steps, wait=False)
    metrics_file = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if metrics_file.exists() and sum(1 for _ in open(metrics_file)) >= target:
            break
        time.sleep(0.05)
    proc.send_signal(sig)
    proc.communicate(timeout=300)
    if sig == signal.SIGTERM:
        assert proc.returncode == 0  # a clean exit after saving
    run(tmp_path / "killed", "finetune", *steps)
    assert max_param_diff(params(tmp_path / "killed"), uninterrupted) <= 1e-6


def two_process_params(workdir):
    """A multi-process run writes no params.npz: its checkpoint, restored here in one process."""
    resumed, _ = restore_params(str(workdir))
    return _flat(resumed)


def _flat(tree):
    from flax import traverse_util

    return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


def test_preempt_one_of_two_processes_stops_both_at_the_same_step(tmp_path, two_process_workdir, resume_steps):
    """SIGTERM reaches only process 1; both stop after the same step, save one checkpoint
    together and exit 0; the resumed run ends where an uninterrupted run of the same topology does."""
    steps = [*resume_steps, "--config.checkpoint.every_steps=100"]  # only the preemption checkpoint

    procs = start_two_processes(tmp_path, *steps, env={"TRAIN_RUN_BATCH_DELAY": "0.3"})
    metrics_file = tmp_path / "metrics.jsonl"  # written by process 0 only
    deadline = time.time() + 300
    while time.time() < deadline and procs[0].poll() is None:
        if metrics_file.exists() and sum(1 for _ in open(metrics_file)) >= 2:
            break
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)
    stopped = [re.findall(r"saved step (\d+), exiting", out) for out in finish(procs)]
    assert stopped[0] == stopped[1] and len(stopped[0]) == 1, stopped
    step = int(stopped[0][0])
    assert 2 < step < 12
    saved = sorted(ocp.utils.checkpoint_steps(str(tmp_path / "checkpoints")))
    assert saved == [1, step], saved  # (Orbax also saves a run's first step)

    finish(start_two_processes(tmp_path, *steps))
    resumed, _ = restore_params(str(tmp_path))
    assert max_param_diff(_flat(resumed), two_process_params(two_process_workdir)) <= 1e-6  # same topology
