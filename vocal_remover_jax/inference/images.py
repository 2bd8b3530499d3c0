"""Spectrogram pictures (`--output-image`): mixture, instrumental and vocals stacked, drawn with
matplotlib (the optional `images` extra) on its Agg canvas, so no display or GUI backend is needed."""

from __future__ import annotations

import numpy as np

from vocal_remover_jax.atomic import atomic_path

PANELS = ("mixture", "instrumental", "vocals")
DB_RANGE = 80.0  # dB below the mixture's peak shown; quieter is drawn as the floor
_MAX_COLUMNS = 4000  # frames drawn per panel: more than any screen shows, long songs are binned


def require_matplotlib() -> None:
    """Raises a clear error before any work when the `images` extra is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError("--output-image needs matplotlib: pip install 'vocal-remover-jax[images]'") from None


def write_spectrogram_image(path: str, log_power: np.ndarray, sample_rate: int, hop_length: int,
                            title: str = "") -> None:
    """Writes a PNG of `log_power (3 panels: mixture, instrumental, vocals; frames, bins)` (log10 of the
    channel-mean power) with time in seconds, frequency in kHz and a dB colour bar, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    db = 10.0 * np.asarray(log_power, np.float32)
    db = db - db[0].max()  # 0 dB = the mixture's loudest bin
    frames, bins = db.shape[1:]
    step = max(1, -(-frames // _MAX_COLUMNS))
    if step > 1:  # keep each bin's loudest frame of every `step`, so short events stay visible
        cut = frames // step * step
        db = db[:, :cut].reshape(len(db), -1, step, bins).max(axis=2) if cut else db
    seconds = frames * hop_length / sample_rate
    khz = sample_rate / 2000.0
    width = float(np.clip(6.0 + seconds / 20.0, 8.0, 20.0))  # inches: a 4-minute song is 18 wide
    fig = Figure(figsize=(width, 2.4 * len(db) + 0.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(db), 1, sharex=True, squeeze=False)[:, 0]
    image = None
    for ax, panel, name in zip(axes, db, PANELS):
        image = ax.imshow(panel.T, origin="lower", aspect="auto", cmap="magma", vmin=-DB_RANGE, vmax=0.0,
                          extent=(0.0, seconds, 0.0, khz), interpolation="antialiased")
        ax.set_ylabel("frequency (kHz)")
        ax.set_title(name, loc="left", fontsize=10)
    axes[-1].set_xlabel("time (s)")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.colorbar(image, ax=list(axes), label="dB (re mixture peak)", shrink=0.9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
