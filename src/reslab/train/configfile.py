"""`reslab train --config FILE`: a TrainConfig's fields from YAML or from the config.json a run wrote.

Layers, as everywhere in reslab: dataclass defaults, then the recipe, then the file, then the flags
given on the command line. A run's config.json holds every field, resolved, plus what describes the
run that wrote it (`resolved`: the device, amp, lengths it ran with; `out`: its own folder); those
are left out, so `reslab train --config runs/X/config.json` trains X's config again, in a new folder.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any

from reslab.errors import ReslabError
from reslab.safeparse import MAX_CONFIG_BYTES, load_json, load_yaml, read_text, shown

RUN_KEYS = ("resolved",)  # what a run wrote about itself, not a choice to repeat
RUN_PATH_KEYS = ("out",)  # the old run's own folder: a re-created run gets a new one


def upgrade_saved(d: dict[str, Any]) -> dict[str, Any]:
    """A saved config in today's layout: older runs kept sync_bn in model_kwargs, and compile as a bool."""
    d = dict(d)
    if isinstance(d.get("model_kwargs"), dict):
        kwargs = dict(d["model_kwargs"])
        d["sync_bn"] = bool(d.get("sync_bn") or kwargs.pop("sync_bn", False))
        d["model_kwargs"] = kwargs
    if isinstance(d.get("compile"), bool):
        d["compile"] = "default" if d["compile"] else "off"
    return d


def read_config_file(path: str | Path, fields: type) -> dict[str, Any]:
    """The fields of the dataclass `fields` (TrainConfig) that `path` (YAML, or a run's config.json) sets,
    checked key by key: an unknown key or a value of the wrong type is a ReslabError naming the key and
    the file."""
    p = Path(path)
    label = f"--config {p}"
    text = read_text(p, "--config", limit=MAX_CONFIG_BYTES, hint="pass a YAML file or a run's config.json" +
                     (f" (--config {p / 'config.json'})" if p.is_dir() else ""))
    yaml_file = p.suffix.lower() in (".yaml", ".yml")
    if yaml_file:
        values = load_yaml(text, label)
    else:
        try:
            values = load_json(text, label)
        except ReslabError as e:
            raise ReslabError(f"{e} (YAML files end in .yaml or .yml)") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ReslabError(f"{label}: expected a mapping of option: value, got a {type(values).__name__}")
    written_by_run = "resolved" in values
    values = upgrade_saved({k: v for k, v in values.items() if k not in RUN_KEYS})
    if written_by_run:
        values = {k: v for k, v in values.items() if k not in RUN_PATH_KEYS}
    hints = typing.get_type_hints(fields)
    for key, value in list(values.items()):
        if key not in hints:
            close = difflib.get_close_matches(str(key), list(hints), n=1)
            raise ReslabError(f"{label}: unknown option {shown(key)}{f' (did you mean {close[0]}?)' if close else ''}"
                              f"; the options are TrainConfig's fields (README, Training)")
        values[key] = _typed(value, hints[key], key, p, yaml_file)
    return values


def _typed(value: Any, hint: Any, key: str, path: Path, yaml_file: bool) -> Any:
    """`value` as the field's type (int for float, list for tuple), or a ReslabError naming the key."""
    ok, converted = _convert(value, hint, yaml_file)
    if not ok:
        raise ReslabError(f"--config {path}: {key} must be {_describe(hint)}. Received: {key}={shown(value)}")
    return converted


def _convert(value: Any, hint: Any, yaml_file: bool) -> tuple[bool, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for option in args:
            ok, converted = _convert(value, option, yaml_file)
            if ok:
                return True, converted
        return False, value
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        if yaml_file and isinstance(value, str):  # PyYAML (YAML 1.1) reads 1e-3 as a string: it needs 1.0e-3
            try:
                value = float(value)
            except ValueError:
                return False, value
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False, value
        return True, float(value)
    if hint is str:
        return isinstance(value, str), value
    if origin in (tuple, list):
        fixed = origin is tuple and bool(args) and args[-1] is not Ellipsis  # tuple[int, float]: a pair
        if not isinstance(value, list | tuple) or (fixed and len(value) != len(args)):
            return False, value
        kinds = args if fixed else [args[0] if args else Any] * len(value)
        items = [_convert(v, kind, yaml_file) for v, kind in zip(value, kinds, strict=True)]
        return all(ok for ok, _ in items), origin(v for _, v in items)
    if origin is dict:
        return isinstance(value, dict), dict(value) if isinstance(value, dict) else value
    return True, value  # a field type this reader does not know: TrainConfig's validate() decides


def _describe(hint: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list [{', '.join(_describe(a) for a in args)}]"
    if origin in (tuple, list) and args and args[0] in names:
        return f"a list of {_describe(args[0]).removeprefix('an ').removeprefix('a ')}s"
    if origin in (tuple, list):
        return f"a list, each item {_describe(args[0])}" if args else "a list"
    if origin is dict:
        return "a mapping"
    return names.get(hint, str(hint))
