"""summary.md: how the runs were trained, the claims with their computed verdicts, the results and figures."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reslab.experiments.claims import Claim, claims_table, count_outcomes
from reslab.experiments.config import ExperimentConfig, budget_warning
from reslab.experiments.records import RunRecord
from reslab.fileio import atomic_write_text
from reslab.hardware import describe_line


@dataclass
class Report:
    """What an experiment's report measured and judged; `write_summary` lays it out."""

    title: str
    claims: list[Claim]
    table: str  # the results table, markdown
    figures: list[str] = field(default_factory=list)  # PNG names inside the experiment folder
    notes: list[str] = field(default_factory=list)  # paragraphs between the claims and the results


def write_summary(folder: Path, cfg: ExperimentConfig, report: Report, records: Sequence[RunRecord]) -> Path:
    """summary.md: the setup, the claims table (verdicts from `report.claims`), the results table and the figures."""
    minutes = sum(r.seconds for r in records) / 60
    data = sorted({r.config.get("data", cfg.data) for r in records}) or [cfg.data]
    warning = budget_warning(cfg.iterations)
    head = [f"- data: {', '.join(data)}; seeds {', '.join(map(str, sorted({r.seed for r in records})))}",
            *training_lines(records), *([f"- **short budget**: {warning}"] if warning else []),
            f"- hardware: {describe_line(_run_device(records))}",
            f"- finished {time.strftime('%Y-%m-%d %H:%M:%S')}; {len(records)} runs, {minutes:.1f} min of training",
            f"- claims: {count_outcomes(report.claims)}"]
    notes = report.notes
    text = "\n".join([f"# {report.title}", "", *head, "", "## Claims", "",
                      "Each verdict is computed from the measured numbers below "
                      "(means over seeds; errors in %).", "", claims_table(report.claims), "",
                      *([*notes, ""] if notes else []), "## Results", "", report.table, "",
                      *[f"![{Path(f).stem}]({f})\n" for f in report.figures]])
    return atomic_write_text(folder / "summary.md", text.rstrip() + "\n")


def training_lines(records: Sequence[RunRecord]) -> list[str]:
    """How the runs were trained, read from their resolved config.json: one line per distinct setup."""
    groups: dict[str, list[str]] = {}
    for r in records:
        names = groups.setdefault(describe_training(r.config), [])
        if r.label not in names:
            names.append(r.label)
    if len(groups) == 1:
        return [f"- training: {setup}" for setup in groups]
    return [f"- training of {', '.join(names)}: {setup}" for setup, names in groups.items()]


def describe_training(config: dict[str, Any]) -> str:
    """One run's schedule and optimiser as run, from its config.json (the `resolved` part wins)."""
    if not config:
        return "unknown (the run has no config.json)"
    resolved = config.get("resolved", {})
    iterations = resolved.get("iterations", config["iterations"])
    parts = [f"{iterations:,} iterations per run (the paper: 64,000)", f"batch {config['batch_size']}",
             _schedule(config, resolved.get("milestones", config["milestones"])),
             f"weight decay {config['weight_decay']:g}, momentum {config['momentum']:g}"]
    warmup = resolved.get("warmup_iters", config.get("warmup_iters", 0))
    if warmup:
        until = config.get("warmup_below")
        parts.append(f"warm-up at lr {config['warmup_lr']:g} for at most {warmup:,} iterations"
                     + (f", until the training error is below {100 * until:g}%" if until else ""))
    return ", ".join(parts)


def _schedule(config: dict[str, Any], milestones: Sequence[int]) -> str:
    lr, gamma = config["lr"], config.get("gamma", 0.1)
    if config.get("schedule") == "plateau":
        return f"lr {lr:g} divided by 10 when the validation error plateaus"
    if config.get("schedule") == "cosine":
        return f"lr {lr:g} on a cosine to 0"
    if not milestones:
        return f"lr {lr:g} throughout"
    at = ", ".join(f"{m:,}" for m in milestones[:-1]) + (" and " if len(milestones) > 1 else "") + f"{milestones[-1]:,}"
    return f"lr {lr:g} {'divided by 10' if gamma == 0.1 else f'times {gamma:g}'} at iterations {at}"


def _run_device(records: Sequence[RunRecord]) -> str | None:
    """The device the runs trained on, from their resolved config.json (None when unknown)."""
    for r in records:
        device = r.config.get("resolved", {}).get("device")
        if device:
            return device
    return None
