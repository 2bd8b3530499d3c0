"""GAN pretraining (the reference's train-gan.py): BERT-style unmasking judged by a critic.

    vocal-remover-jax train --config configs/pretrain_gan.py:tiny --workdir runs/gan \
        --config.data.records=records/ [--config.discriminator.arch=transformer]
"""

import ml_collections

from vocal_remover_jax.train.config_defaults import training_config


def get_config(arg: str = "tiny"):
    config = training_config("gan", arg)
    m = config.model
    config.discriminator = ml_collections.ConfigDict(dict(
        arch="conv",  # "conv" (ConvDiscriminator) or "transformer" (FrameTransformerDiscriminator)
        in_channels=2 * m.in_channels, channels=2 * m.channels, depth=m.depth, n_fft=m.get_ref("n_fft"),
        cropsize=m.get_ref("cropsize"), num_transformer_blocks=m.num_transformer_blocks, num_bands=m.num_bands,
        feedforward_dim=m.feedforward_dim, dropout=m.dropout, bias=m.bias, dtype=m.get_ref("dtype"),
        param_dtype=m.get_ref("param_dtype")))
    return config
