"""Networks: residual blocks, the ResNet class, the classic CNNs, the registry and their costs.

Importing this package imports no torch: its names load on first use (PEP 562), so that
`reslab models` answers from models/costs.py's cache without torch. The registry imports every
model family at its first lookup, the paper's nets first (the order of `list_models()`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reslab.models.blocks import BasicBlock, Bottleneck, PadShortcut
    from reslab.models.registry import ModelEntry, create_model, list_models, model_entry, register_model
    from reslab.models.resnet import ResNet, make_stage

_HOMES = {
    "BasicBlock": "blocks", "Bottleneck": "blocks", "PadShortcut": "blocks", "ResNet": "resnet", "make_stage": "resnet",
    "ModelEntry": "registry", "create_model": "registry", "list_models": "registry", "model_entry": "registry",
    "register_model": "registry",
}
__all__ = [
    "BasicBlock", "Bottleneck", "ModelEntry", "PadShortcut", "ResNet", "create_model", "list_models",
    "make_stage", "model_entry", "register_model",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
