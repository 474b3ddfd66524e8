"""The table of named networks: `create_model(name, **overrides)` and `list_models()`.

Every variant is a row of data. Builders take keyword-only options; `num_classes`
and `in_chans` are accepted by all.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from reslab.models.resnet import ResNet


class UnknownModelError(ValueError):
    pass


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    defaults: dict[str, Any] = field(default_factory=dict)
    family: str = "imagenet"  # imagenet | cifar | classic
    input_size: int = 224  # the resolution the net was designed for
    depth: int = 0  # weighted layers (conv + fc), as the papers count them
    description: str = ""


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    builder: Callable[..., nn.Module],
    *,
    family: str,
    input_size: int,
    depth: int,
    description: str,
    **defaults: Any,
) -> None:
    """Add a named network. `defaults` are passed to `builder` unless overridden."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered already")
    _REGISTRY[name] = ModelEntry(name, builder, dict(defaults), family, input_size, depth, description)


def list_models(pattern: str = "*", *, family: str | None = None) -> list[str]:
    """Registered names matching a shell-style `pattern`, in registration order."""
    _load_all()
    return [n for n, e in _REGISTRY.items()
            if fnmatch.fnmatch(n, pattern) and (family is None or e.family == family)]


def model_entry(name: str) -> ModelEntry:
    _load_all()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `reslab models` lists them"
        raise UnknownModelError(f"unknown model. Received: {name!r}{hint}")
    return _REGISTRY[name]


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered network, e.g. `create_model("resnet50", variant="v1", num_classes=10)`."""
    entry = model_entry(name)
    params = inspect.signature(entry.builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    allowed = sorted(set(params) | set(entry.defaults))
    for key in overrides:
        if not takes_any and key not in params:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"{name} takes no option {key!r}{hint}. Received: {key}={overrides[key]!r}; "
                             f"options are {', '.join(allowed)}")
    return entry.builder(**{**entry.defaults, **overrides})


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


def _register_resnets() -> None:
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


_LOADED = False


def _load_all() -> None:
    """Fill the table on first use, so importing reslab stays cheap."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    _register_resnets()
    try:  # registers AlexNet, VGG, GoogLeNet
        importlib.import_module("reslab.models.classic")
    except ModuleNotFoundError as e:
        if e.name != "reslab.models.classic":
            raise
