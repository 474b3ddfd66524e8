"""Class names: ImageNet's for converted 1000-class checkpoints, and `--classes FILE` for any model."""

from __future__ import annotations

from pathlib import Path

from torchvision.models import ResNet50_Weights

from reslab.errors import ReslabError
from reslab.safeparse import MAX_CLASS_FILE_BYTES, check_class_names, load_json, read_text

IMAGENET_CLASSES = 1000


def imagenet_classes() -> list[str]:
    """ImageNet-1k's 1000 class names in index order, as torchvision ships them (no download); every
    torchvision and timm ImageNet-1k checkpoint uses this order."""
    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def read_class_names(path: str | Path) -> list[str]:
    """The names in `path`: a JSON list of strings, or one name per line (blank lines skipped); read with
    safeparse's limits (size, UTF-8, depth, count, name length: `check_class_names`)."""
    p = Path(path)
    hint = "give a text file with one name per line, or a JSON list"
    text = read_text(p, "--classes", limit=MAX_CLASS_FILE_BYTES, hint=hint)
    if text.lstrip().startswith("["):
        names = load_json(text, f"--classes {p}")
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise ReslabError(f"--classes {p}: the JSON list must hold non-empty strings only")
        names = [n.strip() for n in names]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ReslabError(f"--classes {p}: no class names in the file; give one name per line")
    return check_class_names(names, f"--classes {p}")


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
