"""The training state: one pytree, sharded, donated and checkpointed whole."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax


class TrainState(flax.struct.PyTreeNode):
    step: jax.Array
    params: Any
    opt_state: Any
    # GAN pretraining only: the critic and its own optimizer (None otherwise).
    disc_params: Any = None
    disc_opt_state: Any = None
