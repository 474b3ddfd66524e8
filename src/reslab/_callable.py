"""How `reslab.train(config)` and `reslab.evaluate(weights)` can be both functions and modules.

`reslab.train` is a package and `reslab.evaluate` a module, and Python binds a submodule's name on
its parent when it is first imported, so a function of that name in reslab/__init__.py would be
replaced by the module. Instead those two modules get a class whose instances can be called
(the Python reference, "Customizing module attribute access"): `reslab.train(cfg)` runs
`reslab.train.loop.train`, and `reslab.train.loop` is still the module.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from typing import Any


class CallableModule(types.ModuleType):
    """A module that forwards calls to one of its functions."""

    _reslab_call: Callable[..., Any]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._reslab_call(*args, **kwargs)


def make_callable(module_name: str, func: Callable[..., Any]) -> None:
    """Let `sys.modules[module_name](...)` call `func` (its signature and docstring are shown by help())."""
    module = sys.modules[module_name]
    module.__class__ = CallableModule
    module._reslab_call = func  # type: ignore[attr-defined]


def lazy_names(package: str, homes: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's `__getattr__` and `__dir__` (PEP 562) that load each name of `homes` (name -> submodule)
    from `package.submodule` on first use, so that importing the package imports no torch."""
    namespace = sys.modules[package].__dict__

    def getattr_(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{homes[name]}"), name)

    def dir_() -> list[str]:
        return sorted([*namespace, *homes])

    return getattr_, dir_
