"""A TFDS builder over a records directory, for `tfds.builder`/`tfds.load` users.

The prepared shards are the builder's source (manual dir): `download_and_prepare` copies
them into TFDS's own format, one split per `<split>_<role>` (e.g. `train_pairs`), so
`tfds.split_for_jax_process("train_pairs")` gives each host its slice. Each example is one
clip: `spec` float16 (stems, clip_frames, bins, 2, 2), `coef`, `frames`, `track`, `clip`.

  builder = VocalRemoverRecords(records_dir=RECORDS_DIR, data_dir=TFDS_DIR)
  builder.download_and_prepare()
  ds = builder.as_dataset(split=tfds.split_for_jax_process("train_pairs"))
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from vocal_remover_jax.data import manifest as mf
from vocal_remover_jax.data import records


class VocalRemoverRecords(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def __init__(self, *, records_dir: str, role: str = "pairs", **kwargs):
        self._records_dir = records_dir
        self._role = role
        self._manifest = mf.load_manifest(records_dir)
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        m = self._manifest
        shape = (len(mf.ROLES[self._role]), m["clip_frames"], m["bins"], 2, 2)
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"{self._role} clips of {self._records_dir} ({m['audio']})",
            features=tfds.features.FeaturesDict(
                {
                    "spec": tfds.features.Tensor(shape=shape, dtype=np.float16, encoding=tfds.features.Encoding.BYTES),
                    "coef": np.float32,
                    "frames": np.int32,
                    "clip": np.int32,
                    "track": tfds.features.Text(),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {
            f"{split}_{self._role}": self._generate_examples(split)
            for split in mf.SPLITS
            if any(e["examples"] for e in mf.shards(self._manifest, self._role, split))
        }

    def _generate_examples(self, split):
        m, stems = self._manifest, len(mf.ROLES[self._role])
        frames, per_clip = m["clip_frames"], m["clip_frames"] // m["block_frames"]
        for entry in mf.shards(m, self._role, split):
            mf.verify_shards(self._records_dir, [entry])
            reader = records.ShardReader(os.path.join(self._records_dir, entry["file"]), m["block_frames"], m["bins"])
            clips = entry["clips"]
            for n, first in enumerate(clips["record"]):
                spec = np.zeros((stems, frames, m["bins"], 2, 2), np.float16)
                for s in range(stems):
                    reader.read_into(first + s * per_clip, 0, spec[s])
                yield f"{entry['file']}:{n}", {
                    "spec": spec,
                    "coef": clips["coef"][n],
                    "frames": clips["frames"][n],
                    "clip": clips["position"][n],
                    "track": entry["tracks"][clips["track"][n]],
                }
            reader.close()
