"""Batched augmentation and test views as tensor ops on the data's device (no per-image Python).

CIFAR recipe (Section 4.2): pad 4 pixels, random 32x32 crop, random horizontal flip, per-pixel
mean subtracted. Fashion-MNIST and MNIST use the same pipeline on 28x28 images; flipping is
label-preserving for clothing but not for digits, so MNIST turns it off (`DatasetSpec.hflip`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from reslab.errors import ReslabError

# AlexNet's PCA colour augmentation (Krizhevsky et al. 2012) with the ImageNet RGB statistics
# in 0..1 units; the columns of the eigenvector matrix are the principal components.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                   (-0.5808, -0.0045, -0.8140),
                   (-0.5836, -0.6948, 0.4203))

NormMode = Literal["pixel-mean", "channel"]


class CropFlip(NamedTuple):
    """Per-image augmentation draws: crop offsets into the padded image and flip flags, each (N,)."""

    top: Tensor
    left: Tensor
    flip: Tensor


def crop_flip(x: Tensor, pad: int, params: CropFlip) -> Tensor:
    """Zero-pad (N, C, H, W) by `pad` on each side, then take each image's H x W crop at
    (top, left), mirrored where `flip`; two gathers, exact integer crops, any dtype."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad)) if pad else x
    dev = x.device
    top, left, flip = (t.to(dev) for t in params)
    rows = top[:, None] + torch.arange(h, device=dev)  # (N, H)
    cols = torch.arange(w, device=dev).expand(n, w)
    cols = left[:, None] + torch.where(flip[:, None], (w - 1) - cols, cols)  # (N, W)
    y = padded.gather(2, rows[:, None, :, None].expand(n, c, h, padded.shape[3]))
    return y.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def normalize(x: Tensor, *, mode: NormMode, std: Sequence[float], mean: Sequence[float] | None = None,
              pixel_mean: Tensor | None = None) -> Tensor:
    """uint8 (N, C, H, W) -> float32 (N, C, H, W).

    "pixel-mean" subtracts the per-pixel mean image (C, H, W) in 0..1 units, as the paper does
    (Sections 3.4, 4.2), then divides by the per-channel std; the division is our addition for
    unit-scale inputs (a fixed per-channel scale that BN's first layer absorbs).
    "channel" is the common per-channel (x - mean) / std.
    """
    if len(std) != x.shape[1]:
        raise ReslabError(f"std has {len(std)} values for images with {x.shape[1]} channels; received std={std}")
    y = x.float().div_(255)
    std_t = torch.tensor(std, dtype=y.dtype, device=y.device).view(-1, 1, 1)
    if mode == "pixel-mean":
        if pixel_mean is None:
            raise ReslabError("normalize(mode='pixel-mean') needs pixel_mean (C, H, W); compute it with "
                              "per_pixel_mean(train.images) or use mode='channel'")
        if pixel_mean.shape != y.shape[1:]:
            raise ReslabError(f"pixel_mean has shape {tuple(pixel_mean.shape)} but images are "
                              f"{tuple(y.shape[1:])}; compute it on the same dataset")
        return y.sub_(pixel_mean.to(y.device, y.dtype)).div_(std_t)
    if mode == "channel":
        if mean is None:
            raise ReslabError("normalize(mode='channel') needs the per-channel mean")
        return y.sub_(torch.tensor(mean, dtype=y.dtype, device=y.device).view(-1, 1, 1)).div_(std_t)
    raise ReslabError(f"unknown normalisation mode {mode!r}; use 'pixel-mean' or 'channel'")


class BatchAugment:
    """Training augmentation for small-image datasets: uint8 (N, C, H, W) -> float32 (N, C, H, W).

    Normalises first, then zero-pads, as fb.resnet.torch's CIFAR pipeline does: padded pixels
    hold the mean (zero after subtraction) rather than black.
    """

    def __init__(self, *, std: Sequence[float], mode: NormMode = "pixel-mean", pixel_mean: Tensor | None = None,
                 mean: Sequence[float] | None = None, pad: int = 4, hflip: bool = True) -> None:
        if pad < 0:
            raise ReslabError(f"pad must be >= 0, received pad={pad}")
        self.std, self.mode, self.pixel_mean, self.mean = tuple(std), mode, pixel_mean, mean
        self.pad, self.hflip = pad, hflip
        if mode not in ("pixel-mean", "channel"):
            raise ReslabError(f"unknown normalisation mode {mode!r}; use 'pixel-mean' or 'channel'")
        if (mode == "pixel-mean" and pixel_mean is None) or (mode == "channel" and mean is None):
            need = "pixel_mean= (per_pixel_mean of the training images)" if mode == "pixel-mean" else "mean="
            raise ReslabError(f"BatchAugment(mode={mode!r}) needs {need}")

    def normalize(self, x: Tensor) -> Tensor:
        """Evaluation view: uint8 (N, C, H, W) -> normalised float32, no augmentation."""
        return normalize(x, mode=self.mode, std=self.std, mean=self.mean, pixel_mean=self.pixel_mean)

    def sample(self, n: int, generator: torch.Generator) -> CropFlip:
        """Draw offsets in [0, 2 * pad] and flips with p = 0.5 from `generator` (CPU)."""
        top = torch.randint(0, 2 * self.pad + 1, (n,), generator=generator)
        left = torch.randint(0, 2 * self.pad + 1, (n,), generator=generator)
        flip = torch.rand(n, generator=generator) < 0.5
        return CropFlip(top, left, flip & self.hflip)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return crop_flip(self.normalize(x), self.pad, self.sample(x.shape[0], generator))


def center_crop(x: Tensor, size: int) -> Tensor:
    """(N, C, H, W) -> (N, C, size, size), torchvision's centre convention."""
    return TF.center_crop(x, [size])


def ten_crop(x: Tensor, size: int) -> Tensor:
    """(N, C, H, W) -> (N * 10, C, size, size): per image the 4 corners and centre (tl, tr, bl, br, c),
    then the same 5 of the horizontally flipped image; torchvision's order (Section 3.4 testing)."""
    return torch.stack(TF.ten_crop(x, [size]), dim=1).flatten(0, 1)


def pca_lighting(x: Tensor, alphastd: float = 0.1, generator: torch.Generator | None = None) -> Tensor:
    """Add eigvec @ (alpha * eigval) per image, alpha ~ N(0, alphastd); x is RGB float in 0..1 units,
    (N, 3, H, W) or (3, H, W)."""
    if x.shape[-3] != 3:
        raise ReslabError(f"pca_lighting needs RGB images (3 channels), received shape {tuple(x.shape)}")
    batch = x.shape[:-3]
    alpha = torch.randn((*batch, 3), generator=generator) * alphastd
    eigval = torch.tensor(IMAGENET_EIGVAL)
    rgb = (alpha * eigval) @ torch.tensor(IMAGENET_EIGVEC).T  # (..., 3)
    return x + rgb.to(x.device, x.dtype)[..., None, None]
