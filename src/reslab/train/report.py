"""report.md: what was run, on what, how long it took, and what it reached."""

from __future__ import annotations

import json
import math
import time

import torch

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
    text = f"""# {cfg.model} on {cfg.data}

- command: `{command}`
- finished: {time.strftime('%Y-%m-%d %H:%M:%S')}
- hardware: {describe_line(device)}; device {device}
- time: {seconds / 60:.1f} min for {iterations:,} iterations

## Result

| metric | value |
|---|---|
| best validation error (model selection) | {_percent(best_val, "n/a: no validation images, the last weights")} |
| {split} top-1 error ({view}) | {_percent(test.top1_err)} |
| {split} top-1 accuracy | {_percent(1 - test.top1_err)} |
| {split} top-5 error | {_percent(test.top5_err)} |
| {split} macro-F1 | {_percent(scores.macro_f1 if scores else math.nan)} |
| {split} balanced accuracy | {_percent(scores.balanced_acc if scores else math.nan)} |
| {split} loss | {test.loss:.4f} |
| {split} images | {test.n:,} |

{meaning}{_weights_line(weights, cfg.ema)}

{_per_class_table(test, classes, split)}

![curves](curves.png)

![confusion matrix](confusion.png)
{top_losses}
## Config

```json
{json.dumps(cfg.to_dict(), indent=2, default=list)}
```
"""
    atomic_write_text(run.path / "report.md", text)


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
