"""Pretrained weights by name: `torchvision:resnet50[.IMAGENET1K_V2]` and `timm:resnet18.a1_in1k`.

The files come through the libraries' own download-and-cache code: torchvision's weights enum gives
the URL, torch.hub's downloader puts it in `$TORCH_HOME/hub/checkpoints/` (torch.hub.get_dir());
timm's pretrained_cfg gives the Hugging Face repository, huggingface_hub's cache (`$HF_HOME/hub`)
holds it. They are read with reslab's safe loaders (safetensors, or torch.load(weights_only=True)),
never with a pickle that could run code. Class names and preprocessing (resize, crop, mean, std) come
from the same enum or config. Offline, the error names the missing file, its URL and the path where
placing it makes the command work.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from reslab.data.classnames import IMAGENET_CLASSES, imagenet_classes
from reslab.errors import ReslabError
from reslab.metadata import WeightsMeta

LIBRARIES = ("torchvision", "timm")
_HF_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm's load_state_dict_from_hf looks for, in order


@dataclass(frozen=True)
class Pretrained:
    """A named set of pretrained weights, resolved: the reslab network to build and where the file lies."""

    source: str  # as asked: "torchvision:resnet50", "timm:resnet18.a1_in1k"
    name: str  # fully resolved: "torchvision:resnet50.IMAGENET1K_V2"
    model: str  # the reslab registry name of the architecture
    url: str
    cache_path: Path  # where the file is (or must be placed)
    classes: list[str]
    preprocess: dict[str, Any]  # weights.py's preprocess record: image_size, resize, crop, mean, std, ...


def is_named(source: object) -> bool:
    """Whether `source` names weights (`torchvision:...`, `timm:...`) rather than a path."""
    return isinstance(source, str) and source.partition(":")[0] in LIBRARIES and ":" in source


def resolve(source: str) -> Pretrained:
    """What `source` names, without reading or fetching the file."""
    library, _, name = source.partition(":")
    if library not in LIBRARIES or not name:
        raise ReslabError(f"weights names are torchvision:MODEL[.WEIGHTS] or timm:MODEL.TAG, e.g. "
                          f"torchvision:resnet50 or timm:resnet18.a1_in1k. Received: {source!r}")
    return _torchvision(source, name) if library == "torchvision" else _timm(source, name)


def state_dict(source: str | Pretrained) -> tuple[Pretrained, dict[str, Tensor]]:
    """(the resolved name, its state dict): the cached file, downloaded into the library's cache first
    when missing; a one-line ReslabError naming the file, its URL and the cache path when that fails."""
    from reslab.weights import load_checkpoint_state

    p = resolve(source) if isinstance(source, str) else source
    path = _fetch(p)
    return p, load_checkpoint_state(path)


def build(source: str, *, model: str | None = None, quiet: bool = False,
          **overrides: Any) -> tuple[nn.Module, WeightsMeta]:
    """(the network with the named weights loaded, in eval mode; metadata as `weights.load_weights` gives it).

    `model` (default: the weights' own architecture) must be that architecture; `overrides` are
    create_model's options: another `num_classes` keeps a fresh classifier (its classes then "0" ..
    "N-1"), another `in_chans` adapts the first convolution (`weights.adapt_first_conv`). Notices go to
    stderr unless `quiet`.
    """
    from reslab.models import create_model
    from reslab.weights import FORMAT, VERSION, head_prefix, load_into

    p, state = state_dict(source)
    if model is not None and model != p.model:
        raise ReslabError(f"{p.source} are weights of {p.model}, not {model}; build {p.model}, or name {model}'s "
                          f"weights (torchvision:{model})")
    net = create_model(p.model, **overrides)
    head = head_prefix(net)
    theirs = state.get(f"{head}.weight")
    fresh = theirs is None or tuple(theirs.shape) != tuple(net.state_dict()[f"{head}.weight"].shape)
    notes = load_into(net, state, finetune=fresh)
    outputs = int(net.state_dict()[f"{head}.weight"].shape[0])
    if fresh:
        notes.append(f"classifier {head} ({len(p.classes)} classes) replaced by a new one with {outputs} outputs")
    if not quiet:
        for note in notes:
            print(f"reslab: {p.source}: {note}", file=sys.stderr)
    in_chans = getattr(net, "in_chans", p.preprocess["in_chans"])
    preprocess = dict(p.preprocess, in_chans=in_chans)
    if in_chans != p.preprocess["in_chans"]:  # another channel count: each channel the mean of their statistics
        mean, std = (sum(p.preprocess[k]) / len(p.preprocess[k]) for k in ("mean", "std"))
        preprocess.update(mean=[mean] * in_chans, std=[std] * in_chans)
    meta: WeightsMeta = {"format": FORMAT, "version": VERSION, "model": p.model, "model_kwargs": dict(overrides),
                         "preprocess": preprocess,  # type: ignore[typeddict-item]
                         "classes": [str(i) for i in range(outputs)] if fresh else list(p.classes)}
    return net.eval(), meta


def _check_model(source: str, arch: str) -> str:
    from reslab.models import list_models

    if arch not in list_models():
        raise ReslabError(f"{source}: reslab has no network {arch!r} to load these weights into; name weights of "
                          f"one of {', '.join(list_models('resnet*', family='imagenet'))}")
    return arch


# ---------------------------------------------------------------------------- torchvision
def _torchvision(source: str, name: str) -> Pretrained:
    import torch.hub
    from torchvision.models import get_model_weights

    arch, _, tag = name.partition(".")
    try:
        enum = get_model_weights(arch)
    except ValueError:
        raise ReslabError(f"{source}: torchvision has no model {arch!r}; e.g. torchvision:resnet50") from None
    tags = [w.name for w in enum]
    if tag and tag not in tags:
        raise ReslabError(f"{source}: {enum.__name__} has no weights {tag!r}; choose one of {', '.join(tags)} "
                          f"(or leave it out for the default, {enum.DEFAULT.name})")
    weights = enum[tag] if tag else enum.DEFAULT
    _check_model(source, arch)
    t = weights.transforms()
    crop, resize = int(t.crop_size[0]), int(t.resize_size[0])
    preprocess = {"image_size": crop, "in_chans": 3, "mode": "channel", "mean": list(t.mean), "std": list(t.std),
                  "resize": resize, "crop": crop}
    cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    return Pretrained(source, f"torchvision:{arch}.{weights.name}", arch, weights.url, cache,
                      list(weights.meta["categories"]), preprocess)


# ---------------------------------------------------------------------------- timm
def _timm(source: str, name: str) -> Pretrained:
    try:
        import timm
        from huggingface_hub import constants
    except ImportError:
        raise ReslabError(f"{source}: timm's weights need the timm package (pip install timm); or use "
                          f"torchvision:{name.partition('.')[0]}") from None
    try:
        cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=False)
    except (RuntimeError, ValueError):
        cfg = None
    if cfg is None:
        arch = name.partition(".")[0]
        tags = [n for n in timm.list_pretrained(f"{arch}.*")][:6]
        hint = f"; its weights include {', '.join(tags)}" if tags else "; `timm.list_pretrained()` lists them"
        raise ReslabError(f"{source}: timm has no pretrained weights {name!r}{hint}")
    if not cfg.hf_hub_id:
        raise ReslabError(f"{source}: timm keeps these weights outside the Hugging Face hub ({cfg.url}); reslab reads "
                          f"timm's hub weights only: choose another tag")
    arch = _check_model(source, str(cfg.architecture))
    size = int(cfg.input_size[-1])
    preprocess = {"image_size": size, "in_chans": int(cfg.input_size[0]), "mode": "channel", "mean": list(cfg.mean),
                  "std": list(cfg.std), "resize": math.floor(size / cfg.crop_pct), "crop": size}
    classes = imagenet_classes() if cfg.num_classes == IMAGENET_CLASSES else [str(i) for i in range(cfg.num_classes)]
    repo = cfg.hf_hub_id
    # placing the file under snapshots/main/ works: try_to_load_from_cache reads revision "main" as a folder
    # name when refs/main is missing
    cache = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "snapshots" / "main" / _HF_FILES[0]
    return Pretrained(source, f"timm:{arch}.{cfg.tag}", arch,
                      f"https://huggingface.co/{repo}/resolve/main/{_HF_FILES[0]}", cache, classes, preprocess)


# ---------------------------------------------------------------------------- fetching
def _fetch(p: Pretrained) -> Path:
    if p.name.startswith("torchvision:"):
        return _fetch_torchvision(p)
    return _fetch_hf(p)


def _offline(p: Pretrained, why: str) -> ReslabError:
    return ReslabError(f"{p.source}: {p.cache_path.name} is not in the cache and cannot be downloaded ({why}); "
                       f"download {p.url} and place it at {p.cache_path}")


def _fetch_torchvision(p: Pretrained) -> Path:
    import torch.hub

    if p.cache_path.is_file():
        return p.cache_path
    match = torch.hub.HASH_REGEX.search(p.cache_path.name)  # torchvision's files carry their sha256 prefix
    p.cache_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(p.url, str(p.cache_path), match.group(1) if match else None, progress=True)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; a hash mismatch a RuntimeError
        raise _offline(p, _reason(e)) from None
    return p.cache_path


def _fetch_hf(p: Pretrained) -> Path:
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    repo = p.url.split("huggingface.co/")[1].split("/resolve/")[0]
    for filename in _HF_FILES:
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return Path(found)
    try:
        return Path(hf_hub_download(repo, _HF_FILES[0]))
    except Exception as e:  # huggingface_hub's errors (offline, HTTP, not found) have no common base but Exception
        raise _offline(p, _reason(e)) from None


def _reason(e: BaseException) -> str:
    text = (str(getattr(e, "reason", "")) or str(e)).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:120]
