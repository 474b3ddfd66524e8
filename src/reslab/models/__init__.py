"""Networks: residual blocks, the ResNet class, the classic CNNs and the registry."""

from reslab.models.blocks import BasicBlock, Bottleneck, PadShortcut
from reslab.models.registry import ModelEntry, create_model, list_models, model_entry, register_model
from reslab.models.resnet import ResNet, make_stage

__all__ = [
    "BasicBlock", "Bottleneck", "ModelEntry", "PadShortcut", "ResNet", "create_model", "list_models",
    "make_stage", "model_entry", "register_model",
]
