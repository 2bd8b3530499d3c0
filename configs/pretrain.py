"""BERT-style pretraining (the reference's train-pre.py): unmask frames, predict is_next.

    vocal-remover-jax train --config configs/pretrain.py:tiny --workdir runs/pretrain \
        --config.data.records=records/
Variants: seed (the reference's 191 M-parameter model), small, tiny (seconds on a CPU).
"""

from vocal_remover_jax.train.config_defaults import training_config


def get_config(arg: str = "tiny"):
    return training_config("pretrain", arg)
