"""An exponential moving average of the weights (`--ema DECAY`; not in the paper).

Polyak averaging with exponential weights, as timm's ModelEmaV2 and torchvision's reference scripts
keep it: after every step, ema = decay * ema + (1 - decay) * weights, over the parameters and the
buffers (BN's running statistics too: torch.optim.swa_utils.AveragedModel with use_buffers=True), so
the average is evaluated as it is, with no BN re-estimation pass.

The averaged copy is swa_utils.AveragedModel, updated by get_ema_multi_avg_fn's foreach lerp. Its own
`update_parameters` is not called: it asks `n_averaged` (a tensor) whether this is the first update and
moves it to the device each step, host syncs that the CUDA step avoids (train/step.py); here the count
is a Python int and the tensor lists are gathered once. The first update copies the weights, as
AveragedModel's does; integer buffers (BN's num_batches_tracked) are copied, not averaged.

Every validation pass evaluates both weights; the lower validation error picks the checkpoint and the
weights the run saves as model.safetensors (train/loop.py), with raw/ and ema/ beside it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from reslab.evaluate import EvalResult


class Ema:
    """The EMA of `model`'s parameters and buffers with `decay`; with decay 0 it is off and every method
    does nothing, so the loop calls it unconditionally."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay, self.updates = decay, 0
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True) \
            if decay else None
        if self.averaged is None:
            return
        self.averaged.module.requires_grad_(False)
        # The tensors of the average and of the model, in pairs: both are updated in place (optimiser
        # steps, load_state_dict), so the lists hold for the whole run.
        pairs = list(zip(_tensors(self.averaged.module), _tensors(model), strict=True))
        self._ints = [(t, s) for t, s in pairs if not t.is_floating_point()]
        self._floats: dict[torch.dtype, tuple[list[Tensor], list[Tensor]]] = {}
        for t, s in pairs:
            if t.is_floating_point():
                group = self._floats.setdefault(t.dtype, ([], []))
                group[0].append(t)
                group[1].append(s)

    @property
    def on(self) -> bool:
        return self.averaged is not None

    @property
    def module(self) -> nn.Module:
        """The averaged network, built like the model (evaluate it in eval mode)."""
        assert self.averaged is not None
        return self.averaged.module

    @torch.no_grad()
    def update(self) -> None:
        """Fold the model's current weights into the average (after each optimiser step)."""
        if self.averaged is None:
            return
        for averages, weights in self._floats.values():
            if self.updates:
                self.averaged.multi_avg_fn(averages, weights, self.updates)  # type: ignore[misc]
            else:
                for t, s in zip(averages, weights, strict=True):
                    t.copy_(s)
        for t, s in self._ints:
            t.copy_(s)
        self.updates += 1
        self.averaged.n_averaged.fill_(self.updates)

    def state_dict(self) -> dict[str, Any]:
        """What a training checkpoint carries: {"ema": AveragedModel's state dict}, or {} when off."""
        return {} if self.averaged is None else {"ema": self.averaged.state_dict()}

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        """A checkpoint's "ema" (as `state_dict` wrote it): the average and its update count."""
        if self.averaged is None:
            return
        self.averaged.load_state_dict(ckpt["ema"])
        self.updates = int(self.averaged.n_averaged)

    def evaluate(self, evaluate: Callable[[nn.Module], EvalResult]) -> EvalResult | None:
        """`evaluate(module)` of the average (a validation pass), or None when off."""
        return None if self.averaged is None else evaluate(self.module)


def _tensors(model: nn.Module) -> list[Tensor]:
    return list(itertools.chain(model.parameters(), model.buffers()))


def pick(raw: EvalResult, ema: EvalResult | None) -> tuple[float, str]:
    """(validation error, which weights) of the better of the two; the raw weights on a tie."""
    if ema is not None and ema.top1_err < raw.top1_err:
        return ema.top1_err, "ema"
    return raw.top1_err, "raw"


def verdict(rows: list[dict[str, str]], best_weights: str) -> str:
    """The report's sentence: which weights won on validation, with each one's best validation error."""
    def best(kind: str) -> float:
        errs = [float(r["val_err"]) for r in rows if r["kind"] == kind and r["val_err"]]
        return min(errs, default=math.nan)

    raw, ema = best("eval"), best("eval_ema")
    if math.isnan(raw):
        return "the raw weights (no validation images to compare them with the EMA)"
    won = "the EMA of the weights" if best_weights == "ema" else "the raw weights"
    return f"{won}: best validation error {100 * ema:.2f}% for the EMA, {100 * raw:.2f}% for the raw weights"
