"""What the classic nets (AlexNet, VGG, GoogLeNet) share: input checks and ResNet's seams.

Each net is one class whose variants are rows of data, with torchvision's parameter names
(features.N / classifier.N; conv1.conv, inception3a.branch1.conv, aux1, fc) so that
torchvision state dicts load with strict=True, and with ResNet's seams:
`forward_features`, `forward_head(x, pre_logits=False)`, `reset_classifier`.
The `*_small` rows adapt each net to 28x28 / 32x32 inputs (Fashion-MNIST, CIFAR);
their registry descriptions say how they depart from the original.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from reslab.errors import ReslabError


class ClassicNet(nn.Module):
    """Shared checks and the forward = forward_head(forward_features(x)) seam."""

    num_classes: int
    in_chans: int
    num_features: int  # width of forward_head(..., pre_logits=True)
    min_size: int  # smallest input side (pixels) the net accepts

    def _setup(self, num_classes: int, in_chans: int) -> None:
        check_positive("num_classes", num_classes)
        check_positive("in_chans", in_chans)
        self.num_classes, self.in_chans = num_classes, in_chans

    def _check_input(self, x: torch.Tensor) -> None:
        # Skipped while tracing / exporting so that dynamic shapes stay free of guards.
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return
        if x.dim() != 4 or x.shape[1] != self.in_chans or min(x.shape[-2:]) < self.min_size:
            raise ReslabError(
                f"{type(self).__name__} expects (N, {self.in_chans}, H, W) with H, W >= {self.min_size}. "
                f"Received: input of shape {tuple(x.shape)}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> Any:
        return self.forward_head(self.forward_features(x))


def check_positive(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ReslabError(f"{name} must be a positive integer. Received: {name}={value!r}")


def mlp_head(in_features: int, hidden: Sequence[int], num_classes: int, dropout: float,
              *, dropout_first: bool, skip_init: bool = False) -> nn.Sequential:
    """Hidden fc layers with ReLU and dropout, then the classifier.

    AlexNet in torchvision drops the input of each hidden fc (Dropout, Linear, ReLU);
    VGG drops its output (Linear, ReLU, Dropout). Both orders keep torchvision's indices.
    `skip_init` leaves the weights uninitialised for a caller that sets them itself:
    the default init of VGG's 25088 x 4096 fc6 alone takes seconds on a CPU.
    """

    def linear(i: int, o: int) -> nn.Linear:
        if skip_init:
            return nn.utils.skip_init(nn.Linear, i, o, device=torch.get_default_device())
        return nn.Linear(i, o)

    layers: list[nn.Module] = []
    for width in hidden:
        fc = [linear(in_features, width), nn.ReLU(inplace=True)]
        layers += [nn.Dropout(dropout), *fc] if dropout_first else [*fc, nn.Dropout(dropout)]
        in_features = width
    return nn.Sequential(*layers, linear(in_features, num_classes))


class MLPHead:
    """forward_head / reset_classifier for nets whose head is avgpool + `classifier`."""

    avgpool: nn.Module
    classifier: nn.Sequential
    num_features: int
    num_classes: int

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(N, C, h, w) -> (N, num_features) if pre_logits else (N, num_classes)."""
        x = torch.flatten(self.avgpool(x), 1)
        return self.classifier[:-1](x) if pre_logits else self.classifier(x)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last fc layer by a freshly initialised one with `num_classes` outputs."""
        check_positive("num_classes", num_classes)
        self.num_classes = num_classes
        self.classifier[-1] = nn.Linear(self.num_features, num_classes)

