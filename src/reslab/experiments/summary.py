"""summary.md: how the runs were trained, the claims with their computed verdicts, the results and figures."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from reslab.experiments.claims import Claim, claims_table
from reslab.experiments.config import ExperimentConfig
from reslab.fileio import atomic_write_text
from reslab.hardware import describe_line

if TYPE_CHECKING:
    from reslab.experiments.runs import RunRecord


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
    held = sum(c.held for c in report.claims)
    minutes = sum(r.seconds for r in records) / 60
    head = [f"- data: {cfg.data}; {cfg.budget:,} iterations per run (the paper: 64,000), batch "
            f"{cfg.batch_size or 128}, lr 0.1 divided by 10 at 50% and 75% of the run (Section 4.2's schedule "
            f"scaled); seeds {', '.join(map(str, cfg.seeds))}",
            f"- hardware: {describe_line(_run_device(records))}",
            f"- finished {time.strftime('%Y-%m-%d %H:%M:%S')}; {len(records)} runs, {minutes:.1f} min of training",
            f"- claims held: {held} of {len(report.claims)}"]
    notes = report.notes
    text = "\n".join([f"# {report.title}", "", *head, "", "## Claims", "",
                      "Each verdict is computed from the measured numbers below "
                      "(means over seeds; errors in %).", "", claims_table(report.claims), "",
                      *([*notes, ""] if notes else []), "## Results", "", report.table, "",
                      *[f"![{Path(f).stem}]({f})\n" for f in report.figures]])
    return atomic_write_text(folder / "summary.md", text.rstrip() + "\n")


def _run_device(records: Sequence[RunRecord]) -> str | None:
    """The device the runs trained on, from their resolved config.json (None when unknown)."""
    for r in records:
        device = r.config.get("resolved", {}).get("device")
        if device:
            return device
    return None
