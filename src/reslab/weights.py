"""Weights on disk: reslab's own format and the world's checkpoints.

reslab weights are two files in one directory: `model.safetensors` (the state dict) and
`model.json` (which network to build, its class names and how to preprocess an image).
safetensors holds tensors only, so loading a weights file never runs code. Foreign
checkpoints (torchvision, timm, a training script's `.pth`) are read with
`torch.load(weights_only=True)`, which refuses pickles that would call arbitrary code.
"""

from __future__ import annotations

import json
import math
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn

from reslab.data.classnames import IMAGENET_CLASSES, check_class_count, imagenet_classes
from reslab.errors import ReslabError, option
from reslab.fileio import atomic_write_group
from reslab.metadata import MAX_IMAGE_SIDE, MAX_META_BYTES, Preprocess, WeightsMeta, parse_metadata, validate_metadata
from reslab.models import create_model, model_entry
from reslab.outputs import output_folder

FORMAT, VERSION = "reslab-weights", 1
WEIGHTS_FILE, META_FILE = "model.safetensors", "model.json"
MEAN_IMAGE_KEY = "preprocess.mean_image"
_PREFIX = "preprocess."
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
_WRAPPER_KEYS = ("model", "state_dict", "model_state")
_STRIP_PREFIXES = ("module.", "_orig_mod.")  # DDP, torch.compile
_FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})  # safetensors' names; load_state_dict casts within a kind
_INT_DTYPES = frozenset({"I8", "U8", "I16", "I32", "I64"})
_FIX_META = "write it again with save_weights (or `reslab convert`)"

# torchvision's evaluation transform for its ImageNet weights: resize 256, centre crop 224.
IMAGENET_PREPROCESS: dict[str, Any] = {
    "image_size": 224, "in_chans": 3, "mode": "channel",
    "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "resize": 256, "crop": 224,
}


# ---------------------------------------------------------------------------- reslab format
def save_weights(
    model: nn.Module,
    out_dir: str | Path,
    *,
    model_name: str,
    model_kwargs: dict,
    classes: list[str],
    preprocess: dict,
) -> Path:
    """Write `out_dir/model.safetensors` and `out_dir/model.json`; returns `out_dir`.

    `model_kwargs` are the overrides for `create_model(model_name, **model_kwargs)`.
    A per-pixel mean image in `preprocess["mean_image"]` (C, H, W) is stored as the tensor
    `preprocess.mean_image` in the safetensors file, keeping the JSON small. Both files are
    replaced atomically, so a reader never sees half a file.
    """
    out = Path(out_dir)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta_pre = dict(preprocess)
    mean_image = meta_pre.pop("mean_image", None)
    if mean_image is not None:
        tensors[MEAN_IMAGE_KEY] = torch.as_tensor(mean_image, dtype=torch.float32).contiguous()
    meta = {"format": FORMAT, "version": VERSION, "model": model_name, "model_kwargs": dict(model_kwargs),
            "classes": [str(c) for c in classes], "preprocess": meta_pre}
    try:
        text = json.dumps(meta, indent=2)
    except TypeError as e:
        raise ReslabError(f"model_kwargs and preprocess must be JSON values: {e}") from e
    # Serialised in memory and written as a pair: a full disk keeps both old files (never new weights beside
    # an old model.json), and is an OSError that atomic_write_group can name.
    data = safetensors_bytes(tensors, metadata={"format": FORMAT})
    atomic_write_group([(out / WEIGHTS_FILE, lambda f: f.write(data)),
                        (out / META_FILE, lambda f: f.write((text + "\n").encode()))])
    return out


def resolve_weights(path: str | Path) -> tuple[Path, Path]:
    """(model.safetensors, model.json) for a run directory, a weights directory or the file itself."""
    p = Path(path)
    if p.is_dir():
        st, meta = p / WEIGHTS_FILE, p / META_FILE
        if not st.is_file():
            raise ReslabError(f"{p}: no {WEIGHTS_FILE} in this directory; pass a run or weights directory "
                              f"written by reslab, or convert a checkpoint with `reslab convert`")
    elif p.is_file():
        if p.suffix != ".safetensors":
            raise ReslabError(f"{p}: not reslab weights (expected a directory or a .safetensors file); "
                              f"convert a foreign checkpoint with `reslab convert`")
        st, meta = p, p.with_suffix(".json")
        if not meta.is_file():
            meta = p.with_name(META_FILE)
    else:
        raise ReslabError(f"{p}: no such file or directory")
    if not meta.is_file():
        raise ReslabError(f"{meta}: missing; reslab weights need {META_FILE} beside {st.name}")
    return st, meta


def read_metadata(path: str | Path) -> WeightsMeta:
    """The validated `model.json` of the weights at `path` (without the mean image); see `reslab.metadata`."""
    _, meta_path = resolve_weights(path)
    try:
        size = meta_path.stat().st_size
        if size > MAX_META_BYTES:
            raise ReslabError(f"{meta_path}: {size:,} bytes, more than the {MAX_META_BYTES:,} a model.json may "
                              f"hold; write it again with save_weights")
        text = meta_path.read_bytes()
    except OSError as e:
        raise ReslabError(f"{meta_path}: cannot read ({e.strerror})") from e
    return validate_metadata(parse_metadata(text, meta_path), meta_path, format=FORMAT, version=VERSION)


def load_weights(path: str | Path, *, device: str | torch.device = "cpu") -> tuple[nn.Module, WeightsMeta]:
    """Build the network named in `model.json`, load its state strictly; (model in eval mode, metadata).

    `metadata["preprocess"]["mean_image"]` holds the per-pixel mean (C, H, W) when one was saved.
    The network is first built on the meta device (no memory) and checked against the tensor
    shapes in the file's header, so a hostile model.json cannot make us allocate a network the
    file does not hold. `path` may also name pretrained weights (`torchvision:resnet50`, `timm:resnet18.a1_in1k`;
    reslab.pretrained), fetched into the library's cache when missing.
    """
    from reslab import pretrained

    if pretrained.is_named(path):
        model, meta = pretrained.build(str(path), quiet=True)
        return model.to(device), meta
    st_path, _ = resolve_weights(path)
    meta = read_metadata(path)
    _check_against_file(_build(meta, st_path, torch.device("meta")), meta, st_path)
    try:
        state = load_file(st_path)
    except (SafetensorError, OSError) as e:
        raise ReslabError(f"{st_path}: not a readable safetensors file ({e})") from e
    _check_finite(state, st_path)
    extras = {k[len(_PREFIX):]: state.pop(k) for k in [k for k in state if k.startswith(_PREFIX)]}
    _check_mean_image(extras.get("mean_image"), meta["preprocess"], st_path)
    if "mean_image" in extras:
        meta["preprocess"]["mean_image"] = extras["mean_image"]
    model = _build(meta, st_path, torch.device("cpu"))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        lines = str(e).strip().splitlines()
        detail = lines[1].strip() if len(lines) > 1 else str(e)
        raise ReslabError(f"{st_path}: weights do not match {meta['model']} ({detail})") from e
    return model.to(device).eval(), meta


def _build(meta: WeightsMeta, st_path: Path, device: torch.device) -> nn.Module:

    try:
        with device:
            return create_model(meta["model"], **meta["model_kwargs"])
    except Exception as e:  # the options come from a file, not from code: any failure is the file's
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ReslabError(f"{st_path.with_name(META_FILE)}: cannot build {meta['model']!r} from its model_kwargs "
                          f"({detail}); write it again with save_weights") from e


def _check_against_file(shell: nn.Module, meta: WeightsMeta, st_path: Path) -> None:
    """The file's tensor names and shapes (read from its header) equal the network's; classes name every output."""
    try:
        with safe_open(st_path, "pt") as f:
            slices = {k: f.get_slice(k) for k in f.keys() if not k.startswith(_PREFIX)}  # noqa: SIM118
            shapes = {k: tuple(s.get_shape()) for k, s in slices.items()}
            dtypes = {k: str(s.get_dtype()) for k, s in slices.items()}
    except (SafetensorError, OSError) as e:
        raise ReslabError(f"{st_path}: not a readable safetensors file ({e})") from e
    state = shell.state_dict()
    own = {k: tuple(v.shape) for k, v in state.items()}
    if shapes != own:
        missing = [k for k in own if k not in shapes]
        bad = [k for k in own if k in shapes and shapes[k] != own[k]]
        detail = (f"missing {_few(missing)}" if missing else
                  f"{bad[0]}: file {shapes[bad[0]]} vs model {own[bad[0]]}" if bad else
                  f"unexpected {_few([k for k in shapes if k not in own])}")
        raise ReslabError(f"{st_path}: weights do not match {meta['model']} as model.json describes it ({detail})")
    for k, v in state.items():  # float bytes relabelled as integers (or the reverse) would load as garbage
        kind = _FLOAT_DTYPES if v.is_floating_point() else _INT_DTYPES
        if dtypes[k] not in kind:
            raise ReslabError(f"{st_path}: tensor {k} is stored as {dtypes[k]}, the network holds {v.dtype} there "
                              f"(expected one of {', '.join(sorted(kind))}); the file is damaged or not reslab's")
    head = head_prefix(shell)
    outputs = own.get(f"{head}.weight", (len(meta["classes"]),))[0]
    if len(meta["classes"]) != outputs:
        raise ReslabError(f"{st_path.with_name(META_FILE)}: {len(meta['classes'])} class names for a network with "
                          f"{outputs} outputs; give one name per output in 'classes'")
    chans, net_chans = meta["preprocess"].get("in_chans", 3), getattr(shell, "in_chans", None)
    if net_chans is not None and chans != net_chans:
        raise ReslabError(f"{st_path.with_name(META_FILE)}: preprocess.in_chans is {chans} but {meta['model']} takes "
                          f"{net_chans}-channel images; {_FIX_META}")


def _check_finite(state: Mapping[str, Tensor], st_path: Path) -> None:
    """NaN or inf in a weight would make every prediction NaN (or silently wrong): refused, naming the tensor."""
    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            bad = int((~torch.isfinite(v)).sum())
            raise ReslabError(f"{st_path}: tensor {k} holds {bad:,} NaN or infinite values of {v.numel():,}; "
                              f"these weights are broken (a diverged run?): use an earlier checkpoint or retrain")


def _check_mean_image(mean_image: Tensor | None, pre: Preprocess, st_path: Path) -> None:
    if mean_image is None:
        if pre.get("mode") == "pixel-mean":
            raise ReslabError(f"{st_path}: preprocess mode 'pixel-mean' but no {MEAN_IMAGE_KEY} tensor in the file; "
                              f"write the weights again with save_weights")
        return
    chans = pre.get("in_chans", 3)
    ok = (mean_image.ndim == 3 and mean_image.shape[0] == chans and max(mean_image.shape) <= MAX_IMAGE_SIDE
          and bool(torch.isfinite(mean_image).all()))
    if not ok:
        raise ReslabError(f"{st_path}: {MEAN_IMAGE_KEY} must be a finite ({chans}, H, W) image with sides up to "
                          f"{MAX_IMAGE_SIDE}. Received: shape {tuple(mean_image.shape)}; write the weights again")


# ---------------------------------------------------------------------------- foreign checkpoints
def load_checkpoint_state(path: str | Path) -> dict[str, Tensor]:
    """A flat state dict from a `.safetensors`, `.pth`, `.pt` or `.bin` checkpoint.

    Pickled files are read with `weights_only=True`: tensors, dicts and numbers only. A
    file that needs other globals is refused before any of its code can run. Wrappers
    `{"model": ...}`, `{"state_dict": ...}`, `{"model_state": ...}` are unwrapped and the
    `module.` prefix of DistributedDataParallel is stripped.
    """
    p = Path(path)
    if not p.is_file():
        raise ReslabError(f"{p}: no such checkpoint file")
    if p.suffix not in CHECKPOINT_SUFFIXES:
        raise ReslabError(f"{p}: unknown checkpoint type {p.suffix!r}; "
                          f"expected one of {', '.join(CHECKPOINT_SUFFIXES)}")
    if p.suffix == ".safetensors":
        try:
            obj: Any = load_file(p)
        except (SafetensorError, OSError) as e:
            raise ReslabError(f"{p}: not a readable safetensors file ({e})") from e
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "pickle protocol 4" notes on plain pickles
                obj = torch.load(p, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise ReslabError(f"{p} is not a plain weights file: it would run code when unpickled; "
                              f"save model.state_dict() (or a .safetensors file) where you trust the source") from e
        except Exception as e:  # junk bytes fail in many ways inside the unpickler
            detail = (str(e).strip().splitlines() or [""])[0]
            raise ReslabError(f"{p}: not a readable PyTorch checkpoint ({type(e).__name__}"
                              f"{': ' + detail if detail else ''}); the file is damaged or was not written by "
                              f"torch.save: download it again, or pass the model's .safetensors") from e
    return _flatten_state(obj, p)


def _flatten_state(obj: Any, path: Path) -> dict[str, Tensor]:
    while isinstance(obj, Mapping) and not _is_state(obj):
        key = next((k for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            raise ReslabError(f"{path}: no state dict found; top-level keys are {_few(list(obj))}; expected tensors "
                              f"or one of {', '.join(_WRAPPER_KEYS)}")
        obj = obj[key]
    if not isinstance(obj, Mapping) or not obj:
        raise ReslabError(f"{path}: holds a {type(obj).__name__}, not a state dict of tensors")
    state = {}
    for k, v in obj.items():
        for prefix in _STRIP_PREFIXES:
            if k.startswith(prefix):
                k = k[len(prefix):]
        state[k] = v
    return state


def _is_state(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


def _few(keys: list[str], n: int = 4) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" ... ({len(keys)} in all)" if len(keys) > n else "") if keys else "(none)"


def head_prefix(model: nn.Module) -> str:
    """Dotted name of the classifier: the last nn.Linear (`fc` for ResNet)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return names[-1] if names else ""


def load_into(model: nn.Module, state: Mapping[str, Tensor], *, finetune: bool = False) -> list[str]:
    """Copy a foreign state dict into `model` strictly (torchvision/timm ResNet key layout); returns the
    notices of what was adapted.

    A classifier of another shape is an error naming both shapes, unless `finetune`: then
    everything but the classifier loads strictly and the model keeps its fresh head. A first
    convolution for other input channels is adapted (`adapt_first_conv`). Missing
    `num_batches_tracked` buffers (checkpoints from before PyTorch 0.4.1) are allowed.
    """
    own = model.state_dict()
    head = head_prefix(model)
    is_head = (lambda k: bool(head) and k.startswith(head + "."))  # noqa: E731
    state = dict(state)
    if finetune:
        state = {k: v for k, v in state.items() if not is_head(k)}
    notes = adapt_first_conv(state, own)
    bad_shapes = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    body_bad = [k for k in bad_shapes if not is_head(k)]
    if body_bad:
        shown = "; ".join(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                          for k in body_bad[:3])
        raise ReslabError(f"{len(body_bad)} tensors differ in shape ({shown}); {_shape_hint(body_bad[0], state, own)}")
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")
               and not (finetune and is_head(k))]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ReslabError(f"checkpoint does not match the model: missing {_few(missing)}; "
                          f"unexpected {_few(unexpected)}; {option('model')} must name the network it was trained as")
    if bad_shapes:  # only the classifier differs
        k = bad_shapes[0]
        raise ReslabError(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}; "
                          f"pass {option('finetune', True)} to re-initialise the head, or "
                          f"{option('num_classes', state[k].shape[0])}")
    for k, v in own.items():  # keys the checkpoint may lack: old BN counters, the fresh head
        state.setdefault(k, v)
    model.load_state_dict(state, strict=True)
    return notes


def first_conv(own: Mapping[str, Tensor]) -> str | None:
    """The name of the network's first convolution weight (the first 4-D tensor: `conv1.weight` for a ResNet)."""
    return next((k for k, v in own.items() if v.ndim == 4), None)


def adapt_first_conv(state: dict[str, Tensor], own: Mapping[str, Tensor]) -> list[str]:
    """Fit a first convolution trained on other input channels to the model's, in place, as timm's
    `adapt_input_conv` does: for one channel the weights are summed (a grey image x is the RGB image
    (x, x, x), so sum_c W_c * x is the same response); from fewer channels they are repeated to the
    model's count and scaled by have/want (grey -> RGB: each third, so the response to (x, x, x) is
    W * x again). Only the input-channel dimension may differ. Returns the notice, or []."""
    key = first_conv(own)
    if key is None or key not in state:
        return []
    w, want = state[key], own[key].shape
    if w.ndim != 4 or w.shape[1] == want[1] or (w.shape[0], *w.shape[2:]) != (want[0], *want[2:]):
        return []
    have, to = w.shape[1], want[1]
    if to == 1:
        new = w.sum(dim=1, keepdim=True)
        how = "summed over its input channels"
    else:
        new = w.repeat(1, math.ceil(to / have), 1, 1)[:, :to] * (have / to)
        how = f"repeated to {to} input channels and scaled by {have}/{to}"
    state[key] = new.to(w.dtype)
    return [f"{key} was trained on {have}-channel images, the model takes {to}: its weights {how}, so an image "
            f"whose channels are equal gets the same response"]


def _shape_hint(key: str, state: Mapping[str, Tensor], own: Mapping[str, Tensor]) -> str:
    """What a body tensor of another shape means: the first convolution's input channels, else another network."""
    theirs, mine = tuple(state[key].shape), tuple(own[key].shape)
    if key == first_conv(own) and len(theirs) == len(mine) == 4:
        differs = [what for what, a, b in (("output channels", theirs[0], mine[0]), ("input channels", theirs[1],
                   mine[1]), ("kernel", theirs[2:], mine[2:])) if a != b]
        return (f"the first convolution differs in {' and '.join(differs)}: another stem, so another network; "
                f"{option('model')} must name the network it was trained as")
    return f"another width or depth: {option('model')} must name the network it was trained as"


def convert(
    ckpt_path: str | Path,
    *,
    model: str | None = None,
    out_dir: str | Path,
    num_classes: int | None = None,
    finetune: bool = False,
    classes: list[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Foreign checkpoint -> reslab weights in `out_dir`; returns `out_dir`. Weights already in
    `out_dir` are replaced only with `overwrite`.

    `ckpt_path` may name pretrained weights (`torchvision:resnet50.IMAGENET1K_V2`, `timm:resnet18.a1_in1k`;
    reslab.pretrained): `model` then defaults to theirs, and their class names and preprocessing are kept.
    `num_classes` defaults to `len(classes)` or else the checkpoint's classifier rows.
    The preprocessing recorded is torchvision's ImageNet evaluation transform (resize 256,
    centre crop 224, per-channel mean/std) at the model's design resolution; for the 32x32
    nets, no resize and a 32x32 view. Class names default to ImageNet's for a kept 1000-class
    classifier (`default_class_names`), else "0" .. "N-1".
    """

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ReslabError(f"{option('out', out)} is a file; give a directory for {WEIGHTS_FILE} and {META_FILE}")
    with output_folder(out, WEIGHTS_KIND, overwrite=overwrite, legacy=legacy_weights_files):
        return _convert(ckpt_path, model=model, out=out, num_classes=num_classes, finetune=finetune, classes=classes)


WEIGHTS_KIND = "weights"


def legacy_weights_files(folder: Path) -> list[str] | None:
    """The weights a reslab from before the output marker wrote into `folder` (`convert --out`): a model.json
    of reslab's format beside its model.safetensors, and nothing else; None otherwise."""
    names = {p.name for p in folder.iterdir()} - {".reslab.lock"}
    if names != {WEIGHTS_FILE, META_FILE}:
        return None
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return [WEIGHTS_FILE, META_FILE] if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def _convert(ckpt_path: str | Path, *, model: str | None, out: Path, num_classes: int | None, finetune: bool,
             classes: list[str] | None) -> Path:
    from reslab import pretrained

    if pretrained.is_named(ckpt_path):
        n = len(classes) if classes is not None else num_classes
        net, meta = pretrained.build(str(ckpt_path), model=model, **({"num_classes": n} if n else {}))
        if classes is not None:
            meta["classes"] = check_class_count(list(classes), len(meta["classes"]), str(ckpt_path))
        return save_weights(net, out, model_name=meta["model"], model_kwargs=meta["model_kwargs"],
                            classes=meta["classes"], preprocess=meta["preprocess"])
    if model is None:
        raise ReslabError(f"{ckpt_path}: name the network the checkpoint holds with {option('model')}, e.g. "
                          f"{option('model', 'resnet50')}")
    ckpt = Path(ckpt_path)
    state = load_checkpoint_state(ckpt)
    try:
        entry = model_entry(model)
        probe = create_model(model)
    except ValueError as e:
        raise ReslabError(str(e)) from e
    head = head_prefix(probe)
    ckpt_classes = state[f"{head}.weight"].shape[0] if f"{head}.weight" in state else None
    if num_classes is None:
        num_classes = len(classes) if classes else (ckpt_classes or getattr(probe, "num_classes", 1000))
    if classes is not None and len(classes) != num_classes:
        raise ReslabError(f"{len(classes)} class names for {num_classes} classes; give one name per class")
    net = create_model(model, num_classes=num_classes)
    try:
        load_into(net, state, finetune=finetune)
    except ReslabError as e:
        raise ReslabError(f"{ckpt}: {e}") from e
    size = entry.input_size
    preprocess = dict(IMAGENET_PREPROCESS) if size >= 224 else {
        **IMAGENET_PREPROCESS, "image_size": size, "resize": None, "crop": size}
    preprocess["in_chans"] = getattr(net, "in_chans", 3)
    names = classes if classes is not None else default_class_names(num_classes, ckpt_classes, finetune)
    return save_weights(net.eval(), out, model_name=model, model_kwargs={"num_classes": num_classes},
                        classes=list(names), preprocess=preprocess)


def default_class_names(num_classes: int, ckpt_classes: int | None, finetune: bool) -> list[str]:
    """A foreign checkpoint's 1000-class classifier, kept as it is, is ImageNet-1k's (torchvision's and
    timm's order): its names; any other head is named "0" .. "N-1"."""
    kept = ckpt_classes == num_classes and not finetune
    if kept and num_classes == IMAGENET_CLASSES:
        return imagenet_classes()
    return [str(i) for i in range(num_classes)]


def run_config(path: Path) -> dict[str, Any]:
    """The saved config.json of the run at `path`, or of the run holding `path` as its raw/ or ema/
    weights; {} when there is none (not a run, or an unreadable config.json)."""
    if path.name in ("raw", "ema") and not (path / "config.json").is_file():
        path = path.parent
    try:
        saved = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}
