"""Parameters and multiply-adds per layer, the way the paper counts them.

The paper's "FLOPs" (Table 1) are multiply-adds of the conv and fc layers; BN, ReLU,
pooling and the shortcut additions are not counted. `count_macs` follows that rule and
agrees with `torch.utils.flop_counter` (which reports 2 FLOPs per multiply-add).
`inception_arithmetic` measures what GoogLeNet's 1x1 reductions save.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from reslab.errors import ReslabError
from reslab.models.googlenet import BasicConv2d, Inception
from reslab.modes import eval_mode


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
    try:
        device = next(iter(model.parameters()), torch.empty(0)).device
        with eval_mode(model):
            model(torch.zeros(1, *input_size, device=device))
    finally:
        for h in handles:
            h.remove()
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
    counter = FlopCounterMode(display=False)
    with counter, eval_mode(model):
        model(torch.zeros(1, *input_size))
    return counter.get_total_flops() // 2


# ---------------------------------------------------------------------------- Inception arithmetic
class _NaiveInception(nn.Module):
    """Figure 2a of Szegedy et al.: the same branches without 1x1 reductions or pool projection."""

    def __init__(self, m: Inception) -> None:
        super().__init__()
        c = m.in_chs
        k5 = _last_conv(m.branch3).kernel_size[0]
        self.branch1 = BasicConv2d(c, _last_conv(m.branch1).out_channels, 1)
        self.branch2 = BasicConv2d(c, _last_conv(m.branch2).out_channels, 3, padding=1)
        self.branch3 = BasicConv2d(c, _last_conv(m.branch3).out_channels, k5, padding=k5 // 2)
        self.branch4 = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


def _last_conv(branch: nn.Module) -> nn.Conv2d:
    return [m for m in branch.modules() if isinstance(m, nn.Conv2d)][-1]


def _describe(branch: nn.Module) -> str:
    units = []
    for m in branch.modules():
        if isinstance(m, nn.Conv2d):
            units.append(f"{m.kernel_size[0]}x{m.kernel_size[1]} {m.out_channels}")
        elif isinstance(m, nn.MaxPool2d):
            units.append("pool 3x3")
    return " -> ".join(units)


def _branch_costs(module: nn.Module, shape: tuple[int, int, int]) -> list[dict[str, Any]]:
    stats = layer_stats(module, shape)
    rows = []
    for i in range(1, 5):
        branch = getattr(module, f"branch{i}")
        mine = [s for s in stats if s.name == f"branch{i}" or s.name.startswith(f"branch{i}.")]
        rows.append({
            "layers": _describe(branch),
            "params": sum(p.numel() for p in branch.parameters()),
            "macs": sum(s.macs for s in mine),
            "out_channels": mine[-1].out_shape[0],
        })
    return rows


def _input_shapes(model: nn.Module, names: list[str], input_size: tuple[int, ...]
                  ) -> tuple[dict[str, nn.Module], dict[str, tuple[int, ...]]]:
    """A meta-device copy's modules by name, and the (C, H, W) input of each module in `names`.

    Shapes are all this needs: the copy on the meta device computes nothing.
    """
    probe = copy.deepcopy(model).to("meta").eval()
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(_mod: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
            shapes[name] = tuple(inp[0].shape[1:])
        return hook

    probe_modules = dict(probe.named_modules())
    for name in names:
        probe_modules[name].register_forward_pre_hook(record(name))
    with torch.no_grad():
        probe(torch.zeros(1, *input_size, device="meta"))
    return probe_modules, shapes


def inception_arithmetic(model: nn.Module, input_size: tuple[int, int, int] | None = None) -> list[dict[str, Any]]:
    """What the 1x1 reductions save: each Inception module against its naive form.

    The naive module (Szegedy et al. 2014, Figure 2a) applies the 3x3 and 5x5 convs
    directly to the module's input and passes the max pool through unprojected. Both
    forms use the model's conv unit (conv + BN), so params count BN too; MACs are
    conv multiply-adds per image at the module's input resolution (the paper's rule,
    see `reslab.models.analysis`).

    Args:
        model: a GoogLeNet (any module holding `Inception` children).
        input_size: (C, H, W) fed to the model; default (in_chans, 224, 224), or 32 px
            for the small stem.

    Returns one row per (module, branch), and after each module's four branches a row
    with branch "total": module, branch, in_channels, height, width, layers,
    naive_layers, out_channels, naive_out_channels, params, naive_params, macs,
    naive_macs.
    """
    modules = [(n, m) for n, m in model.named_modules() if isinstance(m, Inception)]
    if not modules:
        raise ReslabError(f"inception_arithmetic needs a model with Inception modules. "
                          f"Received: {type(model).__name__}")
    if input_size is None:
        side = 32 if isinstance(getattr(model, "maxpool1", None), nn.Identity) else 224
        input_size = (getattr(model, "in_chans", 3), side, side)

    probe_modules, shapes = _input_shapes(model, [n for n, _ in modules], input_size)
    rows: list[dict[str, Any]] = []
    for name, m in modules:
        c, h, w = shapes[name]
        reduced = _branch_costs(probe_modules[name], (c, h, w))
        with torch.device("meta"):
            naive = _branch_costs(_NaiveInception(m), (c, h, w))
        module_rows = []
        for i, (r, v) in enumerate(zip(reduced, naive, strict=True), start=1):
            module_rows.append({
                "module": name, "branch": f"branch{i}", "in_channels": c, "height": h, "width": w,
                "layers": r["layers"], "naive_layers": v["layers"],
                "out_channels": r["out_channels"], "naive_out_channels": v["out_channels"],
                "params": r["params"], "naive_params": v["params"], "macs": r["macs"], "naive_macs": v["macs"],
            })
        total = {"module": name, "branch": "total", "in_channels": c, "height": h, "width": w,
                 "layers": "", "naive_layers": ""}
        for key in ("out_channels", "naive_out_channels", "params", "naive_params", "macs", "naive_macs"):
            total[key] = sum(r[key] for r in module_rows)
        rows += [*module_rows, total]
    return rows
