"""See what a network looks at: CAM for GAP+FC nets, Grad-CAM and Grad-CAM++ for any conv layer.

>>> maps = reslab.explain.cam(model, x, classes)   # x (B, C, H, W), classes (B, K) -> (B, K, H, W) in [0, 1]

By default each map is scaled to [0, 1] and weighted by its class's probability (`scale="prob"`).
The names load on first use (PEP 562), so `reslab explain --help` imports no torch; `cam` is the
module reslab.explain.cam, which calls its function `cam` (reslab/_callable.py says why).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reslab.explain.cam import METHODS, SCALES, cam, class_activation_maps, default_layer

__all__ = ["METHODS", "SCALES", "cam", "class_activation_maps", "default_layer"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.cam")  # binds `cam` here to the (callable) module
    return module if name == "cam" else getattr(module, name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
