"""Seconds to separate stereo 44.1 kHz audio: network only, the separation pipeline, the whole command.

    python benchmarks/separate.py --configs small seed --seconds 60 600 --reps 1

For each config a randomly initialised model is written through `save_model_file` (speed does not
depend on the weights). Reported per config and length:
  network   the compiled mask function alone, times the crops the separator runs for that length
            (plus FLOPs from XLA's cost analysis, GFLOP per second of audio, achieved GFLOP/s)
  pipeline  `Separator.separate` in process, compiled: STFT, network, crossfade, masks, ISTFT
  command   `vocal-remover-jax separate` in a fresh process (load, compile, read, separate,
            write), with the compilation cache the previous run left ("warm"), and for the shortest
            length also with an empty one ("cold"); and the command's peak resident memory
RTF = seconds / seconds of audio. The reference (PyTorch, `seed`, network only, this machine):
25.3 s per 60 s, RTF 0.42.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from vocal_remover_jax import xla_cpu
from vocal_remover_jax.audio.io import write_audio
from vocal_remover_jax.config import load_config
from vocal_remover_jax.describe import cost_of
from vocal_remover_jax.inference.chunking import crop_plan
from vocal_remover_jax.inference.model_file import save_model_file
from vocal_remover_jax.inference.random_params import random_params
from vocal_remover_jax.inference.separator import DEFAULT_OVERLAP, Separator, model_mask_fn

REFERENCE_RTF = 25.3 / 60.0
CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "model.py")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["small", "seed"])
    p.add_argument("--seconds", nargs="+", type=float, default=[60.0, 600.0])
    p.add_argument("--reps", type=int, default=1, help="timed repetitions per measurement (median reported)")
    p.add_argument("--batch-size", type=int, default=None, help="crops per network call (default: the CLI's)")
    p.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP)
    p.add_argument("--skip", nargs="*", default=[], choices=("pipeline", "command"), help="measurements to skip")
    p.add_argument("--out", help="also write the results as JSON")
    args = p.parse_args()

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            config = load_config(f"{CONFIGS}:{name}")
            model = os.path.join(tmp, f"{name}.safetensors")
            save_model_file(model, random_params(config.model), config)
            net = network(config, args.batch_size or default_batch(), args.reps)
            print(f"[{name}] network: {net['seconds_per_call']:.3f} s per call of {net['batch']} crop(s), "
                  f"{net['gflop_per_call']:.1f} GFLOP, {net['gflops_achieved']:.0f} GFLOP/s", flush=True)
            separator = None
            for seconds in args.seconds:
                row = {"config": name, "seconds": seconds, **net}
                crops = len(crop_plan(1 + int(seconds * 44100) // config.audio.hop_length, _chunks(config, args)))
                calls = -(-crops // net["batch"])
                row.update(crops=crops, network_s=calls * net["seconds_per_call"],
                           gflop_per_audio_second=calls * net["gflop_per_call"] / seconds)
                wave = test_audio(seconds)
                if "pipeline" not in args.skip:
                    separator = separator or Separator.from_file(model, batch_size=net["batch"], overlap=args.overlap)
                    separator.separate(wave[:, : 44100 * 5], 44100)  # compile
                    row["pipeline_s"] = timed(lambda: separator.separate(wave, 44100), args.reps)
                if "command" not in args.skip:
                    cold = seconds == min(args.seconds)  # compile time does not depend on the length
                    row.update(command(model, wave, tmp, net["batch"], args, cold))
                row["load_average"] = os.getloadavg()[0]  # other processes on the machine skew every number
                results.append(row)
                print(format_row(row), flush=True)
            del separator
    print()
    print(table(results))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


def default_batch() -> int:
    from vocal_remover_jax.inference.separator import default_batch_size

    return default_batch_size(jax.devices()[0])


def _chunks(config, args):
    from vocal_remover_jax.inference.chunking import ChunkConfig

    return ChunkConfig(n_fft=config.audio.n_fft, hop_length=config.audio.hop_length, cropsize=config.model.cropsize,
                       overlap=int(round(args.overlap * config.model.cropsize)))


def network(config, batch: int, reps: int) -> dict:
    params = jax.device_put(random_params(config.model))
    x = jnp.asarray(np.random.default_rng(0).random(
        (batch, config.model.cropsize, config.model.n_fft // 2 + 1, 2), np.float32))
    start = time.perf_counter()
    options = xla_cpu.compiler_options(jax.devices()[0].platform)  # as the separator compiles it
    compiled = jax.jit(model_mask_fn(config), compiler_options=options).lower(params, x).compile()
    compile_s = time.perf_counter() - start
    flops = float(cost_of(compiled).get("flops", 0.0))
    compiled(params, x).block_until_ready()
    per_call = timed(lambda: compiled(params, x).block_until_ready(), max(reps, 2))
    return {"batch": batch, "seconds_per_call": per_call, "gflop_per_call": flops / 1e9,
            "gflops_achieved": flops / 1e9 / per_call, "network_compile_s": compile_s}


def test_audio(seconds: float) -> np.ndarray:
    """A few seconds of noise bursts and tones, tiled: real-looking levels, cheap to make."""
    rng = np.random.default_rng(0)
    t = np.arange(44100 * 4) / 44100
    unit = 0.2 * np.sin(2 * np.pi * 220 * t * (1 + 0.01 * np.sin(3 * t))) + 0.1 * rng.standard_normal(t.shape) * (t % 0.5 < 0.1)
    wave = np.tile(unit, int(np.ceil(seconds / 4)))[: int(seconds * 44100)]
    return np.stack([wave, np.roll(wave, 441)]).astype(np.float32)


def command(model: str, wave: np.ndarray, tmp: str, batch: int, args, cold: bool) -> dict:
    song = os.path.join(tmp, "song.wav")
    write_audio(song, wave, 44100)
    cache = os.path.join(tmp, f"xla-{os.path.basename(model)}")
    if cold and os.path.isdir(cache):
        raise SystemExit("internal: cold run with a filled cache")
    os.makedirs(cache, exist_ok=True)
    out = {}
    for label in ("cold", "warm") if cold else ("warm",):
        runs = []
        for _ in range(args.reps if label == "warm" else 1):
            cmd = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "vocal_remover_jax", "separate", song, "-o",
                   os.path.join(tmp, "out"), "--model", model, "--quiet", "--overwrite", "--batch-size", str(batch),
                   "--overlap", str(args.overlap)]
            start = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache))
            runs.append(time.perf_counter() - start)
            if done.returncode:
                raise SystemExit(f"separate failed:\n{done.stderr[-3000:]}")
            out["command_peak_rss_mb"] = int(done.stderr.strip().splitlines()[-1]) / 1024
        out[f"command_{label}_s"] = statistics.median(runs)
    return out


def timed(fn, reps: int) -> float:
    runs = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def format_row(r: dict) -> str:
    s = r["seconds"]
    parts = [f"[{r['config']}] {s:.0f} s audio: {r['crops']} crops, network {r['network_s']:.1f} s (RTF {r['network_s'] / s:.3f})"]
    if "pipeline_s" in r:
        parts.append(f"pipeline {r['pipeline_s']:.1f} s (RTF {r['pipeline_s'] / s:.3f})")
    if "command_warm_s" in r:
        cold = f"cold {r['command_cold_s']:.1f} s / " if "command_cold_s" in r else ""
        parts.append(f"command {cold}warm {r['command_warm_s']:.1f} s "
                     f"(RTF {r['command_warm_s'] / s:.3f}), peak {r['command_peak_rss_mb']:.0f} MB")
    parts.append(f"load average {r['load_average']:.1f}")
    return ", ".join(parts)


def table(results: list[dict]) -> str:
    head = (f"{'config':<7}{'audio s':>8}{'crops':>6}{'GFLOP/s audio':>14}{'GFLOP/s':>8}{'network':>9}{'RTF':>7}"
            f"{'pipeline':>9}{'RTF':>7}{'cmd cold':>9}{'cmd warm':>9}{'RTF':>7}{'peak MB':>8}{'vs ref':>7}")
    lines = [head]
    f = lambda r, k, w, p=1: f"{r[k]:>{w}.{p}f}" if k in r else f"{'-':>{w}}"
    for r in results:
        s = r["seconds"]
        rtf = lambda k: {**r, "_": r[k] / s} if k in r else {}
        lines.append(
            f"{r['config']:<7}{s:>8.0f}{r['crops']:>6}{r['gflop_per_audio_second']:>14.1f}{r['gflops_achieved']:>8.0f}"
            f"{r['network_s']:>9.1f}{r['network_s'] / s:>7.3f}{f(r, 'pipeline_s', 9)}{f(rtf('pipeline_s'), '_', 7, 3)}"
            f"{f(r, 'command_cold_s', 9)}{f(r, 'command_warm_s', 9)}{f(rtf('command_warm_s'), '_', 7, 3)}"
            f"{f(r, 'command_peak_rss_mb', 8, 0)}{r['load_average']:>6.1f}"
            + (f"{REFERENCE_RTF / (r['network_s'] / s):>6.2f}x" if r["config"] == "seed" else f"{'':>7}"))
    lines.append(f"times in seconds; RTF = time / audio; 'vs ref' = reference network RTF {REFERENCE_RTF:.2f} / ours "
                 f"(network only); load = 1-min load average after the row (2 cores: above ~2 means contention); "
                 f"device {jax.devices()[0].device_kind}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
