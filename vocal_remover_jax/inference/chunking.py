"""Chunked separation of a song of any length: STFT, network, crossfade, masks and ISTFT on the device.

The song is streamed. Crops of `cropsize` frames start every `stride = cropsize - overlap`
frames (a second grid shifted by half a stride with `tta`); the host gathers each crop's
samples, the device computes its spectrum, runs the mask function on a batch of crops and adds
the masks, weighted by a crossfade ramp, into a fixed-size frame buffer. Frames no later crop
touches are final: every `block` frames the buffer hands a block of masks to synthesis (mask
the block's mixture spectrum, inverse FFT, overlap-add with the tail carried from the previous
block) and shifts. Device memory is a few crops whatever the length; every compiled function
sees one shape per separator.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vocal_remover_jax import xla_cpu
from vocal_remover_jax.audio.stft import frames_istft, frames_stft, num_frames
from vocal_remover_jax.host_memory import release_freed_memory
from vocal_remover_jax.inference import postprocess
from vocal_remover_jax.models.layers import traced_for_platform

# (params, magnitudes (batch, cropsize, bins, 2) in [0, 1]) -> instrumental mask of the same shape.
MaskFn = Callable[[Any, jax.Array], jax.Array]
_TINY = float(np.finfo(np.float32).tiny)


@dataclasses.dataclass(frozen=True)
class ChunkConfig:
    n_fft: int
    hop_length: int
    cropsize: int
    overlap: int = 0  # frames shared by neighbouring crops, crossfaded
    batch_size: int = 4
    tta: bool = False  # second crop grid shifted by half a stride, masks averaged
    postprocess: bool = False
    aggressiveness: float = 0.0

    def __post_init__(self):
        if not 0 <= self.overlap < self.cropsize:
            raise ValueError(f"overlap must be in [0, cropsize={self.cropsize}), got {self.overlap}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.aggressiveness <= 1.0:
            raise ValueError(f"aggressiveness must be in [0, 1], got {self.aggressiveness}")

    @property
    def stride(self) -> int:
        return self.cropsize - self.overlap

    @property
    def grids(self) -> int:
        return 2 if self.tta else 1

    @property
    def block(self) -> int:
        """Frames synthesised per step: about what one batch of crops finalises."""
        return self.stride * max(1, self.batch_size // self.grids)

    @property
    def margin(self) -> int:
        """Buffer rows before the first unfinished frame, for the shifted grid's first crop."""
        return self.stride // 2 if self.tta else 0

    @property
    def rows(self) -> int:
        return self.margin + self.block + self.batch_size * self.stride + self.cropsize

    @property
    def crop_samples(self) -> int:
        return (self.cropsize - 1) * self.hop_length + self.n_fft

    @property
    def block_samples(self) -> int:
        return (self.block - 1) * self.hop_length + self.n_fft


def crop_plan(frames: int, cfg: ChunkConfig) -> list[tuple[int, int]]:
    """(start frame, grid) of every crop, by start: each grid covers frames [0, frames)."""
    plan = []
    for grid, offset in enumerate((0, cfg.stride // 2)[: cfg.grids]):
        start = -offset
        while True:
            plan.append((start, grid))
            if start + cfg.cropsize >= frames:
                break
            start += cfg.stride
    return sorted(plan)


def crossfade(cfg: ChunkConfig) -> np.ndarray:
    """Per-frame crop weight: linear ramps over the overlap, never zero, so every frame is covered."""
    if cfg.overlap == 0:
        return np.ones(cfg.cropsize, np.float32)
    i = np.arange(cfg.cropsize) + 0.5
    return np.minimum(1.0, np.minimum(i, cfg.cropsize - i) / cfg.overlap).astype(np.float32)


def padded_segment(wave: np.ndarray, start: int, length: int, n_fft: int) -> np.ndarray:
    """Samples [start, start + length) of the song reflect-padded by n_fft // 2, zeros outside it.

    Builds only the slice, so the padded song never exists in memory.
    """
    n = wave.shape[-1]
    if n_fft // 2 <= start and start + length <= n + n_fft // 2:  # inside the song: a plain slice
        return np.array(wave[:, start - n_fft // 2 : start - n_fft // 2 + length], np.float32)
    p = np.arange(start, start + length)
    i = p - n_fft // 2
    if n > 1:
        period = 2 * (n - 1)
        j = np.mod(i, period)
        j = np.where(j >= n, period - j, j)
    else:
        j = np.zeros_like(i)
    inside = (p >= 0) & (p < n + 2 * (n_fft // 2))
    return np.where(inside, wave[:, np.where(inside, j, 0)], 0.0).astype(np.float32)


class ChunkedSeparator:
    """Compiled streaming separation for one mask function and chunk configuration."""

    def __init__(self, mask_fn: MaskFn, params: Any, cfg: ChunkConfig, device: jax.Device | None = None):
        self.cfg = cfg
        self.device = device or jax.devices()[0]
        self.params = jax.device_put(params, self.device)
        self._weights = jax.device_put(crossfade(cfg), self.device)
        self._compile(mask_fn)

    def set_params(self, params: Any) -> None:
        """New parameters of the same shapes (a model in training): no recompilation."""
        shapes = lambda tree: jax.tree.map(lambda a: (a.shape, a.dtype), tree)  # noqa: E731
        if shapes(params) != shapes(self.params):
            raise ValueError("set_params: the parameters differ in structure or shapes from those compiled for")
        self.params = jax.device_put(params, self.device)

    def _compile(self, mask_fn: MaskFn) -> None:
        """Compiles every device function for its one shape now, so a bad model fails here, not mid-song."""
        cfg, sharding = self.cfg, jax.sharding.SingleDeviceSharding(self.device)
        spec = lambda shape, dtype=jnp.float32: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
        i32, f32, batch, bins = spec((), jnp.int32), spec(()), cfg.batch_size, cfg.n_fft // 2 + 1
        num, den = spec((cfg.grids, cfg.rows, bins, 2)), spec((cfg.grids, cfg.rows))
        segment, tail = spec((2, cfg.block_samples)), cfg.n_fft - cfg.hop_length
        jit = functools.partial(jax.jit, compiler_options=xla_cpu.compiler_options(self.device.platform))
        self._song_max = jit(self._song_max_impl).lower(f32, segment, i32, i32).compile()
        self._accumulate = jit(traced_for_platform(self._accumulate_impl(mask_fn), self.device.platform),
                               donate_argnums=(1, 2)).lower(
            self.params, num, den, spec((batch, 2, cfg.crop_samples)), spec((batch,), jnp.int32),
            spec((batch,), jnp.int32), spec((batch,)), i32, i32, f32).compile()
        self._finalize = jit(self._finalize_impl, donate_argnums=(0, 1)).lower(num, den).compile()
        synth_args = (segment, spec((cfg.block, bins, 2)), spec((cfg.block,)), i32, i32, spec((2, tail)), spec((tail,)))
        synthesize = jit(self._synthesize_impl, static_argnames=("with_image",))
        self._synthesizers = {False: synthesize.lower(*synth_args).compile()}
        self._lower_synthesize = lambda: synthesize.lower(*synth_args, with_image=True).compile()
        release_freed_memory()

    # ---- device functions -------------------------------------------------------------------
    def _song_max_impl(self, running, segment, first, frames):
        cfg = self.cfg
        mag = jnp.abs(frames_stft(segment, cfg.n_fft, cfg.hop_length, cfg.block))
        valid = (first + jnp.arange(cfg.block)) < frames
        return jnp.maximum(running, jnp.max(mag * valid[:, None]))

    def _accumulate_impl(self, mask_fn: MaskFn):
        cfg = self.cfg

        def accumulate(params, num, den, waves, starts, grids, active, base, frames, scale):
            spec = frames_stft(waves, cfg.n_fft, cfg.hop_length, cfg.cropsize)  # (B, 2, C, bins)
            t = starts[:, None] + jnp.arange(cfg.cropsize)[None, :]
            valid = ((t >= 0) & (t < frames)).astype(jnp.float32)
            mag = jnp.abs(spec) * scale * valid[:, None, :, None]
            mask = mask_fn(params, jnp.transpose(mag, (0, 2, 3, 1))).astype(jnp.float32)  # (B, C, bins, 2)
            weight = self._weights[None, :] * active[:, None]
            rows = starts - base + cfg.margin
            for b in range(cfg.batch_size):
                at = (grids[b], rows[b], 0, 0)
                block = jax.lax.dynamic_slice(num, at, (1, *mask.shape[1:]))
                num = jax.lax.dynamic_update_slice(num, block + (weight[b][:, None, None] * mask[b])[None], at)
                w_block = jax.lax.dynamic_slice(den, at[:2], (1, cfg.cropsize))
                den = jax.lax.dynamic_update_slice(den, w_block + weight[b][None], at[:2])
            return num, den

        return accumulate

    def _finalize_impl(self, num, den):
        cfg = self.cfg
        rows = slice(cfg.margin, cfg.margin + cfg.block)
        n, d = num[:, rows], den[:, rows]
        covered = (d > 0).astype(jnp.float32)
        per_grid = n / jnp.where(d > 0, d, 1.0)[..., None, None]
        mask = jnp.sum(per_grid * covered[..., None, None], axis=0) / jnp.maximum(covered.sum(0), 1.0)[:, None, None]
        shift = lambda a: jnp.concatenate([a[:, cfg.block :], jnp.zeros_like(a[:, : cfg.block])], axis=1)
        return mask, mask.min(axis=(1, 2)), shift(num), shift(den)

    def _synthesize_impl(self, segment, mask, frame_weight, first, frames, carry_sig, carry_env, with_image=False):
        cfg = self.cfg
        spec = frames_stft(segment, cfg.n_fft, cfg.hop_length, cfg.block)  # (2, F, bins)
        mask = postprocess.apply_merge(mask, frame_weight)
        if cfg.aggressiveness > 0:
            mask = postprocess.apply_aggressiveness(mask, cfg.aggressiveness)
        inst_spec = spec * jnp.transpose(mask, (2, 0, 1))
        t = first + jnp.arange(cfg.block)
        valid = ((t >= 0) & (t < frames)).astype(jnp.float32)
        sig, env = frames_istft(inst_spec, valid, cfg.n_fft, cfg.hop_length)
        tail = cfg.n_fft - cfg.hop_length
        sig = sig.at[:, :tail].add(carry_sig)
        env = env.at[:tail].add(carry_env)
        out = cfg.block * cfg.hop_length
        inst = sig[:, :out] / jnp.where(env[:out] > _TINY, env[:out], 1.0)
        vocals = segment[:, :out] - inst  # complementary by construction: the mixture is the input
        image = None
        if with_image:
            power = lambda s: jnp.log10(jnp.mean(jnp.abs(s) ** 2, axis=0) + 1e-10).astype(jnp.float16)
            image = jnp.stack([power(spec), power(inst_spec), power(spec - inst_spec)])  # (3, F, bins)
        return inst, vocals, sig[:, out:], env[out:], image

    # ---- host loop --------------------------------------------------------------------------
    def stream(self, wave: np.ndarray, progress: Callable[[int, int], None] | None = None,
               images: list | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yields consecutive (instrumental, vocals) sample blocks of `wave (2, samples)`.

        `progress(done, total)` is called per crop batch; with `images` a list, per-block
        channel-mean log10 power spectra (mixture, instrumental, vocals; frames, bins) are appended to it.
        """
        cfg, dev = self.cfg, self.device
        n = wave.shape[-1]
        frames = num_frames(n, cfg.hop_length)
        wanted = cfg.n_fft // 2 + n  # padded samples up to the last output sample
        blocks = math.ceil(wanted / (cfg.block * cfg.hop_length))
        put = lambda x: jax.device_put(x, dev)

        scale = self._scale(wave, frames, put)
        plan = crop_plan(frames, cfg)
        num = put(jnp.zeros((cfg.grids, cfg.rows, cfg.n_fft // 2 + 1, 2), jnp.float32))
        den = put(jnp.zeros((cfg.grids, cfg.rows), jnp.float32))
        carry_sig = put(jnp.zeros((2, cfg.n_fft - cfg.hop_length), jnp.float32))
        carry_env = put(jnp.zeros((cfg.n_fft - cfg.hop_length,), jnp.float32))
        frame_min = np.zeros(blocks * cfg.block, np.float32)
        pending: collections.deque = collections.deque()  # (first frame, mask block) awaiting synthesis
        base, finalized = 0, 0
        no_weight = put(jnp.zeros(cfg.block, jnp.float32))
        if images is not None and True not in self._synthesizers:
            self._synthesizers[True] = self._lower_synthesize()
        synthesize = self._synthesizers[images is not None]

        def synthesize_ready(done: bool):
            nonlocal carry_sig, carry_env
            while pending:
                first, mask = pending[0]
                known = min(base, frames)
                if cfg.postprocess and not done and known < min(first + cfg.block + postprocess.LOOKAHEAD, frames):
                    return
                pending.popleft()
                weight = no_weight
                if cfg.postprocess:
                    w = postprocess.merge_weights(frame_min[:known])[first : first + cfg.block]
                    weight = put(np.pad(w, (0, cfg.block - len(w))))
                segment = padded_segment(wave, first * cfg.hop_length, cfg.block_samples, cfg.n_fft)
                inst, vocals, carry_sig, carry_env, image = synthesize(
                    put(segment), mask, weight, np.int32(first), np.int32(frames), carry_sig, carry_env)
                if images is not None and first < frames:
                    images.append(np.asarray(image)[:, : frames - first])
                lo = first * cfg.hop_length - cfg.n_fft // 2
                keep = slice(max(0, -lo), max(0, min(inst.shape[-1], wanted - cfg.n_fft // 2 - lo)))
                yield np.asarray(inst)[:, keep], np.asarray(vocals)[:, keep]

        batches = range(0, len(plan), cfg.batch_size)
        for done_batches, i in enumerate(batches, 1):
            batch = plan[i : i + cfg.batch_size]
            idle = cfg.batch_size - len(batch)
            batch = batch + [(base, 0)] * idle
            starts = np.array([s for s, _ in batch], np.int32)
            waves = np.stack([padded_segment(wave, s * cfg.hop_length, cfg.crop_samples, cfg.n_fft) for s in starts])
            active = np.array([1.0] * (cfg.batch_size - idle) + [0.0] * idle, np.float32)
            num, den = self._accumulate(self.params, num, den, put(waves), put(starts),
                                        put(np.array([g for _, g in batch], np.int32)), put(active),
                                        np.int32(base), np.int32(frames), np.float32(scale))
            frontier = plan[i + cfg.batch_size][0] if i + cfg.batch_size < len(plan) else None
            while finalized < blocks and (frontier is None or frontier - base >= cfg.block):
                mask, mins, num, den = self._finalize(num, den)
                if cfg.postprocess:
                    frame_min[base : base + cfg.block] = np.asarray(mins)
                pending.append((base, mask))
                base += cfg.block
                finalized += 1
                yield from synthesize_ready(done=frontier is None and finalized == blocks)
            if progress is not None:
                progress(done_batches, len(batches))
        yield from synthesize_ready(done=True)

    def _scale(self, wave: np.ndarray, frames: int, put) -> float:
        """1 / the song's largest STFT magnitude (the reference's normalisation); 1 for silence."""
        cfg = self.cfg
        running = put(jnp.zeros((), jnp.float32))
        for first in range(0, frames, cfg.block):
            segment = padded_segment(wave, first * cfg.hop_length, cfg.block_samples, cfg.n_fft)
            running = self._song_max(running, put(segment), np.int32(first), np.int32(frames))
        peak = float(running)
        return 1.0 / peak if peak > 0 else 1.0
