"""`separate`: split songs into instrumental and vocals with a model file.

    vocal-remover-jax separate song.mp3 music/ 'live/*.flac' -o out/ [--model model.safetensors]

Without --model it uses the model packaged with vocal-remover-jax (inference/packaged.py).
Each input gives `<name>_Instruments.<ext>` and `<name>_Vocals.<ext>` (folders keep their layout
under the output directory). A file that fails is reported and the rest go on; the exit
code is 1 if anything failed.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import sys

import numpy as np

from vocal_remover_jax.audio.files import is_audio_file, walk_audio_files

SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}
STEMS = ("instruments", "vocals")



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="audio files, folders (searched recursively) or glob patterns")
    parser.add_argument("-o", "--output-dir", default=".", help="where outputs go (default: current directory)")
    parser.add_argument("-m", "--model", help="model file (.safetensors) from `export` or `import-torch` "
                                              "(default: the model packaged with vocal-remover-jax)")
    parser.add_argument("--stems", choices=("both", *STEMS), default="both", help="which outputs to write")
    parser.add_argument("--instruments-suffix", default="_Instruments", help="name suffix of the instrumental")
    parser.add_argument("--vocals-suffix", default="_Vocals", help="name suffix of the vocals")
    parser.add_argument("--format", choices=("wav", "flac"), default="wav", help="output format (default wav)")
    parser.add_argument("--bit-depth", choices=tuple(SUBTYPES), default="16", help="16, 24 or float (wav only)")
    parser.add_argument("--batch-size", type=int, help="crops per network call (default: 1 on CPU, 4 on GPU/TPU)")
    parser.add_argument("--overlap", type=float, default=None,
                        help="crossfaded overlap between crops, as a fraction of a crop (default 0.125)")
    parser.add_argument("--tta", action="store_true", help="second pass on crops shifted by half a stride, averaged")
    parser.add_argument("--postprocess", action="store_true",
                        help="push long instrumental-only passages to the pure mixture (reference's merge_artifacts; made "
                         "for hard masks: with the packaged model's soft masks it empties the vocals, README)")
    parser.add_argument("--aggressiveness", type=float, default=0.0,
                        help="0-1: how hard vocal residue is removed from the instrumental (default 0, off; try 0.1-0.3)")
    parser.add_argument("--output-image", action="store_true", help="also write <name>_Spectrograms.png: mixture, instrumental and vocals (needs the images extra)")
    parser.add_argument("--device", help="cpu, gpu, gpu:1, tpu (default: JAX's first device)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def main(args: argparse.Namespace) -> int:
    from vocal_remover_jax.inference.packaged import no_model_message, resolve_model

    model = resolve_model(args.model)
    if model is None:
        print(f"separate: {no_model_message()}", file=sys.stderr)
        return 2
    if not args.model and not args.quiet:
        print(f"separate: using the packaged model {model}", file=sys.stderr)
    if args.format == "flac" and args.bit_depth == "float":
        print("separate: FLAC stores integers only: use --bit-depth 16 or 24, or --format wav", file=sys.stderr)
        return 2
    if args.output_image:
        from vocal_remover_jax.inference.images import require_matplotlib

        try:
            require_matplotlib()
        except ValueError as e:
            print(f"separate: {e}", file=sys.stderr)
            return 2
    jobs, missing = collect_inputs(args.inputs, args.output_dir)
    for pattern in missing:
        print(f"separate: {pattern}: no such file, folder or matching audio", file=sys.stderr)
    if not jobs:
        return 1

    from tqdm import tqdm

    from vocal_remover_jax.inference.model_file import ModelFileError
    from vocal_remover_jax.inference.separator import DEFAULT_OVERLAP, Separator

    try:
        separator = Separator.from_file(
            model, batch_size=args.batch_size, tta=args.tta, postprocess=args.postprocess,
            overlap=DEFAULT_OVERLAP if args.overlap is None else args.overlap,
            aggressiveness=args.aggressiveness, device=args.device)
    except (ModelFileError, ValueError) as e:
        print(f"separate: {e}", file=sys.stderr)
        return 2

    failed = len(missing)
    overall = tqdm(jobs, desc="songs", unit="song", disable=args.quiet or len(jobs) == 1)
    for source, out_dir in overall:
        try:
            written = separate_file(separator, source, out_dir, args)
            overall.write(f"{source} -> {', '.join(written)}")
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the batch
            failed += 1
            overall.write(f"separate: {source}: {_reason(e, source)}")
    if failed:
        print(f"separate: {failed} of {len(jobs) + len(missing)} input(s) failed", file=sys.stderr)
    return 1 if failed else 0


def separate_file(separator, source: str, out_dir: str, args: argparse.Namespace) -> list[str]:
    """Separates one file; returns the paths written."""
    from tqdm import tqdm

    from vocal_remover_jax.audio.io import audio_writer, load_audio
    from vocal_remover_jax.inference.separator import to_stereo

    name = os.path.splitext(os.path.basename(source))[0]
    stems = STEMS if args.stems == "both" else (args.stems,)
    suffix = {"instruments": args.instruments_suffix, "vocals": args.vocals_suffix}
    outputs = {s: os.path.join(out_dir, f"{name}{suffix[s]}.{args.format}") for s in stems}
    picture = os.path.join(out_dir, f"{name}_Spectrograms.png") if args.output_image else None
    for path in [*outputs.values(), *([picture] if picture else [])]:
        if os.path.abspath(path) == os.path.abspath(source):
            raise ValueError(f"output {path} would overwrite the input")
        if os.path.exists(path) and not args.overwrite:
            raise FileExistsError(f"{path} exists (pass --overwrite to replace it)")
    wave, rate = load_audio(source, keep_mono=True)
    channels = wave.shape[0]  # a mono song gets mono stems: the mean of the stereo network's two
    wave = to_stereo(wave)
    os.makedirs(out_dir, exist_ok=True)
    images = [] if args.output_image else None
    with tqdm(desc=name[:30], unit="batch", leave=False, disable=args.quiet) as bar:
        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)

        with contextlib.ExitStack() as files:  # all stems appear together, or none
            writers = {s: files.enter_context(audio_writer(outputs[s], rate, channels, SUBTYPES[args.bit_depth]))
                       for s in stems}
            for inst, vocals in separator.stream_at(wave, rate, progress=progress, images=images):
                for stem, data in zip(STEMS, (inst, vocals)):
                    if stem in writers:
                        writers[stem](data.mean(0, keepdims=True) if channels == 1 else data)
    written = list(outputs.values())
    if images is not None:
        from vocal_remover_jax.inference.images import write_spectrogram_image

        write_spectrogram_image(picture, np.concatenate(images, axis=1), separator.sample_rate,
                                separator.chunks.hop_length, title=os.path.basename(source))
        written.append(picture)
    return written


def collect_inputs(patterns: list[str], output_dir: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(input file, its output folder) for files, folders (recursive, layout kept) and globs."""
    jobs, missing = [], []
    for pattern in patterns:
        if os.path.isdir(pattern):
            found = [(p, os.path.join(output_dir, os.path.relpath(os.path.dirname(p), pattern)))
                     for p in walk_audio_files(pattern)]
        elif os.path.isfile(pattern):
            found = [(pattern, output_dir)]
        else:
            found = [(p, output_dir) for p in sorted(glob.glob(pattern, recursive=True))
                     if os.path.isfile(p) and is_audio_file(p)]
        if not found:
            missing.append(pattern)
        jobs += [(p, os.path.normpath(d)) for p, d in found]
    return list(dict.fromkeys(jobs)), missing


def _reason(e: Exception, source: str) -> str:
    text = str(e).removeprefix(f"{source}: ")
    return text if isinstance(e, (ValueError, OSError)) else f"{type(e).__name__}: {text}"
