"""Loss landscape (Li, Xu, Taylor, Studer, Goldstein 2018): L(theta + a d1 + b d2) around trained weights.

Directions are Gaussian, each filter scaled to the norm of the same filter of theta ("filter
normalisation", Section 4); every 1-D parameter (BN's gamma and beta, biases) gets a zero direction,
as the paper's ignore-BN setting does, and BN uses its running statistics (eval mode). The loss is
the mean cross-entropy over a fixed subset of the net's own training split. Roughness is measured
two ways: the local minima along 1-D slices (a dip counts when it is deeper than 1% of the slice's
range, so float noise on a plateau does not), and the non-convexity of the 2-D grid, the mean over
interior points of max(0, -l_min) / |l_max| for the eigenvalues of the finite-difference Hessian
(Section 6 maps |l_min / l_max| of the full Hessian; 0 is locally convex), flat points left out.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from reslab.errors import ReslabError
from reslab.experiments.claims import Claim
from reslab.experiments.config import ExperimentConfig
from reslab.experiments.records import RunRecord
from reslab.experiments.runs import ExperimentResult, display_name, finish
from reslab.experiments.summary import Report
from reslab.experiments.tables import write_table
from reslab.experiments.trained import Ticker, dataset_tensors, error_and_loss, fast_eval, from_degradation
from reslab.fileio import atomic_write_text
from reslab.hardware import check_device
from reslab.plotting import pyplot, save_figure
from reslab.weights import load_weights

MINIMUM_DEPTH = 0.01  # a local minimum counts when it is deeper than this share of the slice's loss range
LOSS_CAP = 10.0  # the figures' loss range above the minimum: Li et al.'s contour plots run from 0.1 to 10
FLAT = 1e-3  # a grid point whose curvature is below this share of the grid's largest is flat (left out)

Direction = list[Tensor]  # one tensor per parameter of the model, in `model.parameters()` order


@dataclass
class LandscapeConfig(ExperimentConfig):
    name: str = "landscape"
    # Defaults sized to finish in about 5 minutes on 2 CPU cores for a 56-layer pair (Li et al.: the whole
    # training set, a 51 x 51 grid; every one is a flag).
    images: int = 256  # training images the loss is measured on
    steps: int = 25  # points along each 1-D slice
    grid: int = 15  # points per side of the 2-D grid
    slices: int = 4  # random 1-D directions
    span: float = 1.0  # coordinates run over -span..span (the paper: -1..1)
    depth: int | None = None  # None: the deepest plain / ResNet pair of the source
    draw_seed: int = 0


@dataclass
class Surface:
    """One net's landscape: (loss, error) along each 1-D slice (slices x steps) and on the grid (grid x grid)."""

    label: str
    coords: list[float]  # 1-D coordinates
    axis: list[float]  # 2-D coordinates, the same for both axes
    loss_1d: list[list[float]] = field(default_factory=list)
    err_1d: list[list[float]] = field(default_factory=list)
    loss_2d: list[list[float]] = field(default_factory=list)  # [i][j]: a = axis[i], b = axis[j]
    err_2d: list[list[float]] = field(default_factory=list)
    seconds: float = 0.0


def random_direction(model: nn.Module, generator: torch.Generator) -> Direction:
    """A Gaussian direction, filter-normalised: row i of each weight (a conv filter or an fc neuron) has the
    norm of row i of the weight; 1-D parameters (BN, biases) get zeros."""
    out = []
    for p in model.parameters():
        if p.dim() <= 1:
            out.append(torch.zeros_like(p))
            continue
        d = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
        scale = p.detach().flatten(1).norm(dim=1) / d.flatten(1).norm(dim=1).clamp_min(1e-12)
        out.append(d * scale.view(-1, *[1] * (p.dim() - 1)))
    return out


@contextmanager
def _restored(model: nn.Module):
    theta = [p.detach().clone() for p in model.parameters()]
    try:
        yield theta
    finally:
        with torch.no_grad():
            for p, t in zip(model.parameters(), theta, strict=True):
                p.copy_(t)


def evaluate_points(model: nn.Module, x: Tensor, y: Tensor, directions: Sequence[Direction],
                    points: Sequence[Sequence[float]], *, tick: Callable[[], None] | None = None,
                    ) -> list[tuple[float, float]]:
    """(error, loss) at theta + sum_i c_i d_i for each point c of `points`; theta is restored afterwards.
    `tick` is called after each point (progress)."""
    results = []
    with _restored(model) as theta, torch.no_grad():
        for point in points:
            if len(point) != len(directions):
                raise ValueError(f"a point has {len(point)} coordinates for {len(directions)} directions")
            for i, (p, t) in enumerate(zip(model.parameters(), theta, strict=True)):
                p.copy_(t)
                for c, d in zip(point, directions, strict=True):
                    p.add_(d[i], alpha=c)
            results.append(error_and_loss(model, x, y))
            if tick is not None:
                tick()
    return results


def local_minima(curve: Sequence[float], depth: float = MINIMUM_DEPTH) -> int:
    """Interior local minima of a 1-D curve deeper than `depth` x its range: a point below its left
    neighbour and not above its right one (a flat bottom counts once), whose lower side rises, before
    the curve falls below it again or ends, by more than that."""
    c, n = list(curve), len(curve)
    span = max(c) - min(c) if c else 0.0
    count = 0
    for i in range(1, n - 1):
        if span <= 0 or not (c[i] < c[i - 1] and c[i] <= c[i + 1]):
            continue
        rises = []
        for step in (-1, 1):
            j, top = i, c[i]
            while 0 <= j + step < n and c[j + step] >= c[i]:
                j += step
                top = max(top, c[j])
            rises.append(top - c[i])
        count += min(rises) > depth * span
    return count


def nonconvexity(grid: Sequence[Sequence[float]], h: float) -> list[list[float]]:
    """max(0, -l_min) / |l_max| (capped at 1) of the 2x2 finite-difference Hessian at each interior point
    of a grid with spacing `h`; (n-2) x (n-2). 0 where the surface is locally convex; NaN where it is flat
    (both eigenvalues below FLAT x the grid's largest)."""
    g = torch.tensor(grid, dtype=torch.float64)
    xx = (g[2:, 1:-1] - 2 * g[1:-1, 1:-1] + g[:-2, 1:-1]) / h**2
    yy = (g[1:-1, 2:] - 2 * g[1:-1, 1:-1] + g[1:-1, :-2]) / h**2
    xy = (g[2:, 2:] - g[2:, :-2] - g[:-2, 2:] + g[:-2, :-2]) / (4 * h**2)
    mid, rad = (xx + yy) / 2, (((xx - yy) / 2) ** 2 + xy**2).sqrt()
    lo, hi = mid - rad, mid + rad
    ratio = ((-lo).clamp_min(0) / hi.abs().clamp_min(1e-300)).clamp(max=1)
    size = torch.maximum(lo.abs(), hi.abs())
    # A plateau's curvature is float noise, and its ratio anything: such points are left out (NaN).
    return ratio.masked_fill(size < FLAT * size.max(), math.nan).tolist()


def measure_surface(model: nn.Module, x: Tensor, y: Tensor, cfg: LandscapeConfig, *, label: str) -> Surface:
    """1-D slices and the 2-D grid of one net, directions drawn from `cfg.draw_seed`."""
    start = time.perf_counter()
    tick = Ticker(f"landscape {label}", cfg.slices * cfg.steps + cfg.grid**2, quiet=bool(cfg.quiet)).tick
    model = fast_eval(model)
    g = torch.Generator().manual_seed(cfg.draw_seed)
    coords = torch.linspace(-cfg.span, cfg.span, cfg.steps).tolist()
    axis = torch.linspace(-cfg.span, cfg.span, cfg.grid).tolist()
    s = Surface(label, coords, axis)
    for _ in range(cfg.slices):
        d = random_direction(model, g)
        err, loss = zip(*evaluate_points(model, x, y, [d], [(a,) for a in coords], tick=tick), strict=True)
        s.err_1d.append(list(err))
        s.loss_1d.append(list(loss))
    d1, d2 = random_direction(model, g), random_direction(model, g)
    flat = evaluate_points(model, x, y, [d1, d2], [(a, b) for a in axis for b in axis], tick=tick)
    n = cfg.grid
    s.err_2d = [[flat[i * n + j][0] for j in range(n)] for i in range(n)]
    s.loss_2d = [[flat[i * n + j][1] for j in range(n)] for i in range(n)]
    s.seconds = time.perf_counter() - start
    return s


def minima_per_slice(s: Surface) -> list[int]:
    return [local_minima(c) for c in s.loss_1d]


def mean_nonconvexity(s: Surface) -> float:
    """The mean non-convexity over the grid's interior points that are not flat."""
    values = [v for row in nonconvexity(s.loss_2d, s.axis[1] - s.axis[0]) for v in row if not math.isnan(v)]
    return statistics.fmean(values) if values else 0.0


def landscape_claims(minima: dict[str, Sequence[int]], nonconvex: dict[str, float], depth: int) -> list[Claim]:
    """Li et al.'s finding for one depth: the ResNet's surface is smoother than the plain net's.
    `minima`: local minima per 1-D slice; `nonconvex`: mean non-convexity of the 2-D grid; keys "plain56", ...."""
    p, r = f"plain{depth}", f"resnet{depth}"
    if p not in minima or r not in minima:
        raise ReslabError(f"landscape compares plain-{depth} and ResNet-{depth}. Received: {', '.join(minima)}")
    mp, mr = statistics.fmean(minima[p]), statistics.fmean(minima[r])
    return [
        Claim(f"the ResNet's surface is smoother: ResNet-{depth}'s 1-D slices have fewer local minima than "
              f"plain-{depth}'s", "Fig. 5 / 1-D plots: ResNet-56 one smooth basin, no-skip-56 chaotic",
              f"{mr:.2g} vs {mp:.2g} minima per slice (per slice: {list(minima[r])} vs {list(minima[p])})",
              mr < mp),
        Claim(f"the ResNet's surface is closer to convex: ResNet-{depth}'s 2-D grid has smaller non-convexity "
              f"than plain-{depth}'s", "Fig. 5 and Section 6: convex-looking with skips, non-convex without",
              f"{nonconvex[r]:.3g} vs {nonconvex[p]:.3g} (mean max(0, -l_min)/|l_max|; 0 = convex)",
              nonconvex[r] < nonconvex[p]),
    ]


def _pair_depth(records: Sequence[RunRecord], depth: int | None) -> int:
    labels = {r.label for r in records}
    pairs = sorted(d for d in {int(lab[6:]) for lab in labels if lab[:6] == "resnet" and lab[6:].isdigit()}
                   if f"plain{d}" in labels)
    if depth is None and pairs:
        return pairs[-1]
    if depth not in pairs:
        raise ReslabError(f"the source holds no plain / ResNet pair of depth {depth}. Received: --depth {depth}; "
                          f"pairs there: {', '.join(map(str, pairs)) or 'none'}")
    return depth


def run_landscape(cfg: LandscapeConfig) -> ExperimentResult:
    """Measure the loss landscape of the plain / ResNet pair of the degradation folder `cfg.from_dir`."""

    for key, least in (("images", 1), ("steps", 3), ("grid", 3), ("slices", 1)):
        if not isinstance(getattr(cfg, key), int) or getattr(cfg, key) < least:
            raise ReslabError(f"{key} must be an integer >= {least}. Received: {key}={getattr(cfg, key)!r}")
    if not cfg.span > 0:
        raise ReslabError(f"span must be > 0. Received: span={cfg.span!r}")
    with from_degradation(cfg) as (folder, records):
        cfg.depth = _pair_depth(records, cfg.depth)
        surfaces = {}
        for kind in ("plain", "resnet"):
            r = next(r for r in records if r.label == f"{kind}{cfg.depth}")
            model, meta = load_weights(r.run_dir, device=check_device(cfg.device or "auto"))
            x, y = dataset_tensors(meta, "train", cfg.images, data_dir=cfg.data_dir, seed=r.seed)
            surfaces[r.label] = measure_surface(model, x, y, cfg, label=r.label)
        minima = {lab: minima_per_slice(s) for lab, s in surfaces.items()}
        nonconvex = {lab: mean_nonconvexity(s) for lab, s in surfaces.items()}
        claims = landscape_claims(minima, nonconvex, cfg.depth)
        return finish(folder, cfg, records, lambda f, c, _r: landscape_report(f, c, surfaces, claims))


def landscape_report(folder: Path, cfg: LandscapeConfig, surfaces: dict[str, Surface], claims: list[Claim]) -> Report:
    rows, lines = [], ["net,kind,slice,a,b,loss,error"]
    for lab, s in surfaces.items():
        centre = s.loss_2d[cfg.grid // 2][cfg.grid // 2] if cfg.grid % 2 else s.loss_1d[0][cfg.steps // 2]
        flat = [v for row in s.loss_2d for v in row]
        rows.append((display_name(lab), f"{cfg.images:,}", f"{centre:.4f}",
                     ", ".join(map(str, minima_per_slice(s))), f"{mean_nonconvexity(s):.3g}",
                     f"{min(flat):.3g} .. {max(flat):.3g}", f"{s.seconds / 60:.1f}"))
        lines += [f"{lab},1d,{k},{a:.6g},,{loss:.6g},{err:.6g}" for k, (ls, es) in enumerate(
            zip(s.loss_1d, s.err_1d, strict=True)) for a, loss, err in zip(s.coords, ls, es, strict=True)]
        lines += [f"{lab},2d,,{a:.6g},{b:.6g},{s.loss_2d[i][j]:.6g},{s.err_2d[i][j]:.6g}"
                  for i, a in enumerate(s.axis) for j, b in enumerate(s.axis)]
    table = write_table(folder, "table", ("net", "training images", "loss at theta", "local minima per 1-D slice",
                                          "non-convexity (2-D)", "loss range on the grid", "minutes"), rows)
    atomic_write_text(folder / "landscape.csv", "\n".join(lines) + "\n")
    plot_slices(surfaces, folder / "landscape-1d.png")
    plot_contours(surfaces, folder / "landscape-2d.png")
    plot_roughness(surfaces, folder / "roughness.png")
    minutes = sum(s.seconds for s in surfaces.values()) / 60
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return Report(f"Loss landscape of plain-{cfg.depth} and ResNet-{cfg.depth} (Li et al. 2018)", claims, table,
                  ["landscape-1d.png", "landscape-2d.png", "roughness.png"],
                  [f"Measured on the nets of {cfg.from_dir}: mean cross-entropy over the first {cfg.images} "
                         f"images of each net's training split, BN in eval mode; {cfg.slices} 1-D slices of "
                         f"{cfg.steps} points and a {cfg.grid} x {cfg.grid} grid over -{cfg.span:g}..{cfg.span:g}, "
                         "filter-normalised Gaussian directions (BN and biases: zero), seed "
                         f"{cfg.draw_seed}; the same directions for both nets (their parameters have the same "
                         f"shapes). {minutes:.1f} min of measurement, load average {load} (1, 5, 15 min) at the "
                         "end. Every point in landscape.csv."])


def read_surfaces(path: Path) -> dict[str, Surface]:
    """The surfaces of a landscape.csv that `landscape_report` wrote (values at 6 significant digits), to
    re-draw the figures without measuring again."""
    import csv

    with Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    surfaces: dict[str, Surface] = {}
    for lab in dict.fromkeys(r["net"] for r in rows):
        one = [r for r in rows if r["net"] == lab and r["kind"] == "1d"]
        two = [r for r in rows if r["net"] == lab and r["kind"] == "2d"]
        slices = sorted({int(r["slice"]) for r in one})
        coords = [float(r["a"]) for r in one if int(r["slice"]) == slices[0]]
        axis = list(dict.fromkeys(float(r["a"]) for r in two))
        n = len(axis)
        s = Surface(lab, coords, axis)
        for k in slices:
            s.loss_1d.append([float(r["loss"]) for r in one if int(r["slice"]) == k])
            s.err_1d.append([float(r["error"]) for r in one if int(r["slice"]) == k])
        s.loss_2d = [[float(two[i * n + j]["loss"]) for j in range(n)] for i in range(n)]
        s.err_2d = [[float(two[i * n + j]["error"]) for j in range(n)] for i in range(n)]
        surfaces[lab] = s
    return surfaces


def replot(folder: Path) -> list[Path]:
    """Re-draw landscape-1d.png, landscape-2d.png and roughness.png from the folder's landscape.csv."""
    surfaces = read_surfaces(Path(folder) / "landscape.csv")
    return [plot_slices(surfaces, Path(folder) / "landscape-1d.png"),
            plot_contours(surfaces, Path(folder) / "landscape-2d.png"),
            plot_roughness(surfaces, Path(folder) / "roughness.png")]


def _counts(values: Sequence[int]) -> str:
    return ", ".join(map(str, values))


def plot_slices(surfaces: dict[str, Surface], path: Path) -> Path:
    """1-D plots, a column per net: loss along each slice (top row) and training error (bottom row), one y-axis
    each; the loss axis stops LOSS_CAP above the lowest loss, as Li et al.'s plots do."""
    plt = pyplot()
    fig, axes = plt.subplots(2, len(surfaces), figsize=(5.2 * len(surfaces), 6.4), sharex=True, sharey="row",
                             squeeze=False, layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    low = min(min(c) for s in surfaces.values() for c in s.loss_1d)
    for col, (lab, s) in enumerate(surfaces.items()):
        top, bottom = axes[0][col], axes[1][col]
        for k, (loss, err) in enumerate(zip(s.loss_1d, s.err_1d, strict=True)):
            top.plot(s.coords, loss, color=colors[k % len(colors)], lw=1.5, label=f"direction {k + 1}")
            bottom.plot(s.coords, [100 * e for e in err], color=colors[k % len(colors)], lw=1.2)
        top.set_title(f"{display_name(lab)}: local minima per slice {_counts(minima_per_slice(s))}")
        bottom.set_xlabel("alpha (filter-normalised direction)")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
            ax.axvline(0, color="0.5", lw=0.8, ls=":")
    axes[0][0].set_ylim(0, low + LOSS_CAP)
    axes[1][0].set_ylim(0, 100)
    axes[0][0].set_ylabel("loss (cross-entropy)")
    axes[1][0].set_ylabel("training error (%)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8)
    fig.suptitle("1-D loss along random directions (Li et al. 2018 analogue); dotted: the trained weights")
    return save_figure(fig, path, tight=False)  # constrained layout already


def contour_levels(values: Sequence[float]) -> list[float]:
    """About 20 round contour levels from the lowest loss to LOSS_CAP above it (the paper's range), or to
    the 90th percentile when that is lower; higher ground is one colour."""
    from matplotlib.ticker import MaxNLocator

    v = sorted(values)
    top = min(v[int(0.9 * (len(v) - 1))], v[0] + LOSS_CAP)
    levels = MaxNLocator(nbins=20, steps=[1, 2, 2.5, 5, 10]).tick_values(v[0], top)
    return [float(x) for x in levels if x <= top + 1e-12]  # the first level is at or below the lowest loss


def plot_contours(surfaces: dict[str, Surface], path: Path) -> Path:
    """2-D contour plots side by side, with the same round loss levels in every panel, the trained weights
    marked at the centre."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    levels = contour_levels([v for s in surfaces.values() for row in s.loss_2d for v in row])
    fig, axes = plt.subplots(1, len(surfaces), figsize=(5.2 * len(surfaces), 4.8), squeeze=False,
                             layout="constrained")
    for ax, (lab, s) in zip(axes[0], surfaces.items(), strict=True):
        z = torch.tensor(s.loss_2d).T.tolist()  # rows: b, columns: a
        filled = ax.contourf(s.axis, s.axis, z, levels=levels, cmap="viridis", extend="max")
        ax.contour(s.axis, s.axis, z, levels=levels, colors="k", linewidths=0.4)
        ax.plot([0], [0], marker="*", ms=16, mfc="red", mec="white", mew=1.5, ls="none", label="trained weights")
        ax.set_title(display_name(lab))
        ax.set_xlabel("alpha")
        ax.set_ylabel("beta")
        ax.set_xticks([-1, -0.5, 0, 0.5, 1] if s.axis[-1] == 1 else MaxNLocator(5).tick_values(s.axis[0], s.axis[-1]))
        ax.set_yticks(ax.get_xticks())
        ax.set_xlim(s.axis[0], s.axis[-1])
        ax.set_ylim(s.axis[0], s.axis[-1])
        ax.set_aspect("equal")
    axes[0][0].legend(loc="lower left", fontsize=8, framealpha=0.9)
    bar = fig.colorbar(filled, ax=axes[0].tolist(), label="loss (cross-entropy)")
    bar.set_ticks(MaxNLocator(nbins=6, steps=[1, 2, 5, 10]).tick_values(levels[0], levels[-1]))
    bar.ax.set_ylim(levels[0], levels[-1])
    fig.suptitle("2-D loss surface, filter-normalised directions (Li et al. 2018, Fig. 5 analogue)")
    return save_figure(fig, path, tight=False)  # constrained layout already


def plot_roughness(surfaces: dict[str, Surface], path: Path) -> Path:
    """The measured roughness: local minima per 1-D slice (bars, an integer axis) and each net's non-convexity
    map (0: locally convex, dark; flat points grey and hatched, left out of the mean)."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, axes = plt.subplots(1, 1 + len(surfaces), figsize=(4.4 * (1 + len(surfaces)), 4.3), layout="constrained")
    width = 0.8 / len(surfaces)
    most = 0
    cmap = plt.get_cmap("viridis").with_extremes(bad=(0, 0, 0, 0))  # flat (NaN): the hatched patch below shows
    for i, (lab, s) in enumerate(surfaces.items()):
        counts = minima_per_slice(s)
        most = max(most, *counts)
        axes[0].bar([k + 1 + (i - (len(surfaces) - 1) / 2) * width for k in range(len(counts))], counts,
                    width=width, label=display_name(lab))
        ax = axes[1 + i]
        h = s.axis[1] - s.axis[0]
        extent = (s.axis[1] - h / 2, s.axis[-2] + h / 2) * 2
        ax.add_patch(plt.Rectangle((extent[0], extent[2]), extent[1] - extent[0], extent[3] - extent[2],
                                   facecolor="0.85", hatch="//", edgecolor="0.6", lw=0))
        im = ax.imshow(torch.tensor(nonconvexity(s.loss_2d, h)).T.tolist(), origin="lower", vmin=0, vmax=1,
                       cmap=cmap, extent=extent, zorder=2)
        ax.set_title(f"{display_name(lab)}: non-convexity, mean {mean_nonconvexity(s):.3g}")
        ax.set_xlabel("alpha")
        ax.set_ylabel("beta")
    bar = fig.colorbar(im, ax=axes[-1], label="max(0, -l_min) / |l_max|", ticks=[0, 0.25, 0.5, 0.75, 1])
    bar.ax.set_ylim(0, 1)
    axes[-1].legend(handles=[Patch(facecolor="0.85", hatch="//", edgecolor="0.6", label="flat: left out")],
                    loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=8, frameon=False)
    axes[0].set_xlabel("1-D slice")
    axes[0].set_ylabel(f"local minima (deeper than {100 * MINIMUM_DEPTH:g}% of the range)")
    axes[0].set_title("local minima per slice")
    axes[0].yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylim(0, most + 1)  # room above the bars for the legend
    axes[0].legend(fontsize=8, loc="upper center", ncols=len(surfaces), frameon=False)
    fig.suptitle("Roughness of the loss surface (0: locally convex; grey hatched: flat, left out)")
    return save_figure(fig, path, tight=False)  # constrained layout already
