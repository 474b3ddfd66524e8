"""evaluate_weights: the split, multi-scale and device arguments mean what they say."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from reslab import evaluate as evaluate_mod
from reslab.cli import main
from reslab.data.datasets import SPECS
from reslab.errors import ReslabError
from reslab.evaluate import evaluate_weights
from reslab.models import create_model
from reslab.weights import IMAGENET_PREPROCESS, save_weights

from fakedata import write_mnist


@pytest.fixture(scope="module")
def mnist_weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mnist")
    write_mnist(folder, n_train=40, n_test=6)
    pre = {"dataset": "mnist", "image_size": 28, "in_chans": 1, "mode": "channel", "mean": [0.5], "std": [0.25]}
    w = save_weights(create_model("resnet20", in_chans=1).eval(), folder / "w", model_name="resnet20",
                     model_kwargs={"in_chans": 1}, classes=list(SPECS["mnist"].classes), preprocess=pre)
    return w, folder


@pytest.fixture(scope="module")
def folder_weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("cat", "dog"):
            (root / "data" / split / c).mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(root / "data" / split / c / "0.png")
    save_weights(create_model("resnet20", num_classes=2).eval(), root / "w", model_name="resnet20",
                 model_kwargs={"num_classes": 2}, classes=["cat", "dog"],
                 preprocess={**IMAGENET_PREPROCESS, "dataset": "folder"})
    return root / "w", root / "data"


def test_split_is_test_or_val_never_a_silent_val(mnist_weights):
    w, folder = mnist_weights
    res, _, png = evaluate_weights(w, data_dir=str(folder), split="test")
    assert res.n == 6 and png.name == "confusion-test.png"
    with pytest.raises(ReslabError, match="split='tset'; expected test or val"):
        evaluate_weights(w, data_dir=str(folder), split="tset")


def test_multiscale_builds_no_crop_loader(folder_weights, monkeypatch):
    w, data = folder_weights

    def no_crops(*args, **kwargs):
        raise AssertionError("the multi-scale test takes whole images; no crop dataset is needed")

    monkeypatch.setattr(evaluate_mod, "folder_dataset", no_crops)
    res, classes, _ = evaluate_weights(w, data_dir=str(data), multiscale=(32, 40))
    assert classes == ["cat", "dog"] and res.n == 2


def test_absent_cuda_is_a_one_line_error(mnist_weights, monkeypatch, capsys):
    w, folder = mnist_weights
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ReslabError, match="CUDA is not available"):
        evaluate_weights(w, data_dir=str(folder), device="cuda")
    assert main(["evaluate", str(w), "--data-dir", str(folder), "--device", "tpu"]) == 2
    assert "Received: --device tpu" in capsys.readouterr().err


def test_evaluate_json_has_top5_err_only_with_more_than_five_classes(mnist_weights, folder_weights, tmp_path, capsys):
    w, folder = mnist_weights  # 10 classes
    assert main(["evaluate", str(w), "--data-dir", str(folder), "--json", "--out", str(tmp_path / "a")]) == 0
    ten = json.loads(capsys.readouterr().out)
    assert 0 <= ten["top5_err"] <= ten["top1_err"]
    w, data = folder_weights  # 2 classes: top-5 error would be 0 whatever the net does
    assert main(["evaluate", str(w), "--data-dir", str(data), "--split", "val", "--json",
                 "--out", str(tmp_path / "b")]) == 0
    two = json.loads(capsys.readouterr().out)
    assert "top5_err" not in two and {"top1_err", "loss", "n", "macro_f1"} <= set(two)


def test_evaluate_out_follows_the_file_rule(mnist_weights, tmp_path, capsys, monkeypatch):
    """--out DIR: a confusion-<split>.png there is replaced only with --overwrite, refused before the evaluation
    runs; the write is atomic (fileio.atomic_write) and a file as --out is one line."""
    w, folder = mnist_weights
    out = tmp_path / "eval"
    args = ["evaluate", str(w), "--data-dir", str(folder), "--out", str(out)]
    assert main(args) == 0
    png = out / "confusion-test.png"
    before = png.read_bytes()
    assert before.startswith(b"\x89PNG") and f"confusion matrix: {png}" in capsys.readouterr().out
    mine = out / "confusion-val.png"
    mine.write_bytes(b"my own picture")
    ran = []
    monkeypatch.setattr(evaluate_mod, "predict_probs", lambda *a, **k: ran.append(1))
    for split, path in (("test", png), ("val", mine)):
        assert main([*args, "--split", split]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"{path} exists; pass --overwrite to replace it" in err, err
    assert not ran and png.read_bytes() == before and mine.read_bytes() == b"my own picture"
    monkeypatch.undo()
    assert main([*args, "--split", "val", "--overwrite"]) == 0
    assert mine.read_bytes().startswith(b"\x89PNG") and not list(out.glob(".*"))  # no lock or temporary left
    (tmp_path / "a-file").write_text("x")
    assert main(["evaluate", str(w), "--data-dir", str(folder), "--out", str(tmp_path / "a-file")]) == 2
    assert "a-file is a file; give a folder for confusion-test.png" in capsys.readouterr().err
    assert (tmp_path / "a-file").read_text() == "x"
    assert main(["evaluate", str(w), "--data-dir", str(folder)]) == 0  # beside the weights: replaced each time
    assert main(["evaluate", str(w), "--data-dir", str(folder)]) == 0


def test_a_folder_of_other_classes_is_one_line_naming_both_class_lists(folder_weights, tmp_path, capsys):
    w, _ = folder_weights
    other = tmp_path / "other"
    for split in ("train", "val"):
        for c in ("ant", "bee"):
            (other / split / c).mkdir(parents=True)
            Image.new("RGB", (32, 32)).save(other / split / c / "0.png")
    assert main(["evaluate", str(w), "--data", "folder", "--data-dir", str(other)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"{other} has 2 classes [ant, bee] but {w} was trained on 2 classes [cat, dog]" in line
    assert "has classes" not in line and "reslab predict" in line


def test_a_bare_folder_of_class_folders_is_tested_whole(folder_weights, tmp_path, capsys):
    """A newcomer's labelled photos are one folder of class folders, with no train/ or val/: evaluate tests on
    every image of it (it used to say 'missing folder .../train' and suggest --val-fraction, a train flag)."""
    w, _ = folder_weights
    photos = tmp_path / "photos"
    for c, n in (("cat", 3), ("dog", 2)):
        (photos / c).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (40, 32), (60 * i, 0, 0)).save(photos / c / f"{i}.png")
    res, classes, _ = evaluate_weights(w, data="folder", data_dir=str(photos), out=tmp_path / "ev")
    assert classes == ["cat", "dog"] and res.n == 5
    assert main(["evaluate", str(w), "--data", "folder", "--data-dir", str(photos), "--out", str(tmp_path / "ev2"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 5


def test_the_val_split_of_a_bare_folder_says_to_use_test(folder_weights, tmp_path, capsys):
    w, _ = folder_weights
    photos = tmp_path / "photos"
    for c in ("cat", "dog"):
        (photos / c).mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(photos / c / "0.png")
    assert main(["evaluate", str(w), "--data", "folder", "--data-dir", str(photos), "--split", "val"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert str(photos) in line and "--split test" in line and "--val-fraction" not in line
