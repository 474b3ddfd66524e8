"""Claims of the paper judged on measurements: statistics over seeds, comparisons, the verdicts table.

Every verdict is computed by an experiment's `*_claims` function from `Stat`s; none is
written by hand.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from reslab.errors import ReslabError
from reslab.experiments.tables import markdown_table

# Table 6: CIFAR-10 test error (%) of the ResNets (ResNet-110: best of 5 runs; mean 6.61 ± 0.16).
PAPER_CIFAR_TEST_ERR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}
# Section 4.2 / Table 6: parameters (millions, as printed) of the CIFAR-10 ResNets (option A, 3 channels, 10 classes).
PAPER_CIFAR_PARAMS = {20: "0.27", 32: "0.46", 44: "0.66", 56: "0.85", 110: "1.7", 1202: "19.4"}


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation over seeds (std 0 for one seed)."""

    mean: float
    std: float
    n: int

    def pct(self) -> str:
        """As a percentage, with ± std when there is more than one seed."""
        return f"{100 * self.mean:.2f}%" + (f" ± {100 * self.std:.2f}" if self.n > 1 else "")

    def num(self) -> str:
        """Four significant digits, with ± std when there is more than one seed."""
        return f"{self.mean:.4g}" + (f" ± {self.std:.2g}" if self.n > 1 else "")


def stat(values: Sequence[float]) -> Stat:
    vals = [float(v) for v in values]
    if not vals:
        raise ReslabError("no values to summarise")
    return Stat(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals))


class _Labelled(Protocol):
    label: str


def by_label(records: Sequence[_Labelled], key: str) -> dict[str, Stat]:
    """{label: Stat of `key` ("train_err", "test_err", ...) over that label's seeds}."""
    groups: dict[str, list[float]] = {}
    for r in records:
        groups.setdefault(r.label, []).append(getattr(r, key))
    return {label: stat(v) for label, v in groups.items()}


@dataclass
class Claim:
    """A claim of the paper, our measurement, the paper's figure, and whether the claim held here."""

    claim: str
    paper: str
    ours: str
    held: bool
    short_budget: bool = False  # judged on runs far shorter than the paper's (config.SHORT_BUDGET)

    @property
    def verdict(self) -> str:
        return ("held" if self.held else "NOT held") + (" (short-budget)" if self.short_budget else "")


def less(a: Stat, b: Stat, *, scale: float = 100, unit: str = " pp") -> tuple[bool, str]:
    """(a.mean < b.mean, a note saying by how much and whether the gap is beyond the seeds' spread).

    Errors are fractions shown in percentage points (scale 100, " pp"); pass scale=1, unit="" for raw values.
    """
    diff = scale * (b.mean - a.mean)
    note = f"lower by {diff:.3g}{unit}" if diff > 0 else f"higher by {-diff:.3g}{unit}" if diff < 0 else "equal"
    if max(a.n, b.n) > 1:
        spread = scale * math.hypot(a.std, b.std)
        note += f", {'beyond' if abs(diff) > spread else 'within'} the seeds' spread {spread:.3g}{unit}"
    return a.mean < b.mean, note


def claims_table(claims: Sequence[Claim]) -> str:
    return markdown_table(("#", "claim", "paper", "ours", "verdict"),
                          [(i, c.claim, c.paper, c.ours, f"**{c.verdict}**") for i, c in enumerate(claims, 1)])
