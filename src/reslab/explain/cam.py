"""Class activation maps: CAM (Zhou et al. 2016) and Grad-CAM / Grad-CAM++ (Selvaraju et al. 2017,
Chattopadhyay et al. 2018).

CAM is exact for a net that ends in global average pooling and one linear layer (every ResNet of
the paper, and GoogLeNet): the map of class c is sum_k w_{c,k} f_k(x, y) over the last features
f, and its spatial mean plus the bias is the class score. Grad-CAM weights any conv layer's maps
by the spatial mean of the class score's gradient; at the last stage of a GAP+FC net that weight is
w_{c,k} / (h w), so Grad-CAM equals ReLU(CAM) up to scale. The gradient methods come from the
`grad-cam` package (optional extra `explain`): a well-kept implementation of a dozen CAM variants.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reslab._callable import make_callable
from reslab.errors import ReslabError
from reslab.modes import eval_mode

METHODS = ("cam", "gradcam", "gradcam++")
# How a map's values become colours. Min-max scaling of each map alone (what the grad-cam package does)
# makes a class at probability 0.00 look as hot as the top class; "prob" (the default) weights each
# map, scaled to [0, 1], by its class's probability; "shared" scales one image's maps by their common
# maximum (raw CAM values, so --method cam only).
SCALES = ("prob", "shared", "per-map")


def _classifier(model: nn.Module) -> nn.Linear | None:
    """The single linear layer after global average pooling, or None when the head is anything else."""
    fc, pool = getattr(model, "fc", None), getattr(model, "avgpool", None)
    if isinstance(fc, nn.Linear) and isinstance(pool, nn.AdaptiveAvgPool2d) and pool.output_size in (1, (1, 1)):
        return fc
    return None


def default_layer(model: nn.Module) -> str:
    """The layer maps are taken from by default: the last stage (ResNet), inception5b (GoogLeNet), or
    the last conv's ReLU before the final pool (AlexNet, VGG: Selvaraju et al. use VGG-16's conv5_3)."""
    names = getattr(model, "stage_names", None)
    if names:
        return names[-1]
    if isinstance(getattr(model, "inception5b", None), nn.Module):
        return "inception5b"
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential):
        relus = [i for i, m in enumerate(features) if isinstance(m, nn.ReLU)]
        if relus:
            return f"features.{relus[-1]}"
    raise ReslabError(f"no default layer for {type(model).__name__}; pass --layer with a module name "
                      "(`reslab summary MODEL` lists them)")


def find_layer(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules or not name:
        close = [n for n in modules if n and (n.startswith(name) or name.startswith(n))][:4]
        hint = f"; close: {', '.join(close)}" if close else f"; e.g. {default_layer(model)}"
        raise ReslabError(f"no layer named {name!r} in {type(model).__name__}{hint}")
    return modules[name]


def _class_index(classes: Tensor | Sequence[int], batch: int) -> Tensor:
    """(B, K) long: a (B, K) tensor as given, or one list of K classes for every image."""
    idx = torch.as_tensor(classes, dtype=torch.long)
    if idx.dim() == 1:
        idx = idx.expand(batch, -1)
    if idx.dim() != 2 or idx.shape[0] != batch:
        raise ReslabError(f"classes must be (B, K) or K indices for a batch of {batch}. "
                          f"Received: shape {tuple(idx.shape)}")
    return idx


def class_activation_maps(model: nn.Module, x: Tensor, classes: Tensor | Sequence[int]) -> Tensor:
    """Exact CAM at the feature resolution: (B, C, H, W) -> (B, K, h, w), M_c = fc.weight[c] @ features.

    `classes` is (B, K) or K indices shared by every image. The spatial mean of M_c plus fc.bias[c]
    is the logit of class c. Needs a GAP + one linear head (ResNet, GoogLeNet); otherwise ReslabError.
    """
    fc = _classifier(model)
    if fc is None:
        raise ReslabError(f"CAM needs global average pooling and one linear layer; {type(model).__name__} has "
                          "another head. Use --method gradcam")
    idx = _class_index(classes, x.shape[0]).to(fc.weight.device)
    with eval_mode(model):
        feats = model.forward_features(x)  # (B, C, h, w)
        return torch.einsum("bkc,bchw->bkhw", fc.weight[idx], feats)


def _upsampled(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, K, h, w) -> (B, K, H, W): the positive part, upsampled (bilinear) to the input size."""
    return F.interpolate(maps.clamp_min(0), size=size, mode="bilinear", align_corners=False)


def _per_map(maps: Tensor) -> Tensor:
    """Each map scaled to [0, 1] by its own min and max, as the grad-cam package scales its maps."""
    lo = maps.amin(dim=(2, 3), keepdim=True)
    return (maps - lo) / (maps.amax(dim=(2, 3), keepdim=True) - lo + 1e-7)


def _shared(maps: Tensor) -> Tensor:
    """One image's K maps scaled to [0, 1] together: by their common min and max."""
    lo = maps.amin(dim=(1, 2, 3), keepdim=True)
    return (maps - lo) / (maps.amax(dim=(1, 2, 3), keepdim=True) - lo + 1e-7)


def _gradient_maps(model: nn.Module, x: Tensor, idx: Tensor, method: str, layer: nn.Module) -> Tensor:
    """(B, K, H, W) maps from the grad-cam package, one backward pass per rank k."""
    try:
        from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError as e:
        raise ReslabError(f"--method {method} needs the grad-cam package: pip install 'reslab[explain]' "
                          "(or use --method cam on a ResNet)") from e
    cls = GradCAM if method == "gradcam" else GradCAMPlusPlus
    out = []
    with eval_mode(model, grad=True), cls(model=model, target_layers=[layer]) as engine:
        for k in range(idx.shape[1]):
            targets = [ClassifierOutputTarget(int(c)) for c in idx[:, k]]
            out.append(torch.from_numpy(engine(input_tensor=x, targets=targets)))
    return torch.stack(out, dim=1).to(x.device)


def class_probs(model: nn.Module, x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, num_classes) softmax probabilities, in evaluation mode."""
    with eval_mode(model):
        return model(x).float().softmax(dim=1)


def cam(model: nn.Module, x: Tensor, classes: Tensor | Sequence[int], *, method: str = "cam",
        layer: str | None = None, scale: str = "prob", probs: Tensor | None = None) -> Tensor:
    """Heat maps of `classes` for the batch `x` (B, C, H, W): (B, K, H, W), each in [0, 1].

    `classes` is (B, K) or K indices for every image; `method` is cam | gradcam | gradcam++;
    `layer` a module name (default: `default_layer(model)`). CAM is defined at the last features
    only; the gradient methods take any layer whose output is a (B, C, h, w) map. `scale` (SCALES):
    prob, each map scaled to [0, 1] and multiplied by its class's probability (`probs`, (B, classes),
    computed when not given); shared, one image's maps by their common min and max (CAM only);
    per-map, each map by its own min and max.
    """
    if method not in METHODS:
        raise ReslabError(f"unknown method. Received: method={method!r}; choose one of {', '.join(METHODS)}")
    if scale not in SCALES:
        raise ReslabError(f"unknown scale. Received: scale={scale!r}; choose one of {', '.join(SCALES)}")
    if scale == "shared" and method != "cam":
        raise ReslabError(f"scale='shared' compares raw CAM values, which only method='cam' has. Received: "
                          f"method={method!r}; use scale='prob' (the default) or 'per-map'")
    idx = _class_index(classes, x.shape[0])
    if method == "cam":
        last = default_layer(model)
        if layer not in (None, last):
            raise ReslabError(f"CAM is defined at the last features ({last}). Received: layer={layer!r}; "
                              "use --method gradcam for other layers")
        raw = _upsampled(class_activation_maps(model, x, idx), tuple(x.shape[-2:]))
        maps = _shared(raw) if scale == "shared" else _per_map(raw)
    else:
        maps = _gradient_maps(model, x, idx, method, find_layer(model, layer or default_layer(model)))
    if scale == "prob":
        p = class_probs(model, x) if probs is None else probs
        maps = maps * p.to(maps.device).gather(1, idx.to(maps.device))[:, :, None, None]
    return maps


make_callable(__name__, cam)  # reslab.explain.cam(model, x, classes) is this module's cam()
