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
    maps = cam(model, x, [1])
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
    torch.testing.assert_close(cam(model, x, classes, method="gradcam"), cam(model, x, classes), atol=2e-4, rtol=0)
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
    overlay = Image.open(out / first["overlay"])
    assert overlay.mode == "RGB" and min(overlay.size) == 224  # 32 px enlarged to be legible
    assert (out / "grid.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "explain.json").read_text())["layer"] == "layer3"
    assert len(list(out.glob("*-top*.png"))) == 8
    assert "t_shirt_top" in "".join(p.name for p in out.glob("*.png")) or first["class"] != "t-shirt/top"


def test_cli_explain_stops_at_a_bad_file_without_skip_bad(tmp_path, weights, capsys):
    (tmp_path / "broken.png").write_bytes(b"nope")
    assert main(["explain", str(weights), str(tmp_path / "broken.png"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "broken.png" in err
