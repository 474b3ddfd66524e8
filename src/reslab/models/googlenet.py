"""GoogLeNet / Inception v1 (Szegedy et al. 2014) in torchvision's layout, and for small inputs.

What the Inception module's 1x1 reductions save is measured by `reslab.models.analysis.inception_arithmetic`.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from reslab.errors import ReslabError
from reslab.models.base import ClassicNet, check_positive
from reslab.models.registry import register_model


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BN (eps 1e-3) -> ReLU, torchvision's unit (`.conv`, `.bn`).

    BN is not in Szegedy et al. (2014); torchvision's GoogLeNet weights were trained with it.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, *, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_chs, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """The Inception module with dimension reductions (Szegedy et al. 2014, Figure 2b).

    Four parallel branches, concatenated on channels: 1x1; 1x1 reduce -> 3x3;
    1x1 reduce -> 5x5; 3x3/1 max pool -> 1x1 projection.
    `kernel5` is the large branch's kernel: 5 in the paper, 3 in torchvision's port,
    whose weights were trained that way (pytorch/vision issue #906).
    (N, in_chs, H, W) -> (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W).
    """

    def __init__(self, in_chs: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int, *, kernel5: int = 3) -> None:
        super().__init__()
        self.in_chs = in_chs
        self.branch1 = BasicConv2d(in_chs, ch1x1, 1)
        self.branch2 = nn.Sequential(BasicConv2d(in_chs, ch3x3red, 1), BasicConv2d(ch3x3red, ch3x3, 3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_chs, ch5x5red, 1),
                                     BasicConv2d(ch5x5red, ch5x5, kernel5, padding=kernel5 // 2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(in_chs, pool_proj, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on inception4a / 4d (Szegedy et al. 2014, Section 5).

    4x4 average pool (adaptive here; 5x5/3 in the paper, same 4x4 at 224 px), 1x1 conv
    to 128, fc 1024 with 70% dropout, fc to the classes. (N, C, h, w) -> (N, num_classes).
    """

    def __init__(self, in_chs: int, num_classes: int, *, dropout: float = 0.7) -> None:
        super().__init__()
        self.conv = BasicConv2d(in_chs, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(F.adaptive_avg_pool2d(x, 4)), 1)
        return self.fc2(self.dropout(F.relu(self.fc1(x), inplace=True)))


class GoogLeNetOutputs(NamedTuple):
    """Training-mode output with auxiliary heads. The paper adds the auxiliary losses
    with weight 0.3 (Section 5). Note torchvision's tuple is (logits, aux2, aux1)."""

    logits: torch.Tensor
    aux1: torch.Tensor
    aux2: torch.Tensor


# Table 1 of Szegedy et al. (2014): #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
INCEPTION_CFGS: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


class GoogLeNet(ClassicNet):
    """GoogLeNet / Inception v1 (Szegedy et al. 2014) in torchvision's layout.

    Args:
        stem: "imagenet" (7x7/2 conv, 3x3/2 max pool, 1x1, 3x3, 3x3/2 max pool: 224 -> 28)
            or "small" (3x3/1 conv and no max pools before inception3: 32 -> 32).
        aux_logits: build the two auxiliary classifiers (off by default). In training
            mode `forward` then returns `GoogLeNetOutputs(logits, aux1, aux2)`; in eval
            mode, and always through forward_features / forward_head, only the logits.
        transform_input: rescale inputs normalised with ImageNet's mean / std to the
            (x - 0.5) / 0.5 range that torchvision's ported weights expect (3 channels).
        kernel5: the "5x5" branch's kernel; 3 as torchvision (so its weights load).
        dropout: before the classifier; 0.4 in the paper (Section 5), 0.2 in torchvision.
        dropout_aux: inside the auxiliary heads (0.7).

    Departures named: BN in every conv unit (torchvision); no LRN in the stem; the last
    pool before inception5 is 2x2/2 (torchvision) instead of 3x3/2.
    Input (N, in_chans, H, W) -> logits (N, num_classes).
    """

    # Added by name in __init__ (one per row of INCEPTION_CFGS and the pools between stages).
    inception3a: Inception
    inception3b: Inception
    inception4a: Inception
    inception4b: Inception
    inception4c: Inception
    inception4d: Inception
    inception4e: Inception
    inception5a: Inception
    inception5b: Inception
    maxpool3: nn.MaxPool2d
    maxpool4: nn.MaxPool2d

    def __init__(
        self,
        *,
        stem: Literal["imagenet", "small"] = "imagenet",
        aux_logits: bool = False,
        transform_input: bool = False,
        kernel5: int = 3,
        dropout: float = 0.4,
        dropout_aux: float = 0.7,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self._setup(num_classes, in_chans)
        if stem not in ("imagenet", "small"):
            raise ReslabError(f"unknown stem. Received: stem={stem!r}; expected imagenet or small")
        if kernel5 not in (3, 5):
            raise ReslabError(f"kernel5 is 5 (the paper) or 3 (torchvision). Received: kernel5={kernel5!r}")
        if transform_input and in_chans != 3:
            raise ReslabError(f"transform_input rescales RGB inputs. Received: in_chans={in_chans}")
        self.aux_logits, self.transform_input = aux_logits, transform_input

        if stem == "imagenet":
            self.conv1 = BasicConv2d(in_chans, 64, 7, stride=2, padding=3)
            self.maxpool1: nn.Module = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        else:
            self.conv1 = BasicConv2d(in_chans, 64, 3, padding=1)
            self.maxpool1 = nn.Identity()
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)
        self.maxpool2: nn.Module = nn.MaxPool2d(3, stride=2, ceil_mode=True) if stem == "imagenet" else nn.Identity()

        chs = 192
        for name, cfg in INCEPTION_CFGS.items():
            self.add_module(f"inception{name}", Inception(chs, *cfg, kernel5=kernel5))
            chs = cfg[0] + cfg[2] + cfg[4] + cfg[5]
            if name == "3b":
                self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            elif name == "4e":
                self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)

        self.aux1: InceptionAux | None = InceptionAux(512, num_classes, dropout=dropout_aux) if aux_logits else None
        self.aux2: InceptionAux | None = InceptionAux(528, num_classes, dropout=dropout_aux) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(chs, num_classes)
        self.num_features = chs
        self.min_size = 15 if stem == "imagenet" else 2  # the 3x3/2 pool before inception4
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        if not self.transform_input:
            return x
        mean = x.new_tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = x.new_tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        return (x * std + mean - 0.5) / 0.5

    def _trunk(self, x: torch.Tensor, *, taps: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Stem and Inception stages; `taps` also returns the inputs of aux1 and aux2."""
        self._check_input(x)
        x = self.maxpool1(self.conv1(self._transform(x)))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        tapped = [x] if taps else []
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        tapped += [x] if taps else []
        x = self.maxpool4(self.inception4e(x))
        return self.inception5b(self.inception5a(x)), tapped

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) -> (N, 1024, H/32, W/32) (H/4 with the small stem)."""
        return self._trunk(x, taps=False)[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(N, 1024, h, w) -> (N, 1024) if pre_logits else (N, num_classes)."""
        x = self.dropout(torch.flatten(self.avgpool(x), 1))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:
        if not (self.training and self.aux1 is not None and self.aux2 is not None):
            return self.forward_head(self.forward_features(x))
        x, (t1, t2) = self._trunk(x, taps=True)
        return GoogLeNetOutputs(self.forward_head(x), self.aux1(t1), self.aux2(t2))

    def reset_classifier(self, num_classes: int) -> None:
        """New fc layers with `num_classes` outputs, in the auxiliary heads too."""
        check_positive("num_classes", num_classes)
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes)
        for aux in (self.aux1, self.aux2):
            if aux is not None:
                aux.fc2 = nn.Linear(aux.fc2.in_features, num_classes)


# ---------------------------------------------------------------------------- rows
# (name, design resolution, stem, description)
_ROWS = (
    ("googlenet", 224, "imagenet", "GoogLeNet / Inception v1 (Szegedy et al. 2014) in torchvision's layout (BN, 3x3 "
     "in the '5x5' branch; kernel5=5 for the paper); aux heads opt-in; inputs >= 15 px"),
    ("googlenet_small", 32, "small", "GoogLeNet for 28-32 px: 3x3/1 conv1 instead of 7x7/2 and no max pools before "
     "inception3 (it runs at 32x32, inception4 at 16, inception5 at 8)"),
)


def _register() -> None:
    for name, size, stem, description in _ROWS:
        register_model(name, GoogLeNet, family="classic", input_size=size, depth=22, description=description,
                       stem=stem)


_register()
