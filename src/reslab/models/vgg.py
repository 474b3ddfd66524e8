"""VGG (Simonyan & Zisserman 2015), with and without BN, and CIFAR-style for small inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from reslab.errors import ReslabError
from reslab.models.base import ClassicNet, MLPHead, mlp_head
from reslab.models.registry import register_model

# Table 1 of Simonyan & Zisserman (2015): columns A, B, D, E; "M" is a 2x2/2 max pool.
Cfg = Sequence[int | Literal["M"]]
VGG_CFGS: dict[int, tuple[int | Literal["M"], ...]] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


class VGG(MLPHead, ClassicNet):
    """VGG (Simonyan & Zisserman 2015): stacks of 3x3 convs, 2x2 max pools, fc layers.

    Args:
        cfg: conv widths and "M" (max pool), e.g. `VGG_CFGS[16]`.
        batch_norm: BN after every conv (Ioffe & Szegedy 2015; not in VGG, torchvision's `_bn`).
        hidden: widths of the hidden fc layers; (4096, 4096) in the paper.
        pool_size: side of the adaptive average pool before the fc layers (7 at 224 px).
        ceil_mode: round pooled sizes up, so that five pools work on 28 px (1x1 at the end).
        dropout: dropout after each hidden fc layer (0.5, Section 3.1).

    Weights are initialised as torchvision does: He (fan_out) for convs, N(0, 0.01) for fc.
    Input (N, in_chans, H, W) -> logits (N, num_classes).
    """

    def __init__(
        self,
        *,
        cfg: Cfg = VGG_CFGS[16],
        batch_norm: bool = False,
        hidden: Sequence[int] = (4096, 4096),
        pool_size: int = 7,
        ceil_mode: bool = False,
        dropout: float = 0.5,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self._setup(num_classes, in_chans)
        bad = [v for v in cfg if v != "M" and not (isinstance(v, int) and v > 0)]
        if bad or not any(v != "M" for v in cfg):
            raise ReslabError(f"cfg holds positive conv widths and 'M' (max pool). Received: cfg={tuple(cfg)}")
        layers: list[nn.Module] = []
        chs = in_chans
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=ceil_mode))
                continue
            layers.append(nn.Conv2d(chs, v, 3, padding=1))
            layers += [nn.BatchNorm2d(v), nn.ReLU(inplace=True)] if batch_norm else [nn.ReLU(inplace=True)]
            chs = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(pool_size)
        self.classifier = mlp_head(chs * pool_size**2, hidden, num_classes, dropout, dropout_first=False,
                                    skip_init=True)
        self.num_features = hidden[-1] if hidden else chs * pool_size**2
        pools = sum(v == "M" for v in cfg)
        self.min_size = 1 if ceil_mode else 2**pools
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) -> (N, 512, H/32, W/32)."""
        self._check_input(x)
        return self.features(x)


# ---------------------------------------------------------------------------- rows
def _register() -> None:
    for depth, cfg in VGG_CFGS.items():
        for bn in (False, True):
            suffix, note = ("_bn", " with BN after every conv") if bn else ("", "")
            register_model(f"vgg{depth}{suffix}", VGG, family="classic", input_size=224, depth=depth,
                           description=f"VGG-{depth} (Simonyan & Zisserman 2015){note}, torchvision layout; "
                                       "inputs >= 32 px",
                           cfg=cfg, batch_norm=bn)
    for depth, cfg in VGG_CFGS.items():
        convs = sum(v != "M" for v in cfg)
        register_model(f"vgg{depth}_small", VGG, family="classic", input_size=32, depth=convs + 2,
                       description=f"CIFAR-style VGG-{depth}: its {convs} convs with BN, ceil-mode pools (so 28 px "
                                   "works), global average pool and fc 512 -> classes instead of 7x7 pool and "
                                   "4096-4096",
                       cfg=cfg, batch_norm=True, hidden=(512,), pool_size=1, ceil_mode=True)


_register()
