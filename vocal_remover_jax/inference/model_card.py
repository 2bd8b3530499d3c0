"""The model card: what a model file was trained on, how, and how well it does, stored in the file
(model_file.py, metadata "card", covered by its checksum) so that it travels with the model.

A card is a JSON object; every field is optional and unknown fields are shown as they are:

    name, summary          the model's name and one paragraph about it
    config                 {"spec": "configs/finetune.py:starter", "parameters": int, ...}
    training               {"pretrain"/"finetune": {"steps", "batch_size", "seconds"}, "hardware", "seconds"}
    heldout_sdr            {"clips": int, "metric": str, "command": str,
                            "vocals"/"instrumental": {"model": dB, "do_nothing": dB,
                                                      "median_clip_gain": dB (optional)}}
    limitations            [what it is not good at, ...]
    data                   {"training": [{"file", "duration", "licence", "attribution", "source"}],
                            "held_out": [file, ...], "changes": str, "notices": str}

`benchmarks/starter_model.py ship` writes it; `describe --model` prints it (format_card).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from typing import Any

STEMS = ("vocals", "instrumental")
KNOWN = ("name", "summary", "config", "training", "heldout_sdr", "limitations", "data")


def format_card(card: Mapping[str, Any], width: int = 100) -> str:
    """The card as text for a terminal."""
    lines: list[str] = []
    wrap = lambda text, indent="  ": textwrap.fill(str(text), width, initial_indent=indent,
                                                   subsequent_indent=indent + "  ")
    if "name" in card:
        lines.append(f"model card: {card['name']}")
    if "summary" in card:
        lines.append(wrap(card["summary"]))
    if "config" in card:
        lines.append(f"config: {_config_line(card['config'])}")
    if "training" in card:
        lines.append(f"training: {training_line(card['training'])}")
    if "heldout_sdr" in card:
        lines += _sdr_lines(card["heldout_sdr"])
    if card.get("limitations"):
        lines.append("not good at:")
        lines += [wrap(f"- {item}") for item in card["limitations"]]
    if "data" in card:
        lines += _data_lines(card["data"], wrap)
    for key in card:
        if key not in KNOWN:
            lines.append(f"{key}: {json.dumps(card[key], sort_keys=True)}")
    return "\n".join(lines)


def sdr_table(card: Mapping[str, Any]) -> str:
    """The held-out SDR as a markdown table (README)."""
    sdr = card["heldout_sdr"]
    rows = ["| | vocals SDR (dB) | instrumental SDR (dB) |", "|---|---|---|",
            "| " + " | ".join([card.get("name", "model"), *(f"{sdr[s]['model']:.2f}" for s in STEMS)]) + " |",
            "| " + " | ".join(["do nothing (half the mixture)", *(f"{sdr[s]['do_nothing']:.2f}" for s in STEMS)]) + " |",
            "| " + " | ".join(["difference of the medians", *(f"{sdr[s]['model'] - sdr[s]['do_nothing']:+.2f}" for s in STEMS)]) + " |"]
    if all("median_clip_gain" in sdr[s] for s in STEMS):
        rows.append("| " + " | ".join(["median of the clips' gains", *(f"{sdr[s]['median_clip_gain']:+.2f}" for s in STEMS)]) + " |")
    return "\n".join(rows)


def training_line(training: Mapping[str, Any]) -> str:
    parts = []
    for phase in ("pretrain", "finetune"):
        if phase in training:
            p = training[phase]
            parts.append(f"{phase} {p['steps']:,} steps (batch {p.get('batch_size', '?')}, "
                         f"{_hours(p.get('seconds'))})")
    line = " + ".join(parts)
    if "hardware" in training:
        line += f" on {training['hardware']}"
    if training.get("seconds") is not None:
        line += f"; {_hours(training['seconds'])} in all"
    return line


def _config_line(config: Mapping[str, Any]) -> str:
    line = str(config.get("spec", "?"))
    if "parameters" in config:
        line += f", {config['parameters']:,} parameters"
    extra = {k: v for k, v in config.items() if k not in ("spec", "parameters")}
    if extra:
        line += " (" + ", ".join(f"{k} {v}" for k, v in extra.items()) + ")"
    return line


def _sdr_lines(sdr: Mapping[str, Any]) -> list[str]:
    lines = [f"held-out SDR, dB ({sdr.get('clips', '?')} mixtures the model never trained on; "
             f"{sdr.get('metric', 'median')}):",
             f"  {'':<14}{'model':>8}{'do-nothing':>12}{'difference':>12}"]
    per_clip = any("median_clip_gain" in sdr.get(s, {}) for s in STEMS)
    if per_clip:
        lines[-1] += f"{'per clip':>10}"
    for stem in STEMS:
        if stem in sdr:
            m, b = sdr[stem]["model"], sdr[stem]["do_nothing"]
            clip = sdr[stem].get("median_clip_gain")
            lines.append(f"  {stem:<14}{m:>8.2f}{b:>12.2f}{m - b:>+12.2f}" + (f"{clip:>+10.2f}" if clip is not None else ""))
    lines.append("  (do-nothing: half the mixture as each stem; difference: of the medians"
                 + ("; per clip: the median of each mixture's model - do-nothing)" if per_clip else ")"))
    if "command" in sdr:
        lines.append(f"  measured by: {sdr['command']}")
    return lines


def _data_lines(data: Mapping[str, Any], wrap) -> list[str]:
    files = data.get("training", [])
    lines = [f"training data: {len(files)} files; their licences ask for this attribution:"]
    for f in files:
        lines.append(wrap(f"- {f['file']} ({f.get('duration', '?')}): {f.get('attribution', '?')}. "
                          f"Licence: {f.get('licence', '?')}. Source: {f.get('source', '?')}"))
    if data.get("changes"):
        lines.append("changes made to the training files:")
        lines += [wrap(item) for item in str(data["changes"]).splitlines()]
    if data.get("held_out"):
        lines.append(wrap("held out (never trained on; the held-out mixtures): " + ", ".join(data["held_out"]), ""))
    if data.get("notices"):
        lines.append("licence notices:")
        lines += ["  " + line if line else "" for line in str(data["notices"]).splitlines()]
    return lines


def _hours(seconds: float | None) -> str:
    if seconds is None:
        return "time not recorded"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"
