"""Depth (Section 4.2, Table 6): ResNet-20/32/44/56/110, their size, cost and error.

Parameters and multiply-adds are counted twice: for the net as trained here (e.g. one input
channel for Fashion-MNIST at 28x28) and for the paper's CIFAR-10 configuration (3x32x32, 10
classes), whose parameter counts are checked against the paper's.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

from reslab.errors import ReslabError
from reslab.experiments.claims import (
    PAPER_CIFAR_PARAMS,
    PAPER_CIFAR_TEST_ERR,
    Claim,
    Stat,
    all_lower,
    by_label,
    less,
)
from reslab.experiments.config import ExperimentConfig, resolve_depths
from reslab.experiments.records import RunRecord
from reslab.experiments.runs import ExperimentResult, run_jobs
from reslab.experiments.summary import Report
from reslab.experiments.tables import write_table
from reslab.models.analysis import count_macs, count_params
from reslab.models.registry import create_model
from reslab.plotting import pyplot, save_figure
from reslab.weights import load_weights

DEFAULT_DEPTHS = (20, 32, 44, 56, 110)


def cifar10_cost(depth: int) -> tuple[int, int]:
    """(parameters, multiply-adds) of ResNet-`depth` in the paper's CIFAR-10 form (3x32x32, 10 classes)."""
    model = create_model(f"resnet{depth}", num_classes=10, in_chans=3)
    return count_params(model), count_macs(model, (3, 32, 32))


def paper_params_match(depth: int, params: int) -> bool:
    """Whether `params` rounds to the paper's printed count (e.g. 269,722 -> "0.27" M)."""
    printed = PAPER_CIFAR_PARAMS[depth]
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return round(params / 1e6, decimals) == float(printed)


def depth_claims(test: dict[int, Stat], cifar_params: dict[int, int]) -> list[Claim]:
    """Table 6's claims judged on test errors and CIFAR-10 parameter counts keyed by depth."""
    depths = sorted(test)
    if len(depths) < 2:
        raise ReslabError(f"depth compares depths: give at least two. Received: depths={tuple(depths)}")
    paper = [d for d in depths if d in PAPER_CIFAR_TEST_ERR]
    steps = [less(test[b], test[a]) for a, b in pairwise(depths)]
    held, noise = all_lower(steps)
    lower, inside = sum(g.lower for g in steps), sum(g.within_noise for g in steps)
    claims = [
        Claim("test error falls with every step in depth",
              "Table 6: " + ", ".join(f"{d}: {PAPER_CIFAR_TEST_ERR[d]}%" for d in paper),
              ", ".join(f"{d}: {test[d].pct()}" for d in depths) + f" ({lower} of {len(steps)} steps lower"
              + (f"; {inside} within noise" if inside else "") + ")", held, within_noise=noise),
    ]
    lo, hi = depths[0], depths[-1]
    gap = less(test[hi], test[lo])
    claims.append(Claim(f"ResNet-{hi} has lower test error than ResNet-{lo}",
                        f"Table 6: {PAPER_CIFAR_TEST_ERR.get(hi, '-')}% vs {PAPER_CIFAR_TEST_ERR.get(lo, '-')}%",
                        f"{test[hi].pct()} vs {test[lo].pct()} ({gap.note})", gap.lower,
                        within_noise=gap.within_noise))
    claims.append(Claim("parameter counts (CIFAR-10 form) are the paper's",
                        ", ".join(f"{d}: {PAPER_CIFAR_PARAMS[d]}M" for d in depths),
                        ", ".join(f"{d}: {cifar_params[d]:,}" for d in depths),
                        all(paper_params_match(d, cifar_params[d]) for d in depths)))
    return claims


def run_depth(cfg: ExperimentConfig) -> ExperimentResult:
    """Train ResNets of each depth and seed; write the table, a figure and summary.md."""
    depths = resolve_depths(cfg, DEFAULT_DEPTHS, plain=False, at_least=2)
    return run_jobs(cfg, [(f"resnet{d}", f"resnet{d}", None) for d in depths], depth_report)


def depth_report(folder: Path, cfg: ExperimentConfig, records: Sequence[RunRecord]) -> Report:
    depths = tuple(sorted(cfg.depths))
    train, test = by_label(records, "train_err"), by_label(records, "test_err")
    cifar = {d: cifar10_cost(d) for d in depths}
    claims = depth_claims({d: test[f"resnet{d}"] for d in depths}, {d: cifar[d][0] for d in depths})
    rows = []
    for d in depths:
        run = next(r for r in records if r.label == f"resnet{d}")
        model, meta = load_weights(run.run_dir)
        pre = meta["preprocess"]
        side = pre.get("image_size") or 28
        size = (pre.get("in_chans", 1), side, side)
        rows.append((f"ResNet-{d}", d, f"{run.params:,}", f"{count_macs(model, size) / 1e6:.1f}",
                     f"{cifar[d][0]:,}", f"{PAPER_CIFAR_PARAMS[d]}M", f"{cifar[d][1] / 1e6:.1f}",
                     train[f"resnet{d}"].pct(), test[f"resnet{d}"].pct(), f"{PAPER_CIFAR_TEST_ERR[d]}%"))
    in_size = "x".join(map(str, size))
    table = write_table(folder, "table", ("net", "depth", f"params ({in_size})", f"MMACs ({in_size})",
                                          "params (CIFAR-10)", "paper params", "MMACs (3x32x32)",
                                          "training error (final)", "test error", "paper test error"), rows)
    plot_depth(depths, train, test, folder / "depth.png")
    return Report("Depth: ResNet-20 to ResNet-110 (Table 6 analogue)", claims, table, ["depth.png"],
                  ["The paper's errors are CIFAR-10 after 64k iterations; ours are on "
                   f"{cfg.data} after {cfg.iterations:,}. MACs count conv and fc multiply-adds per image "
                   "(the paper's FLOPs). ResNet-110 and deeper warm up at lr 0.01 until the training "
                   "error is below 80%, at most 400 iterations (Section 4.2)."])


def plot_depth(depths: Sequence[int], train: dict[str, Stat], test: dict[str, Stat], path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.errorbar(depths, [100 * test[f"resnet{d}"].mean for d in depths],
                yerr=[100 * test[f"resnet{d}"].std for d in depths], lw=2.2, marker="o", label="test error (ours)")
    ax.plot(depths, [100 * train[f"resnet{d}"].mean for d in depths], lw=0.9, ls="--", marker=".",
            label="training error (ours, final)")
    ax.plot(depths, [PAPER_CIFAR_TEST_ERR[d] for d in depths], lw=1.2, marker="s", color="tab:gray",
            label="paper test error (CIFAR-10, Table 6)")
    ax.set_xscale("log")
    ax.set_xticks(list(depths), [str(d) for d in depths])
    ax.minorticks_off()
    ax.set_xlabel("depth (layers)")
    ax.set_ylabel("error (%)")
    ax.set_title("ResNets of growing depth")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    return path
