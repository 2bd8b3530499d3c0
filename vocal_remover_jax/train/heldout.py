"""Held-out SDR during finetuning: what the validation loss only approximates.

On little or quiet singing the validation split's magnitude SDR rewards a mask that keeps
everything (README, starter runs); separating real held-out mixtures and scoring them as
`evaluate` does is the measure that counts, so a run can log it at every evaluation.
"""

from __future__ import annotations

import ml_collections
import numpy as np

from vocal_remover_jax.audio.reference_tracks import SOURCES, find_reference_tracks
from vocal_remover_jax.inference.evaluate import do_nothing, median_over_tracks, score_tracks, sdr_gain
from vocal_remover_jax.inference.separator import Separator


class HeldoutScorer:
    """`scorer(params)` -> {"<stem>_sdr", "<stem>_gain", "<stem>_clip_gain"}: medians over the
    folder's mixtures of each one's median SDR over 1-second frames, that minus doing nothing's
    (half the mixture), and the median of each mixture's own gain, as `benchmarks/starter_model.py
    evaluate` reports. The separator compiles on the first call."""

    def __init__(self, folder: str, config: ml_collections.ConfigDict):
        self.tracks = find_reference_tracks(folder)
        if not self.tracks:
            raise ValueError(f"config.heldout_dir={folder!r}: no tracks found (expected <track>/mixture.wav with "
                             "vocals.wav and instrumental.wav, the layout `evaluate` reads)")
        self.config = config
        self.separator: Separator | None = None
        baseline, failed = score_tracks(do_nothing, self.tracks)
        if failed:
            raise ValueError(f"config.heldout_dir={folder!r}: cannot read {failed[0]['name']}: {failed[0]['error']}")
        self.baseline = median_over_tracks(baseline)
        self.baseline_rows = {r["name"]: r for r in baseline}

    def __call__(self, params) -> dict[str, float]:
        if self.separator is None:
            self.separator = Separator(params, self.config)
        else:
            self.separator.set_params(params)
        rows, failed = score_tracks(self.separator.separate, self.tracks)
        if failed:
            raise RuntimeError(f"held-out scoring failed on {failed[0]['name']}: {failed[0]['error']}")
        model = median_over_tracks(rows)
        out = {f"{s}_sdr": model[s]["sdr_median"] for s in SOURCES}
        out.update({f"{s}_gain": model[s]["sdr_median"] - self.baseline[s]["sdr_median"] for s in SOURCES})
        for s in SOURCES:
            gains = [sdr_gain(r[s], self.baseline_rows[r["name"]][s]) for r in rows]
            out[f"{s}_clip_gain"] = float(np.nanmedian([np.nan if g is None else g for g in gains]))
        return out
