"""SDR with fast_bss_eval: whole-track and the museval-style median over 1-second frames.

fast_bss_eval implements bss_eval's `sources` SDR (512-tap distortion filters, references
projected jointly); stereo is scored per channel and the channels' dB averaged. Frames where a
reference is silent are skipped, as museval does.
"""

from __future__ import annotations

import numpy as np

_SILENT = 1e-8  # frame energy below which a reference is silent
_FRAMES_PER_CALL = 32


def sdr(references: np.ndarray, estimates: np.ndarray) -> np.ndarray:
    """`(..., sources, samples)` -> SDR in dB per source `(..., sources)`, estimates matched in order."""
    import fast_bss_eval

    _numpy2_compatible_solve()
    ref = np.asarray(references, np.float64)
    est = np.asarray(estimates, np.float64)
    with np.errstate(all="ignore"):
        return np.asarray(fast_bss_eval.bss_eval_sources(ref, est, compute_permutation=False)[0])


def track_sdr(references: np.ndarray, estimates: np.ndarray, sample_rate: int,
              frame_seconds: float = 1.0) -> dict[str, np.ndarray]:
    """`(sources, channels, samples)` references and estimates -> per-source SDR summaries.

    Returns {"whole": (sources,), "frames": (sources, frames) with NaN for skipped frames,
    "median": (sources,) nan-median over frames}.
    """
    ref = np.asarray(references, np.float64)
    est = np.asarray(estimates, np.float64)
    if ref.shape != est.shape or ref.ndim != 3:
        raise ValueError(f"expected matching (sources, channels, samples), got {ref.shape} and {est.shape}")
    sources = ref.shape[0]
    silent_track = (np.sum(ref**2, axis=-1) < _SILENT).any()
    whole = np.full(sources, np.nan) if silent_track else sdr(ref.transpose(1, 0, 2), est.transpose(1, 0, 2)).mean(0)
    win = int(round(frame_seconds * sample_rate))
    count = ref.shape[-1] // win
    # (channels, frames, sources, win)
    cut = lambda a: a[..., : count * win].reshape(*a.shape[:2], count, win).transpose(1, 2, 0, 3)
    r, e = cut(ref), cut(est)
    audible = ~(np.sum(r**2, axis=-1) < _SILENT).any(axis=(0, 2))  # no channel of any source silent
    frames = np.full((sources, count), np.nan)
    for i in range(0, count, _FRAMES_PER_CALL):  # bounds the solver's memory on long tracks
        idx = np.flatnonzero(audible[i : i + _FRAMES_PER_CALL]) + i
        if idx.size:
            frames[:, idx] = sdr(r[:, idx], e[:, idx]).mean(axis=0).T
    with np.errstate(all="ignore"):
        median = np.array([np.nanmedian(f) if np.isfinite(f).any() else np.nan for f in frames])
    return {"whole": whole, "frames": frames, "median": median}


def _numpy2_compatible_solve() -> None:
    """fast_bss_eval 0.1.4 solves `A (..., m, m) x = b (..., m)` with np.linalg.solve, which numpy 2
    reads as a matrix right-hand side and rejects; give its numpy backend numpy 1's reading.
    (Its conjugate-gradient option avoids the call but misses by 0.1 dB on tonal signals.)"""
    import fast_bss_eval.numpy.metrics as backend

    if int(np.__version__.split(".")[0]) < 2 or isinstance(backend.np, _Numpy1Solve):
        return
    backend.np = _Numpy1Solve()


class _Numpy1Solve:
    """numpy, except that `linalg.solve(a, b)` treats `b.ndim == a.ndim - 1` as stacked vectors."""

    class _Linalg:
        def __getattr__(self, name):
            return getattr(np.linalg, name)

        @staticmethod
        def solve(a, b):
            if b.ndim == a.ndim - 1:
                return np.linalg.solve(a, b[..., None])[..., 0]
            return np.linalg.solve(a, b)

    linalg = _Linalg()

    def __getattr__(self, name):
        return getattr(np, name)
