"""The reference PyTorch pretraining step, for `train_step.py --reference PATH`: its own
FrameTransformerUnet imported from a checkout of kingoomieiii/frame-transformer at run time
(nothing of it lives in this project), sized by `reference_layout.unet_arguments`.

The step is what the reference's train-pre.py does per batch: forward in train mode (dropout on),
L1 of the masked input against the target plus the cross-entropy of its is_next log-probabilities,
backward, global-norm clipping (our step clips too) and AdamW.

The reference UNet builds its FrameConvs without passing the crop size (their FrameNorm is
sized for 1024 frames whatever the model's cropsize); as for the parity fixture, the crop size is
passed through here (FrameConv's default set to it), so other crop sizes run.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable

import numpy as np

REFERENCE_MODULE = os.path.join("lib", "frame_transformer_unet.py")


def check_reference_tree(path: str) -> str | None:
    """None when `path` holds the reference's FrameTransformerUnet, else what is wrong."""
    if not os.path.isdir(path):
        return f"{path}: no such directory"
    if not os.path.isfile(os.path.join(path, REFERENCE_MODULE)):
        return (f"{path}: no {REFERENCE_MODULE} there (expected a checkout of kingoomieiii/frame-transformer, "
                "commit 82256e7)")
    return None


def build_reference_step(path: str, arguments: dict, optimizer_cfg, x: np.ndarray, target: np.ndarray,
                         is_next: np.ndarray, threads: int) -> tuple[Callable[[], float], dict[str, tuple]]:
    """(one step -> its loss, the model's state_dict shapes). `x`, `target`: our channels-last
    (B, frames, bins, C) batch, transposed here to the reference's (B, C, bins, frames)."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    sys.path.insert(0, os.path.abspath(path))
    from lib.frame_transformer_unet import FrameConv, FrameTransformerUnet

    _set_default(FrameConv.__init__, "cropsize", arguments["cropsize"])
    torch.manual_seed(0)
    model = FrameTransformerUnet(**arguments, pretraining=True)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=optimizer_cfg.learning_rate,
                                  betas=(optimizer_cfg.b1, optimizer_cfg.b2), eps=optimizer_cfg.eps,
                                  weight_decay=optimizer_cfg.weight_decay)
    src = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 2, 1)))
    tgt = torch.from_numpy(np.ascontiguousarray(target.transpose(0, 3, 2, 1)))
    labels = torch.from_numpy(is_next.astype(np.int64))

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        mask, log_probs = model(src)
        loss = F.l1_loss(src * mask, tgt) + F.cross_entropy(log_probs, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), optimizer_cfg.grad_clip_norm)
        optimizer.step()
        return loss.item()

    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return step, shapes


def _set_default(function, name: str, value) -> None:
    """Changes the default of `function`'s keyword `name` (a reference constructor's, at run time)."""
    params = [p for p in inspect.signature(function).parameters.values() if p.default is not p.empty]
    names = [p.name for p in params]
    if name not in names or len(names) != len(function.__defaults__):
        raise SystemExit(f"the reference's {function.__qualname__} has no default for {name!r}: not commit 82256e7?")
    defaults = list(function.__defaults__)
    defaults[names.index(name)] = value
    function.__defaults__ = tuple(defaults)
