"""Argument types shared by every `reslab` command: one vocabulary, one message per mistake.

Each function takes the flag's text and returns the parsed value or raises
`argparse.ArgumentTypeError`, which argparse prints as one line naming the flag and the value.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from reslab.metadata import MAX_IMAGE_SIDE


def _show(text: str, limit: int = 60) -> str:
    """The value as an error message quotes it: its repr, cut to `limit` characters (a flag may hold megabytes)."""
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[:limit - 3]}... ({len(text):,} characters)"


def _number(text: str, kind: type) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}. "
                                         f"Received: {_show(text)}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number. Received: {_show(text)}")
    return value


def _checked(text: str, kind: type, ok: Callable[[float], bool], want: str) -> float:
    value = _number(text, kind)
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {want}. Received: {_show(text)}")
    return value


def deprecated(new: str) -> type[argparse.Action]:
    """An argparse action for an old flag name kept for one release: it stores its value where `new`
    does and prints one line saying to use `new`."""
    class Deprecated(argparse.Action):
        def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                     option_string: str | None = None) -> None:
            print(f"reslab: {option_string} is deprecated and will be removed; use {new} (the same meaning)",
                  file=sys.stderr)
            setattr(namespace, self.dest, values)
    return Deprecated


# No count, size or seed reslab takes is larger; bounding every integer flag here keeps a typo such as
# --seed 18446744073709551616 from overflowing a 64-bit field deep inside torch or numpy.
MAX_COUNT = 2**32 - 1


def positive_int(text: str) -> int:
    """An integer in 1..MAX_COUNT (counts, sizes, iterations)."""
    return int(_checked(text, int, lambda v: 1 <= v <= MAX_COUNT, f"a positive integer up to {MAX_COUNT:,}"))


def nonneg_int(text: str) -> int:
    """An integer in 0..MAX_COUNT (seeds, held-out sizes where 0 means none)."""
    return int(_checked(text, int, lambda v: 0 <= v <= MAX_COUNT, f"an integer in 0..{MAX_COUNT:,}"))


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, epochs)."""
    return _checked(text, float, lambda v: v > 0, "a number > 0")


def nonneg_float(text: str) -> float:
    """A finite number >= 0 (weight decay, momentum)."""
    return _checked(text, float, lambda v: v >= 0, "a number >= 0")


def fraction(text: str) -> float:
    """A number in [0, 1) (label smoothing, error thresholds, decay factors below one)."""
    return _checked(text, float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def share(text: str) -> float:
    """A number in (0, 1) (a share of the images)."""
    return _checked(text, float, lambda v: 0 < v < 1, "a share in (0, 1), e.g. 0.2")


def lr_value(text: str) -> float | str:
    """A learning rate > 0, or "find" (lr-find's suggestion)."""
    return "find" if text.strip().lower() == "find" else positive_float(text)


DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
MAX_DURATION_S = 30 * 24 * 3600.0


def duration_seconds(text: str | float) -> float:
    """Seconds of a duration: `600`, `600s`, `10m`, `1.5h` (a bare number is seconds). ValueError names
    the value received and the forms taken."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([smh]?)\s*", str(text), re.IGNORECASE)
        if m is None:
            raise ValueError(f"expected a duration such as 600s, 10m or 1.5h. Received: {str(text)[:60]!r}")
        value = float(m.group(1)) * DURATION_UNITS[(m.group(2) or "s").lower()]
    if not (math.isfinite(value) and 0 < value <= MAX_DURATION_S):
        raise ValueError(f"expected a duration above 0 and at most 30 days, such as 10m. Received: {text!r}")
    return value


def duration(text: str) -> float:
    """Seconds of a duration: 600, 600s, 10m, 1.5h (--time-budget)."""
    try:
        return duration_seconds(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def int_list(text: str) -> tuple[int, ...]:
    """Comma-separated non-negative integers, e.g. '32000,48000'."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 0, e.g. 32000,48000. "
                                         f"Received: {_show(text)}")
    return values


def image_size(text: str) -> tuple[int, int]:
    """SIZE or HxW (e.g. 224 or 32x32), each side in 1..MAX_IMAGE_SIDE; returns (H, W)."""
    try:
        parts = [int(p) for p in text.lower().replace(",", "x").split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1 or max(parts) > MAX_IMAGE_SIDE:
        raise argparse.ArgumentTypeError(f"expected SIZE or HxW with sides 1..{MAX_IMAGE_SIDE}, e.g. 224 or "
                                         f"32x32. Received: {_show(text)}")
    return (parts[0], parts[-1])


def positive_side(text: str) -> int:
    """One image side in 1..MAX_IMAGE_SIDE (square inputs)."""
    value = positive_int(text)
    if value > MAX_IMAGE_SIDE:
        raise argparse.ArgumentTypeError(f"expected a side of 1..{MAX_IMAGE_SIDE}. Received: {_show(text)}")
    return value


def class_list(text: str) -> tuple[int, ...]:
    """'5,6,7', '5-9' or '0,3-5' -> increasing class numbers >= 0 without repeats."""
    out: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            out += range(int(lo), int(hi or lo) + 1)
    except ValueError:
        out = []
    if not out or min(out) < 0 or len(set(out)) != len(out) or out != sorted(out):
        raise argparse.ArgumentTypeError(f"expected increasing class numbers >= 0 without repeats, e.g. 5,6,7 or "
                                         f"5-9. Received: {_show(text)}")
    return tuple(out)


def class_fractions(text: str) -> tuple[tuple[int, float], ...]:
    """CLASSES:FRACTION groups joined by ',' ('5-9:0.1', '5,7:0.1,8:0.5'), each fraction in (0, 1]
    -> ((class, fraction), ...) sorted by class."""
    pairs: dict[int, float] = {}
    pending: list[str] = []  # '5,7:0.1': bare classes join the group that follows
    for token in text.split(","):
        if ":" not in token:
            pending.append(token)
            continue
        spec, frac = token.rsplit(":", 1)
        try:
            f = float(frac)
        except ValueError:
            f = -1.0
        if not 0 < f <= 1:
            raise argparse.ArgumentTypeError(f"expected CLASSES:FRACTION with a fraction in (0, 1], e.g. 5-9:0.1. "
                                             f"Received: {_show(text)}")
        for c in class_list(",".join([*pending, spec])):
            if c in pairs:
                raise argparse.ArgumentTypeError(f"class {c} has two fractions; name each class once. "
                                                 f"Received: {_show(text)}")
            pairs[c] = f
        pending = []
    if pending or not pairs:
        raise argparse.ArgumentTypeError(f"expected CLASSES:FRACTION groups, e.g. 5-9:0.1. Received: {_show(text)}")
    return tuple(sorted(pairs.items()))


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: an integer in lo..hi (a bound for every count that sizes memory, threads or time)."""
    def parse(text: str) -> int:
        return int(_checked(text, int, lambda v: lo <= v <= hi, f"an integer in {lo}..{hi:,}"))
    parse.__name__ = "int_in"
    return parse


def float_in(lo: float, hi: float, *, above: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in [lo, hi] (or (lo, hi] with `above`)."""
    def parse(text: str) -> float:
        ok = (lambda v: lo < v <= hi) if above else (lambda v: lo <= v <= hi)
        return _checked(text, float, ok, f"a number in {'(' if above else '['}{lo:g}, {hi:g}]")
    parse.__name__ = "float_in"
    return parse


def cores() -> int:
    """The CPUs this process may run on (its affinity mask, else the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_count(text: str) -> int:
    """Worker processes or threads: 0..the CPUs this process may use (more only queue behind each other, and
    each costs a fork and its memory)."""
    n = cores()
    return int(_checked(text, int, lambda v: 0 <= v <= n, f"an integer in 0..{n} (this machine's CPUs)"))


def worker_threads(text: str) -> int:
    """Worker threads: 1..the CPUs this process may use."""
    n = cores()
    return int(_checked(text, int, lambda v: 1 <= v <= n, f"an integer in 1..{n} (this machine's CPUs)"))
