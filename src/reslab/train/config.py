"""A run's configuration, and its one owner: the fields, the recipes, the layering and the checks.

Layers, the same from the CLI and from Python (`resolve_config`): dataclass defaults, then a recipe,
then a config file (YAML or a run's config.json) or a run being resumed (its config.json, of which only
RESUMABLE fields may change), then the flags given. A recipe's schedule is defined in iterations, as
the paper states it; `iterations` and `epochs` rescale it by one rule (train/schedule.py): milestones
keep their fractions of the run, the warm-up its length in iterations.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reslab import cli_types
from reslab.errors import ReslabError, option
from reslab.metadata import check_model_kwargs as _check_kwargs
from reslab.safeparse import MAX_CONFIG_BYTES, check_class_names, load_json, read_text, shown
from reslab.train.configfile import read_config_file, upgrade_saved
from reslab.train.schedule import paper_warmup, rescale_milestones


@dataclass
class TrainConfig:
    model: str = "resnet20"
    data: str = "fashion-mnist"
    recipe: str = "cifar-paper"
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # variant, shortcut, zero_init_last, ...
    data_dir: str | None = None
    download: bool = False
    val_size: int | None = None  # None: the paper's 5k held out of the training set
    # Optimisation (Section 3.4 / 4.2).
    batch_size: int = 128
    lr: float = 0.1  # given as "find" (LR_FIND): lr-find's sweep first, its suggestion replaces it (lr_find)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    # Schedule, in iterations of the recipe's reference length.
    schedule: str = "step"  # step | plateau | cosine
    iterations: int = 64_000
    milestones: tuple[int, ...] = (32_000, 48_000)
    gamma: float = 0.1
    warmup_iters: int = 0  # lr `warmup_lr` for the first iterations (Section 4.2: ResNet-110); with
    warmup_below: float | None = None  # ... this set, only until the training error is below it (the cap)
    warmup_lr: float = 0.01
    warmup_shape: str = "constant"  # constant (the paper's) | linear: from warmup_lr up to lr (Goyal et al. 2017)
    plateau_patience: int = 3  # evaluations without improvement before lr /= 10 (plateau schedule)
    epochs: float | None = None  # rescale the schedule to this many epochs (train/schedule.py's rule)
    # --time-budget: {"seconds": S}; the run measures its step rate and chooses its whole epochs (at most the
    # length asked), then config.json holds the record of the choice, which a rerun replays (train/budget.py)
    time_budget: dict[str, Any] | None = None
    # Data pipeline.
    normalize: str = "pixel-mean"  # pixel-mean (paper) | channel
    augment: bool = True
    image_size: int | None = None  # folder data: the crop side (None: --init's named weights' own, else 224)
    val_fraction: float | None = None  # folder data: hold out this share of each class of one folder (by seed)
    label_smoothing: float = 0.0  # not in the paper; 0 keeps it faithful
    # Data subsets (data/subset.py), in the dataset's class numbers; empty / None: all the data.
    subset_classes: tuple[int, ...] = ()  # keep these classes, relabelled 0..k-1 (every split)
    per_class: int | None = None  # the first N training images of each class
    class_fraction: tuple[tuple[int, float], ...] = ()  # ((class, fraction), ...) of the training images
    balance: str = "off"  # off | sampler (class-balanced draws) | loss (inverse-frequency weights): train/balance.py
    # Not in the paper, off by default; together with the above in the "modern" recipe (train/mixing.py, ema.py).
    mixup: float = 0.0  # MixUp's Beta(alpha, alpha) (Zhang et al. 2018); 0: off
    cutmix: float = 0.0  # CutMix's alpha (Yun et al. 2019); 0: off; with mixup too, each batch picks one
    wd_bn_bias: str = "on"  # off: no weight decay on BN parameters and biases, the 1-D tensors (Jia et al. 2018)
    ema: float = 0.0  # decay of an exponential moving average of the weights, e.g. 0.999; 0: off
    # Run.
    out: str | None = None
    device: str = "auto"
    seed: int = 0
    workers: int = 2
    eval_every: int = 0  # iterations between validation passes; 0: once per epoch
    log_every: int = 50
    ckpt_every: int = 0  # iterations between last.pt writes; 0: at each evaluation
    amp: str = "auto"  # auto: bf16 autocast on CUDA and bf16-capable CPUs | bf16 | off (fp32, the paper's)
    channels_last: str = "auto"  # auto (= on) | on | off
    compile: str = "off"  # off | default | max-autotune | reduce-overhead (CUDA graphs): torch.compile's mode
    deterministic: bool = False  # deterministic kernels (cuDNN, cuBLAS): bit-identical reruns and resumes on CUDA
    sync_bn: bool = False  # under torchrun: batch statistics over the global batch (SyncBatchNorm)
    ten_crop: bool = False  # final test with 10 views
    quiet: bool = False
    skip_bad: bool = False  # folder data: leave unreadable images out (counted) instead of stopping
    # Fine-tuning (train/finetune.py; not in the paper: fastai's two-phase fine_tune, Howard & Gugger 2020).
    init: str | None = None  # start from these weights (a new run: its own optimiser and schedule)
    freeze: str | None = None  # stages never trained: "stem,layer1" or "all-but-head"
    head_epochs: int = 0  # train only the head for the first epochs, then every stage
    lr_decay_per_stage: float = 1.0  # stage i from the head trains at lr * this**i
    classes: list[str] | None = None  # class names for the run's outputs, instead of the data's
    lr_find: dict[str, Any] | None = None  # lr "find": {"requested": True}, then the run's record of the sweep

    def __post_init__(self) -> None:
        if isinstance(self.compile, bool):  # a bare switch (and configs saved before the modes): True is "default"
            self.compile = "default" if self.compile else "off"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """A saved config (`upgrade_saved`: older ones kept sync_bn in model_kwargs)."""
        known = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**upgrade_saved({k: v for k, v in d.items() if k in known}))
        cfg.milestones = tuple(cfg.milestones)
        cfg.subset_classes = tuple(cfg.subset_classes)
        cfg.class_fraction = tuple((int(c), float(f)) for c, f in cfg.class_fraction)
        return cfg

    @classmethod
    def from_run(cls, run_dir: str | Path, **flags: Any) -> TrainConfig:
        """The config of the run in `run_dir` (its config.json), to resume it: of the flags given (None:
        not given), the RESUMABLE ones apply (a new length rescales the milestones, as for a new run); any
        other that differs from the run's is a ReslabError, since a resumed run keeps its config."""
        path = Path(run_dir) / "config.json"
        if not path.is_file():
            raise ReslabError(f"{run_dir} is not a run directory (no config.json); pass the folder that "
                              "`reslab train` created")
        cfg = _read_run_config(cls, path)
        given = {k: v for k, v in flags.items() if v is not None}
        if "device" not in given:
            _check_saved_device(cfg.device, f"--resume {run_dir}: its config.json")
        saved = cfg.to_dict()
        model_kwargs = given.pop("model_kwargs", None) or {}
        changed = [k for k, v in given.items() if k not in RESUMABLE and saved.get(k) != _saved_form(v)]
        changed += [k for k, v in model_kwargs.items() if cfg.model_kwargs.get(k) != v]
        if changed:
            k = changed[0]
            now, was = given.get(k, model_kwargs.get(k)), saved.get(k, cfg.model_kwargs.get(k))
            raise ReslabError(f"--{k.replace('_', '-')} {now} differs from the run being resumed ({k}={was!r}); a "
                              f"resumed run keeps its config: drop the flag, or start a new run with --out")
        if "iterations" in given:
            cfg.milestones = rescale_milestones(tuple(cfg.milestones), cfg.iterations, given["iterations"])
            cfg.epochs = None
        elif "epochs" in given:
            cfg.epochs = given["epochs"]
        for k in RESUMABLE:
            if k in given and k != "epochs":
                setattr(cfg, k, given[k])
        validate(cfg)
        return cfg



def budget_record(value: Any) -> dict[str, Any]:
    """The `time_budget` field from what a flag or a config file gives: a duration (`10m`, seconds), or a
    run's saved record (a dict with `seconds`, and `measured_iters` once the run chose its length)."""
    if isinstance(value, dict):
        if "seconds" not in value:
            raise ReslabError(f"time_budget must be a duration such as 10m, or a run's record with 'seconds'. "
                              f"Received: time_budget={shown(value)}")
        return {**value, "seconds": cli_types.duration_seconds(value["seconds"])}
    try:
        return {"seconds": cli_types.duration_seconds(value)}
    except ValueError as e:
        raise ReslabError(f"time_budget: {e}") from None


def _read_run_config(cls: type[TrainConfig], path: Path) -> TrainConfig:
    """The config a run saved in `path`, read with the limits of any config file (safeparse) and checked as
    one: a truncated, edited or hostile config.json is one line, and the run's files stay as they are."""
    cannot = "the run cannot resume: start a new run with --out"
    try:
        saved = load_json(read_text(path, "run config", limit=MAX_CONFIG_BYTES, hint=cannot), f"run config {path}")
        if not isinstance(saved, dict):
            raise ReslabError(f"run config {path}: expected a mapping of option: value, got a "
                              f"{type(saved).__name__}")
        cfg = cls.from_dict(saved)
        validate(cfg)
        check_model_size(cfg)
    except ReslabError as e:
        raise ReslabError(f"{e}{'' if cannot in str(e) else f' ({path}); ' + cannot}") from None
    except (ValueError, TypeError) as e:
        raise ReslabError(f"{path} is not a readable run config ({type(e).__name__}: {shown(str(e))}); "
                          f"{cannot}") from None
    return cfg


def _saved_form(value: Any) -> Any:
    """A flag's value as config.json holds it (tuples as lists), to compare the two."""
    if isinstance(value, tuple):
        return [_saved_form(v) for v in value]
    return value


# What may change when a run resumes: its length, where it runs, how it reports.
RESUMABLE = ("iterations", "epochs", "quiet", "device", "workers")


# The paper's recipes. Values not listed keep the dataclass defaults.
RECIPES: dict[str, dict[str, Any]] = {
    # Section 4.2: batch 128, lr 0.1 /10 at 32k and 48k, stop at 64k, wd 1e-4, momentum 0.9.
    "cifar-paper": dict(batch_size=128, lr=0.1, schedule="step", iterations=64_000, milestones=(32_000, 48_000)),
    # Section 3.4: batch 256, lr 0.1 /10 when the (validation) error plateaus, up to 60e4 iterations.
    "imagenet-paper": dict(batch_size=256, lr=0.1, schedule="plateau", iterations=600_000, milestones=(),
                           normalize="channel"),
    # The CIFAR recipe for a short budget (what `make run` trains, docs/results.md "make run"): two departures
    # from Section 4.2, each measured at 11 epochs on Fashion-MNIST: cosine decay instead of the /10 steps
    # (Loshchilov & Hutter 2017; +0.4 points), weight decay 5e-4 instead of 1e-4 (Zagoruyko & Komodakis 2016's
    # CIFAR value; +0.6). Faithful otherwise: batch 128, lr 0.1, momentum 0.9; it trains on the whole training
    # set, as the paper's final CIFAR models do (Section 4.2: the 45k/5k split only chose the schedule), and
    # tests on 10 crops, the paper's test of Section 3.4.
    "cifar-budget": dict(batch_size=128, lr=0.1, schedule="cosine", iterations=64_000, milestones=(),
                         weight_decay=5e-4, val_size=0, ten_crop=True),
    # Not the paper's: what timm and torchvision's reference scripts train with today (README, "Recipes"),
    # on the paper's budget, batch, lr, momentum and weight decay. Cosine decay (Loshchilov & Hutter 2017)
    # after a linear warm-up of 400 iterations from lr 0.01 (Goyal et al. 2017), label smoothing 0.1
    # (Szegedy et al. 2016), MixUp 0.2 or CutMix 1.0 per batch (Zhang et al. 2018; Yun et al. 2019; the
    # alphas of torchvision's recipe), no weight decay on BN and biases (Jia et al. 2018; He et al. 2019),
    # and the EMA of the weights (Polyak averaging; timm's ModelEmaV2) when it beats them on validation.
    "modern": dict(batch_size=128, lr=0.1, schedule="cosine", iterations=64_000, milestones=(), warmup_iters=400,
                   warmup_shape="linear", label_smoothing=0.1, mixup=0.2, cutmix=1.0, wd_bn_bias="off", ema=0.999),
    # Not the paper's: fine-tuning pretrained weights (`--init`), as fastai's fine_tune does it: the head
    # alone for an epoch, then every stage at rates halving per stage from the head, a low lr, cosine decay.
    "finetune": dict(batch_size=64, lr=0.01, schedule="cosine", epochs=10, milestones=(), head_epochs=1,
                     lr_decay_per_stage=0.5),
}
# The values each choice field takes: `validate` checks them, the CLI offers them (one table, torch-free).
CHOICES: dict[str, tuple[str, ...]] = {
    "schedule": ("step", "plateau", "cosine"),
    "normalize": ("pixel-mean", "channel"),
    "warmup_shape": ("constant", "linear"),
    "wd_bn_bias": ("on", "off"),
    "balance": ("off", "sampler", "loss"),
    "amp": ("auto", "bf16", "off"),
    "channels_last": ("auto", "on", "off"),
    "compile": ("off", "default", "max-autotune", "reduce-overhead"),
}


# Every numeric field and the check its value passes, wherever it comes from (a flag, a config file, Python, a
# resumed run's config.json): the flag's own argparse type, so that a config file cannot give what the flag
# refuses (the CLI parser uses these same functions; tests/test_config_limits.py holds the two equal). Fields
# without a flag (gamma, plateau_patience) get the check their meaning asks. workers: a bound only, since
# a config may come from a machine with more CPUs (train/data.py caps it at this machine's at use).
FIELD_CHECKS: dict[str, Callable[[str], Any]] = {
    "batch_size": cli_types.positive_int, "val_size": cli_types.nonneg_int, "lr": cli_types.lr_value,
    "momentum": cli_types.fraction, "weight_decay": cli_types.nonneg_float, "iterations": cli_types.positive_int,
    "gamma": cli_types.float_in(0, 1, above=True), "warmup_iters": cli_types.nonneg_int,
    "warmup_below": cli_types.fraction, "warmup_lr": cli_types.positive_float,
    "plateau_patience": cli_types.nonneg_int, "epochs": cli_types.positive_float,
    "image_size": cli_types.positive_side, "val_fraction": cli_types.share,
    "label_smoothing": cli_types.fraction, "per_class": cli_types.positive_int, "mixup": cli_types.nonneg_float,
    "cutmix": cli_types.nonneg_float, "ema": cli_types.fraction, "seed": cli_types.nonneg_int,
    "workers": cli_types.nonneg_int, "eval_every": cli_types.nonneg_int, "log_every": cli_types.positive_int,
    "ckpt_every": cli_types.nonneg_int, "head_epochs": cli_types.nonneg_int,
    "lr_decay_per_stage": cli_types.positive_float,
}
# List fields: the check of each item (the flags parse lists of these: --milestones, --subset-classes).
ITEM_CHECKS: dict[str, Callable[[str], Any]] = {"milestones": cli_types.nonneg_int,
                                                "subset_classes": cli_types.nonneg_int}
MAX_ITEMS = 1024  # items in a list field: milestones, subset_classes, class_fraction
MAX_CONFIG_TEXT = 4096  # characters in a text field: a path at most (PATH_MAX)


def _check_value(name: str, value: Any, check: Callable[[str], Any]) -> None:
    """`value` passes `check` (a flag's argparse type), or a ReslabError naming the field and the value."""
    import argparse

    if isinstance(value, bool) or not isinstance(value, int | float):
        if not (check is cli_types.lr_value and value == LR_FIND):
            raise ReslabError(f"{name} must be a number. Received: {name}={shown(value)}")
        return
    try:
        check(repr(value))
    except (argparse.ArgumentTypeError, ValueError) as e:  # ValueError: an int of more than 4,300 digits
        want = str(e).split(". Received:")[0].removeprefix("expected ") \
            if isinstance(e, argparse.ArgumentTypeError) else "a smaller number"
        raise ReslabError(f"{name} must be {want}. Received: {name}={shown(value)}") from None


def check_fields(cfg: TrainConfig) -> None:
    """Every numeric field within its flag's range (FIELD_CHECKS, ITEM_CHECKS), every list and text bounded."""
    for name, check in FIELD_CHECKS.items():
        value = getattr(cfg, name)
        if value is not None:
            _check_value(name, value, check)
    for name in ("milestones", "subset_classes", "class_fraction"):
        items = getattr(cfg, name)
        if not isinstance(items, list | tuple) or len(items) > MAX_ITEMS:
            raise ReslabError(f"{name} must be a list of at most {MAX_ITEMS:,} items. Received: {name}={shown(items)}")
        for i, item in enumerate(items):
            if name == "class_fraction":
                if not isinstance(item, list | tuple) or len(item) != 2:
                    raise ReslabError(f"class_fraction must be (class, fraction) pairs, e.g. [[5, 0.1]]. "
                                      f"Received: class_fraction[{i}]={shown(item)}")
                _check_value(f"class_fraction[{i}][0]", item[0], cli_types.nonneg_int)
                _check_value(f"class_fraction[{i}][1]", item[1], cli_types.float_in(0, 1, above=True))
            else:
                _check_value(f"{name}[{i}]", item, ITEM_CHECKS[name])
    for f in dataclasses.fields(TrainConfig):
        value = getattr(cfg, f.name)
        if isinstance(value, str) and len(value) > MAX_CONFIG_TEXT:
            raise ReslabError(f"{f.name} must be at most {MAX_CONFIG_TEXT:,} characters. "
                              f"Received: {f.name}={shown(value)}")
    if cfg.classes is not None:
        check_class_names(cfg.classes, "classes")
    _check_kwargs(cfg.model_kwargs, "model_kwargs", "give the network's options within these limits")


# The most parameters a network built from a config may have: 25 times ResNet-152's 60 M (16 GB of weights,
# gradients and momentum in fp32). Checked on the meta device before anything is allocated.
MAX_PARAMS = 1_500_000_000


def check_model_size(cfg: TrainConfig) -> None:
    """The network `cfg` builds has at most MAX_PARAMS parameters: counted on torch's meta device (shapes
    only, no memory), so that widths of 100,000 are refused before a 360 GB allocation is tried."""
    import torch

    from reslab.models.registry import create_model

    try:
        with torch.device("meta"):
            n = sum(p.numel() for p in create_model(cfg.model, **cfg.model_kwargs).parameters())
    except ReslabError:
        raise
    except (TypeError, ValueError, IndexError, KeyError, RuntimeError) as e:
        raise ReslabError(f"model_kwargs {shown(cfg.model_kwargs)} do not build {cfg.model} "
                          f"({type(e).__name__}: {shown(str(e))}); check them against `reslab models`") from None
    if n > MAX_PARAMS:
        raise ReslabError(f"{cfg.model} with model_kwargs {shown(cfg.model_kwargs)} has {n:,} parameters, more than "
                          f"the {MAX_PARAMS:,} reslab trains; use smaller widths or fewer layers")


def _check_saved_device(device: Any, source: str) -> None:
    """A saved config that names a GPU (where its run trained), replayed on a machine without CUDA: an error that
    says the device came from the file, not from the person's flags."""
    if not str(device or "").startswith("cuda"):
        return
    import torch  # only here: a file that names a GPU, replayed on a machine that may lack one

    if not torch.cuda.is_available():
        raise ReslabError(f"{source} says device {device!r} (where that run trained), and this machine has no CUDA; "
                          f"pass --device cpu (or auto) to run it here")


def resolve_config(recipe: str | None = None, *, file: str | Path | None = None, resume: str | Path | None = None,
                   **flags: Any) -> TrainConfig:
    """A run's config, in layers: dataclass defaults, then `recipe` (default cifar-paper), then `file` (a
    YAML file or a run's config.json: that run again, less its folder) or `resume` (a run directory:
    `TrainConfig.from_run`), then the flags given (None: not given). The CLI's `reslab train` calls this."""
    if flags.get("epochs") is not None and flags.get("iterations") is not None:
        raise ReslabError(f"--epochs {flags['epochs']:g} and --iterations {flags['iterations']} both set the "
                          f"run's length; pass one of them")
    if resume is not None:
        if file is not None:
            raise ReslabError(f"--config {file} and --resume {resume}: a resumed run keeps its own config; drop "
                              "--config")
        return TrainConfig.from_run(resume, recipe=recipe, **flags)
    if file is None:
        return _layered(recipe or "cifar-paper", flags)
    saved = read_config_file(file, TrainConfig)
    given = {k: v for k, v in flags.items() if v is not None and k != "model_kwargs"}
    if "device" not in given:
        _check_saved_device(saved.get("device"), f"--config {file}")
    values = {**saved, **given}
    if "iterations" in given:  # a new length: the file's milestones keep their fractions, its epochs go
        if "milestones" not in given and "milestones" in saved and "iterations" in saved:
            values["milestones"] = rescale_milestones(tuple(saved["milestones"]), saved["iterations"],
                                                      given["iterations"])
        values.pop("epochs", None)
    if ("iterations" in given or "epochs" in given) and isinstance(saved.get("time_budget"), dict) \
            and "time_budget" not in given:  # a new length: the file's budget chooses again, within it
        values["time_budget"] = {"seconds": saved["time_budget"].get("seconds")}
    recipe = recipe or values.pop("recipe", None) or "cifar-paper"
    values.pop("recipe", None)
    values["model_kwargs"] = {**values.get("model_kwargs", {}), **(flags.get("model_kwargs") or {})} or None
    try:
        return _layered(recipe, values)
    except ReslabError as e:
        raise ReslabError(f"{e} (options from --config {file} and the flags given)") from None


def _layered(recipe: str, flags: dict[str, Any]) -> TrainConfig:
    """Defaults, then `recipe`, then `flags` (None means not given)."""
    if recipe not in RECIPES:
        close = difflib.get_close_matches(recipe, list(RECIPES), n=1)
        raise ReslabError(f"unknown recipe {recipe!r}{f' (did you mean {close[0]}?)' if close else ''}; "
                          f"choose one of {', '.join(RECIPES)}")
    values = {**RECIPES[recipe], **{k: v for k, v in flags.items() if v is not None}, "recipe": recipe}
    if values.get("time_budget") is not None:  # a duration (10m, seconds) or a run's record of its choice
        values["time_budget"] = budget_record(values["time_budget"])
    if values.get("lr") == LR_FIND:  # the recipe's lr until the run's sweep replaces it (train/loop.py)
        values.update(lr=RECIPES[recipe].get("lr", TrainConfig.lr), lr_find={"requested": True})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ReslabError(f"unknown training option(s): {', '.join(unknown)}")
    given = {k for k, v in flags.items() if v is not None}
    if "iterations" in given:  # a length in iterations replaces the recipe's length in epochs
        values["epochs"] = flags.get("epochs")
    if "iterations" in given and "milestones" not in given:  # keep the recipe's fractions
        ref = RECIPES[recipe].get("iterations", TrainConfig.iterations)
        ms = RECIPES[recipe].get("milestones", TrainConfig.milestones)
        values["milestones"] = rescale_milestones(ms, ref, values["iterations"])
    cfg = TrainConfig(**values)
    if cfg.data_dir:  # absolute: the run's config.json (evaluate's fallback, --config) works from any directory
        cfg.data_dir = str(Path(cfg.data_dir).expanduser().absolute())
    from reslab.models.registry import model_entry  # the models (and torch) only when a config is built
    from reslab.pretrained import is_named

    if cfg.init and not is_named(cfg.init):  # a path to weights or a run: absolute, like data_dir
        cfg.init = str(Path(cfg.init).expanduser().absolute())

    entry = model_entry(cfg.model)
    if "warmup_iters" not in given and (warmup := paper_warmup(recipe, entry.family, entry.depth)) is not None:
        cfg.warmup_iters = warmup[0]
        if "warmup_below" not in given:
            cfg.warmup_below = warmup[1]
    validate(cfg)
    check_model_size(cfg)
    return cfg


LR_FIND = "find"
EMA_FIRST_SHARE = 0.05  # warn when the first weights still weigh more than this in the EMA at the run's end


def advice(cfg: TrainConfig, iterations: int) -> list[str]:
    """Settings that run but make little sense together, said once at the start of a run."""
    out = []
    if cfg.recipe == "finetune" and not cfg.init:
        out.append(f"--recipe finetune without {option('init')} trains a randomly initialised network, the head "
                   f"alone first, at a fine-tuning lr; start from pretrained weights "
                   f"({option('init', 'torchvision:resnet18')} or a run), or train from scratch with another recipe")
    if cfg.ema and cfg.ema ** iterations > EMA_FIRST_SHARE:
        out.append(f"{option('ema', cfg.ema)} averages over about {1 / (1 - cfg.ema):,.0f} iterations, but the run "
                   f"has {iterations:,}: the starting weights still weigh {cfg.ema ** iterations:.0%} in the average "
                   f"at the end; use a decay of at most {EMA_FIRST_SHARE ** (1 / iterations):.3g}, or no --ema")
    return out


def wants_lr_find(cfg: TrainConfig) -> bool:
    """Whether the run is to choose its lr by lr-find's sweep before it starts (lr "find", not yet run)."""
    return cfg.lr_find is not None and "suggested_lr" not in cfg.lr_find


def validate(cfg: TrainConfig) -> None:
    """Refuse a config that cannot run, naming the value received."""
    def bad(name: str, why: str) -> ReslabError:
        return ReslabError(f"{name} {why}. Received: {name}={shown(getattr(cfg, name))}")

    check_fields(cfg)

    for name in ("batch_size", "iterations", "log_every"):
        if not isinstance(getattr(cfg, name), int) or getattr(cfg, name) < 1:
            raise bad(name, "must be a positive integer")
    if not (isinstance(cfg.lr, int | float) and math.isfinite(cfg.lr) and cfg.lr > 0):
        raise bad("lr", f"must be a positive number, or {LR_FIND!r} to take lr-find's suggestion")
    if not (math.isfinite(cfg.warmup_lr) and cfg.warmup_lr > 0):
        raise bad("warmup_lr", "must be a positive number")
    if cfg.image_size is not None and (not isinstance(cfg.image_size, int) or not 8 <= cfg.image_size <= 4096):
        raise bad("image_size", "must be an image side in 8..4096 pixels")
    if cfg.val_fraction is not None and not 0 < cfg.val_fraction < 1:
        raise bad("val_fraction", "must be a share in (0, 1), e.g. 0.2")
    for name in ("image_size", "val_fraction"):
        if getattr(cfg, name) is not None and cfg.data != "folder":
            raise ReslabError(f"{option(name, getattr(cfg, name))} is for folder data (--data folder); {cfg.data} "
                              f"has its own image size and validation split (val_size)")
    for name in ("weight_decay", "momentum", "label_smoothing", "mixup", "cutmix", "ema"):
        if not (math.isfinite(getattr(cfg, name)) and getattr(cfg, name) >= 0):
            raise bad(name, "must be >= 0")
    if cfg.ema >= 1:
        raise bad("ema", "must be a decay below 1, such as 0.999 (0: off)")
    for name, choices in CHOICES.items():
        if getattr(cfg, name) not in choices:
            raise bad(name, f"must be {', '.join(choices[:-1])} or {choices[-1]}")
    if cfg.warmup_shape == "linear" and cfg.warmup_below is not None:
        raise ReslabError("a linear warm-up has a fixed length: pass --warmup-iters without --warmup-below. "
                          f"Received: warmup_below={cfg.warmup_below}")
    if cfg.epochs is not None and not (cfg.epochs > 0):
        raise bad("epochs", "must be positive")
    if cfg.time_budget is not None:
        budget_record(cfg.time_budget)  # a ReslabError naming the value unless it is a duration's record
    if any(m <= 0 or m >= cfg.iterations for m in cfg.milestones) or list(cfg.milestones) != sorted(cfg.milestones):
        raise bad("milestones", f"must be increasing iterations inside (0, {cfg.iterations})")
    if cfg.warmup_below is not None:
        if not (0 < cfg.warmup_below <= 1):
            raise bad("warmup_below", "must be a training error in (0, 1], e.g. 0.8 (Section 4.2)")
        if cfg.warmup_iters < 1:
            raise ReslabError("warmup_below needs warmup_iters >= 1, the most iterations the warm-up may last. "
                              f"Received: warmup_below={cfg.warmup_below}, warmup_iters={cfg.warmup_iters}")
    _validate_subset(cfg)
    if cfg.head_epochs < 0 or not (0 < cfg.lr_decay_per_stage <= 1):
        raise ReslabError("head_epochs must be >= 0 and lr_decay_per_stage in (0, 1]. "
                          f"Received: {cfg.head_epochs}, {cfg.lr_decay_per_stage}")
    if cfg.warmup_iters < 0 or cfg.eval_every < 0 or cfg.ckpt_every < 0 or cfg.workers < 0:
        raise ReslabError("warmup_iters, eval_every, ckpt_every and workers must be >= 0. "
                          f"Received: {cfg.warmup_iters}, {cfg.eval_every}, {cfg.ckpt_every}, {cfg.workers}")


def _validate_subset(cfg: TrainConfig) -> None:
    """The data-subset fields: class numbers >= 0, increasing; fractions in (0, 1]; a positive count."""
    classes = list(cfg.subset_classes)
    if any(not isinstance(c, int) or c < 0 for c in classes) or classes != sorted(set(classes)):
        raise ReslabError(f"subset_classes must be increasing class numbers >= 0, e.g. 5,6,7,8,9. "
                          f"Received: subset_classes={classes}")
    if cfg.per_class is not None and (not isinstance(cfg.per_class, int) or cfg.per_class < 1):
        raise ReslabError(f"per_class must be a positive integer. Received: per_class={cfg.per_class!r}")
    if any(len(p) != 2 or not 0 < p[1] <= 1 for p in cfg.class_fraction):
        raise ReslabError(f"class_fraction must be (class, fraction) pairs with fractions in (0, 1], e.g. 5-9:0.1. "
                          f"Received: class_fraction={list(cfg.class_fraction)}")
