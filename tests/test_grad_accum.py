"""Gradient accumulation: micro-batches span every device, and add up to the whole batch's step."""

import json
import os
import subprocess
import sys

from tests.cpu_jit import UNOPTIMISED_XLA_FLAGS

RUNNER = os.path.join(os.path.dirname(__file__), "accum_run.py")


def test_accum_strided_microbatches_match_one_big_batch_on_8_fsdp_devices():
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count=8 {UNOPTIMISED_XLA_FLAGS}")
    done = subprocess.run([sys.executable, RUNNER], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    r = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert r["update_norm"] > 0
    assert r["relative_difference"] <= 1e-5, r
    # 32 examples, 4 micro-batches of 8: each micro-batch has one example on each of the 8 devices.
    assert r["micro_values_strided"], r
    assert r["micro_devices"] == 8 and r["micro_shard_shape"][:2] == [4, 1], r
    # every device computes only its own examples (the partitioner once replicated the batch after
    # `platform_dependent`'s branches: `layers.per_platform`)
    assert r["whole_batch_activations"] == 0, r
