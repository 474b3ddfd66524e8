"""Class names: ImageNet's for converted 1000-class checkpoints, and `--classes FILE` for any model."""

from __future__ import annotations

import json
from pathlib import Path

from torchvision.models import ResNet50_Weights

from reslab.errors import ReslabError

IMAGENET_CLASSES = 1000


def imagenet_classes() -> list[str]:
    """ImageNet-1k's 1000 class names in index order, as torchvision ships them (no download); every
    torchvision and timm ImageNet-1k checkpoint uses this order."""
    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def read_class_names(path: str | Path) -> list[str]:
    """The names in `path`: a JSON list of strings, or one name per line (blank lines skipped)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")  # a BOM (Notepad's UTF-8) is not part of the first name
    except (OSError, UnicodeDecodeError) as e:
        raise ReslabError(f"--classes {p}: cannot read class names ({getattr(e, 'strerror', None) or e}); "
                          f"give a text file with one name per line, or a JSON list") from e
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as e:
            raise ReslabError(f"--classes {p}: not a JSON list ({e.msg}, line {e.lineno}); give a JSON list of "
                              f"names, or one name per line") from e
        if not all(isinstance(n, str) and n.strip() for n in names):
            raise ReslabError(f"--classes {p}: the JSON list must hold non-empty strings only")
        return [n.strip() for n in names]
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ReslabError(f"--classes {p}: no class names in the file; give one name per line")
    return names


def check_class_count(names: list[str], outputs: int, what: str) -> list[str]:
    """`names` when there is one per output; else a one-line error naming both counts."""
    if len(names) != outputs:
        shown = ", ".join(n[:40] for n in names[:3]) + (", ..." if len(names) > 3 else "")
        raise ReslabError(f"--classes gives {len(names)} names ({shown}) for {what} with {outputs} outputs; give "
                          f"one name per output")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ReslabError(f"--classes names {name[:40]!r} twice; each output needs its own name")
        seen.add(name)
    return names
