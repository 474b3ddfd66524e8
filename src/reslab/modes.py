"""Module modes that must be restored: one context manager instead of a save/restore in every caller."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def eval_mode(model: nn.Module, *, grad: bool = False) -> Iterator[nn.Module]:
    """Put `model` in eval mode (BN uses running statistics) for the block, then restore its mode.

    With grad=False (default) autograd is off too; the mode is restored even if the block raises.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.set_grad_enabled(grad):
            yield model
    finally:
        model.train(was_training)
