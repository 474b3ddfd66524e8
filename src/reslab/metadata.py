"""The schema of `model.json`: every field checked for type, range and length before anything uses it.

A weights directory may come from anywhere, so its JSON is read as untrusted: the file's
size, its nesting depth, every field's type and range are checked, and the first problem
is a one-line `ReslabError` naming the field, the value received and what to do. The
limits are far above any real network's (ImageNet-21k has 21,841 classes) and far below
what would exhaust memory.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal, NoReturn, TypedDict, cast

from reslab.errors import ReslabError

MAX_IMAGE_SIDE = 4096  # larger inputs are a typo, not a ResNet input: the activations would not fit in memory

MAX_META_BYTES = 16 * 2**20
MAX_DEPTH = 8  # model.json is three levels deep; anything deeper is not ours
MAX_CLASSES = 100_000
MAX_TEXT = 256  # characters in a class name or an option's text value
MAX_LIST = 16  # entries in a list-valued model option (stage depths, widths)
MAX_OPTION_INT = 100_000
NORM_MODES = ("channel", "pixel-mean")
# evaluate's splits (`reslab evaluate --split`): image folders have no public test labels, both mean root/val
# there (Section 3.4)
EVAL_SPLITS = ("test", "val")


class Preprocess(TypedDict, total=False):
    """model.json's `preprocess`: how an image becomes the network's input (see validate_preprocess)."""

    image_size: int | None
    resize: int | None
    crop: int | None
    in_chans: int
    mode: Literal["channel", "pixel-mean"]  # NORM_MODES
    mean: list[float]
    std: list[float]
    dataset: str
    subset_classes: list[int]  # the source dataset's classes a --classes run kept, in output order
    mean_image: Any  # a Tensor: read from model.safetensors by load_weights, never from model.json
    val_fraction: float  # folder data: the share of each class --val-fraction held out ...
    split_seed: int  # ... chosen by this seed (data/folder.py, held_out_samples)


class WeightsMeta(TypedDict):
    """model.json, as `validate_metadata` returns it: the network, its classes and its preprocessing."""

    format: str
    version: int
    model: str
    model_kwargs: dict[str, Any]
    classes: list[str]
    preprocess: Preprocess
_FIX = "write it again with reslab (save_weights or `reslab convert`)"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Checker:
    """Raises the first problem of one document as 'PATH: field F must be ... Received: V; fix'."""

    def __init__(self, path: Path | str, fix: str = _FIX) -> None:
        self.path, self.fix = path, fix

    def fail(self, field: str, want: str, value: Any) -> NoReturn:
        raise ReslabError(f"{self.path}: field {field!r} must be {want}. Received: {_show(value)}; {self.fix}")

    def integer(self, field: str, value: Any, lo: int, hi: int, *, null: bool = False) -> None:
        if null and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.fail(field, f"an integer in {lo}..{hi}{' or null' if null else ''}", value)

    def text(self, field: str, value: Any, *, longest: int = MAX_TEXT) -> None:
        if not isinstance(value, str) or not 0 < len(value) <= longest:
            self.fail(field, f"a string of 1..{longest} characters", value)

    def numbers(self, field: str, value: Any, n: int, *, positive: bool = False) -> None:
        ok = isinstance(value, list) and len(value) == n and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 or not positive)
            for v in value)
        if not ok:
            self.fail(field, f"a list of {n} finite numbers{' > 0' if positive else ''} (one per channel)", value)


def _depth(obj: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        if isinstance(node, dict):
            stack.extend((v, d + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, d + 1) for v in node)
    return deepest


def parse_metadata(text: str | bytes, path: Path) -> Any:
    """The JSON value of `text`, refusing documents too large or too deeply nested to be model.json."""
    if len(text) > MAX_META_BYTES:
        raise ReslabError(f"{path}: {len(text):,} bytes, more than the {MAX_META_BYTES:,} a model.json may hold; "
                          f"{_FIX}")
    try:
        meta = json.loads(text)
    except RecursionError:
        raise ReslabError(f"{path}: JSON nested too deeply to be a model.json (at most {MAX_DEPTH} levels); "
                          f"{_FIX}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReslabError(f"{path}: not valid JSON ({e}); {_FIX}") from None
    if _depth(meta) > MAX_DEPTH:
        raise ReslabError(f"{path}: JSON nested {_depth(meta)} levels deep, a model.json has at most {MAX_DEPTH}; "
                          f"{_FIX}")
    return meta


def validate_metadata(meta: Any, path: Path, *, format: str, version: int) -> WeightsMeta:
    """`meta` (a parsed model.json) checked field by field; returns it unchanged."""
    c = _Checker(path)
    if not isinstance(meta, dict) or meta.get("format") != format:
        raise ReslabError(f"{path}: not a reslab weights file (format is not {format!r})")
    if meta.get("version") != version:
        raise ReslabError(f"{path}: weights format version {_show(meta.get('version'))}; "
                          f"this reslab reads version {version}")
    c.text("model", meta.get("model"), longest=64)
    _model_kwargs(c, meta.get("model_kwargs"))
    classes = meta.get("classes")
    if not isinstance(classes, list) or not 1 <= len(classes) <= MAX_CLASSES:
        c.fail("classes", f"a list of 1..{MAX_CLASSES:,} class names", classes)
    seen: set[str] = set()
    for i, name in enumerate(classes):
        c.text(f"classes[{i}]", name)
        if name in seen:
            c.fail(f"classes[{i}]", "a name no other class has (each output needs its own)", name)
        seen.add(name)
    validate_preprocess(c, meta.get("preprocess"))
    return cast(WeightsMeta, meta)


def check_model_kwargs(kwargs: Any, where: str, fix: str) -> None:
    """A network's options (model.json's, or a config's `model_kwargs`) within the limits above, before any
    network is built: `where` names their source in the error, `fix` says what to do."""
    _model_kwargs(_Checker(where, fix), kwargs)


def _model_kwargs(c: _Checker, kwargs: Any) -> None:
    if not isinstance(kwargs, dict) or len(kwargs) > 32:
        c.fail("model_kwargs", "an object of at most 32 options", kwargs)
    for key, value in kwargs.items():
        field = f"model_kwargs.{key}"
        if len(key) > 64:
            c.fail("model_kwargs", "an object whose option names have at most 64 characters", key)
        if key == "num_classes":
            c.integer(field, value, 1, MAX_CLASSES)
        elif key == "in_chans":
            c.integer(field, value, 1, 64)
        elif isinstance(value, list):
            if len(value) > MAX_LIST:
                c.fail(field, f"a list of at most {MAX_LIST} integers", value)
            for i, v in enumerate(value):
                c.integer(f"{field}[{i}]", v, 0, 4096)
            if key == "layers" and sum(value) > 1024:  # blocks per stage; ResNet-1202 has 600 in all
                c.fail(field, "blocks per stage adding up to at most 1024", value)
        elif isinstance(value, int) and not isinstance(value, bool):
            c.integer(field, value, -MAX_OPTION_INT, MAX_OPTION_INT)
        elif isinstance(value, float) and not math.isfinite(value):
            c.fail(field, "a finite number", value)
        elif isinstance(value, str):
            c.text(field, value, longest=64)
        elif not (value is None or isinstance(value, (bool, float))):
            c.fail(field, "a number, a string, true/false, null or a list of integers", value)


def validate_preprocess(c: _Checker, pre: Any) -> None:
    """The `preprocess` object: geometry within MAX_IMAGE_SIDE, one mean and one std > 0 per channel."""
    if not isinstance(pre, dict):
        c.fail("preprocess", "an object", pre)
    side = MAX_IMAGE_SIDE
    c.integer("preprocess.image_size", pre.get("image_size"), 1, side, null=True)
    chans = pre.get("in_chans", 3)
    if isinstance(chans, bool) or chans not in (1, 3):
        c.fail("preprocess.in_chans", "1 (grey) or 3 (RGB)", chans)
    c.integer("preprocess.resize", pre.get("resize"), 1, side, null=True)
    c.integer("preprocess.crop", pre.get("crop"), 1, side, null=True)
    if pre.get("image_size") is None and pre.get("crop") is None:
        c.fail("preprocess.image_size", "set (or crop set)", None)
    resize, crop = pre.get("resize"), pre.get("crop")
    if resize is not None and crop is not None and crop > resize:
        c.fail("preprocess.crop", f"at most resize ({resize})", crop)
    size = pre.get("image_size")
    if resize is None and crop is not None and size is not None and crop > size:  # the view would be zero-padded
        c.fail("preprocess.crop", f"at most image_size ({size}) when there is no resize", crop)
    mode = pre.get("mode", "channel")
    if mode not in NORM_MODES:
        c.fail("preprocess.mode", f"one of {', '.join(NORM_MODES)}", mode)
    if mode == "channel" or "mean" in pre:
        c.numbers("preprocess.mean", pre.get("mean"), chans)
    if "std" in pre or mode == "channel":
        c.numbers("preprocess.std", pre.get("std"), chans, positive=True)
    if "dataset" in pre:
        c.text("preprocess.dataset", pre["dataset"], longest=64)
    for key, value in pre.items():
        if not (value is None or isinstance(value, (str, int, float, list))):
            c.fail(f"preprocess.{key}", "a number, a string, null or a list of numbers", value)
