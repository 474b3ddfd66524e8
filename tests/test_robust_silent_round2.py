"""No silent wrong answer, resources bounded (issue 28, items 8 and 9): evaluate on folders with the model's
own preprocessing, hidden folders, a BOM in a class file, int8 without calibration images, NaN outputs,
worker counts and integer flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from reslab.cli import main
from reslab.data.classnames import read_class_names
from reslab.data.folder import VisibleImageFolder, check_folder, folder_classes
from reslab.deploy.predict import expand_inputs, predict
from reslab.evaluate import evaluate_weights

from robust_util import image_folder, one_line_error, png_bytes, snapshot, tiny_weights

PRE = {"image_size": 16, "in_chans": 3, "mode": "channel", "mean": [0.5, 0.4, 0.3], "std": [0.25, 0.25, 0.25],
       "resize": None, "crop": 16, "dataset": "folder"}
CLASSES = tuple(f"c{i}" for i in range(10))


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("w"), preprocess=PRE)


def test_evaluate_on_folders_uses_the_models_preprocessing(weights, tmp_path):
    """The model sees 16x16 views normalised by its own mean/std; ImageNet's 256/224 and statistics would
    give other predictions. evaluate's error must equal what predict's answers imply."""
    root = image_folder(tmp_path / "data", classes=CLASSES, n=3, size=40)
    res, classes, _ = evaluate_weights(weights, data="folder", data_dir=str(root), split="val", out=tmp_path / "o")
    files = sorted((root / "val").rglob("*.png"))
    top1 = predict(weights, files, topk=1, path="eager")
    wrong = sum(r["topk"][0]["class"] != Path(r["file"]).parent.name for r in top1)
    assert classes == list(CLASSES) and res.n == len(files)
    assert res.top1_err == pytest.approx(wrong / len(files))
    ten, _, _ = evaluate_weights(weights, data="folder", data_dir=str(root), split="val", out=tmp_path / "o",
                                 ten_crop=True, overwrite=True)  # its confusion-val.png replaces the first's
    assert ten.n == len(files)


def test_hidden_folders_are_not_classes_nor_images(tmp_path):
    root = image_folder(tmp_path / "data")
    for split in ("train", "val"):
        hidden = root / split / ".ipynb_checkpoints"
        hidden.mkdir()
        (hidden / "x-checkpoint.png").write_bytes(png_bytes())
        (root / split / "cat" / ".ipynb_checkpoints").mkdir()
        (root / split / "cat" / ".ipynb_checkpoints" / "0-checkpoint.png").write_bytes(png_bytes())
    assert folder_classes(root) == ["cat", "dog"]
    samples = check_folder(root)["train"]
    assert len(samples) == 8 and not any(".ipynb" in f for f, _ in samples)
    assert VisibleImageFolder(root / "val").classes == ["cat", "dog"]
    assert len(expand_inputs([root / "val"])) == 8


def test_a_utf8_bom_is_not_part_of_the_first_class_name(tmp_path):
    for text in ("\ufeffcat\ndog\n", '\ufeff["cat", "dog"]'):
        path = tmp_path / "classes.txt"
        path.write_text(text, encoding="utf-8")
        assert read_class_names(path) == ["cat", "dog"]


def test_duplicate_class_names_in_a_classes_file(weights, tmp_path, capsys):
    names = tmp_path / "names.txt"
    names.write_text("\n".join(["a", "b", "a", *"cdefghi"]))
    img = tmp_path / "x.png"
    img.write_bytes(png_bytes())
    one_line_error(capsys, ["predict", weights, img, "--classes", names], "'a' twice")


def test_int8_without_calibration_images_refuses(weights, tmp_path, capsys):
    img = tmp_path / "x.png"
    img.write_bytes(png_bytes())
    one_line_error(capsys, ["predict", weights, img, "--path", "int8"], "--path int8 needs calibration images",
                   "--calib DIR")


def test_int8_says_what_it_calibrated_on(weights, tmp_path, capsys):
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(10):
        (calib / f"{i}.png").write_bytes(png_bytes(seed=i))
    img = tmp_path / "x.png"
    img.write_bytes(png_bytes(seed=99))
    assert main(["predict", str(weights), str(img), "--path", "int8", "--calib", str(calib), "--json"]) == 0
    out = capsys.readouterr()
    assert "int8 calibrated on 10 images from --calib" in out.err and json.loads(out.out)["results"]


def test_nan_output_is_an_error_never_bare_nan(weights, tmp_path, capsys):
    """Finite weights that overflow (fc rows of 1e38): the output is inf/NaN; predict --json must not print it."""
    bad = tmp_path / "w"
    bad.mkdir()
    state = load_file(weights / "model.safetensors")
    state["fc.weight"] = torch.full_like(state["fc.weight"], 3e38)
    save_file(state, bad / "model.safetensors", metadata={"format": "reslab-weights"})
    (bad / "model.json").write_text((weights / "model.json").read_text())
    img = tmp_path / "x.png"
    img.write_bytes(png_bytes())
    before = snapshot(tmp_path)
    one_line_error(capsys, ["predict", bad, img, "--json", "--path", "eager"], "x.png",
                   "output holds NaN or infinite values")
    assert snapshot(tmp_path) == before


def test_json_text_never_writes_bare_nan():
    from reslab.console import json_text

    text = json_text({"a": float("nan"), "b": [1.0, float("inf")], "c": (2, {"d": -float("inf")})})
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": [2, {"d": None}]} and "NaN" not in text


@pytest.mark.parametrize("argv, needle", [
    (["train", "--workers", "100000"], "--workers"),
    (["train", "--seed", "18446744073709551616"], "--seed"),
    (["train", "--iterations", "1e20"], "--iterations"),
    (["train", "--iterations", "100000000000000000000"], "--iterations"),
    (["train", "--batch-size", "9" * 100_000], "(100,000 characters)"),
    (["summary", "resnet18", "--num-classes", "10000000000"], "--num-classes"),
    (["bench", "infer", "--batch-size", "99999999999"], "--batch-size"),
])
def test_integer_flags_are_bounded_before_use(capsys, argv, needle):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert e.value.code == 2 and len(lines) == 1 and needle in lines[0] and len(lines[0]) < 300, err


def test_bench_allocation_checked_before_allocating(capsys, tmp_path):
    one_line_error(capsys, ["bench", "infer", "--model", "resnet50", "--image-size", "4096", "--batch-size",
                            "100000", "--out", tmp_path / "b.json"], "GiB", "smaller --batch-size")
    assert not (tmp_path / "b.json").exists()
