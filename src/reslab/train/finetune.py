"""Fine-tuning from pretrained weights: `--init`, `--freeze`, and fastai's two phases.

Not in the paper. `--init` starts a new run (its own optimiser and schedule) from reslab weights or a
torchvision / timm checkpoint, read as `reslab convert` reads them (safetensors, or
torch.load(weights_only=True)); a classifier of another shape is replaced by the fresh one built for
the data. `--freeze` keeps stages out of training: their parameters get no gradient and are left out
of the optimiser, and their BatchNorm layers stay in eval mode, so their running statistics stay the
pretrained ones. `--head-epochs K` is fastai's `fine_tune` (Howard & Gugger 2020): the head alone for
K epochs, then every stage, stage i from the head at lr * `--lr-decay-per-stage`**i (discriminative
rates, Howard & Ruder 2018). The phase is a function of the iteration, so a resumed run is in the
phase it was killed in.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from reslab import pretrained
from reslab.console import notice
from reslab.data.classnames import IMAGENET_CLASSES, imagenet_classes
from reslab.errors import ReslabError, option
from reslab.weights import META_FILE, head_prefix, load_checkpoint_state, load_into, load_weights

if TYPE_CHECKING:
    from reslab.train.config import TrainConfig
    from reslab.train.data import TrainData
    from reslab.train.distributed import Dist
    from reslab.train.schedule import Schedule

ALL_BUT_HEAD = "all-but-head"
STEM = ("conv1", "bn1")  # ResNet's stem modules (torchvision's names); maxpool has no parameters


def stage_of(name: str) -> str:
    """The stage of a parameter or module name: "stem" for conv1/bn1, else its top-level module (layer2, fc)."""
    top = name.split(".")[0]
    return "stem" if top in STEM else top


def stage_names(model: nn.Module) -> list[str]:
    """The model's stages in forward order, e.g. ["stem", "layer1", "layer2", "layer3", "fc"]."""
    return list(dict.fromkeys(stage_of(n) for n, _ in model.named_parameters()))


def frozen_stages(spec: str | None, model: nn.Module, model_name: str) -> list[str]:
    """The stages `--freeze` names ("stem,layer1" or "all-but-head"), in forward order."""
    if not spec:
        return []
    names, head = stage_names(model), stage_of(head_prefix(model))
    asked = [s for s in names if s != head] if spec.strip() == ALL_BUT_HEAD else \
        [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [s for s in asked if s not in names]
    if unknown or not asked:
        raise ReslabError(f"--freeze {spec!r}: {model_name} has no stage {(unknown or [spec])[0]!r}; name some of "
                          f"its stages {','.join(names)}, or {ALL_BUT_HEAD}")
    if set(asked) == set(names):
        raise ReslabError(f"--freeze {spec!r} freezes every stage of {model_name}, leaving nothing to train; "
                          f"leave the head out ({ALL_BUT_HEAD})")
    return [s for s in names if s in asked]


def tunes(cfg: TrainConfig) -> bool:
    """Whether any fine-tuning flag changes the optimiser (else it is the paper's, one group)."""
    return bool(cfg.freeze or cfg.head_epochs or cfg.lr_decay_per_stage != 1.0)


def stage_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]] | None:
    """With a fine-tuning flag, the optimiser's groups: one per stage that is not frozen, stage i from
    the head with "lr_scale" `lr_decay_per_stage`**i; else None (one group of every parameter)."""
    if not tunes(cfg):
        return None
    frozen, names = frozen_stages(cfg.freeze, model, cfg.model), stage_names(model)
    return [{"params": [p for n, p in model.named_parameters() if stage_of(n) == stage], "stage": stage,
             "lr_scale": cfg.lr_decay_per_stage ** (len(names) - 1 - i)}
            for i, stage in enumerate(names) if stage not in frozen]


def _eval_only(self: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(self, False)


def hold(model: nn.Module, stages: set[str]) -> None:
    """Parameters of `stages` get no gradient and their BatchNorm layers stay in eval mode whatever
    model.train() says (running statistics frozen); every other stage trains as usual."""
    for name, p in model.named_parameters():
        p.requires_grad_(stage_of(name) not in stages)
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if stage_of(name) in stages:
                m.train = types.MethodType(_eval_only, m)  # type: ignore[method-assign]
            else:
                m.__dict__.pop("train", None)
            m.train(model.training)


def _read_init(source: str | Path) -> tuple[dict[str, Tensor], list[str] | None]:
    """(state dict, class names) of reslab weights or of pretrained weights by name (reslab.pretrained);
    (state dict, None) of a foreign checkpoint."""
    if pretrained.is_named(source):
        named, state = pretrained.state_dict(str(source))
        return state, named.classes
    path = Path(source)
    if not path.exists():
        raise ReslabError("no such file or directory; pass a run or weights directory, a model.safetensors, a "
                          "torchvision/timm checkpoint (.pth, .pt, .bin, .safetensors), or weights by name "
                          "(torchvision:resnet50, timm:resnet18.a1_in1k)")
    reslab = path.is_dir() or (path.suffix == ".safetensors" and (path.with_suffix(".json").is_file()
                                                                   or path.with_name(META_FILE).is_file()))
    if reslab:
        net, meta = load_weights(path)
        return net.state_dict(), meta["classes"]
    return load_checkpoint_state(path), None


def init_weights(model: nn.Module, source: str | Path, data_classes: list[str]) -> tuple[str | None, list[str] | None]:
    """Load `source` into `model` (built for the data). Every tensor must match but the classifier's,
    which is replaced by the model's fresh one when its shape differs or when it is reslab weights'
    for other classes than the data's. A kept 1000-class classifier of a foreign checkpoint (or of
    converted weights) is ImageNet's. Returns (a notice when the classifier was replaced, ImageNet's
    class names when its classifier was kept)."""
    imagenet = imagenet_classes()
    try:
        state, names = _read_init(source)
        head = head_prefix(model)
        own, theirs = model.state_dict()[f"{head}.weight"], state.get(f"{head}.weight")
        other = names is not None and names not in (list(data_classes), imagenet)
        replace = theirs is None or theirs.shape != own.shape or other
        notes = load_into(model, state, finetune=replace)
    except ReslabError as e:
        raise ReslabError(f"{option('init', source)}: {e}") from e
    adapted = "; ".join(f"{option('init', source)}: {n}" for n in notes) or None
    if not replace:
        kept_imagenet = own.shape[0] == IMAGENET_CLASSES and names in (None, imagenet)
        return adapted, imagenet if kept_imagenet else None
    was = "none" if theirs is None else f"{theirs.shape[0]} outputs{' for other classes' if other else ''}"
    return "; ".join(filter(None, [adapted, f"{option('init', source)}: classifier {head} ({was}) replaced by a new "
                                            f"one for the data's {own.shape[0]} classes"])), None


@dataclass
class FineTune:
    """The run's fine-tuning: which stages are held at iteration `it`, applied when that changes."""

    model: nn.Module
    frozen: list[str]  # --freeze: held for the whole run
    body: list[str]  # held too during the head phase: every other stage but the head
    head_iters: int  # iterations of the head phase: --head-epochs x steps per epoch
    main: bool  # rank 0 prints the notices
    head_only: bool | None = None  # the phase applied last; None before the first iteration
    init_classes: list[str] | None = None  # ImageNet's names, where --init kept a 1000-class ImageNet head

    @classmethod
    def setup(cls, cfg: TrainConfig, model: nn.Module, data: TrainData, schedule: Schedule, dist: Dist, *,
              fresh: bool, announce: bool = True) -> FineTune:
        """Check the flags against the model and the run, load `--init` into a new run's model and hold the
        frozen stages (before DDP, which trains what requires a gradient when it starts). `announce=False`:
        print no notice of the set-up (the lr sweep of `train --lr find`, whose run prints the same one)."""
        frozen = frozen_stages(cfg.freeze, model, cfg.model)
        head_iters = cfg.head_epochs * data.batches.steps_per_epoch
        if head_iters >= schedule.total:
            raise ReslabError(f"{option('head_epochs', cfg.head_epochs)} is {head_iters:,} iterations, not shorter "
                              f"than the run's {schedule.total:,}; lower --head-epochs or lengthen the run (--epochs)")
        if head_iters and dist.enabled:
            raise ReslabError(f"--head-epochs {cfg.head_epochs} under torchrun: DDP fixes the trained parameters "
                              f"when it starts; fine-tune in one process, or use --freeze alone")
        notice, names = init_weights(model, cfg.init, data.classes) if cfg.init and fresh else (None, None)
        head = stage_of(head_prefix(model))
        tune = cls(model, frozen, [s for s in stage_names(model) if s not in (head, *frozen)], head_iters, dist.main,
                   init_classes=names)
        if head_iters:
            notice = "; ".join(filter(None, [notice, f"the head ({head}) trains alone for the first "
                                                     f"{head_iters:,} iterations, then every stage"]))
        if announce:
            tune.note(notice)
        hold(model, set(frozen))
        return tune

    def note(self, message: str | None) -> None:
        if message and self.main:
            notice(message)

    def phase(self, it: int) -> None:
        """Hold the stages iteration `it`'s phase holds (the head phase: all but the head; then --freeze's)."""
        head_only = it < self.head_iters
        if head_only != self.head_only:
            hold(self.model, set(self.frozen + (self.body if head_only else [])))
            if self.head_only:
                self.note(f"head phase over after {it:,} iterations: every stage trains from now on")
            self.head_only = head_only
