"""reslab: Deep Residual Learning (He, Zhang, Ren, Sun 2015) as a PyTorch toolkit.

>>> import reslab
>>> model = reslab.create_model("resnet50", variant="v1")
>>> reslab.count_params(model), reslab.count_macs(model, (3, 224, 224))
(25557032, 3858...)

Every name is imported on first use, so `import reslab` (and `reslab models`) does not pay for
importing torch until a name needs it:
`reslab.train(config)`, `reslab.TrainConfig`, `reslab.resolve_config(recipe, **flags)`,
`reslab.evaluate(weights, ...)`, `reslab.predict(weights, images, features=...)` and
`reslab.export(weights, format=...)`. See README.md, "Python API".
"""

import importlib
from typing import Any

# name -> (module, attribute); attribute None: the module itself (callable, see reslab._callable)
_LAZY: dict[str, tuple[str, str | None]] = {
    "ResNet": ("reslab.models", "ResNet"),
    "create_model": ("reslab.models", "create_model"),
    "list_models": ("reslab.models", "list_models"),
    "count_macs": ("reslab.models.analysis", "count_macs"),
    "count_params": ("reslab.models.analysis", "count_params"),
    "layer_stats": ("reslab.models.analysis", "layer_stats"),
    "train": ("reslab.train", None),
    "TrainConfig": ("reslab.train.config", "TrainConfig"),
    "resolve_config": ("reslab.train.config", "resolve_config"),
    "evaluate": ("reslab.evaluate", None),
    "predict": ("reslab.deploy.predict", "predict"),
    "export": ("reslab.deploy.export", "export"),
}

__all__ = ["ResNet", "TrainConfig", "count_macs", "count_params", "create_model", "evaluate", "export",
           "layer_stats", "list_models", "predict", "resolve_config", "train"]


def _version() -> str:
    """The installed distribution's version (importlib.metadata costs 50 ms, so only when asked)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("reslab")
    except PackageNotFoundError:  # a source tree on PYTHONPATH that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return _version()
    if name not in _LAZY:
        raise AttributeError(f"module 'reslab' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"__version__"})
