"""BERT-style pretraining (the reference's train-pre.py): unmask frames, predict is_next.

    vocal-remover-jax train --config configs/pretrain.py:tiny --workdir runs/pretrain \
        --config.data.records=records/
Variants: seed (the reference's 191 M-parameter model), seed_v5p and seed_v5e (seed planned for
v5p:4x4x4 and v5e:16x16: README, "Checking a run fits"), small, tiny (seconds on a CPU), starter
(the real-audio recipe: README, "A starter model from the real-audio pack").
"""

from vocal_remover_jax.train.config_defaults import training_config


STARTER_PRETRAIN_STEPS = 1500  # about 45 min on 2 cores, before the 2,500 finetuning steps (about 4 h)


def get_config(arg: str = "tiny"):
    config = training_config("pretrain", arg)
    if arg == "starter":
        config.total_steps = STARTER_PRETRAIN_STEPS
    return config
