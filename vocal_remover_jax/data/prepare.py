"""`vocal-remover-jax prepare`: folders of audio -> sharded spectrogram records + manifest.

Layout of RECORDS_DIR:
  manifest.json                              settings, shards, clip index, counts, sha256, skipped files
  <role>/<split>-00003-of-00008.array_record  role in {instrumental, vocals, pairs, mixtures}
  .progress/<role>/<split>-....json          one note per finished shard (resume bookkeeping)
Records are blocks of `block_frames` frames (see records.py); `mixtures` are songs without stems
(`--mixtures-only`), read by pretraining and never by finetuning.
The plan (which track goes to which shard) is a pure function of the inputs and options,
so a rerun after a kill keeps every finished shard whose plan is unchanged and rewrites
the rest: no duplicates, no half-written shards (temp name, then rename).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from vocal_remover_jax import presets
from vocal_remover_jax.atomic import atomic_path, write_json
from vocal_remover_jax.data import manifest, tracks as discovery
from vocal_remover_jax.data.tracks import Skip, Track

_SILENT_PEAK = 1e-5  # waveform peak below this (-100 dBFS): nothing to learn from
_SILENT_CLIP = 1e-3  # clip peak below -60 dB of the track peak: dropped, not an error


class PrepareError(RuntimeError):
    pass


@dataclasses.dataclass
class PrepareResult:
    manifest: dict
    skipped: list[Skip]


def prepare_records(
    out: str,
    *,
    instrumental: Sequence[str] = (),
    vocals: Sequence[str] = (),
    mixtures: str | None = None,
    instruments: str | None = None,
    musdb: Sequence[str] = (),
    mixtures_only: Sequence[str] = (),
    sample_rate: int = 44100,
    n_fft: int = 2048,
    hop_length: int = 1024,
    clip_frames: int = 2048,
    block_frames: int = 64,
    tracks_per_shard: int = 8,
    validation_fraction: float = 0.1,
    vocal_variants: int = 0,
    variant_seed: int = 0,
    strict: bool = False,
    progress: bool = True,
) -> PrepareResult:
    """Writes the records for every input folder; returns the manifest and the skipped files."""
    if (mixtures is None) != (instruments is None):
        raise PrepareError("--mixtures and --instruments go together (paired files matched by name)")
    tracks, skipped = [], []
    for found in (
        *(discovery.single_role(d, "instrumental") for d in instrumental),
        *(discovery.single_role(d, "vocals") for d in vocals),
        *([discovery.pairs(mixtures, instruments)] if mixtures is not None else []),
        *(discovery.musdb(d) for d in musdb),
        *(discovery.mixtures_only(d) for d in mixtures_only),
    ):
        tracks += found[0]
        skipped += found[1]
    if not tracks:
        raise PrepareError("no input tracks: pass --instrumental, --vocals, --mixtures/--instruments, --musdb "
                           "or --mixtures-only")
    if block_frames < 1 or clip_frames % block_frames:
        raise PrepareError(f"--clip-frames {clip_frames} must be a multiple of --block-frames {block_frames}")
    if strict and skipped:
        raise PrepareError(f"{skipped[0].path}: {skipped[0].reason}")
    settings = {
        "audio": {"sample_rate": sample_rate, "n_fft": n_fft, "hop_length": hop_length},
        "clip_frames": clip_frames,
        "block_frames": block_frames,
        "bins": n_fft // 2 + 1,
        "channels": 2,
        "dtype": "float16",
    }
    if vocal_variants < 0:
        raise PrepareError("--vocal-variants must be 0 or more")
    splits = discovery.assign_splits(tracks, validation_fraction)
    tracks, splits = _with_vocal_variants(tracks, splits, vocal_variants, variant_seed)
    plan = _plan(tracks, splits, tracks_per_shard)
    existing = os.path.join(out, manifest.MANIFEST)
    if os.path.exists(existing):
        manifest.check_audio_settings(manifest.load_manifest(out), settings["audio"], existing)

    sets: dict[str, dict[str, list]] = {}
    bar = tqdm(total=sum(len(_all_files(t)) for _, _, ts in plan for t in ts), unit="file", disable=not progress)
    totals = {"clips": 0, "bytes": 0}
    for name, role, shard_tracks in plan:
        entry, shard_skips = _write_or_resume(out, name, role, shard_tracks, settings, strict, bar, totals)
        skipped += shard_skips
        split = os.path.basename(name).split("-", 1)[0]
        sets.setdefault(role, {}).setdefault(split, []).append(entry)
    bar.close()

    result = {"format": manifest.FORMAT, "version": manifest.VERSION, **settings, "sets": sets}
    result["stems"] = {role: list(manifest.ROLES[role]) for role in sets}
    result["counts"] = {role: {split: sum(e["examples"] for e in es) for split, es in by.items()} for role, by in sets.items()}
    result["skipped"] = [dataclasses.asdict(s) for s in skipped]
    write_json(existing, result, indent=1, sort_keys=True)
    return PrepareResult(result, skipped)


def _with_vocal_variants(tracks: Sequence[Track], splits: Sequence[str], count: int,
                         seed: int) -> tuple[list[Track], list[str]]:
    """Adds `count` variants of every vocals track, each in its source's split (no leak into validation)."""
    out_tracks, out_splits = list(tracks), list(splits)
    for track, split in zip(tracks, splits):
        if track.role != "vocals":
            continue
        for k in range(1, count + 1):
            out_tracks.append(dataclasses.replace(track, track_id=f"{track.track_id}~v{k}", variant=k,
                                                  variant_seed=seed))
            out_splits.append(split)
    return out_tracks, out_splits


def _all_files(track: Track) -> list[str]:
    return [p for files in track.files.values() for p in files] + list(track.subtract)


def _plan(tracks: Sequence[Track], splits: Sequence[str], per_shard: int) -> list[tuple[str, str, list[Track]]]:
    """`(shard file, role, tracks)` for every shard, in a fixed order."""
    if per_shard < 1:
        raise PrepareError("--tracks-per-shard must be at least 1")
    groups: dict[tuple[str, str], list[Track]] = {}
    for track, split in sorted(zip(tracks, splits), key=lambda ts: (ts[0].role, ts[1], ts[0].track_id)):
        groups.setdefault((track.role, split), []).append(track)
    plan = []
    for (role, split), members in groups.items():
        count = -(-len(members) // per_shard)
        for i in range(count):
            plan.append((manifest.shard_name(role, split, i, count), role, members[i * per_shard : (i + 1) * per_shard]))
    return plan


def _write_or_resume(out, name, role, tracks, settings, strict, bar, totals) -> tuple[dict, list[Skip]]:
    path = os.path.join(out, name)
    note_path = os.path.join(out, ".progress", name + ".json")
    plan_hash = hashlib.sha256(
        json.dumps([settings, [(t.track_id, t.files, t.subtract, t.variant, t.variant_seed) for t in tracks]],
                   sort_keys=True).encode()
    ).hexdigest()
    if os.path.isfile(note_path) and os.path.isfile(path):
        with open(note_path) as f:
            note = json.load(f)
        if note["plan"] == plan_hash and note["entry"]["bytes"] == os.path.getsize(path):
            bar.update(sum(len(_all_files(t)) for t in tracks))
            totals["clips"] += note["entry"]["examples"]
            totals["bytes"] += note["entry"]["bytes"]
            bar.set_postfix(clips=totals["clips"], MB=f"{totals['bytes'] / 2**20:.0f}", resumed=name)
            return note["entry"], [Skip(**s) for s in note["skipped"]]

    from vocal_remover_jax.data import records

    skips, track_ids, n_records = [], [], 0
    clips_index = {"record": [], "frames": [], "coef": [], "track": [], "position": []}
    b = settings["block_frames"]
    with atomic_path(path) as tmp:
        writer = records.ShardWriter(tmp)
        try:
            for track in tracks:
                try:
                    clips = _track_clips(track, settings)
                except _TrackSkip as skip:
                    if strict:
                        raise PrepareError(f"{skip.path}: {skip.reason}") from None
                    skips.append(Skip(skip.path, skip.reason))
                    bar.update(len(_all_files(track)))
                    continue
                for clip_index, (spec, frames, coef) in clips:
                    for k, v in (("record", n_records), ("frames", frames), ("coef", coef),
                                 ("track", len(track_ids)), ("position", clip_index)):
                        clips_index[k].append(v)
                    for stem in spec:
                        for start in range(0, len(stem), b):
                            data = records.encode_block(stem[start : start + b])
                            writer.write(data)
                            n_records += 1
                            totals["bytes"] += len(data)
                    totals["clips"] += 1
                track_ids.append(track.track_id)
                bar.update(len(_all_files(track)))
                bar.set_postfix(clips=totals["clips"], MB=f"{totals['bytes'] / 2**20:.0f}")
        finally:
            writer.close()
        entry = {"file": name, "examples": len(clips_index["record"]), "records": n_records,
                 "bytes": os.path.getsize(tmp), "sha256": manifest.sha256_file(tmp), "tracks": track_ids,
                 "clips": clips_index}
        write_json(note_path, {"plan": plan_hash, "entry": entry, "skipped": [dataclasses.asdict(s) for s in skips]},
                   indent=1, sort_keys=True)
    return entry, skips


class _TrackSkip(Exception):
    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def _load_sum(paths: Sequence[str], sample_rate: int) -> list[np.ndarray]:
    from vocal_remover_jax.audio.io import AudioReadError, load_audio

    waves = []
    for path in paths:
        try:
            wave, _ = load_audio(path, sample_rate)
        except AudioReadError as error:
            raise _TrackSkip(path, str(error).removeprefix(f"{path}: ")) from None
        if np.abs(wave).max() < _SILENT_PEAK:
            raise _TrackSkip(path, "silent (peak below -100 dBFS)")
        waves.append(wave)
    return waves


def _track_clips(track: Track, settings: dict):
    """`[(clip_index, (spec, valid_frames, coef))]` for the non-silent clips of a track."""
    import jax

    from vocal_remover_jax.audio.stft import stft

    audio = settings["audio"]
    stems = {stem: _load_sum(files, audio["sample_rate"]) for stem, files in track.files.items()}
    minus = _load_sum(track.subtract, audio["sample_rate"])
    length = min(w.shape[1] for ws in [*stems.values(), minus] for w in ws)
    if length <= audio["n_fft"] // 2:
        raise _TrackSkip(_all_files(track)[0], f"too short ({length} samples at {audio['sample_rate']} Hz)")
    waves = [sum(w[:, :length] for w in ws) for ws in stems.values()]
    if minus:  # MUSDB without separate stems: instrumental = mixture - vocals
        waves[-1] = waves[-1] - sum(w[:, :length] for w in minus)
    if track.variant:
        from vocal_remover_jax.data.vocal_variants import make_variant

        source_id = track.track_id.rsplit("~", 1)[0]
        waves = [make_variant(w, audio["sample_rate"], track.variant_seed, source_id, track.variant) for w in waves]
    with jax.default_device(jax.devices("cpu")[0]):  # never grab an accelerator for preprocessing
        spec = np.stack([np.asarray(stft(w, audio["n_fft"], audio["hop_length"])) for w in waves])
    spec = spec.transpose(0, 2, 3, 1)  # (stems, frames, bins, channels)
    coef = float(np.abs(spec).max())
    if coef == 0.0:
        raise _TrackSkip(_all_files(track)[0], "silent spectrogram")
    spec /= coef
    clip_frames = settings["clip_frames"]
    total = spec.shape[1]
    clips = []
    for k, start in enumerate(range(0, total, clip_frames)):
        clip = spec[:, start : start + clip_frames]
        if np.abs(clip).max() < _SILENT_CLIP:
            continue
        frames = clip.shape[1]
        if frames < clip_frames:
            clip = np.pad(clip, [(0, 0), (0, clip_frames - frames), (0, 0), (0, 0)])
        clips.append((k, (clip, frames, coef)))
    return clips


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="records directory (created; reruns resume)")
    parser.add_argument("--instrumental", action="append", default=[], metavar="DIR", help="songs without vocals")
    parser.add_argument("--vocals", action="append", default=[], metavar="DIR", help="isolated vocal stems")
    parser.add_argument("--mixtures", metavar="DIR", help="mixtures, paired by name with --instruments")
    parser.add_argument("--instruments", metavar="DIR", help="instrumentals of the --mixtures")
    parser.add_argument("--musdb", action="append", default=[], metavar="DIR", help="MUSDB18-HQ style tree")
    parser.add_argument("--mixtures-only", action="append", default=[], metavar="DIR",
                        help="songs without stems: pretraining only (never finetuning)")
    parser.add_argument("--preset", default="seed", choices=presets.NAMES, help="STFT settings of this model size")
    parser.add_argument("--sample-rate", type=int, help="overrides the preset")
    parser.add_argument("--n-fft", type=int, help="overrides the preset")
    parser.add_argument("--hop-length", type=int, help="overrides the preset")
    parser.add_argument("--clip-frames", type=int, default=2048, help="frames per clip (an example; >= the training crop)")
    parser.add_argument("--block-frames", type=int, default=64, help="frames per record (what a crop reads at least)")
    parser.add_argument("--tracks-per-shard", type=int, default=8, help="shard size, in tracks")
    parser.add_argument("--validation-fraction", type=float, default=0.1, help="tracks held out (MUSDB test/ always)")
    parser.add_argument("--vocal-variants", type=int, default=0, metavar="N",
                        help="add N pitch/tempo/EQ/reverb variants of every vocal track (data/vocal_variants.py)")
    parser.add_argument("--variant-seed", type=int, default=0, help="seed of the vocal variants")
    parser.add_argument("--strict", action="store_true", help="stop at the first unusable file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    audio = presets.audio_config(args.preset)
    try:
        result = prepare_records(
            args.out,
            instrumental=args.instrumental,
            vocals=args.vocals,
            mixtures=args.mixtures,
            instruments=args.instruments,
            musdb=args.musdb,
            mixtures_only=args.mixtures_only,
            sample_rate=args.sample_rate or audio.sample_rate,
            n_fft=args.n_fft or audio.n_fft,
            hop_length=args.hop_length or audio.hop_length,
            clip_frames=args.clip_frames,
            block_frames=args.block_frames,
            tracks_per_shard=args.tracks_per_shard,
            validation_fraction=args.validation_fraction,
            vocal_variants=args.vocal_variants,
            variant_seed=args.variant_seed,
            strict=args.strict,
            progress=not args.no_progress,
        )
    except (PrepareError, manifest.ManifestError, FileNotFoundError) as error:
        print(f"prepare: {error}", file=sys.stderr)
        return 1
    for role, by_split in result.manifest["counts"].items():
        print(f"{role}: " + ", ".join(f"{split} {n} clips" for split, n in sorted(by_split.items())))
    if result.skipped:
        print(f"skipped {len(result.skipped)} file(s):", file=sys.stderr)
        for skip in result.skipped:
            print(f"  {skip.path}: {skip.reason}", file=sys.stderr)
        return 1
    print(f"wrote {os.path.join(args.out, manifest.MANIFEST)}")
    return 0
