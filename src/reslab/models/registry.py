"""The table of named networks: `register_model`, `create_model(name, **overrides)`, `list_models()`.

Every variant is a row of data, registered by the file that defines its class (resnet.py,
alexnet.py, vgg.py, googlenet.py), which the first lookup imports; this module knows no model class.
Builders take keyword-only options; `num_classes` and `in_chans` are accepted by all.
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

from reslab.errors import ReslabError


class UnknownModelError(ReslabError):
    """A model name that is not in the table."""


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
# The files that register rows, imported at the first lookup in this order (the order of list_models()).
_FAMILIES = ("reslab.models.resnet", "reslab.models.alexnet", "reslab.models.vgg", "reslab.models.googlenet")
_families_loaded = False


def _load_families() -> None:
    global _families_loaded
    if not _families_loaded:
        _families_loaded = True
        for module in _FAMILIES:
            importlib.import_module(module)


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
    if name in _REGISTRY:  # two rows with one name: a bug in the model files, not a user's mistake
        raise ValueError(f"model {name!r} is registered already")
    _REGISTRY[name] = ModelEntry(name, builder, dict(defaults), family, input_size, depth, description)


def list_models(pattern: str = "*", *, family: str | None = None) -> list[str]:
    """Registered names matching a shell-style `pattern`, in registration order."""
    _load_families()
    return [n for n, e in _REGISTRY.items()
            if fnmatch.fnmatch(n, pattern) and (family is None or e.family == family)]


def model_entry(name: str) -> ModelEntry:
    """The row of `name`; an unknown name raises `UnknownModelError` with the closest names."""
    _load_families()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `reslab models` lists them"
        raise UnknownModelError(f"unknown model. Received: {name!r}{hint}")
    return _REGISTRY[name]


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered network, e.g. `create_model("resnet50", variant="v1", num_classes=10)`.

    `pretrained`: True for torchvision's default weights of `name` (its best ImageNet ones), a weights name
    of its enum ("IMAGENET1K_V1"), or a full name ("torchvision:resnet50.IMAGENET1K_V2",
    "timm:resnet50.a1_in1k"); fetched into the library's cache when missing (reslab.pretrained). Another
    `num_classes` keeps a fresh classifier; another `in_chans` adapts the first convolution. The model is
    returned in eval mode.
    """
    pretrained: bool | str | None = overrides.pop("pretrained", False)
    if pretrained is not False and pretrained is not None:
        from reslab.pretrained import build  # torchvision / timm only when weights are asked for

        if pretrained is True:
            source = f"torchvision:{name}"
        elif isinstance(pretrained, str) and pretrained:
            source = pretrained if ":" in pretrained else f"torchvision:{name}.{pretrained}"
        else:
            raise ReslabError(f"pretrained must be True, a weights name such as 'IMAGENET1K_V2', or "
                              f"'torchvision:...' / 'timm:...'. Received: pretrained={pretrained!r}")
        return build(source, model=name, **overrides)[0]
    entry = model_entry(name)
    params = inspect.signature(entry.builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    allowed = sorted(set(params) | set(entry.defaults))
    for key in overrides:
        if not takes_any and key not in params:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ReslabError(f"{name} takes no option {key!r}{hint}. Received: {key}={overrides[key]!r}; "
                              f"options are {', '.join(allowed)}")
    return entry.builder(**{**entry.defaults, **overrides})
