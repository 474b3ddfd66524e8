"""reslab: Deep Residual Learning (He, Zhang, Ren, Sun 2015) as a PyTorch toolkit.

>>> import reslab
>>> model = reslab.create_model("resnet50", variant="v1")
>>> reslab.count_params(model), reslab.count_macs(model, (3, 224, 224))
(25557032, 3858...)
"""

from reslab.analysis import count_macs, count_params, layer_stats
from reslab.models import ResNet, create_model, list_models

__version__ = "0.1.0"
__all__ = ["ResNet", "count_macs", "count_params", "create_model", "layer_stats", "list_models"]
