"""Lesion study (Veit, Wilber, Belongie 2016, Fig. 3-5): remove blocks from trained nets at test time.

Removing a residual block drops its residual branch and keeps its shortcut: y = ReLU(shortcut(x)),
which is y = x for an identity shortcut (x is already a ReLU output) and the parameter-free
subsample-and-pad of option A at a downsampling block. A plain block is replaced by the identity
where its input and output shapes agree; the downsampling blocks cannot be, and are skipped, as
Veit et al. skip them for their VGG-style plain net. The random curve removes k of the blocks that
both kinds can lose (the non-downsampling ones), several draws per k. BN stays in eval mode, so a
removal changes nothing but the removed branch.
"""

from __future__ import annotations

import random
import re
import statistics
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from reslab.errors import ReslabError
from reslab.experiments.claims import Claim
from reslab.experiments.config import ExperimentConfig
from reslab.experiments.runs import ExperimentResult, display_name, finish
from reslab.experiments.summary import Report
from reslab.experiments.tables import write_table
from reslab.experiments.trained import Ticker, dataset_tensors, error_and_loss, fast_eval, from_degradation
from reslab.fileio import atomic_write_text
from reslab.hardware import check_device
from reslab.plotting import pyplot, save_figure
from reslab.weights import load_weights

# Veit et al. (Fig. 3): single deletions from ResNet-110 move its CIFAR-10 error by about a point, the
# downsampling blocks a little more; 5 points is a margin well beyond that and far below a collapse.
MAX_RISE = 0.05
NEAR_CHANCE_MARGIN = 0.15  # "near chance": error within 15 points of chance (75% with 10 classes)
MAX_K_VALUES = 10  # the random curve measures at most this many values of k, spread over 1..n


@dataclass
class LesionConfig(ExperimentConfig):
    name: str = "lesion"
    images: int = 1000  # test images every removal is measured on
    draws: int = 5  # random subsets per number of removed blocks
    draw_seed: int = 0


@dataclass(frozen=True)
class Site:
    """A block that can be removed: its module name ("layer2.0"), whether it changes the shape, and its
    place among all the net's blocks (1-based, forward order)."""

    name: str
    downsampling: bool
    position: int = 0


@dataclass
class Lesion:
    """One net's measurements. Errors are fractions."""

    label: str
    intact: float
    single: list[tuple[Site, float]] = field(default_factory=list)  # error with that block removed
    random: dict[int, list[float]] = field(default_factory=dict)  # k -> error of each draw

    def rises(self) -> list[float]:
        """Error rise of each non-downsampling single removal."""
        return [err - self.intact for site, err in self.single if not site.downsampling]


class _Removed(nn.Module):
    """A block without its residual branch: ReLU(shortcut(x)), or x for a plain block."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: Tensor) -> Tensor:
        if not self.block.residual:
            return x
        return F.relu(x if self.block.downsample is None else self.block.downsample(x))


def _changes_shape(block: nn.Module) -> bool:
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    return any(c.stride != (1, 1) for c in convs) or block.conv1.in_channels != block.last_bn().num_features


def lesion_sites(model: nn.Module) -> list[Site]:
    """Every block of a ResNet or plain net in forward order; plain downsampling blocks are left out."""
    if not getattr(model, "stage_names", None):
        raise ReslabError(f"the lesion study removes blocks of ResNet and plain nets. Received: {type(model).__name__}")
    blocks = [(f"{stage}.{i}", block) for stage in model.stage_names for i, block in enumerate(getattr(model, stage))]
    return [Site(name, _changes_shape(block), pos) for pos, (name, block) in enumerate(blocks, 1)
            if block.residual or not _changes_shape(block)]


@contextmanager
def removed(model: nn.Module, names: Iterable[str]) -> Iterator[nn.Module]:
    """`model` with the blocks `names` ("layer1.2", ...) removed for the duration of the block."""
    allowed = {s.name for s in lesion_sites(model)}
    swaps = []
    for name in names:
        if name not in allowed:
            raise ReslabError(f"block {name!r} cannot be removed from this net. Received: {name!r}; removable: "
                              f"{', '.join(sorted(allowed))}")
        stage, i = name.split(".")
        seq = getattr(model, stage)
        swaps.append((seq, int(i), seq[int(i)]))
        seq[int(i)] = _Removed(seq[int(i)])
    try:
        yield model
    finally:
        for seq, i, block in reversed(swaps):
            seq[i] = block


def k_values(n: int, most: int = MAX_K_VALUES) -> list[int]:
    """Numbers of blocks removed at random: 1..n, thinned to at most `most` values spread evenly."""
    if n <= most:
        return list(range(1, n + 1))
    return sorted({round(1 + i * (n - 1) / (most - 1)) for i in range(most)})


def measure_lesion(model: nn.Module, x: Tensor, y: Tensor, *, label: str, draws: int, seed: int,
                   quiet: bool = False) -> Lesion:
    """Test error of `model` intact, with each removable block removed, and with k blocks removed at random."""
    model = fast_eval(model)
    sites = lesion_sites(model)
    pool = [s.name for s in sites if not s.downsampling]
    ticker = Ticker(f"lesion {label}", 1 + len(sites) + draws * len(k_values(len(pool))), unit="nets",
                    quiet=quiet)

    def error() -> float:
        ticker.tick()
        return error_and_loss(model, x, y)[0]

    result = Lesion(label, error())
    for site in sites:
        with removed(model, [site.name]):
            result.single.append((site, error()))
    rng = random.Random(seed)
    for k in k_values(len(pool)):
        for _ in range(draws):
            with removed(model, rng.sample(pool, k)):
                result.random.setdefault(k, []).append(error())
    return result


def lesion_claims(lesions: dict[str, Lesion], num_classes: int) -> list[Claim]:
    """Veit et al.'s two findings, judged per net: ResNets shrug off one removed block, plain nets collapse."""
    chance = 1 - 1 / num_classes
    claims = []
    for label, les in lesions.items():
        name = display_name(label)
        if label.startswith("resnet") and les.rises():
            worst = max(les.rises())
            claims.append(Claim(f"removing any single non-downsampling block raises {name}'s error by less than "
                                f"{100 * MAX_RISE:.0f} points",
                                "Fig. 3 (ResNet-110, CIFAR-10): single deletions barely change the error",
                                f"largest rise {100 * worst:+.2f} points over {len(les.rises())} blocks (intact "
                                f"{100 * les.intact:.2f}%)", worst < MAX_RISE))
        elif label.startswith("plain") and les.single:
            median = statistics.median(err for _, err in les.single)
            claims.append(Claim(f"removing a single block drives {name} to near chance (median error within "
                                f"{100 * NEAR_CHANCE_MARGIN:.0f} points of {100 * chance:.0f}%)",
                                "Fig. 3 (VGG-style plain net, CIFAR-10): any deleted layer leaves about 90% error",
                                f"median {100 * median:.2f}% over {len(les.single)} blocks (intact "
                                f"{100 * les.intact:.2f}%)", median >= chance - NEAR_CHANCE_MARGIN))
    if not claims:
        raise ReslabError(f"no plain or residual net to judge. Received: {', '.join(lesions) or 'none'}")
    return claims


def run_lesion(cfg: LesionConfig) -> ExperimentResult:
    """Measure the lesion study on the nets of the degradation folder `cfg.from_dir`."""

    if cfg.draws < 1:
        raise ReslabError(f"draws must be a positive integer. Received: draws={cfg.draws!r}")
    with from_degradation(cfg) as (folder, records):
        lesions: dict[str, Lesion] = {}
        classes = 10
        for r in sorted(records, key=lambda r: (r.label.startswith("resnet"), int(re.sub(r"\D", "", r.label) or 0))):
            if r.label in lesions:
                continue  # one seed per net: a lesion curve is not averaged over differently trained nets
            model, meta = load_weights(r.run_dir, device=check_device(cfg.device or "auto"))
            x, y = dataset_tensors(meta, "test", cfg.images, data_dir=cfg.data_dir)
            classes = len(meta["classes"])
            lesions[r.label] = measure_lesion(model, x, y, label=r.label, draws=cfg.draws, seed=cfg.draw_seed,
                                             quiet=bool(cfg.quiet))
        return finish(folder, cfg, records, lambda f, c, _r: lesion_report(f, c, lesions, classes))


def lesion_report(folder: Path, cfg: LesionConfig, lesions: dict[str, Lesion], num_classes: int) -> Report:
    rows = []
    for label, les in lesions.items():
        errs = [err for _, err in les.single]
        worst = max(les.single, key=lambda s: s[1]) if les.single else None
        down = [f"{s.name} {100 * e:.1f}%" for s, e in les.single if s.downsampling]
        half = min(les.random, key=lambda k: abs(k - max(les.random) / 2)) if les.random else None
        rows.append((display_name(label), len(les.single), f"{100 * les.intact:.2f}%",
                     f"{100 * statistics.median(errs):.2f}%" if errs else "-",
                     f"{100 * max(les.rises()):+.2f}" if les.rises() else "-",
                     f"{worst[0].name} {100 * worst[1]:.2f}%" if worst else "-", ", ".join(down) or "-",
                     f"{half}: {100 * statistics.fmean(les.random[half]):.2f}%" if half else "-"))
    table = write_table(folder, "table", ("net", "removable blocks", "intact error", "median error, one removed",
                                          "largest rise (non-downsampling), points", "worst single removal",
                                          "downsampling blocks removed", "k removed at random: mean error"), rows)
    single = ["net,block,downsampling,error"] + [f"{lab},{s.name},{int(s.downsampling)},{e:.6g}"
                                                 for lab, les in lesions.items() for s, e in les.single]
    atomic_write_text(folder / "lesion.csv", "\n".join(single) + "\n")
    rand = ["net,k,draw,error"] + [f"{lab},{k},{d},{e:.6g}" for lab, les in lesions.items()
                                   for k, errs in les.random.items() for d, e in enumerate(errs)]
    atomic_write_text(folder / "random.csv", "\n".join(rand) + "\n")
    plot_lesion(lesions, folder / "lesion.png")
    return Report("Lesion study: removing blocks from trained nets (Veit et al. 2016)",
                  lesion_claims(lesions, num_classes), table, ["lesion.png"],
                  [f"Measured on the nets of {cfg.from_dir}, first {cfg.images} test images, eval mode. A "
                         "removed residual block keeps its shortcut (y = ReLU(shortcut(x))); a removed plain block "
                         "is the identity, and plain downsampling blocks are not removed (shapes differ). Random "
                         f"removals: {cfg.draws} draws of k non-downsampling blocks (seed {cfg.draw_seed}); per-"
                         "block and per-draw errors in lesion.csv and random.csv."])


def plot_lesion(lesions: dict[str, Lesion], path: Path) -> Path:
    """Fig. 3 and 5(a): error with each single block removed (left), error against k removed (right)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, les) in enumerate(lesions.items()):
        style = dict(color=colors[i % len(colors)], ls="--" if label.startswith("plain") else "-")
        xs = [s.position or i for i, (s, _) in enumerate(les.single, 1)]
        axes[0].plot(xs, [100 * e for _, e in les.single], marker="o", ms=3, label=display_name(label), **style)
        down = [(x, 100 * e) for x, (s, e) in zip(xs, les.single, strict=True) if s.downsampling]
        if down:
            axes[0].scatter(*zip(*down, strict=True), s=60, facecolors="none", edgecolors=style["color"])
        axes[0].axhline(100 * les.intact, color=style["color"], lw=0.8, ls=":")
        ks = [0, *les.random]
        means = [100 * les.intact] + [100 * statistics.fmean(v) for v in les.random.values()]
        stds = [0.0] + [100 * statistics.pstdev(v) for v in les.random.values()]
        axes[1].errorbar(ks, means, yerr=stds, capsize=3, marker="o", ms=3, label=display_name(label), **style)
    axes[0].set_xlabel("removed block, forward order (circled: downsampling; plain nets skip those)")
    axes[0].set_title("one block removed (dotted: intact net)")
    axes[1].set_xlabel("number of non-downsampling blocks removed at random")
    axes[1].set_title("k blocks removed (mean ± std over draws)")
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # block positions and counts are whole numbers
        ax.set_ylabel("test error (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Lesion study (Veit et al. 2016, Fig. 3 and 5a analogue)")
    return save_figure(fig, path)
