"""AlexNet (Krizhevsky, Sutskever, Hinton 2012) as published, as torchvision builds it, and for small inputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from reslab.errors import ReslabError
from reslab.models.base import ClassicNet, MLPHead, mlp_head
from reslab.models.registry import register_model


class AlexNet(MLPHead, ClassicNet):
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
        self.classifier = mlp_head(c5 * pool_size**2, (hidden, hidden), num_classes, dropout, dropout_first=True)
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
            if m.bias is not None:
                nn.init.constant_(m.bias, 1.0 if m in ones else 0.0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) -> (N, widths[-1], h, w); 6x6 at 224 px."""
        self._check_input(x)
        return self.features(x)


def _pool(n: int) -> int:
    return (n - 3) // 2 + 1  # MaxPool2d(3, stride=2), no padding


def _min_side(out_side: Callable[[int], int]) -> int:
    return next(n for n in range(1, 1024) if out_side(n) >= 1)


# ---------------------------------------------------------------------------- rows
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


_register()
