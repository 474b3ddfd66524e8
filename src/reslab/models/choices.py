"""The models' named options, torch-free, so that the CLI can offer them without importing torch."""

from __future__ import annotations

from typing import Literal, get_args

# Section 3.3: A zero-pads where dimensions change, B projects there, C projects everywhere; plain has none
Shortcut = Literal["A", "B", "C", "plain"]
# the bottleneck's stride on its first 1x1 (the paper, "v1") or on its 3x3 ("v1.5", torchvision's)
Variant = Literal["v1", "v1.5"]
SHORTCUTS: tuple[str, ...] = get_args(Shortcut)
VARIANTS: tuple[str, ...] = get_args(Variant)
FAMILIES: tuple[str, ...] = ("imagenet", "cifar", "classic")  # the registry's row families
