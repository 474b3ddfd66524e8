"""The experiments' figures: each one's labels and limits, as a reader needs them to see the claim."""

from __future__ import annotations

import math

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
