"""Parameters and multiply-adds per layer, the way the paper counts them.

The paper's "FLOPs" (Table 1) are multiply-adds of the conv and fc layers; BN, ReLU,
pooling and the shortcut additions are not counted. `count_macs` follows that rule and
agrees with `torch.utils.flop_counter` (which reports 2 FLOPs per multiply-add).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

COUNTED = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class LayerStat:
    """One executed leaf module: its dotted name, type, output shape, own parameters, MACs."""

    name: str
    kind: str
    out_shape: tuple[int, ...]
    params: int
    macs: int

    @property
    def stage(self) -> str:
        return self.name.split(".")[0]


def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter elements (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _module_macs(m: nn.Module, out: torch.Tensor) -> int:
    # Per sample: a conv output element costs (C_in / groups) * kh * kw multiply-adds.
    if isinstance(m, nn.Conv2d):
        kh, kw = m.kernel_size
        return out[0].numel() * (m.in_channels // m.groups) * kh * kw
    if isinstance(m, nn.Linear):
        return out[0].numel() * m.in_features
    return 0


def layer_stats(model: nn.Module, input_size: tuple[int, ...]) -> list[LayerStat]:
    """Run one sample of shape `input_size` (C, H, W) through `model`, recording each leaf.

    Leaves run several times (a shared ReLU) are recorded at each call; MACs are per image.
    """
    stats: list[LayerStat] = []
    names = {m: n for n, m in model.named_modules()}

    def hook(m: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        if not isinstance(out, torch.Tensor):
            return
        params = sum(p.numel() for p in m.parameters(recurse=False))
        stats.append(LayerStat(names[m], type(m).__name__, tuple(out.shape[1:]), params, _module_macs(m, out)))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        device = next(iter(model.parameters()), torch.empty(0)).device
        with torch.no_grad():
            model(torch.zeros(1, *input_size, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return stats


def count_macs(model: nn.Module, input_size: tuple[int, ...]) -> int:
    """Multiply-adds of all conv and fc layers for one image of shape (C, H, W)."""
    return sum(s.macs for s in layer_stats(model, input_size))


def stage_totals(stats: list[LayerStat]) -> dict[str, tuple[int, int]]:
    """(params, MACs) summed per top-level child (conv1, layer1, ..., fc), in order.

    Parameters are counted once per module even if it runs several times.
    """
    totals: dict[str, tuple[int, int]] = {}
    seen: set[str] = set()
    for s in stats:
        p, m = totals.get(s.stage, (0, 0))
        totals[s.stage] = (p + (0 if s.name in seen else s.params), m + s.macs)
        seen.add(s.name)
    return totals


def flop_counter_macs(model: nn.Module, input_size: tuple[int, ...]) -> int:
    """Multiply-adds as torch.utils.flop_counter reports them (its FLOPs / 2), one image."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.zeros(1, *input_size))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
