"""`Separator`: a model file in, (instrumental, vocals) waveforms out."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import ml_collections
import numpy as np

from vocal_remover_jax.inference.chunking import ChunkConfig, ChunkedSeparator, MaskFn

DEFAULT_OVERLAP = 0.125  # of a crop; the crossfade hides crop edges for 1/8 more network work


class Separator:
    """Separates songs with one model; compiled functions are reused across songs.

    `separate(waveform, sample_rate)` takes `(channels, samples)` (or `(samples,)`) at any rate and
    returns instrumental and vocals of the same shape and rate, with instrumental + vocals equal to
    the input.
    """

    def __init__(self, params: Any, config: ml_collections.ConfigDict, *, batch_size: int | None = None,
                 overlap: float = DEFAULT_OVERLAP, tta: bool = False, postprocess: bool = False,
                 aggressiveness: float = 0.0, device: jax.Device | str | None = None, mask_fn: MaskFn | None = None):
        self.config = config
        self.sample_rate = int(config.audio.sample_rate)
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap is a fraction of a crop in [0, 1), got {overlap}")
        cropsize = int(config.model.cropsize)
        self.device = resolve_device(device)
        self.chunks = ChunkConfig(
            n_fft=int(config.audio.n_fft), hop_length=int(config.audio.hop_length), cropsize=cropsize,
            overlap=int(round(overlap * cropsize)), tta=tta, postprocess=postprocess, aggressiveness=aggressiveness,
            batch_size=default_batch_size(self.device) if batch_size is None else batch_size)
        if mask_fn is None:
            mask_fn = model_mask_fn(config)
        self._core = ChunkedSeparator(mask_fn, params, self.chunks, self.device)

    @classmethod
    def from_file(cls, path: str, **kwargs) -> Separator:
        import flax.errors

        from vocal_remover_jax.inference.model_file import ModelFileError, load_model_file

        # Compiling the model checks every parameter's shape: the loader need not trace it twice.
        params, config = load_model_file(path, check_shapes=False)
        try:
            return cls(params, config, **kwargs)
        except flax.errors.FlaxError as e:
            first_line = str(e).splitlines()[0]
            raise ModelFileError(f"{path}: parameters do not fit the {config.model.arch!r} model its config "
                                 f"describes ({first_line})") from None

    def set_params(self, params: Any) -> None:
        """Separate with new parameters of the same shapes (held-out scores during training)."""
        self._core.set_params(params)

    def separate(self, waveform: np.ndarray, sample_rate: int, progress: Callable[[int, int], None] | None = None,
                 images: list | None = None) -> tuple[np.ndarray, np.ndarray]:
        mixture = np.asarray(waveform, np.float32)
        stereo = to_stereo(mixture)
        parts = list(self.stream_at(stereo, sample_rate, progress=progress, images=images))
        inst = np.concatenate([p[0] for p in parts], axis=-1)
        vocals = np.concatenate([p[1] for p in parts], axis=-1)
        if mixture.ndim == 1 or mixture.shape[0] == 1:
            inst, vocals = inst.mean(0).reshape(mixture.shape), vocals.mean(0).reshape(mixture.shape)
        return inst, vocals

    def stream(self, wave: np.ndarray, progress: Callable[[int, int], None] | None = None,
               images: list | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Consecutive (instrumental, vocals) blocks of a stereo `wave` at the model's rate."""
        if wave.ndim != 2 or wave.shape[0] != 2:
            raise ValueError(f"expected a stereo waveform (2, samples), got shape {wave.shape}")
        if wave.shape[-1] == 0:
            raise ValueError("empty waveform")
        return self._core.stream(np.asarray(wave, np.float32), progress=progress, images=images)

    def stream_at(self, wave: np.ndarray, sample_rate: int, progress: Callable[[int, int], None] | None = None,
                  images: list | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Consecutive (instrumental, vocals) blocks of a stereo `wave` at its own `sample_rate`.

        At another rate than the model's, the input is resampled whole (the network's first pass
        needs the song's peak) but the instrumental is resampled back block by block, and the
        vocals are its complement at the input's rate: memory does not grow with the song beyond
        its two waveforms (a whole-song output resampling held about ten copies).
        """
        if sample_rate == self.sample_rate:
            yield from self.stream(wave, progress=progress, images=images)
            return
        import soxr

        back = soxr.ResampleStream(self.sample_rate, sample_rate, wave.shape[0], dtype="float32", quality="HQ")
        n, done = wave.shape[-1], 0
        blocks = self.stream(resample(wave, sample_rate, self.sample_rate), progress=progress, images=images)
        for inst, last in _with_last(blocks):
            inst = back.resample_chunk(np.ascontiguousarray(inst.T), last=last).T[:, : n - done]
            if last:
                inst = fit_length(inst, n - done)
            if inst.shape[-1]:
                yield inst, wave[:, done : done + inst.shape[-1]] - inst
                done += inst.shape[-1]


def model_mask_fn(config: ml_collections.ConfigDict) -> MaskFn:
    from vocal_remover_jax.models import build_model

    model = build_model(config.model)

    def mask_fn(params, x):
        mask, _ = model.apply({"params": params}, x, deterministic=True)
        return mask

    return mask_fn


def default_batch_size(device: jax.Device) -> int:
    """Crops per network call: 1 on CPU, where a crop already fills the cores and batching only pads
    the last call, 4 on accelerators."""
    return 1 if device.platform == "cpu" else 4


def resolve_device(device: jax.Device | str | None) -> jax.Device:
    """`None` (JAX's default), a jax.Device, or 'cpu' / 'gpu' / 'cuda' / 'tpu' with optional ':index'."""
    if device is None or isinstance(device, jax.Device):
        return device or jax.devices()[0]
    name, _, index = device.partition(":")
    platform = {"cuda": "gpu", "rocm": "gpu"}.get(name.lower(), name.lower())
    try:
        devices = jax.devices(platform)
    except RuntimeError as e:
        raise ValueError(f"device {device!r} is not available ({e}); JAX sees: "
                         f"{', '.join(str(d) for d in jax.devices())}") from None
    i = int(index) if index else 0
    if not 0 <= i < len(devices):
        raise ValueError(f"device {device!r}: only {len(devices)} {platform} device(s)")
    return devices[i]


def to_stereo(wave: np.ndarray) -> np.ndarray:
    if wave.ndim == 1:
        wave = wave[None]
    if wave.ndim != 2 or wave.shape[0] not in (1, 2):
        raise ValueError(f"expected a waveform (channels, samples) with 1 or 2 channels, got shape {wave.shape}")
    return np.repeat(wave, 2, axis=0) if wave.shape[0] == 1 else wave


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return wave
    import librosa

    return librosa.resample(wave, orig_sr=rate, target_sr=target, res_type="soxr_hq").astype(np.float32, copy=False)


def _with_last(blocks: Iterator[tuple[np.ndarray, np.ndarray]]) -> Iterator[tuple[np.ndarray, bool]]:
    """(instrumental block, whether it is the last) for each block."""
    previous = None
    for inst, _ in blocks:
        if previous is not None:
            yield previous, False
        previous = inst
    if previous is not None:
        yield previous, True


def fit_length(wave: np.ndarray, length: int) -> np.ndarray:
    if wave.shape[-1] >= length:
        return wave[..., :length]
    return np.pad(wave, [(0, 0)] * (wave.ndim - 1) + [(0, length - wave.shape[-1])])
