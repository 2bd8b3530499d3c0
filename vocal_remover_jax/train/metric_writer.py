"""TensorBoard scalars, a JSON-lines log (what tests and notebooks read) and a console line;
all from process 0 only."""

from __future__ import annotations

import json
import os
import sys

from vocal_remover_jax.train.tensorboard import EventFileWriter

METRICS_FILE = "metrics.jsonl"


class MetricWriter:
    def __init__(self, workdir: str, enabled: bool = True):
        self.enabled = enabled
        if enabled:
            self._jsonl = open(os.path.join(workdir, METRICS_FILE), "a")
            self._tb = EventFileWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, metrics: dict, total_steps: int, prefix: str = "") -> None:
        if not self.enabled or not metrics:
            return
        values = {prefix + k: float(v) for k, v in metrics.items()}
        self._jsonl.write(json.dumps({"step": step, **values}) + "\n")
        self._jsonl.flush()
        self._tb.scalars(step, values)
        shown = " ".join(f"{k}={v:.4g}" for k, v in values.items())
        print(f"[{step}/{total_steps}] {shown}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, METRICS_FILE)) as f:
        return [json.loads(line) for line in f if line.strip()]
