"""report.md: what was run, on what, how long it took, and what it reached."""

from __future__ import annotations

import json
import time

import torch

from reslab.evaluate import EvalResult
from reslab.fileio import atomic_write_text
from reslab.hardware import describe_line
from reslab.train.config import TrainConfig
from reslab.train.rundir import RunDir


def write_report(run: RunDir, cfg: TrainConfig, *, command: str, seconds: float, iterations: int, best_val: float,
                 test: EvalResult, classes: list[str], device: torch.device) -> None:
    per_class = "\n".join(f"| {c} | {100 * a:.2f}% |" for c, a in zip(classes, test.per_class_acc, strict=False))
    view = "10-crop" if cfg.ten_crop else "single view"
    text = f"""# {cfg.model} on {cfg.data}

- command: `{command}`
- finished: {time.strftime('%Y-%m-%d %H:%M:%S')}
- hardware: {describe_line(device)}; device {device}
- time: {seconds / 60:.1f} min for {iterations:,} iterations

## Result

| metric | value |
|---|---|
| best validation error (model selection) | {100 * best_val:.2f}% |
| test top-1 error ({view}) | {100 * test.top1_err:.2f}% |
| test top-1 accuracy | {100 * (1 - test.top1_err):.2f}% |
| test top-5 error | {100 * test.top5_err:.2f}% |
| test loss | {test.loss:.4f} |
| test images | {test.n:,} |

The test set was evaluated once, with the checkpoint of lowest validation error.

| class | test accuracy |
|---|---|
{per_class}

![curves](curves.png)

![confusion matrix](confusion.png)

## Config

```json
{json.dumps(cfg.to_dict(), indent=2, default=list)}
```
"""
    atomic_write_text(run.path / "report.md", text)
