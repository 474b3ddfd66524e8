"""The classic CNNs ResNet is measured against: AlexNet, VGG and GoogLeNet (Inception v1).

Each is one class whose variants are rows of data, with torchvision's parameter names
(features.N / classifier.N; conv1.conv, inception3a.branch1.conv, aux1, fc) so that
torchvision state dicts load with strict=True, and with ResNet's seams:
`forward_features`, `forward_head(x, pre_logits=False)`, `reset_classifier`.

The `*_small` rows adapt each net to 28x28 / 32x32 inputs (Fashion-MNIST, CIFAR);
their registry descriptions say how they depart from the original.
`inception_arithmetic` measures what the Inception module's 1x1 reductions save.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from reslab.analysis import layer_stats
from reslab.errors import ReslabError
from reslab.models.registry import register_model

Cfg = Sequence[int | Literal["M"]]


class _Classic(nn.Module):
    """Shared checks and the forward = forward_head(forward_features(x)) seam."""

    num_classes: int
    in_chans: int
    num_features: int  # width of forward_head(..., pre_logits=True)
    min_size: int  # smallest input side (pixels) the net accepts

    def _setup(self, num_classes: int, in_chans: int) -> None:
        _check_positive("num_classes", num_classes)
        _check_positive("in_chans", in_chans)
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


def _check_positive(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ReslabError(f"{name} must be a positive integer. Received: {name}={value!r}")


def _mlp_head(in_features: int, hidden: Sequence[int], num_classes: int, dropout: float,
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


class _MLPHeadMixin:
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
        _check_positive("num_classes", num_classes)
        self.num_classes = num_classes
        self.classifier[-1] = nn.Linear(self.num_features, num_classes)


# ---------------------------------------------------------------------------- AlexNet
class AlexNet(_MLPHeadMixin, _Classic):
    """AlexNet (Krizhevsky, Sutskever, Hinton 2012): five convs, three fc layers.

    Args:
        widths: filters of conv1..conv5; (96, 256, 384, 384, 256) as published,
            (64, 192, 384, 256, 256) in torchvision's one-tower variant.
        groups: 2 splits conv2, conv4, conv5 into the paper's two GPU towers
            (Section 3.2: conv3 and the fc layers see both towers).
        lrn: local response normalisation after the ReLUs of conv1 and conv2
            (Section 3.3: size 5, alpha 1e-4, beta 0.75, k 2).
        stem: (kernel, stride, padding) of conv1; (11, 4, 2) maps 224 px to 55x55.
        pool_size: side of the adaptive average pool before the fc layers.
        hidden: width of the two hidden fc layers (4096 in the paper).
        dropout: dropout probability of the two hidden fc layers (0.5, Section 4.2).
        paper_init: weights N(0, 0.01), biases 1 in conv2, conv4, conv5 and the hidden
            fc layers, 0 elsewhere (Section 5); otherwise PyTorch's default, as torchvision.

    Input (N, in_chans, H, W) -> logits (N, num_classes).
    """

    def __init__(
        self,
        *,
        widths: Sequence[int] = (64, 192, 384, 256, 256),
        groups: int = 1,
        lrn: bool = False,
        stem: tuple[int, int, int] = (11, 4, 2),
        pool_size: int = 6,
        hidden: int = 4096,
        dropout: float = 0.5,
        paper_init: bool = False,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self._setup(num_classes, in_chans)
        if len(widths) != 5:
            raise ReslabError(f"AlexNet has five conv layers. Received: widths={tuple(widths)}")
        if groups < 1 or any(w % groups for w in widths):
            raise ReslabError(f"groups must divide every width. Received: groups={groups}, widths={tuple(widths)}")
        c1, c2, c3, c4, c5 = widths
        k, s, p = stem

        def norm() -> list[nn.Module]:
            # The paper writes alpha * sum, but its cuda-convnet code (like Caffe and
            # torch.nn.LocalResponseNorm) divides alpha by the window size; we follow the code.
            return [nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)] if lrn else []

        # Overlapping 3x3/2 max pools (Section 3.4).
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, c1, k, stride=s, padding=p), nn.ReLU(inplace=True), *norm(),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(c1, c2, 5, padding=2, groups=groups), nn.ReLU(inplace=True), *norm(),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, 3, padding=1, groups=groups), nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, 3, padding=1, groups=groups), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),
        )
        # Not in the paper: at 224 px the map is already 6x6 and this pool is the identity;
        # it lets other sizes reach the fc layers (torchvision does the same).
        self.avgpool = nn.AdaptiveAvgPool2d(pool_size)
        # The paper puts dropout "in the first two fully-connected layers"; torchvision
        # drops their inputs, which keeps its state-dict indices.
        self.classifier = _mlp_head(c5 * pool_size**2, (hidden, hidden), num_classes, dropout, dropout_first=True)
        self.num_features = hidden
        # Three 3x3/2 pools after conv1 (stride s): the smallest side that leaves a 1x1 map.
        self.min_size = _min_side(lambda n: _pool(_pool(_pool((n + 2 * p - k) // s + 1))))
        if paper_init:
            self._paper_init()

    def _paper_init(self) -> None:
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        fcs = [m for m in self.classifier if isinstance(m, nn.Linear)]
        ones = {convs[1], convs[3], convs[4], fcs[0], fcs[1]}
        for m in convs + fcs:
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.constant_(m.bias, 1.0 if m in ones else 0.0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) -> (N, widths[-1], h, w); 6x6 at 224 px."""
        self._check_input(x)
        return self.features(x)


def _pool(n: int) -> int:
    return (n - 3) // 2 + 1  # MaxPool2d(3, stride=2), no padding


def _min_side(out_side: Callable[[int], int]) -> int:
    return next(n for n in range(1, 1024) if out_side(n) >= 1)


# ---------------------------------------------------------------------------- VGG
# Table 1 of Simonyan & Zisserman (2015): columns A, B, D, E; "M" is a 2x2/2 max pool.
VGG_CFGS: dict[int, tuple[int | str, ...]] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


class VGG(_MLPHeadMixin, _Classic):
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
        self.classifier = _mlp_head(chs * pool_size**2, hidden, num_classes, dropout, dropout_first=False,
                                    skip_init=True)
        self.num_features = hidden[-1] if hidden else chs * pool_size**2
        pools = sum(v == "M" for v in cfg)
        self.min_size = 1 if ceil_mode else 2**pools
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) -> (N, 512, H/32, W/32)."""
        self._check_input(x)
        return self.features(x)


# ---------------------------------------------------------------------------- GoogLeNet
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


class GoogLeNet(_Classic):
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
        _check_positive("num_classes", num_classes)
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes)
        for aux in (self.aux1, self.aux2):
            if aux is not None:
                aux.fc2 = nn.Linear(aux.fc2.in_features, num_classes)


# ---------------------------------------------------------------------------- arithmetic
class _NaiveInception(nn.Module):
    """Figure 2a of Szegedy et al.: the same branches without 1x1 reductions or pool projection."""

    def __init__(self, m: Inception) -> None:
        super().__init__()
        c = m.in_chs
        k5 = m.branch3[1].conv.kernel_size[0]
        self.branch1 = BasicConv2d(c, m.branch1.conv.out_channels, 1)
        self.branch2 = BasicConv2d(c, m.branch2[1].conv.out_channels, 3, padding=1)
        self.branch3 = BasicConv2d(c, m.branch3[1].conv.out_channels, k5, padding=k5 // 2)
        self.branch4 = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


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


def inception_arithmetic(model: nn.Module, input_size: tuple[int, int, int] | None = None) -> list[dict[str, Any]]:
    """What the 1x1 reductions save: each Inception module against its naive form.

    The naive module (Szegedy et al. 2014, Figure 2a) applies the 3x3 and 5x5 convs
    directly to the module's input and passes the max pool through unprojected. Both
    forms use the model's conv unit (conv + BN), so params count BN too; MACs are
    conv multiply-adds per image at the module's input resolution (the paper's rule,
    see `reslab.analysis`).

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

    # Shapes are all this needs: run a copy on the meta device, which computes none.
    probe = copy.deepcopy(model).to("meta").eval()
    shapes: dict[str, tuple[int, int, int]] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(_mod: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
            shapes[name] = tuple(inp[0].shape[1:])
        return hook

    probe_modules = dict(probe.named_modules())
    for name, _ in modules:
        probe_modules[name].register_forward_pre_hook(record(name))
    with torch.no_grad():
        probe(torch.zeros(1, *input_size, device="meta"))

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


# ---------------------------------------------------------------------------- registry
def _register() -> None:
    register_model("alexnet", AlexNet, family="classic", input_size=224, depth=8,
                   description="AlexNet as torchvision builds it: one tower, 64/192/384/256/256 filters, no LRN, "
                               "6x6 adaptive pool; loads torchvision weights; inputs >= 63 px")
    register_model("alexnet_lrn", AlexNet, family="classic", input_size=224, depth=8,
                   description="AlexNet as published (Krizhevsky et al. 2012): 96/256/384/384/256 filters, two "
                               "towers (groups=2 in conv2/4/5), LRN after conv1-2, dropout 0.5, paper init",
                   widths=(96, 256, 384, 384, 256), groups=2, lrn=True, paper_init=True)
    register_model("alexnet_small", AlexNet, family="classic", input_size=32, depth=8,
                   description="AlexNet for 28-32 px: 3x3/1 conv1 instead of 11x11/4, 2x2 adaptive pool, "
                               "1024-wide fc layers, no LRN; inputs >= 15 px",
                   stem=(3, 1, 1), pool_size=2, hidden=1024)
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
    register_model("googlenet", GoogLeNet, family="classic", input_size=224, depth=22,
                   description="GoogLeNet / Inception v1 (Szegedy et al. 2014) in torchvision's layout (BN, 3x3 "
                               "in the '5x5' branch; kernel5=5 for the paper); aux heads opt-in; inputs >= 15 px")
    register_model("googlenet_small", GoogLeNet, family="classic", input_size=32, depth=22,
                   description="GoogLeNet for 28-32 px: 3x3/1 conv1 instead of 7x7/2 and no max pools before "
                               "inception3 (it runs at 32x32, inception4 at 16, inception5 at 8)",
                   stem="small")


_register()
