"""`quickstart`: the whole job on generated audio, end to end, in minutes on a laptop CPU.

generate -> prepare -> pretrain (tiny) -> finetune (tiny) -> export -> separate -> evaluate,
each stage the same code the individual commands run. The model it leaves behind has only
heard generated audio: it demonstrates the pipeline and is no model for real songs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import time

import numpy as np

from vocal_remover_jax.atomic import write_json

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", default="quickstart", help="where everything goes (default: ./quickstart)")
    parser.add_argument("--tracks", type=int, default=12, help="generated training songs (default 12)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each generated song (default 20)")
    parser.add_argument("--pretrain-steps", type=int, default=100, help="BERT-style pretraining steps (default 100)")
    parser.add_argument("--finetune-steps", type=int, default=400, help="vocal-removal finetuning steps (default 400)")
    parser.add_argument("--seed", type=int, default=0)


class Stages:
    """Prints each stage with its wall time."""

    def __init__(self):
        self.times: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        print(f"\n== {name}", flush=True)
        start = time.perf_counter()
        yield
        self.times[name] = time.perf_counter() - start
        print(f"== {name}: {self.times[name]:.1f} s", flush=True)


def run_quickstart(workdir: str, *, tracks: int = 12, seconds: float = 20.0, pretrain_steps: int = 100,
                   finetune_steps: int = 400, seed: int = 0) -> dict:
    """Runs every stage into `workdir`; returns the SDR summary (also written to `summary.json`)."""
    from vocal_remover_jax import cli, presets
    from vocal_remover_jax.data.synthetic import write_synthetic_dataset

    os.makedirs(workdir, exist_ok=True)
    audio = presets.audio_config("tiny")
    stage = Stages()
    paths = {name: os.path.join(workdir, name) for name in ("audio", "heldout", "records", "pretrain", "finetune",
                                                             "separated")}
    model_path = os.path.join(workdir, "model.safetensors")

    with stage("generate audio"):
        write_synthetic_dataset(paths["audio"], n_tracks=tracks, seconds=seconds, sample_rate=audio.sample_rate,
                                seed=seed)
        heldout = write_synthetic_dataset(paths["heldout"], n_tracks=2, seconds=min(seconds, 12.0),
                                          sample_rate=audio.sample_rate, seed=seed + 1)
    with stage("prepare records"):
        _run(cli, "prepare", "--out", paths["records"], "--instrumental", os.path.join(paths["audio"], "instrumental"),
             "--vocals", os.path.join(paths["audio"], "vocals"), "--preset", "tiny", "--clip-frames", "256", "--block-frames", "16",
             "--tracks-per-shard", "4")
    with stage(f"pretrain tiny model ({pretrain_steps} steps)"):
        _run(cli, "train", "--config", f"{CONFIGS / 'pretrain.py'}:tiny", "--workdir", paths["pretrain"],
             f"--config.data.records={paths['records']}", f"--config.total_steps={pretrain_steps}")
    with stage(f"finetune for vocal removal ({finetune_steps} steps)"):
        _run(cli, "train", "--config", f"{CONFIGS / 'finetune.py'}:tiny", "--workdir", paths["finetune"],
             f"--config.data.records={paths['records']}", f"--config.total_steps={finetune_steps}",
             f"--config.init_from={paths['pretrain']}")
    with stage("export"):
        _run(cli, "export", "--workdir", paths["finetune"], "--out", model_path, "--overwrite")
    mixture = os.path.join(heldout["musdb"], "track_000", "mixture.wav")
    with stage("separate a held-out mixture"):
        _run(cli, "separate", mixture, "--model", model_path, "-o", paths["separated"], "--output-image",
             "--overwrite")
    with stage("evaluate on held-out songs"):
        evaluation = os.path.join(workdir, "evaluation.json")
        _run(cli, "evaluate", heldout["musdb"], "--model", model_path, "--out", evaluation)
        with open(evaluation) as f:
            results = json.load(f)
        baseline = mixture_baseline(heldout["musdb"])

    summary = {"model": model_path, "stage_seconds": stage.times, "model_sdr": results["summary"],
               "mixture_sdr": baseline}
    write_json(os.path.join(workdir, "summary.json"), summary)
    print_summary(summary)
    return summary


def mixture_baseline(dataset: str) -> dict:
    """SDR of the unprocessed mixture taken as the estimate of each source: what separation must beat."""
    from vocal_remover_jax.audio.reference_tracks import SOURCES, find_reference_tracks, load_reference_track
    from vocal_remover_jax.inference.sdr import track_sdr

    per_track = []
    for track in find_reference_tracks(dataset):
        mixture, references, rate = load_reference_track(track)
        per_track.append(track_sdr(references, np.stack([mixture, mixture]), rate))
    return {s: {"sdr_median": float(np.nanmedian([t["median"][i] for t in per_track])),
                "sdr_whole": float(np.nanmedian([t["whole"][i] for t in per_track]))} for i, s in enumerate(SOURCES)}


def print_summary(summary: dict) -> None:
    print("\nSDR on held-out generated songs (dB, higher is better; median of 1-second frames / whole track)")
    print(f"  {'source':<13} {'separated':>17} {'unprocessed mix':>17}")
    for source, scores in summary["model_sdr"].items():
        base = summary["mixture_sdr"][source]
        print(f"  {source:<13} {scores['sdr_median']:>7.2f} / {scores['sdr_whole']:>6.2f}  "
              f"{base['sdr_median']:>7.2f} / {base['sdr_whole']:>6.2f}")
    total = sum(summary["stage_seconds"].values())
    print(f"\ntotal {total:.0f} s. Model: {summary['model']} (trained on generated audio only: a demonstration, "
          "not a model for real songs). Separated files and spectrogram images are in the workdir.")


def _run(cli, *argv: str) -> None:
    code = cli.main(list(argv))
    if code:
        raise SystemExit(f"quickstart: `vocal-remover-jax {' '.join(argv)}` failed with exit code {code}")


def main(args: argparse.Namespace) -> int:
    run_quickstart(args.workdir, tracks=args.tracks, seconds=args.seconds, pretrain_steps=args.pretrain_steps,
                   finetune_steps=args.finetune_steps, seed=args.seed)
    return 0
