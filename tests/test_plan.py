"""`plan`: the trainer's steps compiled for a TPU slice with libtpu's compile-only devices.

The model is the tiny preset cut to one level, with enough batch (16 examples per chip) that
activations outweigh the compiler's fixed buffers; each compile takes about 45 s on 2 cores.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests import once_per_run

pytestmark = pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                                reason="libtpu is not installed (pip install 'vocal-remover-jax[tpu]'): "
                                       "plan needs the TPU compiler")

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "pretrain.py:tiny")
SMALL = ["--config.model.depth=1", "--config.batch_size=64"]
TOPOLOGY = "v5p:2x2x1"  # 4 chips, one host


def _plan(*overrides):
    from vocal_remover_jax.config import load_config
    from vocal_remover_jax.train.plan import plan

    return plan(load_config(CONFIG, [o[2:] for o in SMALL + list(overrides)]), TOPOLOGY)


def _plan_command():
    done = subprocess.run([sys.executable, "-m", "vocal_remover_jax", "plan", "--config", CONFIG, "--topology", TOPOLOGY,
                           "--json", *SMALL, "--config.mesh.data=1", "--config.mesh.fsdp=4"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="session")
def fsdp(tmp_path_factory):
    """The command line, as a user runs it: FSDP over the 4 chips."""
    return once_per_run.value(tmp_path_factory, "plan-fsdp", _plan_command)


@pytest.fixture(scope="session")
def data_parallel_accumulated(tmp_path_factory):
    """Two compiles serve three checks: this plan differs from `fsdp` in mesh (parameters
    replicated, not sharded) and in accumulation (4 micro-batches). The parameters (0.6 MB)
    are far too small to move the temporaries (about 170 MB of activations at 16 examples per
    chip), so those compare across the two."""
    return once_per_run.value(tmp_path_factory, "plan-data-accumulated",
                              lambda: _plan("--config.mesh.data=4", "--config.mesh.fsdp=1", "--config.grad_accum_steps=4"))


def test_plan_reports_memory_flops_and_cost_model_per_chip(fsdp):
    r = fsdp
    assert (r["topology"], r["chips"], r["mesh"], r["global_batch"]) == (TOPOLOGY, 4, {"data": 1, "fsdp": 4}, 64)
    b = r["per_chip_bytes"]
    assert b["parameters"] > 0 and b["optimizer"] >= 2 * b["parameters"]  # AdamW: two moments
    assert b["temporaries"] > 0 and b["total"] >= b["parameters"] + b["optimizer"] + b["temporaries"]
    assert r["fits"] is True and r["hbm_bytes"] == 95 * 10**9
    assert r["flops_per_chip"] > 0 and r["estimated_step_seconds"] > 0
    assert 0 < r["estimated_mfu"] < 1
    assert r["compile_seconds"] > 0 and r["compile_peak_rss_bytes"] > 0 and r["hlo_ops"] > 1000
    phases = r["compile_phases"]  # each phase's own time and peak; the report's peak is theirs
    assert list(phases) == ["lower_train", "compile_train", "compile_eval"]
    assert r["compile_seconds"] == phases["lower_train"]["seconds"] + phases["compile_train"]["seconds"]
    assert r["compile_peak_rss_bytes"] == max(p["peak_rss_bytes"] for p in phases.values())
    assert all(p["peak_rss_bytes"] >= p["start_rss_bytes"] > 0 for p in phases.values())
    from vocal_remover_jax.host_memory import tcmalloc_library  # the command reruns itself on it where installed

    assert r["allocator"] == ("tcmalloc" if tcmalloc_library() else "glibc")
    from vocal_remover_jax.train.plan import format_report

    text = format_report(r)
    assert "cost model" in text and "fits" in text
    assert f"compile_train {phases['compile_train']['seconds']:.1f} s, peak" in text
    assert r["eval"]["flops_per_chip"] > 0


def test_plan_parameter_bytes_per_chip_shrink_with_fsdp(fsdp, data_parallel_accumulated):
    sharded, replicated = fsdp["per_chip_bytes"], data_parallel_accumulated["per_chip_bytes"]
    assert sharded["parameters"] < 0.5 * replicated["parameters"], (sharded, replicated)
    assert sharded["optimizer"] < 0.5 * replicated["optimizer"], (sharded, replicated)


def test_plan_accum_temporaries_per_chip_drop_with_grad_accumulation(fsdp, data_parallel_accumulated):
    """16 examples per chip at once, then 4 at a time (171 MB -> 96 MB when written, both on FSDP)."""
    one, four = fsdp["per_chip_bytes"], data_parallel_accumulated["per_chip_bytes"]
    assert four["temporaries"] < 0.75 * one["temporaries"], (four, one)


def test_plan_without_libtpu_says_how_to_install(monkeypatch):
    from vocal_remover_jax.train import plan as plan_lib

    monkeypatch.setattr(plan_lib.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(plan_lib.CompilerMissing, match=r"pip install 'vocal-remover-jax\[tpu\]'"):
        _plan()


def test_plan_mesh_may_split_a_torus_axis():
    """8 x 8 on a 4x4x4 slice needs a physical axis split in two (jax.make_mesh refuses it);
    every device appears once."""
    from vocal_remover_jax.config import load_config
    from vocal_remover_jax.train import mesh as mesh_lib
    from vocal_remover_jax.train.chips import parse_topology
    from vocal_remover_jax.train.plan import topology_devices

    chip, dims = parse_topology("v5p:4x4x4")
    devices = topology_devices(chip, dims, "v5p:4x4x4")
    config = load_config(CONFIG, ["mesh.data=8", "mesh.fsdp=8"])
    mesh = mesh_lib.make_mesh(config.mesh, devices)
    assert dict(mesh.shape) == {"data": 8, "fsdp": 8}
    assert sorted(d.id for d in mesh.devices.flat) == sorted(d.id for d in devices)
