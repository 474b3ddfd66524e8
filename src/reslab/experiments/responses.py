"""Layer responses (Section 4.2, Fig. 7): residual functions are closer to zero than plain layers.

A layer's response is the output of a 3x3 conv after its BN, before the addition and the
ReLU: exactly the output of the BN module that follows each 3x3 conv (the stem's `bn1`,
and `bn1`, `bn2` of every basic block). We measure it on a batch of test images with the
trained net in evaluation mode. Its "std" here is the standard deviation of each channel
over the images and positions, averaged over the layer's channels, so that the spread of
BN's per-channel shift beta does not count as response.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from reslab.data.augment import normalize
from reslab.data.datasets import load_dataset
from reslab.errors import ReslabError
from reslab.experiments.claims import Claim, Stat, less, stat
from reslab.experiments.config import ExperimentConfig, check_data_dir, resolve_depths
from reslab.experiments.degradation import DEFAULT_DEPTHS, degradation_jobs
from reslab.experiments.records import RunRecord
from reslab.experiments.runs import (
    ExperimentResult,
    display_name,
    experiment_folder,
    finish,
    read_manifest,
    run_jobs,
    write_manifest,
)
from reslab.experiments.summary import Report
from reslab.experiments.tables import write_table
from reslab.fileio import atomic_write_text
from reslab.metadata import WeightsMeta
from reslab.models.resnet import ResNet
from reslab.modes import eval_mode
from reslab.plotting import pyplot, save_figure
from reslab.weights import load_weights


def response_layers(model: nn.Module) -> list[tuple[str, nn.BatchNorm2d]]:
    """(name, BN) after each 3x3 conv of the main path, in forward order: 2 per basic block + a 3x3 stem.

    Projection shortcuts and 1x1 convs are not 3x3 layers and are left out (Fig. 7 plots the 3x3 layers).
    """
    if not isinstance(model, ResNet):
        raise ReslabError(f"layer responses are defined for ResNet and plain nets. Received: {type(model).__name__}")
    layers = []
    if model.conv1.kernel_size == (3, 3):
        layers.append(("bn1", model.bn1))
    for stage in model.stage_names:
        for i, block in enumerate(getattr(model, stage)):
            for conv, bn in (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")):
                c = getattr(block, conv, None)
                if isinstance(c, nn.Conv2d) and c.kernel_size == (3, 3):
                    layers.append((f"{stage}.{i}.{bn}", getattr(block, bn)))
    return layers


def layer_response_stds(model: nn.Module, images: Tensor, *, chunk: int = 250) -> list[float]:
    """Std of each 3x3 layer's response to `images` (N, C, H, W), normalised, in forward order.

    Each channel's mean and variance over the N images and H x W positions are accumulated in
    float64 across chunks; the layer's value is the mean over channels of the channel stds.
    """
    layers = response_layers(model)
    sums: dict[str, Tensor] = {}  # name -> (3, C): count, sum, sum of squares per channel

    def hook(name: str):
        def fn(_m: nn.Module, _inp: tuple, out: Tensor) -> None:
            # Read here: the block's in-place ReLU overwrites this tensor right after the hook.
            x = out.detach().double().transpose(0, 1).flatten(1)  # (C, N*H*W)
            acc = torch.stack([torch.full_like(x[:, 0], x.shape[1]), x.sum(1), (x * x).sum(1)]).cpu()
            sums[name] = sums[name] + acc if name in sums else acc
        return fn

    handles = [bn.register_forward_hook(hook(name)) for name, bn in layers]
    try:
        device = next(model.parameters()).device
        with eval_mode(model):
            for start in range(0, len(images), chunk):
                model(images[start:start + chunk].to(device))
    finally:
        for h in handles:
            h.remove()
    stds = []
    for name, _ in layers:
        n, s, sq = sums[name]
        var = (sq - s * s / n) / (n - 1).clamp_min(1)
        stds.append(var.clamp_min(0).sqrt().mean().item())
    return stds


def response_images(meta: WeightsMeta, images: Tensor) -> Tensor:
    """uint8 test `images` (N, C, H, W) normalised as the net of `meta` (model.json) was trained."""
    pre = meta["preprocess"]
    return normalize(images, mode=pre["mode"], std=pre["std"], mean=pre.get("mean"), pixel_mean=pre.get("mean_image"))


def responses_claims(means: dict[str, Stat]) -> list[Claim]:
    """Fig. 7's claims judged on each net's mean response std (keys "plain20", "resnet56", ...)."""
    def depths(kind: str) -> list[int]:
        return sorted(int(k[len(kind):]) for k in means if k.startswith(kind))

    claims = []
    for d in depths("resnet"):
        if f"plain{d}" in means:
            gap = less(means[f"resnet{d}"], means[f"plain{d}"], scale=1, unit="")
            claims.append(Claim(f"ResNet-{d}'s responses are smaller than plain-{d}'s (mean std over 3x3 layers)",
                                "Fig. 7: ResNets' curves below the plain nets'",
                                f"{means[f'resnet{d}'].num()} vs {means[f'plain{d}'].num()} ({gap.note})", gap.lower,
                                within_noise=gap.within_noise))
    res = depths("resnet")
    if len(res) >= 2:
        lo, hi = res[0], res[-1]
        gap = less(means[f"resnet{hi}"], means[f"resnet{lo}"], scale=1, unit="")
        claims.append(Claim(f"the deeper ResNet-{hi} has smaller responses than ResNet-{lo}",
                            "Fig. 7: ResNet-56 below ResNet-20, ResNet-110 lower still",
                            f"{means[f'resnet{hi}'].num()} vs {means[f'resnet{lo}'].num()} ({gap.note})", gap.lower,
                            within_noise=gap.within_noise))
    if not claims:
        raise ReslabError(f"responses needs plain and residual nets of one depth, or two ResNet depths. "
                          f"Received: {', '.join(sorted(means))}")
    return claims


def run_responses(cfg: ExperimentConfig) -> ExperimentResult:
    """Measure Fig. 7 on the nets of a degradation folder (`cfg.from_dir`) or on nets trained here."""
    if not cfg.from_dir:
        depths = resolve_depths(cfg, DEFAULT_DEPTHS, plain=True)
        return run_jobs(cfg, degradation_jobs(depths), responses_report)
    with experiment_folder(cfg) as folder:
        src, records = read_manifest(Path(cfg.from_dir))
        records = [r for r in records if r.model.startswith(("plain", "resnet"))]
        if not records:
            raise ReslabError(f"{cfg.from_dir} holds no trained plain or residual nets")
        for key in ("data", "iterations", "seeds", "batch_size"):  # the summary describes the nets' training
            setattr(cfg, key, getattr(src, key))
        cfg.data_dir = cfg.data_dir or src.data_dir
        check_data_dir(cfg)
        cfg.depths = tuple(sorted({int(r.label.removeprefix("plain").removeprefix("resnet")) for r in records
                                   if r.label.removeprefix("plain").removeprefix("resnet").isdigit()}))
        write_manifest(folder, cfg, records, source=str(Path(cfg.from_dir).resolve()))
        return finish(folder, cfg, records, responses_report)


def measure_responses(records: Sequence[RunRecord], *, images: int, data_dir: str | None) -> list[list[float]]:
    """Per record, the response std of each 3x3 layer (forward order)."""
    raw: dict[str, Tensor] = {}
    out = []
    for r in records:
        model, meta = load_weights(r.run_dir)
        name = meta["preprocess"].get("dataset")
        if not name or name == "folder":
            raise ReslabError(f"responses needs an in-memory dataset (fashion-mnist, mnist, cifar10, cifar100); "
                              f"{r.run_dir} was trained on {name!r}")
        if name not in raw:
            raw[name] = load_dataset(name, "test", data_dir=data_dir).images[:images]
        out.append(layer_response_stds(model, response_images(meta, raw[name])))
    return out


def responses_report(folder: Path, cfg: ExperimentConfig, records: Sequence[RunRecord]) -> Report:
    """Measure every net's responses, judge Fig. 7's claims, write the tables and the figure."""
    stds = measure_responses(records, images=cfg.images, data_dir=cfg.data_dir)
    labels = list(dict.fromkeys(r.label for r in records))
    per_label = {lab: [s for r, s in zip(records, stds, strict=True) if r.label == lab] for lab in labels}
    means = {lab: stat([statistics.fmean(s) for s in v]) for lab, v in per_label.items()}
    claims = responses_claims(means)
    rows = []
    for lab in labels:
        curves = per_label[lab]
        flat = [v for s in curves for v in s]
        tests = stat([r.test_err for r in records if r.label == lab])
        rows.append((display_name(lab), len(curves[0]), means[lab].num(), f"{min(flat):.4g}", f"{max(flat):.4g}",
                     f"{statistics.fmean(s[-1] for s in curves):.4g}", tests.pct()))
    table = write_table(folder, "table", ("net", "3x3 layers", "mean std", "min std", "max std", "last layer std",
                                          "test error"), rows)
    lines = ["net,seed,layer,std"] + [f"{r.label},{r.seed},{i},{v:.6g}" for r, s in zip(records, stds, strict=True)
                                      for i, v in enumerate(s, 1)]
    atomic_write_text(folder / "responses.csv", "\n".join(lines) + "\n")
    plot_responses({lab: [statistics.fmean(v) for v in zip(*per_label[lab], strict=True)] for lab in labels},
                   folder / "responses.png")
    source = f"the nets of {cfg.from_dir}" if cfg.from_dir else "nets trained for this experiment"
    return Report("Layer responses of plain and residual nets (Fig. 7)", claims, table, ["responses.png"],
                  [f"Measured on {source}, with the first {cfg.images} test images, in evaluation mode. "
                   "Response: each 3x3 layer's output after BN, before addition and ReLU. Std: per "
                   "channel over images and positions, averaged over channels; per-layer values in "
                   "responses.csv."])


def read_curves(path: Path) -> dict[str, list[float]]:
    """responses.csv -> {net: std per layer, the mean over seeds}: the curves `plot_responses` draws."""
    import csv

    per: dict[str, dict[int, list[float]]] = {}
    with Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        per.setdefault(r["net"], {}).setdefault(int(r["layer"]), []).append(float(r["std"]))
    return {lab: [statistics.fmean(layers[i]) for i in sorted(layers)] for lab, layers in per.items()}


def plot_responses(curves: dict[str, list[float]], path: Path) -> Path:
    """Fig. 7: std per layer in the nets' order, over the whole range (top) and zoomed on the bulk of
    the values and the means (middle), and sorted in descending order (bottom, zoomed); each net's mean over its
    layers, the number the claims compare, is a dotted line and in the legend."""
    plt = pyplot()
    fig, axes = plt.subplots(3, 1, figsize=(7.5, 9.0), layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    depths = sorted({lab.removeprefix("plain").removeprefix("resnet") for lab in curves}, key=int)
    for lab, ys in curves.items():
        kind = "plain" if lab.startswith("plain") else "resnet"
        depth = lab.removeprefix(kind)
        mean = statistics.fmean(ys)
        style = dict(color=colors[depths.index(depth) % len(colors)], ls="--" if kind == "plain" else "-", lw=1.2)
        xs = range(1, len(ys) + 1)
        axes[0].plot(xs, ys, **style, label=display_name(lab))
        axes[1].plot(xs, ys, **style, label=f"{display_name(lab)}, mean {mean:.3f}")
        axes[2].plot(xs, sorted(ys, reverse=True), **style)
        for ax in axes[1:]:
            ax.axhline(mean, color=style["color"], ls=":", lw=1)
    values = sorted(v for ys in curves.values() for v in ys)
    q1, q3 = values[len(values) // 4], values[(3 * len(values)) // 4]
    # The zoom: the bulk of the values (up to 3 interquartile ranges above the upper quartile), and every
    # net's mean, which the claims compare; a spike like plain-56's first layers is cut off there.
    lo, hi = values[0], min(values[-1], max(q3 + 3 * (q3 - q1), *(statistics.fmean(ys) for ys in curves.values())))
    pad = 0.08 * (hi - lo)
    for ax in axes[1:]:
        ax.set_ylim(lo - pad, hi + 3 * pad)
    axes[0].set_ylim(0, 1.05 * values[-1])
    axes[0].set_title("whole range", fontsize=9)
    axes[1].set_title(f"zoomed to {lo - pad:.2f}..{hi + 3 * pad:.2f} (values above are cut off); dotted: "
                      "each net's mean", fontsize=9)
    axes[2].set_title("sorted by magnitude, zoomed as above", fontsize=9)
    axes[0].set_xlabel("layer index (original)")
    axes[1].set_xlabel("layer index (original)")
    axes[2].set_xlabel("layer index (sorted by magnitude)")
    for ax in axes:
        ax.set_ylabel("std")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper right")
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle("Fig. 7 analogue: std of 3x3 layer responses (after BN, before addition/ReLU)")
    return save_figure(fig, path, tight=False)  # constrained layout already
