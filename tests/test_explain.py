"""reslab explain: CAM is the hand-computed map, Grad-CAM at the last stage equals it up to scale, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from reslab.cli import main
from reslab.errors import ReslabError
from reslab.explain import cam, class_activation_maps, default_layer
from reslab.models import create_model
from reslab.weights import save_weights

from fakedata import randomise_bn

PRE = {"image_size": 32, "in_chans": 3, "mode": "channel", "mean": [0.5, 0.4, 0.3], "std": [0.25, 0.25, 0.25],
       "resize": None, "crop": 32}


def _tiny_resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return randomise_bn(create_model("resnet20", layers=(1, 1, 1), num_classes=5))


def test_cam_is_fc_weight_times_features():
    model = _tiny_resnet()
    x = torch.randn(3, 3, 32, 32)
    classes = torch.tensor([[0, 2], [4, 1], [3, 3]])
    maps = class_activation_maps(model, x, classes)
    assert maps.shape == (3, 2, 8, 8)
    with torch.no_grad():
        feats = model.forward_features(x)  # (B, 64, 8, 8)
        logits = model(x)
    for b in range(3):
        for k in range(2):
            c = int(classes[b, k])
            by_hand = (model.fc.weight[c][:, None, None] * feats[b]).sum(0)  # sum_k w_ck f_k(x, y)
            torch.testing.assert_close(maps[b, k], by_hand)
            # CAM's spatial mean plus the bias is the class score (Zhou et al. 2016, Eq. 1-2)
            torch.testing.assert_close(maps[b, k].mean() + model.fc.bias[c], logits[b, c])


def test_cam_maps_are_scaled_positive_parts_at_the_input_size():
    model = _tiny_resnet()
    x = torch.randn(2, 3, 32, 32)
    raw = class_activation_maps(model, x, [1])
    assert (raw < 0).any()  # so that the min-max scaling below is a pure scale of the positive part
    maps = cam(model, x, [1], scale="per-map")
    assert maps.shape == (2, 1, 32, 32) and maps.amin((2, 3)).eq(0).all()
    torch.testing.assert_close(maps.amax((2, 3)), torch.ones(2, 1))
    up = torch.nn.functional.interpolate(raw.clamp_min(0), size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(maps, up / up.amax((2, 3), keepdim=True), atol=1e-5, rtol=0)


def test_gradcam_at_the_last_stage_is_cam_up_to_scale():
    pytest.importorskip("pytorch_grad_cam")
    model = _tiny_resnet()
    x = torch.randn(2, 3, 32, 32)
    classes = torch.tensor([[0, 3], [2, 4]])
    assert default_layer(model) == "layer3"
    for scale in ("per-map", "prob"):
        torch.testing.assert_close(cam(model, x, classes, method="gradcam", scale=scale),
                                   cam(model, x, classes, scale=scale), atol=2e-4, rtol=0)
    assert model.training is False  # randomise_bn's eval mode is kept
    other = cam(model, x, classes, method="gradcam++", layer="layer2")
    assert other.shape == (2, 2, 32, 32) and torch.isfinite(other).all()


@pytest.mark.parametrize("name, layer", [("vgg11_small", "features.27"), ("alexnet_small", "features.11"),
                                         ("googlenet_small", "inception5b"), ("plain20", "layer3")])
def test_gradcam_covers_the_classic_nets(name, layer):
    pytest.importorskip("pytorch_grad_cam")
    torch.manual_seed(0)
    model = create_model(name, num_classes=4).eval()
    assert default_layer(model) == layer
    maps = cam(model, torch.randn(1, 3, 32, 32), [0, 1], method="gradcam")
    assert maps.shape == (1, 2, 32, 32) and torch.isfinite(maps).all()


def test_cli_methods_are_the_librarys():
    from reslab.explain.cam import METHODS
    from reslab.explain.commands import _METHODS

    assert _METHODS == METHODS


def test_cam_errors_are_one_line():
    vgg = create_model("vgg11_small", num_classes=4).eval()
    with pytest.raises(ReslabError, match="gradcam"):
        cam(vgg, torch.randn(1, 3, 32, 32), [0])
    with pytest.raises(ReslabError, match="layer='layer2'"):
        cam(_tiny_resnet(), torch.randn(1, 3, 32, 32), [0], layer="layer2")
    with pytest.raises(ReslabError, match="no layer named 'layer9'"):
        cam(_tiny_resnet(), torch.randn(1, 3, 32, 32), [0], method="gradcam", layer="layer9")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    model = _tiny_resnet()
    return save_weights(model, tmp_path_factory.mktemp("w"), model_name="resnet20",
                        model_kwargs={"layers": [1, 1, 1], "num_classes": 5},
                        classes=["cat", "dog", "t-shirt/top", "bag", "boot"], preprocess=PRE)


def _images(folder) -> list:
    rng = np.random.default_rng(0)
    paths = []
    for name, mode in (("rgb.png", "RGB"), ("grey.png", "L"), ("alpha.png", "RGBA"), ("pal.gif", "P")):
        arr = rng.integers(0, 256, (30, 40, 4), dtype=np.uint8)
        img = Image.fromarray(arr, "RGBA").convert(mode)
        img.save(folder / name)
        paths.append(folder / name)
    return paths


def test_cli_explain_writes_overlays_grid_and_json(tmp_path, weights, capsys):
    paths = _images(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"
    assert main(["explain", str(weights), *map(str, paths), str(tmp_path / "broken.png"), "--topk", "2",
                 "--out", str(out), "--skip-bad", "--json", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert "broken.png" in captured.err
    good = [r for r in doc["results"] if "topk" in r]
    assert len(good) == 4 and all(len(r["topk"]) == 2 for r in good)
    first = good[0]["topk"][0]
    assert Image.open(out / first["overlay"]).size == (360, 310)  # a titled figure with its colour bar
    assert (out / "grid.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "explain.json").read_text())
    assert saved["layer"] == "layer3" and saved["scale"] == "prob"
    assert len(list(out.glob("*-top*.png"))) == 8
    assert "t_shirt_top" in "".join(p.name for p in out.glob("*.png")) or first["class"] != "t-shirt/top"


def test_cli_explain_stops_at_a_bad_file_without_skip_bad(tmp_path, weights, capsys):
    (tmp_path / "broken.png").write_bytes(b"nope")
    assert main(["explain", str(weights), str(tmp_path / "broken.png"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "broken.png" in err


def test_scales_keep_an_improbable_class_cold():
    model = _tiny_resnet()
    x = torch.randn(2, 3, 32, 32)
    classes = torch.tensor([[0, 1], [2, 3]])
    probs = torch.softmax(model.eval()(x), 1).detach()
    raw = torch.nn.functional.interpolate(class_activation_maps(model, x, classes).clamp_min(0), size=(32, 32),
                                          mode="bilinear", align_corners=False)
    per_map = cam(model, x, classes, scale="per-map")
    some = raw.amax((2, 3)) > 0  # a map with a positive part, however improbable its class, peaks at 1
    assert some.sum() >= 3 and (per_map.amax((2, 3))[some] - 1).abs().max() < 1e-5
    weighted = cam(model, x, classes)  # the default: scale="prob"
    torch.testing.assert_close(weighted, per_map * probs.gather(1, classes)[:, :, None, None], atol=1e-5, rtol=0)
    fake = torch.tensor([[0.999, 0.001, 0, 0, 0], [0, 0, 0.5, 0.0, 0.5]])
    assert cam(model, x, classes, probs=fake)[0, 1].max() <= 0.001  # p = 0.001: no colour above 0.001
    shared = cam(model, x, classes, scale="shared")
    assert shared.amax((1, 2, 3)).sub(1).abs().max() < 1e-5 and shared.amin((1, 2, 3)).eq(0).all()
    ratio = raw.amax((2, 3)) / raw.amax((1, 2, 3))[:, None]  # each class's peak against the image's largest
    torch.testing.assert_close(shared.amax((2, 3)), ratio, atol=1e-4, rtol=0)
    with pytest.raises(ReslabError, match="scale='shared'"):
        cam(model, x, classes, method="gradcam", scale="shared")
    with pytest.raises(ReslabError, match="scale='hot'"):
        cam(model, x, classes, scale="hot")


def test_grid_labels_never_overlap_with_long_file_names():
    from reslab.explain.overlay import GridRow, grid_figure
    from reslab.plotting import pyplot

    view = Image.new("RGB", (224, 224), "grey")
    long = "a-very-long-photo-name-from-a-phone-IMG_20261204_101500_HDR_portrait_mode_{}.jpeg"
    rows = [GridRow(long.format(i), view, [(view, f"{k}. t-shirt/top-and-a-long-class-name {0.5:.2f}")
                                           for k in (1, 2, 3)]) for i in range(4)]
    fig = grid_figure(rows, title="cam at layer3 of resnet20 (a long label " * 3 + ")", scale="prob")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    images = [ax for ax in fig.axes if ax.images]
    titles = [ax.title for ax in images]
    boxes = [t.get_window_extent(renderer) for t in titles] + [fig._suptitle.get_window_extent(renderer)]
    for i, a in enumerate(boxes):
        assert all(not a.overlaps(b) for b in boxes[i + 1:]), "two captions overlap"
        for ax in images:
            assert not a.overlaps(ax.get_window_extent(renderer)), "a caption overlaps an image"
    assert all("\u2026" in ax.title.get_text() for ax in images[::4])  # file names shortened in the middle
    bar = [ax for ax in fig.axes if not ax.images]
    assert len(bar) == 1 and list(bar[0].get_yticks()) == [0, 0.25, 0.5, 0.75, 1]
    pyplot().close(fig)


def test_overlay_figure_has_a_title_and_a_colour_bar():
    from reslab.explain.overlay import SCALE_LABELS, heat_overlay, model_view, overlay_figure, overlay_title
    from reslab.plotting import pyplot

    view = model_view(Image.new("L", (28, 28), 128), {**PRE, "image_size": 28, "crop": 28, "in_chans": 1})
    assert view.size == (224, 224)  # 28 px enlarged to be legible
    heat = np.linspace(0, 0.3, 49, dtype=np.float32).reshape(7, 7)
    assert heat_overlay(view, heat).size == view.size
    fig = overlay_figure(view, heat, title=overlay_title("Coat", 0.3012, "cam", "resnet20"), scale="prob")
    image, bar = fig.axes
    assert image.get_title() == "Coat: p = 0.30\ncam of resnet20"
    assert bar.get_ylabel() == SCALE_LABELS["prob"] and bar.get_ylim() == (0, 1)
    assert list(bar.get_yticks()) == [0, 0.25, 0.5, 0.75, 1]
    pyplot().close(fig)
