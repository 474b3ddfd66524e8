"""POST /v1/explain: where the network looks, as a PNG (reslab.explain's CAM over the model's view)."""

from __future__ import annotations

import io
import threading

import torch
from PIL import Image
from torch import Tensor, nn

from reslab.deploy.images import preprocess_image
from reslab.errors import ReslabError
from reslab.explain import cam
from reslab.explain.overlay import heat_overlay, model_view
from reslab.metadata import Preprocess, WeightsMeta


def view_box(size: tuple[int, int], preprocess: Preprocess) -> tuple[float, float, float, float]:
    """(left, top, width, height), as fractions of an image of `size` (w, h), of the part the model sees:
    `raw_view`'s geometry. With `resize`, the centre square `crop` of the shorter side at `resize`;
    without, the whole image squashed to `image_size` square, then centre-cropped to `crop`."""
    w, h = size
    crop = int(preprocess.get("crop") or preprocess.get("image_size") or 224)
    resize = preprocess.get("resize")
    if resize:
        side = crop * min(w, h) / int(resize)  # the crop's side in the original's pixels
        fw, fh = min(1.0, side / w), min(1.0, side / h)
    else:
        fw = fh = min(1.0, crop / int(preprocess.get("image_size") or crop))
    return (1 - fw) / 2, (1 - fh) / 2, fw, fh


class Explainer:
    """CAM overlays from the server's eval model, one image at a time (decode threads call it).

    CAM is exact for the GAP + linear head of every ResNet: one forward for the class
    probabilities, one for the map of the class asked for (default: the top-1).
    """

    def __init__(self, model: nn.Module, meta: WeightsMeta) -> None:
        self.model, self.meta = model, meta
        self._lock = threading.Lock()  # one explanation at a time: each is a whole eager forward pass

    def class_index(self, text: str | None, probs: Tensor) -> int:
        """`text` (a class name of model.json, or an index) -> index; None -> the top-1 of `probs` (K,)."""
        classes = self.meta["classes"]
        if text is None:
            return int(probs.argmax())
        if text in classes:
            return classes.index(text)
        index = int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None  # not '²'
        if index is not None and index < probs.shape[0]:
            return index
        shown = repr(text) if len(text) <= 40 else repr(text[:37]) + "..."
        raise ReslabError(f"unknown class. Received: class={shown}; give a class name from model.json or an "
                          f"index below {probs.shape[0]} in ASCII digits")

    def __call__(self, img: Image.Image, class_text: str | None
                 ) -> tuple[bytes, str, float, tuple[float, float, float, float]]:
        """(PNG bytes of the overlay, class name, its probability, `view_box` of the image) for one image.
        The map is scaled as `reslab explain`'s default: to [0, 1], times the class's probability."""
        pre, classes = self.meta["preprocess"], self.meta["classes"]
        x = preprocess_image(img, pre)[None]  # (1, C, H, W)
        with self._lock, torch.no_grad():
            probs = self.model(x).float().softmax(dim=1)[0]
            c = self.class_index(class_text, probs)
            heat = cam(self.model, x, [c], probs=probs[None])[0, 0].numpy()  # (H, W): map x probability
        buf = io.BytesIO()
        heat_overlay(model_view(img, pre), heat).save(buf, "PNG")
        return buf.getvalue(), classes[c] if c < len(classes) else str(c), float(probs[c]), view_box(img.size, pre)
