"""Bad images: a corrupt, truncated or bomb image is found before training starts and is a
one-line error naming it, or skipped and counted; predict and int8 calibration count what they used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reslab.data.folder import _scan, check_folder, folder_dataset, folder_loader
from reslab.data.formats import read_idx_pair
from reslab.errors import ReslabError

from fakedata import write_idx
from robust_util import image_folder, one_line_error, png_bytes, tiny_weights, write_bad_images

KINDS = ("corrupt", "truncated", "bomb")


@pytest.fixture
def weights(tmp_path) -> Path:
    return tiny_weights(tmp_path / "w")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("split", ["train", "val"])
def test_train_on_a_folder_with_a_bad_image_stops_before_training(tmp_path, capsys, kind, split):
    root = image_folder(tmp_path / "data")
    bad = write_bad_images(tmp_path / "bad")[kind]
    target = root / split / "cat" / bad.name
    bad.rename(target)
    run = tmp_path / "run"
    one_line_error(capsys, ["train", "--data", "folder", "--data-dir", root, "--model", "resnet18", "--out", run,
                            "--iterations", "2", "--batch-size", "2", "--device", "cpu", "--workers", "0", "--quiet"],
                   str(target), "--skip-bad")
    assert not run.exists()  # decided before the run directory is made


def test_skip_bad_leaves_them_out_with_a_count(tmp_path, capsys):
    root = image_folder(tmp_path / "data")
    for kind, path in write_bad_images(tmp_path / "bad").items():
        path.rename(root / "train" / "dog" / f"{kind}{path.suffix}")
    ds = folder_dataset(root, "train", train=True, image_size=16, scale_range=(18, 24), skip_bad=True)
    assert len(ds) == 8 and len(ds.targets) == 8
    assert f"skipping 3 unreadable of 11 images in {root / 'train'}" in capsys.readouterr().err
    x, _ = next(iter(folder_loader(root, "train", batch_size=8, workers=2, train=True, image_size=16,
                                   scale_range=(18, 24), skip_bad=True)[0]))
    assert x.shape == (8, 3, 16, 16)


def test_evaluation_folder_with_a_bad_image_is_one_line(tmp_path):
    root = image_folder(tmp_path / "data")
    (root / "val" / "dog" / "broken.png").write_bytes(png_bytes()[:60])
    with pytest.raises(ReslabError) as err:
        folder_loader(root, "val", batch_size=2, workers=0, train=False)
    msg = str(err.value)
    assert "\n" not in msg and "broken.png" in msg and "1 of 9 images" in msg


def test_a_count_of_one_says_one_image(tmp_path, weights, capsys):
    """The counts in these lines take console.plural: "1 image", never "1 images"."""
    bad = write_bad_images(tmp_path / "bad")["corrupt"]
    one = r"; 1 of 1 image in .* is unreadable: fix or remove it, or pass --skip-bad to leave it out"
    with pytest.raises(ReslabError, match=one):
        _scan(bad.parent, [str(bad)], skip_bad=False)
    assert _scan(bad.parent, [str(bad)], skip_bad=True) == {str(bad)}
    assert f"skipping 1 unreadable of 1 image in {bad.parent} (first:" in capsys.readouterr().err
    one_line_error(capsys, ["predict", weights, bad, "--skip-bad"], "the image could not be read (first:")
    images = write_idx(tmp_path / "idx" / "images", np.zeros((1, 28, 28), np.uint8))
    labels = write_idx(tmp_path / "idx" / "labels", np.zeros(2, np.uint8))
    with pytest.raises(ReslabError, match=r"has 1 image but .* has 2 labels"):
        read_idx_pair(images, labels)


def test_a_class_left_without_images_is_an_error(tmp_path):
    root = image_folder(tmp_path / "data", n=1)
    (root / "train" / "dog" / "0.png").write_bytes(b"junk")
    with pytest.raises(ReslabError, match=r"dog: no readable images left"):
        check_folder(root, skip_bad=True)


# ---------------------------------------------------------------------------- predict and calibration
def test_predict_skip_bad_with_every_file_unreadable_fails(tmp_path, weights, capsys):
    folder = tmp_path / "imgs"
    write_bad_images(folder)
    one_line_error(capsys, ["predict", weights, folder, "--skip-bad"], "none of the 3 images could be read")


def test_predict_skip_bad_reports_the_bad_ones(tmp_path, weights, capsys):
    folder = tmp_path / "imgs"
    write_bad_images(folder)
    (folder / "good.png").write_bytes(png_bytes())
    from reslab.cli import main

    assert main(["predict", str(weights), str(folder), "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert "good.png" in captured.out and "skipped 3 unreadable file(s)" in captured.err


def test_int8_calibration_with_too_few_readable_images_refuses(tmp_path, weights, capsys):
    pytest.importorskip("onnxruntime")
    calib = tmp_path / "calib"
    write_bad_images(calib)
    (calib / "ok.png").write_bytes(png_bytes())
    one_line_error(capsys, ["export", weights, "--format", "onnx", "--int8", "--calib", calib],
                   "only 1 of 4 calibration images are readable", "needs at least 4")
    assert not (weights / "model.int8.onnx").exists()


def test_int8_calibration_says_how_many_it_used(tmp_path, weights, capsys):
    pytest.importorskip("onnxruntime")
    from reslab.deploy.export import load_calibration
    from reslab.weights import read_metadata

    calib = tmp_path / "calib"
    write_bad_images(calib)
    for i in range(9):
        (calib / f"ok{i}.png").write_bytes(png_bytes(seed=i))
    batch = load_calibration(calib, read_metadata(weights)["preprocess"])
    assert tuple(batch.shape) == (9, 3, 16, 16) and str(batch.dtype) == "torch.uint8"
    assert "int8 calibration on 9 of 12 images; 3 unreadable skipped" in capsys.readouterr().err


def test_train_skip_bad_trains_without_them_and_says_how_many(tmp_path, capsys):
    from reslab.cli import main

    root = image_folder(tmp_path / "data", n=3)
    for kind, path in write_bad_images(tmp_path / "bad").items():
        path.rename(root / "train" / "cat" / f"{kind}{path.suffix}")
    run = tmp_path / "run"
    assert main(["train", "--data", "folder", "--data-dir", str(root), "--model", "resnet20", "--out", str(run),
                 "--iterations", "2", "--batch-size", "2", "--device", "cpu", "--workers", "0", "--quiet",
                 "--skip-bad", "--amp", "off"]) == 0
    assert f"skipping 3 unreadable of 9 images in {root / 'train'}" in capsys.readouterr().err
    assert "validation top-1 error" in (run / "report.md").read_text()  # no test/ split: said honestly
