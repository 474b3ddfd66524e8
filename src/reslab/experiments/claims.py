"""Claims of the paper judged on measurements: statistics over seeds, comparisons, the verdicts table.

Every verdict is computed by an experiment's `*_claims` function from `Stat`s; none is
written by hand. A comparison inside the measurement's noise is "within noise", neither held nor
NOT held: with several seeds, a difference no larger than the seeds' spread (the root sum of squares
of the two standard deviations); with one seed, a difference of test errors no larger than the
standard error of that difference (each error a binomial proportion over the test images: about
0.3 points for two errors near 5% on 10,000 images).
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
    """Mean and sample standard deviation over seeds (std 0 for one seed). `se`: with one seed, the
    standard error of the measurement itself where it is known (a test error's binomial one), else 0."""

    mean: float
    std: float
    n: int
    se: float = 0.0

    def pct(self) -> str:
        """As a percentage, with ± std when there is more than one seed."""
        return f"{100 * self.mean:.2f}%" + (f" ± {100 * self.std:.2f}" if self.n > 1 else "")

    def num(self) -> str:
        """Four significant digits, with ± std when there is more than one seed."""
        return f"{self.mean:.4g}" + (f" ± {self.std:.2g}" if self.n > 1 else "")


def stat(values: Sequence[float], se: float = 0.0) -> Stat:
    vals = [float(v) for v in values]
    if not vals:
        raise ReslabError("no values to summarise")
    return Stat(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals),
                se if len(vals) == 1 else 0.0)


def binomial_se(err: float, n: int) -> float:
    """The standard error of an error rate `err` measured on `n` independent images (0 when n is unknown)."""
    return math.sqrt(err * (1 - err) / n) if n > 0 and 0 <= err <= 1 else 0.0


class _Labelled(Protocol):
    label: str


def by_label(records: Sequence[_Labelled], key: str) -> dict[str, Stat]:
    """{label: Stat of `key` ("train_err", "test_err", ...) over that label's seeds}. A test error of one
    seed carries its binomial standard error over the run's test images (`test_n`, where recorded)."""
    groups: dict[str, list[_Labelled]] = {}
    for r in records:
        groups.setdefault(r.label, []).append(r)
    out = {}
    for label, rs in groups.items():
        values = [getattr(r, key) for r in rs]
        se = binomial_se(values[0], getattr(rs[0], "test_n", 0)) if key == "test_err" and len(rs) == 1 else 0.0
        out[label] = stat(values, se)
    return out


@dataclass
class Claim:
    """A claim of the paper, our measurement, the paper's figure, and whether the claim held here."""

    claim: str
    paper: str
    ours: str
    held: bool
    short_budget: bool = False  # judged on runs far shorter than the paper's (config.SHORT_BUDGET)
    within_noise: bool = False  # the difference the claim rests on is inside the noise: no verdict either way

    @property
    def outcome(self) -> str:
        """held | NOT held | within noise."""
        return "within noise" if self.within_noise else "held" if self.held else "NOT held"

    @property
    def verdict(self) -> str:
        return self.outcome + (" (short-budget)" if self.short_budget else "")


@dataclass(frozen=True)
class Gap:
    """How `a` compares with `b`: whether its mean is lower, whether the difference is inside the noise
    band (`noise_band`), and a note saying by how much."""

    lower: bool
    within_noise: bool
    note: str

    @property
    def higher(self) -> bool:
        return not self.lower and not self.note.startswith("equal")


def noise_band(a: Stat, b: Stat) -> tuple[float, str] | None:
    """The noise of the difference a - b, and what it is: the seeds' spread (several seeds), the standard
    error of the difference (one seed, both standard errors known), or None (no estimate)."""
    if max(a.n, b.n) > 1:
        return math.hypot(a.std, b.std), "the seeds' spread"
    if a.se > 0 and b.se > 0:
        return math.hypot(a.se, b.se), "the test set's standard error"
    return None


def less(a: Stat, b: Stat, *, scale: float = 100, unit: str = " pp") -> Gap:
    """Is a lower than b, by how much, and is the difference beyond the noise (`noise_band`)?

    Errors are fractions shown in percentage points (scale 100, " pp"); pass scale=1, unit="" for raw values.
    """
    diff = scale * (b.mean - a.mean)
    note = f"lower by {diff:.3g}{unit}" if diff > 0 else f"higher by {-diff:.3g}{unit}" if diff < 0 else "equal"
    band = noise_band(a, b)
    within = False
    if band is not None:
        width, what = scale * band[0], band[1]
        within = abs(diff) <= width
        note += f", {'within' if within else 'beyond'} {what} {width:.3g}{unit}"
    return Gap(a.mean < b.mean, within, note)


def all_lower(gaps: Sequence[Gap]) -> tuple[bool, bool]:
    """(held, within_noise) of a claim that every one of `gaps` is lower: held when each is lower beyond
    the noise; NOT held when one is higher (or equal) beyond it; otherwise within noise."""
    held = all(g.lower and not g.within_noise for g in gaps)
    against = any(not g.lower and not g.within_noise for g in gaps)
    return held, not held and not against


def count_outcomes(claims: Sequence[Claim]) -> str:
    """"3 of 5 held, 1 within noise"."""
    held = sum(c.outcome == "held" for c in claims)
    noise = sum(c.within_noise for c in claims)
    return f"{held} of {len(claims)} held" + (f", {noise} within noise" if noise else "")


def claims_table(claims: Sequence[Claim]) -> str:
    return markdown_table(("#", "claim", "paper", "ours", "verdict"),
                          [(i, c.claim, c.paper, c.ours, f"**{c.verdict}**") for i, c in enumerate(claims, 1)])
