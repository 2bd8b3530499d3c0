"""Device-side augmentation: the raw crops of data/pipelines.py -> the batches the steps take.

Pure jnp, vectorised over the batch, jitted next to the train step. Every random draw of
example g comes from key(seed) folded with a named purpose and then g, so a resumed run draws
what an uninterrupted one would, and no draw depends on the batch size or the host count
(except mixup's partner: another example of the same global batch, as in the reference's
train-pre.py; the reference's datasets read a fresh random example instead, a second crop's
worth of reads per mixed example). Complex crops stay as (real, imaginary) float pairs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

# Named purposes of the device's random streams.
SWAP = 1  # left/right channel swap of the example
TAIL_SWAP = 2  # channel swap of a not-next chunk (it is another clip)
MIXUP_PICK = 3
MIXUP_WEIGHT = 4
MIXUP_PARTNER = 5
MASK_SELECT = 6
MASK_KIND = 7
NOISE = 8
VOCAL_SWAP = 9
VOCAL_DROP = 10
VOCAL_BLEND = 11
INSTRUMENTAL_ONLY = 12
VOCAL_LEVEL = 13
VOCAL_PAN = 14
EVALUATION = 1 << 20  # folded into the seed for validation batches: fixed masks, never training's


def _keys(seed: int, purpose: int, index: jax.Array, train: bool) -> jax.Array:
    base = jax.random.fold_in(jax.random.key(seed), purpose + (0 if train else EVALUATION))
    return jax.vmap(lambda w: jax.random.fold_in(jax.random.fold_in(base, w[0]), w[1]))(index)


def _uniform(seed, purpose, index, train, shape=()) -> jax.Array:
    return jax.vmap(lambda k: jax.random.uniform(k, shape))(_keys(seed, purpose, index, train))


def _magnitude(parts: jax.Array) -> jax.Array:
    """(..., 2 re/im) -> magnitude, in float32."""
    parts = parts.astype(jnp.float32)
    return jnp.sqrt(jnp.sum(jnp.square(parts), axis=-1))


def _where(flag: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    """Per-example choice: flag (B,) or (B, ...) broadcast over the trailing axes of a and b."""
    return jnp.where(flag.reshape(flag.shape + (1,) * (a.ndim - flag.ndim)), a, b)


def _swap_channels(x: jax.Array, axis: int) -> jax.Array:
    return jnp.flip(x, axis=axis)


def mixup(arrays: dict, cfg, seed: int, index: jax.Array) -> dict:
    """Each picked example blended with a Beta(alpha, alpha) weight with another of the batch."""
    b = index.shape[0]
    if cfg.mixup_rate <= 0 or b < 2:
        return arrays
    pick = _uniform(seed, MIXUP_PICK, index, True) < cfg.mixup_rate
    lam = jax.vmap(lambda k: jax.random.beta(k, cfg.mixup_alpha, cfg.mixup_alpha))(
        _keys(seed, MIXUP_WEIGHT, index, True))
    shift = 1 + jnp.floor(_uniform(seed, MIXUP_PARTNER, index, True) * (b - 1)).astype(jnp.int32)
    partner = (jnp.arange(b) + jnp.minimum(shift, b - 1)) % b
    out = {}
    for k, a in arrays.items():
        w = lam.reshape((b,) + (1,) * (a.ndim - 1))
        out[k] = _where(pick, w * a + (1 - w) * a[partner], a)
    return out


def token_size(cfg, index: jax.Array, warmup_examples: float) -> jax.Array:
    """(B,) frames per token: 1 growing to cfg.token_size over `warmup_examples` (0: no warm-up)."""
    full = max(int(cfg.token_size), 1)
    if warmup_examples <= 0:
        return jnp.full(index.shape[:1], full, jnp.int32)
    g = index[:, 0].astype(jnp.float32) * 2.0**32 + index[:, 1].astype(jnp.float32)
    return jnp.clip(jnp.ceil(g * full / warmup_examples), 1, full).astype(jnp.int32)


def pretrain_batch(cfg: ml_collections.ConfigDict, seed: int, batch: dict, warmup_examples: float = 0.0,
                   train: bool = True) -> dict:
    """Raw pretraining crops -> `input` (masked), `target`, `is_next`, `mask_kind`.

    mask_kind per frame: 0 untouched, 1 set to 1.0, 2 noised, 3 selected but unchanged (the
    80/10/10 split); the separator token (alternate bins on) marks where the last chunk begins.
    """
    index, is_next = batch["index"], batch["is_next"]
    x = jnp.clip(_magnitude(batch["crop"]), 0.0, 1.0)  # (B, F, bins, 2): records are / track peak
    b, frames, bins = x.shape[:3]
    nc = int(cfg.next_chunk)
    frame = jnp.arange(frames)
    if train:
        main = _uniform(seed, SWAP, index, train) < cfg.swap_rate
        tail = _uniform(seed, TAIL_SWAP, index, train) < cfg.swap_rate
        flip = jnp.where((frame[None] >= frames - nc) & (is_next[:, None] == 0), tail[:, None], main[:, None])
        x = _where(flip, _swap_channels(x, -1), x)
        x = mixup({"x": x}, cfg, seed, index)["x"]
    y = x
    size = token_size(cfg, index, warmup_examples if train else 0.0)[:, None]  # (B, 1)
    token = frame[None] // size  # (B, F)
    select = jnp.take_along_axis(_uniform(seed, MASK_SELECT, index, train, (frames,)), token, axis=1)
    how = jnp.take_along_axis(_uniform(seed, MASK_KIND, index, train, (frames,)), token, axis=1)
    chosen = (select < cfg.mask_rate) & (token < frames // size)  # whole tokens only
    kind = jnp.where(chosen, jnp.where(how < cfg.noise_rate, 2,
                                       jnp.where(how < cfg.noise_rate + cfg.unchanged_rate, 3, 1)), 0)
    noise = _uniform(seed, NOISE, index, train, (frames, bins, 2)) * cfg.noise_scale
    k = kind[:, :, None, None]
    x = jnp.where(k == 1, 1.0, jnp.where(k == 2, jnp.clip(y + noise, 0.0, 1.0), x))
    if nc > 0:
        half = max(int(cfg.token_size), 1) // 2
        at = ((frame >= frames - nc - half) & (frame < frames - nc + half))[None, :, None, None]
        pattern = (jnp.arange(bins) % 2 == 0).astype(x.dtype)[None, None, :, None]
        x, y = jnp.where(at, pattern, x), jnp.where(at, pattern, y)
    out = {"input": x, "target": y, "is_next": is_next, "mask_kind": kind}
    if "valid" in batch:
        out["valid"] = batch["valid"]
    return out


def vocal_level_gain(inst: jax.Array, vocals: jax.Array, db_range, seed: int, index: jax.Array,
                     train: bool, max_gain_db: float = 30.0) -> jax.Array:
    """(B,) gains putting each crop's vocals at a level drawn uniformly from db_range (dB RMS
    relative to its instrumental crop).

    Stems mixed at their recordings' own levels can leave the voice far below the accompaniment
    (quiet solo takes over mastered instrumentals): a mask of 1 then nearly minimises the L1 and
    finetuning can collapse there. The crops' spectral energies stand in for their waveforms'
    (the same STFT for both); a silent crop keeps gain 1, and no gain exceeds max_gain_db.
    """
    if len(db_range) != 2 or float(db_range[0]) > float(db_range[1]):
        raise ValueError(f"data.vocal_to_instrumental_db must be () or (low, high) in dB with low <= high, "
                         f"not {tuple(db_range)!r}")
    lo, hi = (float(v) for v in db_range)
    energy = lambda a: jnp.sum(jnp.square(a), axis=tuple(range(1, a.ndim)))
    e_inst, e_voc = energy(inst), energy(vocals)
    target_db = lo + (hi - lo) * _uniform(seed, VOCAL_LEVEL, index, train)
    gain = jnp.sqrt(e_inst / jnp.maximum(e_voc, 1e-20)) * 10.0 ** (target_db / 20.0)
    audible = (e_inst > 1e-12) & (e_voc > 1e-12)
    return jnp.where(audible, jnp.minimum(gain, 10.0 ** (max_gain_db / 20.0)), 1.0)


def pan_gains(u: jax.Array, width: float) -> jax.Array:
    """(B,) uniform draws -> (B, 2) left/right gains of a pan position uniform in [-width, width].

    Constant power, scaled so that the centre keeps both channels as they are (a mono stem stays
    the stem). `width` 1 reaches hard left and right.
    """
    angle = (jnp.pi / 4) * (1.0 + width * (2.0 * u - 1.0))
    return jnp.sqrt(2.0) * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)


def finetune_complex(cfg: ml_collections.ConfigDict, seed: int, batch: dict, train: bool = True):
    """Raw finetuning crops -> (mixture, instrumental) as (B, F, bins, 2, 2) re/im parts scaled to
    the tracks' own levels, and the (B,) normaliser. mixture = instrumental + vocals here, before
    any magnitude; vocal stems get their own channel swap and drop and, when two, a Beta(1, 1) blend,
    a pan position within +-cfg.vocal_pan (training only), then, when cfg.vocal_to_instrumental_db
    is (low, high), a level drawn from it (validation too)."""
    if not 0.0 <= cfg.vocal_pan <= 1.0:
        raise ValueError(f"data.vocal_pan must be in [0, 1] (1: hard left or right), not {cfg.vocal_pan!r}")
    index = batch["index"]
    ci, co = batch["instrumental_coef"], batch["other_coef"]  # (B,), (B, 2)
    inst = batch["instrumental"].astype(jnp.float32) * ci[:, None, None, None, None]
    other = batch["other"].astype(jnp.float32) * co[:, :, None, None, None, None]  # (B, 2, F, bins, 2, 2)
    is_pair, count = batch["is_pair"] == 1, batch["vocal_count"]
    if train:
        vswap = (_uniform(seed, VOCAL_SWAP, index, train, (2,)) < 0.5) & ~is_pair[:, None]
        other = _where(vswap, _swap_channels(other, -2), other)
        drop = _uniform(seed, VOCAL_DROP, index, train, (2, 2))
        silenced = jnp.where(drop[..., 1:] < 0.5, jnp.array([0.0, 1.0]), jnp.array([1.0, 0.0]))  # (B, 2, 2)
        keep = jnp.where(((drop[..., 0] < cfg.vocal_channel_drop_rate) & ~is_pair[:, None])[..., None], silenced, 1.0)
        other = other * keep[:, :, None, None, :, None]
    w = jnp.where(count == 2, _uniform(seed, VOCAL_BLEND, index, train), 1.0)  # Beta(1, 1) is uniform
    wv = w[:, None, None, None, None]
    vocals = wv * other[:, 0] + (1 - wv) * other[:, 1]
    vocal_coef = w * co[:, 0] + (1 - w) * co[:, 1]
    if train and cfg.vocal_pan > 0:
        pan = pan_gains(_uniform(seed, VOCAL_PAN, index, train), cfg.vocal_pan)
        vocals, vocal_coef = vocals * pan[:, None, None, :, None], vocal_coef * pan.max(axis=-1)
    if cfg.vocal_to_instrumental_db:
        gain = vocal_level_gain(inst, vocals, cfg.vocal_to_instrumental_db, seed, index, train)
        vocals, vocal_coef = vocals * gain[:, None, None, None, None], vocal_coef * gain
    with_vocals = count > 0
    mixture = _where(is_pair, other[:, 0], _where(with_vocals, inst + vocals, inst))
    coef = jnp.where(is_pair, ci, jnp.where(with_vocals, jnp.maximum(ci, vocal_coef), ci))
    if train:
        only = _uniform(seed, INSTRUMENTAL_ONLY, index, train) < cfg.instrumental_only_rate
        mixture, coef = _where(only, inst, mixture), jnp.where(only, ci, coef)
        flip = _uniform(seed, SWAP, index, train) < cfg.swap_rate
        mixture, inst = _where(flip, _swap_channels(mixture, -2), mixture), _where(flip, _swap_channels(inst, -2), inst)
    return mixture, inst, coef


def finetune_batch(cfg: ml_collections.ConfigDict, seed: int, batch: dict, train: bool = True) -> dict:
    """Raw finetuning crops -> normalised magnitudes `mixture`, `instrumental`, `vocals` (the
    mixture minus the instrumental, before magnitudes) in [0, 1]."""
    mixture, inst, coef = finetune_complex(cfg, seed, batch, train)
    scale = coef[:, None, None, None]
    out = {"mixture": jnp.clip(_magnitude(mixture) / scale, 0.0, 1.0),
           "instrumental": jnp.clip(_magnitude(inst) / scale, 0.0, 1.0),
           "vocals": jnp.clip(_magnitude(mixture - inst) / scale, 0.0, 1.0)}
    if train:
        out = mixup(out, cfg, seed, batch["index"])
    if "valid" in batch:
        out["valid"] = batch["valid"]
    return out
