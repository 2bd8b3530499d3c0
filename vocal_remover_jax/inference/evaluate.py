"""`evaluate`: SDR of a model file on a MUSDB18-HQ style tree (layout: `audio/reference_tracks.py`).

    vocal-remover-jax evaluate --model model.safetensors musdb18hq/test --out sdr.json
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

import numpy as np

from vocal_remover_jax.atomic import write_json
from vocal_remover_jax.audio.reference_tracks import SOURCES, find_reference_tracks, load_reference_track

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="MUSDB18-HQ style folder (e.g. musdb18hq/test) or mixture/vocals/instrumental triples")
    parser.add_argument("-m", "--model", help="model file (.safetensors; default: the packaged model)")
    parser.add_argument("--out", help="JSON results file (default: <model name>_<dataset name>_sdr.json here)")
    parser.add_argument("--batch-size", type=int, help="crops per network call (default: 1 on CPU, 4 on GPU/TPU)")
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--postprocess", action="store_true")
    parser.add_argument("--aggressiveness", type=float, default=0.0)
    parser.add_argument("--device", help="cpu, gpu, gpu:1, tpu")
    parser.add_argument("--max-tracks", type=int, help="evaluate only the first N tracks")
    parser.add_argument("--frame-seconds", type=float, default=1.0, help="frame length for the median SDR (default 1)")


def main(args: argparse.Namespace) -> int:
    from vocal_remover_jax.inference.model_file import ModelFileError
    from vocal_remover_jax.inference.packaged import no_model_message, resolve_model

    args.model = resolve_model(args.model)
    if args.model is None:
        print(f"evaluate: {no_model_message()}", file=sys.stderr)
        return 2
    out = args.out or f"{_stem(args.model)}_{_stem(os.path.abspath(args.dataset))}_sdr.json"
    try:
        results = evaluate_model(args.model, args.dataset, out_json=out, batch_size=args.batch_size, tta=args.tta,
                           postprocess=args.postprocess, aggressiveness=args.aggressiveness, device=args.device,
                           max_tracks=args.max_tracks, frame_seconds=args.frame_seconds)
    except (ModelFileError, ValueError) as e:
        print(f"evaluate: {e}", file=sys.stderr)
        return 2
    print(format_table(results))
    print(f"wrote {out}")
    return 1 if results["failed"] else 0


def evaluate_model(model_path: str, dataset_dir: str, *, out_json: str | None = None, batch_size: int | None = None,
             tta: bool = False, postprocess: bool = False, aggressiveness: float = 0.0, device: str | None = None,
             max_tracks: int | None = None, frame_seconds: float = 1.0, progress: bool = True) -> dict:
    """Separates every track of `dataset_dir` and scores it; returns (and optionally writes) the results.

    {"model", "dataset", "settings", "tracks": [{"name", "vocals": {"sdr_median", "sdr_whole"},
    "instrumental": {...}}], "failed": [{"name", "error"}], "summary": {source: {"sdr_median", "sdr_whole"}}}
    where a track's `sdr_median` is the median over frames and the summary's the median over tracks.
    """
    from vocal_remover_jax.inference.separator import Separator

    tracks = find_reference_tracks(dataset_dir)[:max_tracks]
    if not tracks:
        raise ValueError(f"{dataset_dir}: no tracks found (expected <track>/mixture.wav with vocals.wav, "
                         "or <name>_mixture/_vocals/_instrumental files)")
    settings = dict(batch_size=batch_size, tta=tta, postprocess=postprocess, aggressiveness=aggressiveness,
                    frame_seconds=frame_seconds)
    separator = Separator.from_file(model_path, batch_size=batch_size, tta=tta, postprocess=postprocess,
                                    aggressiveness=aggressiveness, device=device)
    rows, failed = score_tracks(separator.separate, tracks, frame_seconds, progress)
    summary = median_over_tracks(rows)
    results = {"model": os.path.abspath(model_path), "dataset": os.path.abspath(dataset_dir), "settings": settings,
               "tracks": rows, "failed": failed, "summary": summary}
    if out_json:
        write_json(out_json, results)
    return results


def score_tracks(separate: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]], tracks: list,
                 frame_seconds: float = 1.0, progress: bool = False) -> tuple[list[dict], list[dict]]:
    """(rows, failed): each track's SDR summaries for the estimates `separate(mixture, rate)` ->
    (instrumental, vocals); a track that fails is reported and skipped."""
    from tqdm import tqdm

    from vocal_remover_jax.inference.sdr import track_sdr

    rows, failed = [], []
    for track in tqdm(tracks, desc="tracks", unit="track", disable=not progress):
        try:
            mixture, references, rate = load_reference_track(track)
            inst, vocals = separate(mixture, rate)
            scores = track_sdr(references, np.stack([vocals, inst]), rate, frame_seconds)
        except Exception as e:  # noqa: BLE001 - report and go on with the other tracks
            failed.append({"name": track.name, "error": str(e)})
            continue
        rows.append({"name": track.name, "seconds": mixture.shape[-1] / rate,
                     **{s: {"sdr_median": _num(scores["median"][i]), "sdr_whole": _num(scores["whole"][i])}
                        for i, s in enumerate(SOURCES)}})
    return rows, failed


def median_over_tracks(rows: list[dict]) -> dict[str, dict[str, float | None]]:
    """{source: {"sdr_median", "sdr_whole"}}: each the median over `score_tracks`' rows (None without rows)."""
    return {s: {k: _num(np.nanmedian([np.nan if r[s][k] is None else r[s][k] for r in rows])) if rows else None
                for k in ("sdr_median", "sdr_whole")} for s in SOURCES}


def sdr_gain(model: dict | None, baseline: dict | None) -> float | None:
    """One track's improvement on one source: the model's `sdr_median` minus the baseline's, on the
    same mixture (None where either is missing), as SDR improvement is counted per mixture."""
    if not model or not baseline or model["sdr_median"] is None or baseline["sdr_median"] is None:
        return None
    return model["sdr_median"] - baseline["sdr_median"]


def do_nothing(mixture: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """The baseline every separator must beat: half the mixture for each stem."""
    return mixture / 2, mixture / 2


def format_table(results: dict) -> str:
    width = max([len("track"), len("median of tracks"), *(len(r["name"]) for r in results["tracks"])])
    cols = [(s, k) for s in SOURCES for k in ("sdr_median", "sdr_whole")]
    fmt = lambda v: f"{v:>12.2f}" if v is not None else f"{'n/a':>12}"
    line = lambda name, d: f"{name:<{width}}" + "".join(fmt(d[s][k]) for s, k in cols)
    head = f"{'track':<{width}}" + "".join(f"{s[:5] + (' med' if k == 'sdr_median' else ' whole'):>12}" for s, k in cols)
    lines = [head, "-" * len(head), *(line(r["name"], r) for r in results["tracks"])]
    lines += ["-" * len(head), line("median of tracks", results["summary"])]
    lines += [f"FAILED {f['name']}: {f['error']}" for f in results["failed"]]
    lines.append("SDR in dB (bss_eval sources, fast_bss_eval): 'med' = median over 1-second frames, 'whole' = whole track")
    return "\n".join(lines)


def _num(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
