"""The degradation problem (Section 4.2, Fig. 6, Table 6): deeper plain nets train worse, deeper ResNets better.

Plain and residual CIFAR nets of each depth (default 20 and 56) are trained with the same
recipe and budget. The claims compare the final running training error (defined in
`reslab.experiments.runs`) and the test error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reslab.experiments.claims import PAPER_CIFAR_TEST_ERR, Claim, Stat, by_label, less
from reslab.experiments.config import ExperimentConfig, resolve_depths
from reslab.experiments.records import RunRecord
from reslab.experiments.runs import ExperimentResult, Job, display_name, mean_curve, run_jobs
from reslab.experiments.summary import Report
from reslab.experiments.tables import write_table
from reslab.plotting import pyplot, save_figure

DEFAULT_DEPTHS = (20, 56)
KINDS = ("plain", "resnet")


def degradation_claims(train: dict[str, Stat], test: dict[str, Stat], lo: int, hi: int) -> list[Claim]:
    """The paper's claims about depths `lo` < `hi`, judged on `train` / `test` errors keyed by "plain20", ...."""
    def vs(claim: str, paper: str, subject: str, other: str, stats: dict[str, Stat], *,
           expect: str = "lower") -> Claim:
        gap = less(stats[subject], stats[other])
        held = gap.lower if expect == "lower" else gap.higher
        a, b = display_name(subject), display_name(other)
        return Claim(claim, paper, f"{a} {stats[subject].pct()} vs {b} {stats[other].pct()} ({gap.note})", held,
                     within_noise=gap.within_noise)

    p_lo, p_hi, r_lo, r_hi = f"plain{lo}", f"plain{hi}", f"resnet{lo}", f"resnet{hi}"
    return [
        vs(f"plain-{hi} has higher training error than plain-{lo} (degradation)",
           "Fig. 6 left: plain-56's training error above plain-20's throughout", p_hi, p_lo, train, expect="higher"),
        vs(f"ResNet-{hi} has lower training error than ResNet-{lo}", "Fig. 6 middle: ResNet-56 below ResNet-20",
           r_hi, r_lo, train),
        vs(f"ResNet-{hi} has lower training error than plain-{hi}", "Fig. 6: ResNet-56 far below plain-56",
           r_hi, p_hi, train),
        vs(f"ResNet-{hi} has lower test error than ResNet-{lo}", _paper_pair(hi, lo), r_hi, r_lo, test),
        vs(f"ResNet-{hi} has lower test error than plain-{hi}", "Fig. 6: bold curves", r_hi, p_hi, test),
    ]


def _paper_pair(hi: int, lo: int) -> str:
    if hi in PAPER_CIFAR_TEST_ERR and lo in PAPER_CIFAR_TEST_ERR:
        return f"Table 6 (CIFAR-10): {PAPER_CIFAR_TEST_ERR[hi]}% vs {PAPER_CIFAR_TEST_ERR[lo]}%"
    return "Table 6: deeper ResNets, lower error"


def run_degradation(cfg: ExperimentConfig) -> ExperimentResult:
    """Train plain and residual nets at each depth and seed; write the table, Fig. 6 and summary.md."""
    depths = resolve_depths(cfg, DEFAULT_DEPTHS, plain=True, at_least=2)
    return run_jobs(cfg, degradation_jobs(depths), degradation_report)


def degradation_jobs(depths: Sequence[int]) -> list[Job]:
    """The plain and the residual net of each depth, depth by depth."""
    return [(f"{kind}{d}", f"{kind}{d}", None) for d in depths for kind in KINDS]


def degradation_report(folder: Path, cfg: ExperimentConfig, records: Sequence[RunRecord]) -> Report:
    depths = tuple(sorted(cfg.depths))
    train, test, val = (by_label(records, k) for k in ("train_err", "test_err", "best_val_err"))
    claims = degradation_claims(train, test, depths[0], depths[-1])
    rows = []
    for kind in KINDS:
        for d in depths:
            label = f"{kind}{d}"
            runs = [r for r in records if r.label == label]
            paper = PAPER_CIFAR_TEST_ERR.get(d) if kind == "resnet" else None
            rows.append((display_name(label), d, f"{runs[0].params:,}", train[label].pct(), val[label].pct(),
                         test[label].pct(), f"{paper}%" if paper else "-",
                         f"{sum(r.seconds for r in runs) / 60:.1f}"))
    table = write_table(folder, "table", ("net", "depth", "params", "training error (final)", "best val error",
                                          "test error", "paper test error (CIFAR-10)", "minutes"), rows)
    plot_degradation(records, depths, folder / "degradation.png")
    return Report("Degradation: plain vs residual nets (Fig. 6, Table 6)", claims, table, ["degradation.png"],
                  ["Training error: the mean error of the augmented mini-batches over the last 10% of "
                   "iterations (Fig. 6's thin curves are running training errors). Test error: the "
                   "test set once, with the checkpoint of lowest validation error. The paper trains on "
                   "CIFAR-10 for 64k iterations; its numbers are there for the ordering, not the level."])


def plot_degradation(records: Sequence[RunRecord], depths: Sequence[int], path: Path) -> Path:
    """Fig. 6: one panel per kind (plain | ResNet); training error thin dashed, validation error bold."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    top = 0.0
    for ax, kind in zip(axes, KINDS, strict=True):
        for i, d in enumerate(depths):
            runs = [r for r in records if r.label == f"{kind}{d}"]
            color = colors[i % len(colors)]
            x, y = mean_curve(runs, "iter", "train_err")
            ax.plot(x, y, lw=0.9, ls="--", color=color)
            top = max([top, *y[len(y) // 5:]])
            x, y = mean_curve(runs, "eval", "val_err")
            ax.plot(x, y, lw=2.4, color=color, label=f"{display_name(kind + str(d))}")
            top = max([top, *y[len(y) // 5:]])
        ax.set_title("plain networks" if kind == "plain" else "ResNets")
        ax.set_xlabel("iterations")
        ax.grid(alpha=0.3)
        ax.legend(title="dashed: training, bold: validation", fontsize=9, title_fontsize=8)
    axes[0].set_ylabel("error (%)")
    axes[0].set_ylim(0, min(100.0, 1.3 * top + 1))
    fig.suptitle("Fig. 6 analogue: training error (thin dashed) and validation error (bold)")
    save_figure(fig, path)
    return path

