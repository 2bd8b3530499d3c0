"""Mask clean-ups applied after the network: artifact merging (`--postprocess`) and aggressiveness.

Both keep the masks complementary: the instrumental mask changes and the vocals take the rest.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# How far ahead of a frame `merge_weights` must see for that frame's weight to be final:
# a run is judged by its first `min_range` frames, and a merged run's fade reaches `3 * fade`
# frames back (see `merge_weights`).
THRESHOLD, MIN_RANGE, FADE = 0.05, 64, 32
LOOKAHEAD = MIN_RANGE + 3 * FADE + 1


def merge_weights(frame_min: np.ndarray, thres: float = THRESHOLD, min_range: int = MIN_RANGE,
                  fade: int = FADE) -> np.ndarray:
    """Per-frame weight in [0, 1] pushing the instrumental mask to 1 (the reference's merge_artifacts).

    `frame_min[t]` is the smallest instrumental mask value of frame t (over bins and channels).
    Runs of more than `min_range` frames whose every value exceeds `thres` are almost surely
    instrumental-only passages: there the vocal residue is removed (`mask += w * (1 - mask)`),
    with `fade`-frame linear ramps at the edges; a run starting less than `fade` frames after the
    previous one ends restarts its ramp `2 * fade` frames before that end, like the reference.
    Frame t's weight depends on frames up to `t + LOOKAHEAD` only, so a stream can compute it from a
    prefix of `frame_min`.
    """
    if min_range < 2 * fade:
        raise ValueError("min_range must be at least 2 * fade")
    length = len(frame_min)
    weight = np.zeros(length, np.float32)
    above = np.flatnonzero(np.asarray(frame_min) > thres)
    if above.size == 0:
        return weight
    breaks = np.flatnonzero(np.diff(above) != 1)
    starts = np.concatenate([above[:1], above[breaks + 1]])
    ends = np.concatenate([above[breaks], above[-1:]])  # inclusive, used as exclusive like the reference
    ramp_up, ramp_down = np.linspace(0, 1, fade, dtype=np.float32), np.linspace(1, 0, fade, dtype=np.float32)
    previous_end = None
    for s, e in zip(starts, ends):
        if e - s <= min_range:
            continue
        if previous_end is not None and s - previous_end < fade:
            s = max(previous_end - 2 * fade, 0)
        if s != 0:
            _assign(weight, s, ramp_up)
        else:
            s -= fade
        _assign(weight, e - fade, ramp_down)
        weight[max(s + fade, 0) : max(e - fade, 0)] = 1.0
        previous_end = e
    return weight


def _assign(weight: np.ndarray, start: int, values: np.ndarray) -> None:
    stop = min(start + len(values), len(weight))
    if stop > start:
        weight[start:stop] = values[: stop - start]


def apply_merge(mask: jax.Array, frame_weight: jax.Array) -> jax.Array:
    """`mask (frames, bins, channels)` moved towards 1 by `frame_weight (frames,)`."""
    return mask + frame_weight[:, None, None] * (1.0 - mask)


def apply_aggressiveness(mask: jax.Array, aggressiveness: float | jax.Array) -> jax.Array:
    """Removes vocal residue from the instrumental where the vocals dominate.

    The reference's `aggressively_remove_vocal` on magnitudes, written on the mask (the mixture
    magnitude factors out): where the vocal share `1 - m` exceeds the instrumental share `m`, the
    instrumental loses `aggressiveness * (1 - m)`, floored at 0. 0 leaves the mask alone; 1 removes
    all of it where the vocals take at least two thirds (`m <= 1/3`). Typical values 0.05-0.3.
    """
    vocal = 1.0 - mask
    reduced = jnp.maximum(mask - aggressiveness * vocal, 0.0)
    return jnp.where(vocal > mask, reduced, mask)
