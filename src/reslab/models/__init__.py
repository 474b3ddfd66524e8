"""Networks: residual blocks, the ResNet class, the classic CNNs, the registry and their costs.

Importing this package imports no torch: its names load on first use (PEP 562), so that
`reslab models` answers from models/costs.py's cache without torch. The registry imports every
model family at its first lookup, the paper's nets first (the order of `list_models()`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reslab._callable import lazy_names

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


__getattr__, __dir__ = lazy_names(__name__, _HOMES)
