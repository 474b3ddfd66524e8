"""Networks: residual blocks, the ResNet class, the classic CNNs and the registry.

Importing this package imports every model family, and each family registers its own rows.
"""

# The import order is the order of `list_models()`: the paper's nets first.
# isort: off
from reslab.models.resnet import ResNet, make_stage
from reslab.models import alexnet, vgg, googlenet  # noqa: F401  (each registers its own rows)
# isort: on
from reslab.models.blocks import BasicBlock, Bottleneck, PadShortcut
from reslab.models.registry import ModelEntry, create_model, list_models, model_entry, register_model

__all__ = [
    "BasicBlock", "Bottleneck", "ModelEntry", "PadShortcut", "ResNet", "create_model", "list_models",
    "make_stage", "model_entry", "register_model",
]
