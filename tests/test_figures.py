"""The experiments' figures: each one's labels and limits, as a reader needs them to see the claim."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.figure
import pytest

from reslab.experiments.landscape import (
    LOSS_CAP,
    Surface,
    contour_levels,
    plot_contours,
    plot_roughness,
    plot_slices,
    read_surfaces,
    replot,
)
from reslab.experiments.responses import plot_responses, read_curves


@pytest.fixture
def drawn(monkeypatch):
    """The figures saved while the test runs (their axes stay readable after pyplot closes them)."""
    figures = []
    save = matplotlib.figure.Figure.savefig

    def keep(fig, *args, **kw):
        figures.append(fig)
        return save(fig, *args, **kw)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    return figures


def _surface(label: str, dip: bool) -> Surface:
    """A 5-point, 5x5 bowl; with `dip`, the second slice has two local minima."""
    coords = axis = [-1.0, -0.5, 0.0, 0.5, 1.0]
    s = Surface(label, coords, axis)
    bowl = [4 * a * a + 0.3 for a in coords]
    s.loss_1d = [bowl, [3.0, 0.5, 2.0, 0.5, 3.0] if dip else bowl]
    s.err_1d = [[min(1.0, a * a) for a in coords]] * 2
    s.loss_2d = [[a * a + b * b + 0.3 + (0.5 * a * b if dip else 0) for b in axis] for a in axis]
    s.err_2d = [[0.1] * 5 for _ in axis]
    return s


SURFACES = {"plain56": _surface("plain56", True), "resnet56": _surface("resnet56", False)}


def test_slices_have_one_y_axis_per_quantity_and_no_python_list_in_titles(drawn, tmp_path):
    plot_slices(SURFACES, tmp_path / "1d.png")
    [fig] = drawn
    loss, err = fig.axes[0], fig.axes[2]  # row-major: loss row, then error row
    assert len(fig.axes) == 4  # 2 nets x (loss, error): no twin axes
    assert loss.get_ylabel() == "loss (cross-entropy)" and err.get_ylabel() == "training error (%)"
    assert err.get_ylim() == (0, 100) and loss.get_ylim() == (0, 0.3 + LOSS_CAP)
    assert fig.axes[0].get_title() == "plain-56: local minima per slice 1, 2"
    assert all("[" not in ax.get_title() for ax in fig.axes)
    assert fig.legends and not loss.get_legend()  # the legend sits below the panels, over no data


def test_contours_have_round_levels_round_ticks_and_a_visible_centre(drawn, tmp_path):
    plot_contours(SURFACES, tmp_path / "2d.png")
    [fig] = drawn
    panels, bar = fig.axes[:2], fig.axes[2]
    assert bar.get_ylabel() == "loss (cross-entropy)"
    assert all(float(t) == round(float(t), 1) for t in bar.get_yticks())
    levels = contour_levels([0.265, 1.0, 5.0, 11.0])
    assert levels[0] <= 0.265 and levels[-1] <= 5.0 and all((4 * v).is_integer() for v in levels)  # 0.25 steps
    for ax in panels:
        assert ax.get_xlabel() == "alpha" and ax.get_ylabel() == "beta"
        assert ax.get_xlim() == (-1, 1) and list(ax.get_xticks()) == [-1, -0.5, 0, 0.5, 1]
        [star] = ax.lines
        assert star.get_marker() == "*" and star.get_markersize() >= 12 and star.get_markeredgecolor() == "white"


def test_roughness_counts_on_an_integer_axis_and_flat_is_its_own_legend(drawn, tmp_path):
    plot_roughness(SURFACES, tmp_path / "roughness.png")
    [fig] = drawn
    bars = fig.axes[0]
    assert bars.get_ylim() == (0, 3)  # the most minima (2) plus room for the legend above the bars
    assert all(float(t).is_integer() for t in bars.get_yticks())
    assert bars.get_ylabel().startswith("local minima") and bars.get_xlabel() == "1-D slice"
    legend = bars.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["plain-56", "ResNet-56"]
    assert [t.get_text() for t in fig.axes[2].get_legend().get_texts()] == ["flat: left out"]
    colour = fig.axes[-1]
    assert colour.get_ylim() == (0, 1) and list(colour.get_yticks()) == [0, 0.25, 0.5, 0.75, 1]
    assert "coolwarm" not in repr(fig.axes[1].images[0].get_cmap().name)  # no pale middle to mistake for flat


def test_responses_zoom_on_the_bulk_so_the_means_compared_are_visible(drawn, tmp_path):
    curves = {"plain20": [0.9, 0.92, 0.88], "resnet20": [0.8, 0.85, 0.83],
              "plain56": [5.0, 3.0, 1.0, 0.9, 0.9, 0.9], "resnet56": [1.0, 0.8, 0.82, 0.8, 0.81, 0.79]}
    plot_responses(curves, tmp_path / "responses.png")
    [fig] = drawn
    full, zoom, ranked = fig.axes
    assert full.get_ylim()[1] >= 5.0  # the spike, whole
    lo, hi = zoom.get_ylim()
    assert 1.95 < hi < 3.0 and lo < 0.79 and ranked.get_ylim() == zoom.get_ylim()  # every mean shown, the spike cut
    assert [t.get_text() for t in zoom.get_legend().get_texts()][:2] == ["plain-20, mean 0.900",
                                                                         "ResNet-20, mean 0.827"]
    assert ranked.get_xlabel() == "layer index (sorted by magnitude)"
    assert all(ax.get_ylabel() == "std" for ax in fig.axes)


def test_replot_reads_back_what_the_report_wrote(tmp_path):
    lines = ["net,kind,slice,a,b,loss,error"]
    for lab, s in SURFACES.items():
        slices = enumerate(zip(s.loss_1d, s.err_1d, strict=True))
        lines += [f"{lab},1d,{k},{a:.6g},,{v:.6g},{e:.6g}" for k, (ls, es) in slices
                  for a, v, e in zip(s.coords, ls, es, strict=True)]
        lines += [f"{lab},2d,,{a:.6g},{b:.6g},{s.loss_2d[i][j]:.6g},{s.err_2d[i][j]:.6g}"
                  for i, a in enumerate(s.axis) for j, b in enumerate(s.axis)]
    (tmp_path / "landscape.csv").write_text("\n".join(lines) + "\n")
    back = read_surfaces(tmp_path / "landscape.csv")
    for lab, s in SURFACES.items():
        assert back[lab].coords == s.coords and back[lab].axis == s.axis
        assert all(math.isclose(x, y, rel_tol=1e-5) for r1, r2 in zip(back[lab].loss_2d, s.loss_2d, strict=True)
                   for x, y in zip(r1, r2, strict=True))
    assert [p.name for p in replot(tmp_path)] == ["landscape-1d.png", "landscape-2d.png", "roughness.png"]
    (tmp_path / "responses.csv").write_text("net,seed,layer,std\nplain20,0,1,0.9\nplain20,1,1,0.7\nplain20,0,2,1\n"
                                            "plain20,1,2,1\n")
    assert read_curves(tmp_path / "responses.csv") == {"plain20": [0.8, 1.0]}


# ---------------------------------------------------------------------------- the other figure functions
def _record(label: str, train: list[float], val: list[float]):
    from reslab.experiments.records import RunRecord

    rows = [{"kind": "iter", "iteration": str(100 * (i + 1)), "train_err": str(e), "val_err": ""}
            for i, e in enumerate(train)]
    rows += [{"kind": "eval", "iteration": str(100 * (i + 1)), "train_err": "", "val_err": str(e)}
             for i, e in enumerate(val)]
    return RunRecord(label, label, 0, Path("."), {}, 1, train[-1], val[-1], min(val), 1.0, metrics=rows)


def test_degradation_panels_share_a_zero_based_error_axis_that_cuts_the_first_iterations(drawn, tmp_path):
    from reslab.experiments.degradation import plot_degradation

    records = [_record("plain20", [0.9, 0.3, 0.2, 0.1, 0.1], [0.9, 0.3, 0.25, 0.2, 0.2]),
               _record("plain56", [0.9, 0.4, 0.3, 0.2, 0.2], [0.9, 0.4, 0.35, 0.3, 0.3]),
               _record("resnet20", [0.9, 0.3, 0.2, 0.1, 0.1], [0.9, 0.3, 0.2, 0.15, 0.15]),
               _record("resnet56", [0.9, 0.2, 0.1, 0.05, 0.05], [0.9, 0.2, 0.15, 0.1, 0.1])]
    plot_degradation(records, [20, 56], tmp_path / "degradation.png")
    [fig] = drawn
    plain, res = fig.axes
    assert plain.get_title() == "plain networks" and res.get_title() == "ResNets"
    assert plain.get_ylabel() == "error (%)" and plain.get_xlabel() == res.get_xlabel() == "iterations"
    lo, hi = plain.get_ylim()
    # 0-based; the 90% start is cut: the top is 1.3 x the worst error after the first fifth (40%) + 1
    assert lo == 0 and hi == pytest.approx(1.3 * 40 + 1) and res.get_ylim() == plain.get_ylim()
    assert [t.get_text() for t in res.get_legend().get_texts()] == ["ResNet-20", "ResNet-56"]
    assert "[" not in fig._suptitle.get_text()


def test_depth_has_a_log_axis_labelled_with_the_depths_and_the_paper_as_reference(drawn, tmp_path):
    from reslab.experiments.claims import Stat
    from reslab.experiments.depth import plot_depth

    depths = [20, 56, 110]
    stats = {f"resnet{d}": Stat(0.1 - d / 2000, 0.01, 2) for d in depths}
    plot_depth(depths, stats, stats, tmp_path / "depth.png")
    [fig] = drawn
    [ax] = fig.axes
    assert ax.get_xscale() == "log" and [t.get_text() for t in ax.get_xticklabels()] == ["20", "56", "110"]
    assert ax.get_xlabel() == "depth (layers)" and ax.get_ylabel() == "error (%)"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "paper test error (CIFAR-10, Table 6)" in labels and len(labels) == 3


def test_shortcuts_bars_name_each_option_with_its_parameters(drawn, tmp_path):
    from reslab.experiments.claims import Stat
    from reslab.experiments.shortcuts import OPTIONS, plot_shortcuts

    key = {o: f"net-{o}" for o in OPTIONS}
    stats = {key[o]: Stat(0.1, 0.0, 1) for o in OPTIONS}
    params = {o: 1000 * (i + 1) for i, o in enumerate(OPTIONS)}
    plot_shortcuts(params, stats, stats, key, tmp_path / "shortcuts.png", title="ResNet-20")
    [fig] = drawn
    [ax] = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"{o}\n{params[o]:,} params" for o in OPTIONS]
    assert ax.get_ylabel() == "error (%)" and ax.get_ylim()[0] == 0
    assert ax.get_title() == "ResNet-20: shortcut options (Table 3 analogue)"


def test_lesion_panels_are_error_percentages_from_0_to_100_with_integer_counts(drawn, tmp_path):
    from reslab.experiments.lesion import Lesion, Site, plot_lesion

    single = [(Site(f"layer1.{i}", i == 2, i + 1), 0.1 * (i + 1)) for i in range(4)]
    lesions = {"plain20": Lesion("plain20", 0.1, single, {1: [0.2, 0.3], 2: [0.5, 0.6]}),
               "resnet20": Lesion("resnet20", 0.08, single, {1: [0.1, 0.12], 2: [0.2, 0.3]})}
    plot_lesion(lesions, tmp_path / "lesion.png")
    [fig] = drawn
    one, k = fig.axes
    assert one.get_ylim() == k.get_ylim() == (0, 100)
    assert one.get_ylabel() == k.get_ylabel() == "test error (%)"
    assert k.get_xlabel() == "number of non-downsampling blocks removed at random"
    assert all(float(t).is_integer() for ax in (one, k) for t in ax.get_xticks())  # positions and counts
    assert [t.get_text() for t in k.get_legend().get_texts()] == ["plain-20", "ResNet-20"]


def test_compare_is_log_log_with_one_legend_entry_per_family(drawn, tmp_path):
    from reslab.experiments.compare import CompareRow, plot_compare

    rows = [CompareRow("ResNet-20", "resnet20", "cifar", 20, 21, 270_000, 41_000_000, (3, 32, 32), 0.09),
            CompareRow("ResNet-50", "resnet50", "imagenet", 50, 54, 25_000_000, 4_100_000_000, (3, 224, 224))]
    plot_compare(rows, tmp_path / "compare.png")
    [fig] = drawn
    [ax] = fig.axes
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert ax.get_xlabel() == "multiply-adds per image" and ax.get_ylabel() == "parameters"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["cifar", "imagenet"]
    lo, hi = ax.get_xlim()
    assert lo < 41_000_000 and hi > 4_100_000_000  # every bubble inside
    assert {t.get_text() for t in ax.texts} == {"ResNet-20\naccuracy 91.00%", "ResNet-50"}


def test_run_curves_say_training_validation_and_test(drawn, tmp_path):
    from reslab.train.rundir import plot_curves

    rows = [{"kind": "iter", "iteration": "10", "train_err": "0.5"},
            {"kind": "iter", "iteration": "20", "train_err": "0.3"},
            {"kind": "eval", "iteration": "20", "val_err": "0.35"},
            {"kind": "test", "iteration": "20", "test_err": "0.4"}]
    plot_curves(rows, tmp_path / "curves.png", title="resnet20")
    [fig] = drawn
    [ax] = fig.axes
    assert ax.get_xlabel() == "iterations" and ax.get_ylabel() == "error (%)" and ax.get_title() == "resnet20"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["training error", "validation error"] and labels[-1] == "test error 40.00%"


def test_lr_find_plot_is_log_lr_and_its_loss_axis_follows_the_smoothed_curve(drawn, tmp_path):
    from reslab.train.lrfind import STOP_FACTOR, LRFindResult, plot, sweep_lrs

    lrs = sweep_lrs(1e-4, 1.0, 20)
    smoothed = [2.3 - 0.05 * i for i in range(15)] + [1.8, 2.5, 3.5, 5.0, 9.0]
    losses = [s + 0.2 * (-1) ** i for i, s in enumerate(smoothed)]
    losses[-1] = 1e6  # a diverging mini-batch must not flatten the curve
    result = LRFindResult(lrs, losses, smoothed, lrs[8], lrs[14] / 10, True, tmp_path, "reslab train ...")
    plot(result, tmp_path / "lr.png", title="lr range test")
    [fig] = drawn
    [ax] = fig.axes
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "learning rate" and ax.get_ylabel() == "training loss"
    lo, hi = ax.get_ylim()
    low = min(smoothed)
    assert lo == pytest.approx(low - 0.1 * low) and hi == pytest.approx(min(9.0, STOP_FACTOR * low) * 1.05, abs=1e-5)
    assert any(t.get_text().startswith("suggested lr") for t in ax.get_legend().get_texts())


def test_confusion_matrix_has_a_colour_bar_from_0_to_1_and_class_names_on_both_axes(drawn, tmp_path):
    import torch

    from reslab.evaluate import save_confusion_png

    confusion = torch.tensor([[8, 2, 0], [1, 9, 0], [0, 0, 10]])
    save_confusion_png(confusion, ["cat", "dog", "ship"], tmp_path / "c.png", title="validation")
    [fig] = drawn
    ax, bar = fig.axes
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true" and ax.get_title() == "validation"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "ship"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat", "dog", "ship"]
    assert bar.get_ylim() == (0, 1) and bar.get_ylabel().startswith("fraction of the true class")
    assert {t.get_text() for t in ax.texts} == {"8", "2", "1", "9", "10"}  # counts, zeros left blank


def test_compare_labels_of_runs_of_one_net_do_not_overlap(drawn, tmp_path):
    from reslab.experiments.compare import CompareRow, plot_compare

    # two runs of ResNet-20: the same parameters and MACs, so the same point
    rows = [CompareRow(f"resnet20 ({name})", "resnet20", "cifar", 20, 20, 269_434, 30_800_000, (1, 28, 28), err)
            for name, err in (("run-a", 0.06), ("run-b", 0.35))]
    plot_compare(rows, tmp_path / "compare.png")
    [fig] = drawn
    [ax] = fig.axes
    fig.canvas.draw()
    a, b = (t.get_window_extent() for t in ax.texts)
    assert not a.overlaps(b)
