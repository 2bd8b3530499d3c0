"""The starter model's data and its held-out score, from the real-audio pack.

    python benchmarks/starter_model.py prepare --pack PATH/real-audio --workdir runs/starter [--vocal-variants 8]
    python benchmarks/starter_model.py evaluate --workdir runs/starter --model model.safetensors
    python benchmarks/starter_model.py ship --workdir runs/starter --pack PATH/real-audio --hardware "2-core CPU"
    python benchmarks/starter_model.py oracle --workdir runs/starter [--preset starter]
    python benchmarks/starter_model.py placement --workdir runs/starter --model model.safetensors

`prepare` checks every file of configs/starter_split.json against its sha256, links the train part
into WORKDIR/audio/{instrumentals,vocals} and runs `vocal-remover-jax prepare` on it (records in
WORKDIR/records; arguments after `--` go to that command), then mixes the held-out part into
WORKDIR/heldout/<instrumental>+<vocal>/{mixture,vocals,instrumental}.wav (the layout `evaluate`
reads; float WAV, so mixture = vocals + instrumental exactly). Files named *_NC-SA are never used.
`evaluate` prints per-clip and median SDR of vocals and instrumental for the model (through
`vocal-remover-jax evaluate`) next to the do-nothing estimate (half the mixture for each stem),
and writes WORKDIR/heldout_sdr.json (or --out).
`oracle` scores the ideal mask on the same mixtures: the instrumental's magnitude over the
mixture's, clipped to [0, 1], at the preset's STFT (what finetuning's L1 target asks of the mask), so
the ceiling of any model that masks the mixture at that STFT, next to doing nothing.
`placement` scores the model as `evaluate` does on the same clips with the voice placed as real
mixes place it rather than dry in the centre (the pack's singing is mono): panned (alternately
left and right, PAN_POSITION of the way to the side, constant power) and in a stereo room
(decorrelated reverb, REVERB_RT60 seconds, REVERB_WET of the sound). The variants are written
once to WORKDIR/heldout-panned and WORKDIR/heldout-reverb.
`ship` puts the evaluated model file, with its card, into the package (vocal_remover_jax/pretrained/,
what `separate` uses without --model): the card holds the training data's attributions (from the
pack's SOURCES.md, read here and never at run time), the config, the steps and training time of
WORKDIR/pre and WORKDIR/ft, and the held-out SDR of WORKDIR/heldout_sdr.json; it refuses a model
that is not one of WORKDIR/ft's checkpoints, and any _NC-SA file among the training data. WORKDIR/pre
counts only when the finetuning run started from it (its config's init_from). It prints
the file's sha256 and a markdown table for README.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

import numpy as np

from vocal_remover_jax.inference.model_file import file_sha256

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
            if (digest := file_sha256(path)) != expected:
                raise ValueError(f"{path}: sha256 {digest} differs from {expected} in {SPLIT_FILE}")


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
    from vocal_remover_jax.audio.io import load_audio

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
            name = f"{_base(inst_name)}+{_base(vocal_name)}"
            write_clip(os.path.join(out_dir, name), vocal, inst, rate)
            clips.append(name)
    return clips


def write_clip(folder: str, vocal: np.ndarray, inst: np.ndarray, rate: int) -> None:
    """`folder/{mixture,vocals,instrumental}.wav` in float (mixture = vocals + instrumental exactly),
    all scaled so that the mixture peaks at 0.99 at most."""
    from vocal_remover_jax.audio.io import write_audio

    mixture = inst + vocal
    scale = min(1.0, 0.99 / float(np.abs(mixture).max()))
    os.makedirs(folder, exist_ok=True)
    for stem, wave in (("mixture", mixture), ("vocals", vocal), ("instrumental", inst)):
        write_audio(os.path.join(folder, f"{stem}.wav"), wave * scale, rate, subtype="FLOAT")


def _tile(wave: np.ndarray, n: int, gap: int) -> np.ndarray:
    unit = np.concatenate([wave, np.zeros((wave.shape[0], gap), wave.dtype)], axis=1)
    reps = -(-n // unit.shape[1])
    return np.tile(unit, (1, reps))[:, :n]


def _rms(wave: np.ndarray) -> float:
    return float(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))


def _base(name: str) -> str:
    return os.path.splitext(os.path.basename(name))[0]


def cmd_oracle(args: argparse.Namespace, forwarded: list[str]) -> int:
    from vocal_remover_jax.inference.evaluate import median_over_tracks
    from vocal_remover_jax.presets import audio_config

    heldout = os.path.join(args.workdir, "heldout")
    audio = audio_config(args.preset)
    oracle, base = ideal_mask_scores(heldout, args.preset), do_nothing_scores(heldout)
    baseline = median_over_tracks(list(base.values()))
    print(f"ideal mask at {args.preset}'s STFT (n_fft {audio.n_fft}, hop {audio.hop_length}), median of {len(base)} clips:")
    for s in SOURCES:
        nothing = baseline[s]["sdr_median"]
        print(f"{s}: ideal mask {oracle[s]:.2f} dB, do-nothing {nothing:.2f} dB, difference {oracle[s] - nothing:+.2f} dB")
    return 0


def ideal_mask_scores(heldout_dir: str, preset: str) -> dict[str, float]:
    """{source: median SDR over clips} of the ideal mask at `preset`'s STFT (see `oracle`)."""
    import jax.numpy as jnp

    from vocal_remover_jax.audio import stft
    from vocal_remover_jax.audio.reference_tracks import find_reference_tracks, load_reference_track
    from vocal_remover_jax.inference.evaluate import median_over_tracks, score_tracks
    from vocal_remover_jax.presets import audio_config

    audio = audio_config(preset)
    n_fft, hop = audio.n_fft, audio.hop_length
    rows = []
    for track in find_reference_tracks(heldout_dir):
        _, (_, instrumental), _ = load_reference_track(track)

        def ideal_mask(mixture, rate, instrumental=instrumental):
            if rate != audio.sample_rate:
                raise ValueError(f"{rate} Hz: {preset} works at {audio.sample_rate} Hz")
            mix_spec = stft.stft(jnp.asarray(mixture), n_fft, hop)
            target = jnp.abs(stft.stft(jnp.asarray(instrumental), n_fft, hop))
            estimate = np.asarray(stft.istft(mix_spec * jnp.clip(target / jnp.maximum(jnp.abs(mix_spec), 1e-8), 0, 1),
                                             n_fft, hop, mixture.shape[-1]))
            return estimate, mixture - estimate

        done, failed = score_tracks(ideal_mask, [track])
        if failed:
            raise ValueError(f"{heldout_dir}: could not score {failed}")
        rows += done
    return {s: v["sdr_median"] for s, v in median_over_tracks(rows).items()}


def do_nothing_scores(heldout_dir: str, frame_seconds: float = 1.0) -> dict[str, dict]:
    """SDR of half the mixture as each stem, per clip (same metric as `evaluate`)."""
    from vocal_remover_jax.audio.reference_tracks import find_reference_tracks
    from vocal_remover_jax.inference.evaluate import do_nothing, score_tracks

    rows, failed = score_tracks(do_nothing, find_reference_tracks(heldout_dir), frame_seconds)
    if failed:
        raise ValueError(f"{heldout_dir}: could not score {failed}")
    return {row["name"]: row for row in rows}


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
    out = args.out or os.path.join(args.workdir, "heldout_sdr.json")
    return evaluate_heldout(os.path.join(args.workdir, "heldout"), args.model, out, forwarded)


def cmd_placement(args: argparse.Namespace, forwarded: list[str]) -> int:
    rc = 0
    for kind in PLACEMENTS:
        heldout = placed_mixtures(os.path.join(args.workdir, "heldout"), kind,
                                  os.path.join(args.workdir, f"heldout-{kind}"))
        print(f"--- voice {kind}: {heldout}", flush=True)
        rc = evaluate_heldout(heldout, args.model, os.path.join(args.workdir, f"heldout-{kind}_sdr.json"),
                              forwarded) or rc
    return rc


PLACEMENTS = ("panned", "reverb")
PAN_POSITION = 0.4  # of the way from the centre to one side
REVERB_RT60, REVERB_WET, REVERB_SEED = 1.2, 0.3, 0


def placed_mixtures(heldout_dir: str, kind: str, out_dir: str) -> str:
    """The held-out clips of `heldout_dir` with the voice panned or reverberated, written once to
    `out_dir` (the same layout, mixture = vocals + instrumental exactly). Returns `out_dir`."""
    from vocal_remover_jax.atomic import write_json
    from vocal_remover_jax.audio.reference_tracks import find_reference_tracks, load_reference_track
    from vocal_remover_jax.data.vocal_variants import reverb
    from vocal_remover_jax.train.augment import pan_gains

    done = os.path.join(out_dir, "placement.json")
    if os.path.isfile(done):
        return out_dir
    for i, track in enumerate(find_reference_tracks(heldout_dir)):
        _, (vocal, inst), rate = load_reference_track(track)
        if kind == "panned":
            side = 1.0 if i % 2 else 0.0  # uniform draw 0: full left of the width, 1: full right
            vocal = vocal * np.asarray(pan_gains(np.array([side]), PAN_POSITION))[0][:, None]
        else:
            vocal = reverb(vocal, rate, REVERB_RT60, REVERB_WET, np.random.default_rng(REVERB_SEED))
        write_clip(os.path.join(out_dir, track.name), vocal, inst, rate)
    write_json(done, {"kind": kind, "from": os.path.abspath(heldout_dir), "pan_position": PAN_POSITION,
                      "reverb_rt60": REVERB_RT60, "reverb_wet": REVERB_WET})
    return out_dir


def evaluate_heldout(heldout: str, model: str, out: str, forwarded: list[str]) -> int:
    """Per-clip and median SDR of `model` next to doing nothing on the clips of `heldout`; writes `out`."""
    model_json = out + ".model.json"
    rc = subprocess.call([sys.executable, "-m", "vocal_remover_jax.cli", "evaluate", "--model", model, heldout,
                          "--out", model_json, *forwarded], stdout=subprocess.DEVNULL)
    if not os.path.isfile(model_json):
        print(f"starter_model: `vocal-remover-jax evaluate` failed (exit {rc})", file=sys.stderr)
        return rc or 1
    from vocal_remover_jax.inference.evaluate import sdr_gain

    with open(model_json) as f:
        scored = {t["name"]: t for t in json.load(f)["tracks"]}
    base = do_nothing_scores(heldout)
    rows = []
    for name, b in base.items():
        m = scored.get(name)
        rows.append({"name": name, **{f"{s}_{who}": (d[s]["sdr_median"] if d else None)
                                      for s in SOURCES for who, d in (("model", m), ("do_nothing", b))},
                     **{f"{s}_gain": sdr_gain(m and m[s], b[s]) for s in SOURCES}})
    keys = [f"{s}_{who}" for s in SOURCES for who in ("model", "do_nothing", "gain")]
    median = {k: float(np.nanmedian([np.nan if r[k] is None else r[k] for r in rows])) for k in keys}
    width = max(len(r["name"]) for r in rows)
    print(f"{'clip':<{width}}" + "".join(f"{k:>24}" for k in keys))
    for r in [*rows, {"name": "median", **median}]:
        print(f"{r['name']:<{width}}" + "".join(f"{r[k]:>24.2f}" if r[k] is not None else f"{'n/a':>24}" for k in keys))
    print("SDR in dB: median over 1-second frames (vocal-remover-jax evaluate's sdr_median); "
          "do_nothing = half the mixture for each stem; gain = model - do_nothing on the same clip")
    for s in SOURCES:
        print(f"{s}: gain over doing nothing {median[f'{s}_gain']:+.2f} dB (median of the clips' gains; the goal's "
              f"count); difference of the medians {median[f'{s}_model'] - median[f'{s}_do_nothing']:+.2f} dB")
    from vocal_remover_jax.atomic import write_json

    write_json(out, {"model": os.path.abspath(model), "clips": rows, "median": median})
    print(f"wrote {out}")
    return rc

SHIPPED_NAME = "starter"


def summary(gain: dict[str, float]) -> str:
    """The card's summary; `gain`: per stem, the median over the held-out mixtures of each one's
    model - do-nothing SDR in dB (the goal's count, README "How the gain is counted")."""
    return ("A small frame-transformer vocal remover trained from scratch on mixtures made on the fly from about 37 "
            "minutes of instrumentals and 6 minutes of isolated singing, all under licences that allow "
            "redistribution (no non-commercial data). A starting point that runs on a laptop CPU, not a "
            "state-of-the-art separator: it has heard far less singing than published models. On its held-out "
            f"mixtures it beats doing nothing by a median of {gain['vocals']:+.1f} dB per mixture on the vocals and "
            f"{gain['instrumental']:+.1f} dB on the instrumental.")


LIMITATIONS = (
    "Its instrumental is only a little cleaner than the mixture itself: expect audible voice left in a karaoke "
    "track, most where the voice is loud.",
    "Lyrics, rap and speech: most of its singing was sustained notes, vowels and short sung exclamations; "
    "separators trained on real multitrack songs (MUSDB18-HQ) do much better on words.",
    "Instruments that sound like a voice (strings, folk melody instruments, trumpet, flute, synth leads) are taken "
    "out with the voice: held-out orchestra and folk mixtures lose on both stems.",
    "Backing vocals, choirs inside a mix, growls and screams, and heavily processed pop vocals (auto-tune, "
    "distortion, long reverb): never heard in training.",
    "Its held-out score comes from a few artificial mixtures (2 voices x 5 instrumentals, no mastering): "
    "a small test; commercial songs will score differently.",
    "It works at 44.1 kHz: other rates are resampled, and content above 16 kHz was rare in its training vocals.",
)
EVALUATE_COMMAND = "python benchmarks/starter_model.py evaluate --workdir WORKDIR --model MODEL"
SDR_METRIC = ("median over the mixtures of each mixture's median SDR over 1-second frames "
              "(vocal-remover-jax evaluate's sdr_median)")
MAX_MODEL_BYTES = 50 * 2**20


def _not_nc_sa(names, where: str) -> None:
    bad = sorted(n for n in names if "_NC-SA" in os.path.basename(n))
    assert not bad, f"{where}: CC BY-NC-SA files must never train the shipped model: {bad}"


def read_sources(pack: str) -> tuple[dict[str, dict], str, str]:
    """The pack's SOURCES.md: {path: table row}, the 'How the files were made' section and the
    licence notices (lines about NC-SA licences left out: no such file trains a shipped model)."""
    path = os.path.join(pack, "SOURCES.md")
    with open(path) as f:
        text = f.read()
    rows, header = {}, None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif "path" in header and not set(line) <= set("|-: "):
            if len(cells) != len(header):
                raise ValueError(f"{path}: a table row has {len(cells)} cells, its header {len(header)}: {line[:80]}")
            row = dict(zip(header, cells))
            rows[row["path"].strip("`")] = row
    notices = "\n".join(line for line in _section(text, "Licence texts and notices").splitlines()
                        if "NC-SA" not in line)
    return rows, _paragraphs(_section(text, "How the files were made")), notices


def _paragraphs(markdown: str) -> str:
    """One line per list item or paragraph (markdown's wrapped continuation lines joined)."""
    items: list[str] = []
    for line in markdown.splitlines():
        line = line.strip()
        if not line:
            continue
        if items and not re.match(r"(\d+\.|-) ", line):
            items[-1] += " " + line
        else:
            items.append(line)
    return "\n".join(items)


def _section(markdown: str, title: str) -> str:
    lines = markdown.splitlines()
    try:
        start = lines.index(f"## {title}") + 1
    except ValueError:
        return ""
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[start:end]).strip()


def run_summary(run_dir: str, step: int | None = None) -> dict:
    """Steps (`step`, default the latest checkpoint), batch size and training seconds up to that step
    of one training workdir.

    Seconds: the logged step times times the steps each covers (a resumed run's first window
    starts at the checkpoint it resumed from); start-up, checkpoint and evaluation time are not in it.
    """
    from vocal_remover_jax.train.checkpoint import load_config

    config = load_config(run_dir)
    step = max(checkpoint_steps(run_dir)) if step is None else step
    every = int(config.get("checkpoint", {}).get("every_steps", 1)) or 1
    seconds, previous = 0.0, 0
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            m = json.loads(line) if line.strip() else {}
            if "step_time" not in m or m["step"] > step:
                continue
            start = previous if m["step"] > previous else (m["step"] - 1) // every * every
            seconds += m["step_time"] * (m["step"] - start)
            previous = m["step"]
    return {"steps": step, "batch_size": int(config["batch_size"]), "seconds": round(seconds)}


def checkpoint_steps(run_dir: str) -> list[int]:
    checkpoints = os.path.join(run_dir, "checkpoints")
    steps = [int(d) for d in (os.listdir(checkpoints) if os.path.isdir(checkpoints) else []) if d.isdigit()]
    if not steps:
        raise FileNotFoundError(f"{checkpoints}: no checkpoints")
    return steps


def check_records(records: str, split: dict) -> None:
    """The tracks in the training records (train and validation) all come from the split's train part."""
    path = os.path.join(records, "manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    names = {t.split(":", 1)[-1].split("~")[0] for role in manifest["sets"].values() for shards in role.values()
             for shard in shards for t in shard["tracks"]}
    _not_nc_sa(names, path)
    allowed = {_base(n) for n in split["train"]}
    stray = sorted(names - allowed)
    if stray:
        raise ValueError(f"{path}: records hold tracks outside the train part of {SPLIT_FILE}: {stray[:5]}")


def checkpoint_step(params: dict, finetune_dir: str, model: str) -> int:
    """The step of the finetuning run's checkpoint whose parameters `model` holds exactly (the latest,
    or an earlier one chosen by its validation score)."""
    from flax import traverse_util

    from vocal_remover_jax.train.checkpoint import restore_params

    a = traverse_util.flatten_dict(dict(params), sep="/")
    for step in sorted(checkpoint_steps(finetune_dir), reverse=True):
        b = traverse_util.flatten_dict(dict(restore_params(finetune_dir, step)[0]), sep="/")
        if a.keys() == b.keys() and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a):
            return step
    raise ValueError(f"{model} is not a checkpoint of {finetune_dir}: export one (`vocal-remover-jax export "
                     f"--workdir {finetune_dir} --step N`) and evaluate it ({EVALUATE_COMMAND}) before shipping")


def make_card(args: argparse.Namespace, split: dict, params: dict, results: dict, step: int) -> dict:
    rows, changes, notices = read_sources(args.pack)
    train = sorted(split["train"])
    _not_nc_sa(train, SPLIT_FILE)
    missing = [n for n in train if n not in rows]
    if missing:
        raise ValueError(f"{os.path.join(args.pack, 'SOURCES.md')}: no attribution for {missing}")
    data = [{"file": n, "duration": rows[n]["duration"],
             "licence": rows[n]["licence"].replace("at the end of this file", "under licence notices"),
             "attribution": rows[n]["attribution"], "source": rows[n]["source"]} for n in train]
    _not_nc_sa([d["file"] for d in data], "card")
    from vocal_remover_jax.train.checkpoint import load_config

    finetune = os.path.join(args.workdir, "ft")
    phases = {"finetune": run_summary(finetune, step)}
    if load_config(finetune).get("init_from"):  # started from WORKDIR/pre
        phases = {"pretrain": run_summary(os.path.join(args.workdir, "pre")), **phases}
    median = results["median"]
    from flax import traverse_util

    parameters = sum(int(np.size(a)) for a in traverse_util.flatten_dict(dict(params)).values())
    return {
        "name": SHIPPED_NAME,
        "summary": summary({s: median[f"{s}_gain"] for s in SOURCES}),
        "config": {"spec": args.config_spec, "parameters": parameters},
        "training": {**phases, "hardware": args.hardware, "seconds": sum(p["seconds"] for p in phases.values())},
        "heldout_sdr": {"clips": len(results["clips"]), "metric": SDR_METRIC, "command": EVALUATE_COMMAND,
                        **{s: {"model": round(median[f"{s}_model"], 4), "do_nothing": round(median[f"{s}_do_nothing"], 4),
                               "median_clip_gain": round(median[f"{s}_gain"], 4)}
                           for s in SOURCES}},
        "limitations": list(LIMITATIONS),
        "data": {"training": data, "held_out": sorted(split["held_out"]), "changes": changes, "notices": notices},
    }


def cmd_ship(args: argparse.Namespace, forwarded: list[str]) -> int:
    try:
        return ship(args)
    except (ValueError, OSError, KeyError, AssertionError) as e:
        print(f"starter_model ship: {e}", file=sys.stderr)
        return 2


def ship(args: argparse.Namespace) -> int:
    from vocal_remover_jax.inference.model_card import sdr_table, training_line
    from vocal_remover_jax.inference.model_file import load_model_file, save_model_file
    from vocal_remover_jax.inference.packaged import PACKAGED_MODEL

    split = load_split(SPLIT_FILE)
    records = os.path.join(args.workdir, "records", "manifest.json")
    if os.path.isfile(records):
        check_records(os.path.dirname(records), split)
    else:
        print(f"starter_model: {records} missing: trusting {SPLIT_FILE} for the training data", file=sys.stderr)
    sdr_json = args.sdr or os.path.join(args.workdir, "heldout_sdr.json")
    with open(sdr_json) as f:
        results = json.load(f)
    if any(f"{s}_gain" not in results.get("median", {}) for s in SOURCES):
        raise ValueError(f"{sdr_json}: no per-clip gains (written by an older evaluate): re-run {EVALUATE_COMMAND}")
    model = args.model or results["model"]
    if os.path.abspath(model) != os.path.abspath(results["model"]):
        raise ValueError(f"{sdr_json} scores {results['model']}, not {model}")
    params, config = load_model_file(model)
    step = checkpoint_step(params, os.path.join(args.workdir, "ft"), model)
    card = make_card(args, split, params, results, step)
    out = args.out or PACKAGED_MODEL
    save_model_file(out, params, config, card)
    load_model_file(out)
    size = os.path.getsize(out)
    if size > MAX_MODEL_BYTES:
        os.remove(out)
        raise ValueError(f"{out}: {size / 2**20:.1f} MiB, over the {MAX_MODEL_BYTES / 2**20:.0f} MiB a packaged model may take")
    digest = file_sha256(out)
    print(f"wrote {out} ({size / 2**20:.1f} MiB, {card['config']['parameters']:,} parameters)")
    print(f"sha256 {digest}")
    print()
    print(sdr_table(card))
    print()
    print(f"- model: `{card['config']['spec']}`, {card['config']['parameters']:,} parameters, "
          f"{size / 2**20:.1f} MiB, sha256 `{digest}`")
    print(f"- training: {training_line(card['training'])}")
    print(f"- held-out: {card['heldout_sdr']['clips']} mixtures; {SDR_METRIC}; `{EVALUATE_COMMAND}`")
    if os.path.abspath(out) == os.path.abspath(PACKAGED_MODEL):
        print(f"\n`separate` now uses it without --model; commit it: git add {os.path.relpath(out)}")
    return 0


def main(argv: list[str] | None = None) -> int:
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
    orc = sub.add_parser("oracle", help="held-out SDR of the ideal mask at a preset's STFT: the ceiling of masking")
    orc.add_argument("--workdir", required=True)
    orc.add_argument("--preset", default="starter", help="the model size whose STFT the mask uses")
    pl = sub.add_parser("placement", help="held-out SDR with the voice panned and in a stereo room")
    pl.add_argument("--workdir", required=True)
    pl.add_argument("--model", required=True)
    sh = sub.add_parser("ship", help="put the evaluated model, with its card, into the package")
    sh.add_argument("--workdir", required=True, help="holds pre/ and ft/ (training runs), heldout_sdr.json, records/")
    sh.add_argument("--pack", required=True, help="the real-audio folder: its SOURCES.md gives the attributions")
    sh.add_argument("--hardware", required=True, help='what trained it, for the card, e.g. "2-core CPU (x86-64)"')
    sh.add_argument("--sdr", help="`evaluate`'s JSON (default WORKDIR/heldout_sdr.json)")
    sh.add_argument("--model", help="the model file to ship (default: the one the SDR JSON scores)")
    sh.add_argument("--config-spec", default="configs/finetune.py:starter", help="the config it was trained with")
    sh.add_argument("--out", help="default: the package's model, vocal_remover_jax/pretrained/starter.safetensors")
    argv = sys.argv[1:] if argv is None else argv
    forwarded = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = p.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    return {"prepare": cmd_prepare, "evaluate": cmd_evaluate, "oracle": cmd_oracle, "placement": cmd_placement,
            "ship": cmd_ship}[args.command](args, forwarded)


if __name__ == "__main__":
    sys.exit(main())
