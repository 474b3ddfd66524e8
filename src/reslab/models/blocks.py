"""Residual building blocks (He et al. 2015, Section 3) and the shortcut options A/B/C.

A block computes y = ReLU(F(x) + shortcut(x)); F is conv-BN-ReLU-conv-BN (basic) or
1x1-3x3-1x1 (bottleneck). `shortcut="plain"` drops the addition, giving the paper's
plain nets with the same layers and parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reslab.errors import ReslabError
from reslab.models.choices import SHORTCUTS, VARIANTS, Shortcut, Variant


def conv3x3(in_chs: int, out_chs: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_chs: int, out_chs: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False)


class PadShortcut(nn.Module):
    """Option A: identity with stride-`stride` subsampling and zero-padded extra channels.

    Parameter-free (Section 3.3, "(A) zero-padding shortcuts"). (N, C_in, H, W) ->
    (N, C_out, H/stride, W/stride); the new channels are zeros appended after the old.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        if out_chs < in_chs:
            raise ReslabError(f"option A cannot reduce channels. Received: {in_chs} -> {out_chs}; use option B or C")
        self.extra, self.stride = out_chs - in_chs, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x

    def extra_repr(self) -> str:
        return f"extra_channels={self.extra}, stride={self.stride}"


def make_shortcut(option: str, in_chs: int, out_chs: int, stride: int) -> nn.Module | None:
    """The shortcut module of one block, or None for the plain identity.

    Option B projects only where dimensions change, option C on every block (Section 4.1,
    Table 3). Projections are named `downsample` with children 0 (conv) and 1 (BN), as
    in torchvision, so the world's checkpoints load.
    """
    changes = stride != 1 or in_chs != out_chs
    if option == "plain" or (option in ("A", "B") and not changes):
        return None
    if option == "A":
        return PadShortcut(in_chs, out_chs, stride)
    if option in ("B", "C"):
        return nn.Sequential(conv1x1(in_chs, out_chs, stride), nn.BatchNorm2d(out_chs))
    raise ReslabError(f"unknown shortcut option. Received: shortcut={option!r}; expected one of {', '.join(SHORTCUTS)}")


class ResidualBlock(nn.Module):
    """What both blocks share: the shortcut chosen by option, and y = ReLU(F(x) + shortcut(x))."""

    expansion: int  # output channels / planes
    relu: nn.Module

    def last_bn(self) -> nn.BatchNorm2d:
        raise NotImplementedError

    def _add_shortcut(self, option: str, in_chs: int, out_chs: int, stride: int) -> None:
        self.downsample = make_shortcut(option, in_chs, out_chs, stride)
        self.residual = option != "plain"

    def _merge(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """ReLU(F(x) + shortcut(x)); the plain nets drop the addition."""
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class BasicBlock(ResidualBlock):
    """Two 3x3 convs (ResNet-18/34 and the CIFAR nets). (N, in_chs, H, W) -> (N, planes, H/s, W/s)."""

    expansion = 1

    def __init__(
        self, in_chs: int, planes: int, *, stride: int = 1, shortcut: Shortcut = "B", variant: Variant = "v1.5"
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_chs, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self._add_shortcut(shortcut, in_chs, planes, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self._merge(out, x)


class Bottleneck(ResidualBlock):
    """1x1 reduce, 3x3, 1x1 expand x4 (ResNet-50/101/152, Section 4.1 "Deeper Bottleneck").

    `variant="v1"` strides the first 1x1, as the paper and its Caffe models do;
    `"v1.5"` strides the 3x3, as torchvision/timm/NVIDIA do (about +0.5% top-1 at
    4.089 instead of 3.858 GMACs for ResNet-50). (N, in_chs, H, W) -> (N, 4*planes, H/s, W/s).
    """

    expansion = 4

    def __init__(
        self, in_chs: int, planes: int, *, stride: int = 1, shortcut: Shortcut = "B", variant: Variant = "v1.5"
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ReslabError(f"unknown bottleneck variant. Received: variant={variant!r}; expected one of "
                              f"{', '.join(VARIANTS)}")
        out_chs = planes * self.expansion
        s1, s3 = (stride, 1) if variant == "v1" else (1, stride)
        self.conv1 = conv1x1(in_chs, planes, s1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, s3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out_chs)
        self.bn3 = nn.BatchNorm2d(out_chs)
        self.relu = nn.ReLU(inplace=True)
        self._add_shortcut(shortcut, in_chs, out_chs, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self._merge(out, x)


BLOCKS: dict[str, type[ResidualBlock]] = {"basic": BasicBlock, "bottleneck": Bottleneck}
