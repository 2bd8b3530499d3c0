"""The starter model's data and its held-out score, from the real-audio pack.

    python benchmarks/starter_model.py prepare --pack PATH/real-audio --workdir runs/starter [--vocal-variants 8]
    python benchmarks/starter_model.py evaluate --workdir runs/starter --model model.safetensors

`prepare` checks every file of configs/starter_split.json against its sha256, links the train part
into WORKDIR/audio/{instrumentals,vocals} and runs `vocal-remover-jax prepare` on it (records in
WORKDIR/records; arguments after `--` go to that command), then mixes the held-out part into
WORKDIR/heldout/<instrumental>+<vocal>/{mixture,vocals,instrumental}.wav (the layout `evaluate`
reads; float WAV, so mixture = vocals + instrumental exactly). Files named *_NC-SA are never used.
`evaluate` prints per-clip and median SDR of vocals and instrumental for the model (through
`vocal-remover-jax evaluate`) next to the do-nothing estimate (half the mixture for each stem),
and writes WORKDIR/heldout_sdr.json (or --out).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys

import numpy as np

SPLIT_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "starter_split.json")
CLIP_SECONDS = 12.0
INSTRUMENTAL_START = 20.0  # seconds into the instrumental (earlier when it is too short)
VOCAL_GAP = 0.5  # seconds of silence between repeats of a short vocal
# vocal level relative to the instrumental (RMS, dB), one per held-out instrumental in split order
VOCAL_TO_INSTRUMENTAL_DB = (0.0, -4.0, 2.0, -2.0, -6.0)
SOURCES = ("vocals", "instrumental")


def load_split(path: str = SPLIT_FILE) -> dict:
    with open(path) as f:
        split = json.load(f)
    for part in ("train", "held_out"):
        for name in split[part]:
            if os.path.splitext(os.path.basename(name))[0].endswith("_NC-SA"):
                raise ValueError(f"{path}: {name} is CC BY-NC-SA and must not be in {part}")
    return split


def check_pack(pack: str, split: dict) -> None:
    """Every file of the split exists in `pack` with the listed sha256."""
    for part in ("train", "held_out"):
        for name, expected in split[part].items():
            path = os.path.join(pack, name)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path}: listed in {SPLIT_FILE} ({part}) but missing from the pack")
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            if h.hexdigest() != expected:
                raise ValueError(f"{path}: sha256 {h.hexdigest()} differs from {expected} in {SPLIT_FILE}")


def link_train_audio(pack: str, split: dict, audio_dir: str) -> dict[str, str]:
    """WORKDIR/audio/<role folder>/<file> symlinks to the train part, and nothing else there
    (a link left from another split or pack is replaced or removed); returns role folder -> dir."""
    dirs, wanted = {}, set()
    for name in split["train"]:
        folder, base = os.path.split(name)
        target_dir = dirs.setdefault(folder, os.path.join(audio_dir, folder))
        os.makedirs(target_dir, exist_ok=True)
        link, target = os.path.join(target_dir, base), os.path.abspath(os.path.join(pack, name))
        wanted.add(link)
        if os.path.lexists(link) and os.readlink(link) != target:
            os.remove(link)
        if not os.path.lexists(link):
            os.symlink(target, link)
    for target_dir in dirs.values():
        for base in os.listdir(target_dir):
            if os.path.join(target_dir, base) not in wanted:
                os.remove(os.path.join(target_dir, base))
    return dirs


def heldout_mixtures(pack: str, split: dict, out_dir: str) -> list[str]:
    """Every held-out instrumental with every held-out vocal: CLIP_SECONDS, fixed levels. Returns the clip names."""
    from vocal_remover_jax.audio.io import load_audio, write_audio

    names = list(split["held_out"])
    vocal_names = [n for n in names if n.startswith("vocals/")]
    inst_names = [n for n in names if n.startswith("instrumentals/")]
    clips = []
    for i, inst_name in enumerate(inst_names):
        inst, rate = load_audio(os.path.join(pack, inst_name))
        n = int(CLIP_SECONDS * rate)
        start = int(max(0.0, min(INSTRUMENTAL_START * rate, inst.shape[1] - n)))
        inst = inst[:, start : start + n]
        for vocal_name in vocal_names:
            vocal, _ = load_audio(os.path.join(pack, vocal_name), rate)
            vocal = _tile(vocal, inst.shape[1], int(VOCAL_GAP * rate))
            gain_db = VOCAL_TO_INSTRUMENTAL_DB[i % len(VOCAL_TO_INSTRUMENTAL_DB)]
            vocal = vocal * (_rms(inst) / _rms(vocal) * 10 ** (gain_db / 20))
            mixture = inst + vocal
            scale = min(1.0, 0.99 / float(np.abs(mixture).max()))
            name = f"{_base(inst_name)}+{_base(vocal_name)}"
            folder = os.path.join(out_dir, name)
            os.makedirs(folder, exist_ok=True)
            for stem, wave in (("mixture", mixture), ("vocals", vocal), ("instrumental", inst)):
                write_audio(os.path.join(folder, f"{stem}.wav"), wave * scale, rate, subtype="FLOAT")
            clips.append(name)
    return clips


def _tile(wave: np.ndarray, n: int, gap: int) -> np.ndarray:
    unit = np.concatenate([wave, np.zeros((wave.shape[0], gap), wave.dtype)], axis=1)
    reps = -(-n // unit.shape[1])
    return np.tile(unit, (1, reps))[:, :n]


def _rms(wave: np.ndarray) -> float:
    return float(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))


def _base(name: str) -> str:
    return os.path.splitext(os.path.basename(name))[0]


def do_nothing_scores(heldout_dir: str, frame_seconds: float = 1.0) -> dict[str, dict]:
    """SDR of half the mixture as each stem, per clip (same metric as `evaluate`)."""
    from vocal_remover_jax.audio.io import load_audio
    from vocal_remover_jax.inference.sdr import track_sdr

    scores = {}
    for name in sorted(os.listdir(heldout_dir)):
        folder = os.path.join(heldout_dir, name)
        if not os.path.isfile(os.path.join(folder, "mixture.wav")):
            continue
        mixture, rate = load_audio(os.path.join(folder, "mixture.wav"))
        refs = np.stack([load_audio(os.path.join(folder, f"{s}.wav"), rate)[0] for s in SOURCES])
        s = track_sdr(refs, np.stack([mixture / 2, mixture / 2]), rate, frame_seconds)
        scores[name] = {src: {"sdr_median": float(s["median"][i]), "sdr_whole": float(s["whole"][i])}
                        for i, src in enumerate(SOURCES)}
    return scores


def cmd_prepare(args: argparse.Namespace, forwarded: list[str]) -> int:
    split = load_split()
    check_pack(args.pack, split)
    dirs = link_train_audio(args.pack, split, os.path.join(args.workdir, "audio"))
    clips = heldout_mixtures(args.pack, split, os.path.join(args.workdir, "heldout"))
    print(f"held-out: {len(clips)} mixtures in {os.path.join(args.workdir, 'heldout')}")
    cmd = [sys.executable, "-m", "vocal_remover_jax.cli", "prepare", "--preset", args.preset,
           "--out", os.path.join(args.workdir, "records"), "--instrumental", dirs["instrumentals"],
           "--vocals", dirs["vocals"], "--vocal-variants", str(args.vocal_variants),
           "--variant-seed", str(args.variant_seed), *forwarded]
    print(" ".join(cmd), flush=True)
    return subprocess.call(cmd)


def cmd_evaluate(args: argparse.Namespace, forwarded: list[str]) -> int:
    heldout = os.path.join(args.workdir, "heldout")
    out = args.out or os.path.join(args.workdir, "heldout_sdr.json")
    model_json = out + ".model.json"
    rc = subprocess.call([sys.executable, "-m", "vocal_remover_jax.cli", "evaluate", "--model", args.model, heldout,
                          "--out", model_json, *forwarded], stdout=subprocess.DEVNULL)
    if not os.path.isfile(model_json):
        print(f"starter_model: `vocal-remover-jax evaluate` failed (exit {rc})", file=sys.stderr)
        return rc or 1
    with open(model_json) as f:
        model = {t["name"]: t for t in json.load(f)["tracks"]}
    base = do_nothing_scores(heldout)
    rows = []
    for name, b in base.items():
        m = model.get(name)
        rows.append({"name": name, **{f"{s}_{who}": (d[s]["sdr_median"] if d else None)
                                      for s in SOURCES for who, d in (("model", m), ("do_nothing", b))}})
    keys = [f"{s}_{who}" for s in SOURCES for who in ("model", "do_nothing")]
    median = {k: float(np.nanmedian([np.nan if r[k] is None else r[k] for r in rows])) for k in keys}
    width = max(len(r["name"]) for r in rows)
    print(f"{'clip':<{width}}" + "".join(f"{k:>24}" for k in keys))
    for r in [*rows, {"name": "median", **median}]:
        print(f"{r['name']:<{width}}" + "".join(f"{r[k]:>24.2f}" if r[k] is not None else f"{'n/a':>24}" for k in keys))
    print("SDR in dB: median over 1-second frames (vocal-remover-jax evaluate's sdr_median); "
          "do_nothing = half the mixture for each stem")
    for s in SOURCES:
        print(f"{s}: model - do-nothing = {median[f'{s}_model'] - median[f'{s}_do_nothing']:+.2f} dB")
    from vocal_remover_jax.atomic import write_json

    write_json(out, {"model": os.path.abspath(args.model), "clips": rows, "median": median})
    print(f"wrote {out}")
    return rc


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="check the pack, write training records and held-out mixtures")
    prep.add_argument("--pack", required=True, help="the real-audio folder (with SHA256SUMS)")
    prep.add_argument("--workdir", required=True)
    prep.add_argument("--preset", default="starter", help="STFT settings of this model size")
    prep.add_argument("--vocal-variants", type=int, default=8)
    prep.add_argument("--variant-seed", type=int, default=0)
    ev = sub.add_parser("evaluate", help="held-out SDR of a model file next to the do-nothing estimate")
    ev.add_argument("--workdir", required=True)
    ev.add_argument("--model", required=True)
    ev.add_argument("--out")
    argv = sys.argv[1:]
    forwarded = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = p.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    return {"prepare": cmd_prepare, "evaluate": cmd_evaluate}[args.command](args, forwarded)


if __name__ == "__main__":
    sys.exit(main())
