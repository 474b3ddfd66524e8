"""One ResNet class: stem, a body of stages built by `make_stage`, and a head.

Every network of the paper is a row of data passed to this class:
the ImageNet nets of Table 1, the CIFAR 6n+2 nets of Section 4.2 and their plain
counterparts, registered at the end of this file. Parameter names follow torchvision
(conv1, bn1, layer1..4, downsample, fc) so torchvision and timm checkpoints load with strict=True.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from reslab.errors import ReslabError
from reslab.models.blocks import BLOCKS, ResidualBlock
from reslab.models.choices import SHORTCUTS, VARIANTS, Shortcut, Variant
from reslab.models.registry import register_model

Stem = Literal["imagenet", "cifar"]


def make_stage(
    block: type[ResidualBlock], in_chs: int, planes: int, blocks: int, *, stride: int, shortcut: str, variant: str
) -> tuple[nn.Sequential, int]:
    """A stage of `blocks` blocks; only the first may change resolution or width.

    Returns the stage and its output channels.
    """
    layers = []
    for i in range(blocks):
        layers.append(block(in_chs, planes, stride=stride if i == 0 else 1, shortcut=shortcut, variant=variant))
        in_chs = planes * block.expansion
    return nn.Sequential(*layers), in_chs


class ResNet(nn.Module):
    """Deep residual network (He et al. 2015).

    Args:
        block: "basic" (two 3x3) or "bottleneck" (1x1-3x3-1x1, expansion 4).
        layers: blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50 or (3, 3, 3) for ResNet-20.
        widths: base width of each stage (64..512 on ImageNet, 16/32/64 on CIFAR).
        stem: "imagenet" (7x7/2 conv + 3x3/2 max pool) or "cifar" (one 3x3 conv).
        shortcut: "A" zero-padding, "B" projection where dimensions change, "C"
            projection everywhere, "plain" no shortcut (Section 3.3).
        variant: bottleneck stride placement, "v1" (paper) or "v1.5" (torchvision).
        zero_init_last: start each block's last BN at gamma=0 (Goyal et al. 2017; not in
            the paper, off by default).

    Input (N, in_chans, H, W) -> logits (N, num_classes).
    """

    def __init__(
        self,
        *,
        block: str = "basic",
        layers: Sequence[int] = (2, 2, 2, 2),
        widths: Sequence[int] = (64, 128, 256, 512),
        stem: Stem = "imagenet",
        stem_width: int = 64,
        num_classes: int = 1000,
        in_chans: int = 3,
        shortcut: Shortcut = "B",
        variant: Variant = "v1.5",
        zero_init_last: bool = False,
    ) -> None:
        super().__init__()
        _check("block", block, tuple(BLOCKS))
        _check("stem", stem, ("imagenet", "cifar"))
        _check("shortcut", shortcut, SHORTCUTS)
        _check("variant", variant, VARIANTS)
        if len(layers) != len(widths) or not layers or min(layers) < 1:
            raise ReslabError(f"layers and widths must be equally long, each stage >= 1 block. "
                              f"Received: layers={tuple(layers)}, widths={tuple(widths)}; give one width per stage")
        for name, value in (("num_classes", num_classes), ("in_chans", in_chans)):
            if not isinstance(value, int) or value < 1:
                raise ReslabError(f"{name} must be a positive integer. Received: {name}={value!r}")
        block_cls = BLOCKS[block]
        self.num_classes, self.in_chans, self.shortcut, self.variant = num_classes, in_chans, shortcut, variant

        # Stem (Table 1 "conv1" + the max pool opening conv2_x; Section 4.2 for CIFAR).
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, stem_width, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(in_chans, stem_width, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)

        # Body: stage i is `layer{i+1}`; all but the first halve the resolution.
        chs = stem_width
        self.stage_names: list[str] = []
        for i, (n, width) in enumerate(zip(layers, widths, strict=True)):
            stage, chs = make_stage(block_cls, chs, width, n, stride=1 if i == 0 else 2,
                                    shortcut=shortcut, variant=variant)
            self.add_module(f"layer{i + 1}", stage)
            self.stage_names.append(f"layer{i + 1}")
        self.num_features = chs

        # Head: global average pooling and a fully connected classifier.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(chs, num_classes)
        self._init_weights(zero_init_last)

    def _init_weights(self, zero_init_last: bool) -> None:
        # He initialisation (He et al. 2015b, cited in Section 3.4), fan_out as torchvision.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, ResidualBlock):
                    nn.init.zeros_(m.last_bn().weight)

    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, name) for name in self.stage_names]

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every stage, for use as a multi-scale backbone."""
        outs = []
        x = self.forward_stem(x)
        for stage in self.stages():
            x = stage(x)
            outs.append(x)
        return outs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) -> (N, num_features, H/32, W/32) (H/4 for the CIFAR stem)."""
        x = self.forward_stem(x)
        for stage in self.stages():
            x = stage(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(N, num_features, h, w) -> (N, num_features) if pre_logits else (N, num_classes)."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the fc layer by a freshly initialised one with `num_classes` outputs."""
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ReslabError(f"num_classes must be a positive integer. Received: num_classes={num_classes!r}")
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes)


def _check(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ReslabError(f"unknown {name}. Received: {name}={value!r}{hint}; expected one of {', '.join(allowed)}")


# ---------------------------------------------------------------------------- rows
# Table 1: blocks per stage of the ImageNet nets.
IMAGENET_DEPTHS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
# Section 4.2: 6n+2 layers, n blocks per stage.
CIFAR_DEPTHS: dict[int, int] = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18, 1202: 200}
PLAIN_IMAGENET = (18, 34)
PLAIN_CIFAR = (20, 32, 44, 56, 110)


def _register() -> None:
    for depth, (block, layers) in IMAGENET_DEPTHS.items():
        # Option B is the paper's choice for the bottleneck nets and torchvision's layout.
        register_model(f"resnet{depth}", ResNet, family="imagenet", input_size=224, depth=depth,
                       description=f"ResNet-{depth} (Table 1), {block} blocks, option B",
                       block=block, layers=layers, shortcut="B")
    for depth, n in CIFAR_DEPTHS.items():
        register_model(f"resnet{depth}", ResNet, family="cifar", input_size=32, depth=depth,
                       description=f"CIFAR ResNet-{depth} (Section 4.2, n={n}), option A",
                       block="basic", layers=(n, n, n), widths=(16, 32, 64), stem="cifar",
                       stem_width=16, num_classes=10, shortcut="A")
    for depth in PLAIN_IMAGENET:
        register_model(f"plain{depth}", ResNet, family="imagenet", input_size=224, depth=depth,
                       description=f"plain-{depth} (Section 4.1): ResNet-{depth} without shortcuts",
                       block="basic", layers=IMAGENET_DEPTHS[depth][1], shortcut="plain")
    for depth in PLAIN_CIFAR:
        n = CIFAR_DEPTHS[depth]
        register_model(f"plain{depth}", ResNet, family="cifar", input_size=32, depth=depth,
                       description=f"CIFAR plain-{depth} (Section 4.2): ResNet-{depth} without shortcuts",
                       block="basic", layers=(n, n, n), widths=(16, 32, 64), stem="cifar",
                       stem_width=16, num_classes=10, shortcut="plain")


_register()
