"""See what a network looks at: CAM for GAP+FC nets, Grad-CAM and Grad-CAM++ for any conv layer.

>>> maps = reslab.explain.cam(model, x, classes)   # x (B, C, H, W), classes (B, K) -> (B, K, H, W) in [0, 1]

By default each map is scaled to [0, 1] and weighted by its class's probability (`scale="prob"`).
"""

from reslab.explain.cam import METHODS, SCALES, cam, class_activation_maps, default_layer

__all__ = ["METHODS", "SCALES", "cam", "class_activation_maps", "default_layer"]
