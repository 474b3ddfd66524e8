"""report.md: what was run, on what, how long it took, and what it reached."""

from __future__ import annotations

import json
import math
import time

import torch

from reslab.console import plural
from reslab.data.datasets import find_data_dir
from reslab.data.folder import has_test_split
from reslab.evaluate import EvalResult
from reslab.fileio import atomic_write_text
from reslab.hardware import describe_line
from reslab.train.config import TrainConfig
from reslab.train.rundir import RunDir
from reslab.train.toplosses import TOP_LOSSES_PNG


def reported_split(cfg: TrainConfig, selected: bool = True) -> tuple[str, str]:
    """What the final evaluation is called in the report, and the sentence that says what it means;
    `selected` False: no validation images picked a checkpoint (cifar-budget trains on the whole set)."""
    if cfg.data == "folder" and not has_test_split(find_data_dir("folder", cfg.data_dir)):
        return "validation", ("This folder has no test/ split: val/ both picked the checkpoint and is reported "
                              "here, so these are validation numbers (as ImageNet's val numbers are in the paper), "
                              "slightly optimistic for unseen images; add test/<class>/ folders for a held-out test.")
    if not selected:
        return "test", "The test set was evaluated once, with the last weights: no validation images, no selection."
    return "test", "The test set was evaluated once, with the checkpoint of lowest validation error."


def write_report(run: RunDir, cfg: TrainConfig, *, command: str, seconds: float, iterations: int, best_val: float,
                 test: EvalResult, classes: list[str], device: torch.device, weights: str | None = None) -> None:
    """report.md; `weights` (with --ema) names the weights that won on validation, which were tested and saved."""
    view = "10-crop" if cfg.ten_crop else "single view"
    split, meaning = reported_split(cfg, selected=math.isfinite(best_val))
    scores = test.scores if test.n else None
    if scores is not None:
        atomic_write_text(run.path / "test-metrics.json", json.dumps({"split": split, **test.as_dict(classes)},
                                                                     indent=2) + "\n")
    top_losses = f"\n![most confidently wrong]({TOP_LOSSES_PNG})\n" if (run.path / TOP_LOSSES_PNG).exists() else ""
    ran, resolved = as_run(cfg, run)
    top5 = f"| {split} top-5 error | {_percent(test.top5_err)} |\n" if test.has_top5 else ""
    text = f"""# {cfg.model} on {cfg.data}

- command: `{command}`
- finished: {time.strftime('%Y-%m-%d %H:%M:%S')}
- hardware: {describe_line(device)}; device {device}
- time: {seconds / 60:.1f} min for {plural(iterations, "iteration")}

## Result

| metric | value |
|---|---|
| best validation error (model selection) | {_percent(best_val, "n/a: no validation images, the last weights")} |
| {split} top-1 error ({view}) | {_percent(test.top1_err)} |
| {split} top-1 accuracy | {_percent(1 - test.top1_err)} |
{top5}| {split} macro-F1 | {_percent(scores.macro_f1 if scores else math.nan)} |
| {split} balanced accuracy | {_percent(scores.balanced_acc if scores else math.nan)} |
| {split} loss | {test.loss:.4f} |
| {split} images | {test.n:,} |

{meaning}{_weights_line(weights, cfg.ema)}

{_per_class_table(test, classes, split)}

![curves](curves.png)

![confusion matrix](confusion.png)
{top_losses}
## Config

{_what_ran(cfg, ran, resolved.get("steps_per_epoch"))}

The settings as they ran (config.json keeps the fields as given, with what ran under `resolved`):

```json
{json.dumps(ran, indent=2, default=list)}
```
"""
    atomic_write_text(run.path / "report.md", text)


def as_run(cfg: TrainConfig, run: RunDir) -> tuple[dict, dict]:
    """`cfg` as the run used it: the schedule's length, milestones and warm-up from config.json's
    `resolved` (an --epochs run rescales the recipe's 64,000 iterations), and the normalisation that
    model.json records (folder images are normalised per channel whatever `normalize` says); and
    config.json's `resolved` itself."""
    ran = cfg.to_dict()
    resolved = run.read_config().get("resolved", {}) if run.config_path.is_file() else {}
    for key in ("iterations", "milestones", "warmup_iters"):
        if key in resolved:
            ran[key] = resolved[key]
    model_json = run.path / "model.json"
    mode = json.loads(model_json.read_text()).get("preprocess", {}).get("mode") if model_json.is_file() else None
    if mode:
        ran["normalize"] = mode
    return ran, resolved


def _what_ran(cfg: TrainConfig, ran: dict, steps_per_epoch: int | None) -> str:
    """One paragraph: the schedule and the normalisation as they ran, and where they differ from `cfg`."""
    total, milestones = int(ran["iterations"]), list(ran["milestones"])
    length = plural(total, "iteration")
    if cfg.epochs is not None:
        steps = f" of {plural(steps_per_epoch, 'iteration')}" if steps_per_epoch else ""
        epochs = f"{cfg.epochs:g} {'epoch' if cfg.epochs == 1 else 'epochs'}{steps}"
        budget = cfg.time_budget or {}
        if "asked_epochs" in budget:
            epochs += f", of the {budget['asked_epochs']:g} asked, to fit --time-budget {budget['seconds']:g}s"
        length += (f" ({epochs}: the recipe's {cfg.iterations:,}-iteration schedule rescaled"
                   + (f", milestones {', '.join(f'{m:,}' for m in cfg.milestones)}" if cfg.milestones else "") + ")")
    if cfg.schedule == "cosine":
        lr = f"cosine decay of the lr from {_g(cfg.lr)}"
    elif cfg.schedule == "plateau":
        lr = f"lr {_g(cfg.lr)}, divided by {1 / cfg.gamma:g} when the validation error stops improving"
    elif milestones:
        lr = (f"lr {_g(cfg.lr)}, divided by {1 / cfg.gamma:g} at "
              f"{'iteration' if len(milestones) == 1 else 'iterations'} {', '.join(f'{m:,}' for m in milestones)}")
    else:
        lr = f"lr {_g(cfg.lr)}, constant"
    warm = int(ran.get("warmup_iters") or 0)
    if warm:
        lr += (f", after a warm-up at lr {cfg.warmup_lr:g} of {'at most ' if cfg.warmup_below else ''}"
               f"{plural(warm, 'iteration')}")
    norm = ("inputs less the training set's per-pixel mean image" if ran["normalize"] == "pixel-mean"
            else "inputs normalised per channel by a mean and std")
    if ran["normalize"] != cfg.normalize:
        norm += (f", as model.json records (`normalize: {ran['normalize']}`; the config's {cfg.normalize} "
                 f"{'does not apply to folder images' if cfg.data == 'folder' else 'was not used'})")
    return f"What ran: {length}; {lr}; {norm}."


def _g(value: object) -> str:
    """A number as `{:g}` writes it; anything else (an lr still "find") as it is."""
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _per_class_table(test: EvalResult, classes: list[str], split: str) -> str:
    """Per class: images, precision, recall (the class's accuracy) and F1, as a markdown table."""
    head = f"| class | {split} images | precision | recall ({split} accuracy) | F1 |\n|---|---|---|---|---|\n"
    if not test.n:
        return head + f"| (no {split} images) | 0 | n/a | n/a | n/a |"
    s = test.scores
    return head + "\n".join(f"| {c} | {n:,} | {_percent(p)} | {_percent(r)} | {_percent(f)} |"
                             for c, n, p, r, f in zip(classes, s.support, s.precision, s.recall, s.f1, strict=True))


def _weights_line(weights: str | None, decay: float) -> str:
    if weights is None:
        return ""
    return (f"\n\nWeights (`--ema {decay:g}`): {weights}. The winner was tested and saved as model.safetensors; "
            "raw/ and ema/ hold each of the two at the selected checkpoint.")


def _percent(value: float, missing: str = "n/a") -> str:
    """A fraction as "12.34%"; NaN or infinite (nothing was measured) as `missing`, never "nan%"."""
    return f"{100 * value:.2f}%" if math.isfinite(value) else missing
