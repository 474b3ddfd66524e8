"""Data subsets (data/subset.py): kept classes relabelled, N per class, class fractions; train and evaluate."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from PIL import Image

from reslab import cli_types
from reslab.cli import main
from reslab.data.datasets import InMemoryDataset, load_dataset
from reslab.data.folder import folder_dataset
from reslab.data.subset import Subset, subset_folder, subset_tensor
from reslab.errors import ReslabError


def _data(labels: list[int]) -> InMemoryDataset:
    n = len(labels)
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()  # pixel = index
    return InMemoryDataset(images, torch.tensor(labels), [f"c{i}" for i in range(4)])


def test_subset_classes_keep_those_images_relabelled_in_order():
    data = _data([0, 3, 1, 2, 3, 0, 2])
    kept = subset_tensor(data, Subset(classes=(2, 3)), train=False)
    assert kept.images[:, 0, 0, 0].tolist() == [1, 3, 4, 6]  # the original indices, in order
    assert kept.labels.tolist() == [1, 0, 1, 0] and kept.classes == ["c2", "c3"]


def test_per_class_and_fraction_keep_the_first_images_of_the_training_split():
    labels = [0, 1] * 10 + [2] * 5  # 10 of class 0, 10 of class 1, 5 of class 2
    per = subset_tensor(_data(labels), Subset(per_class=3), train=True)
    assert per.images[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4, 5, 20, 21, 22]
    frac = subset_tensor(_data(labels), Subset(fractions=((1, 0.2), (2, 0.1))), train=True)
    assert frac.labels.tolist().count(0) == 10 and frac.labels.tolist().count(1) == 2
    assert frac.images[frac.labels == 1, 0, 0, 0].tolist() == [1, 3] and frac.labels.tolist().count(2) == 1
    # Evaluation splits keep every image of the kept classes.
    assert len(subset_tensor(_data(labels), Subset(classes=(1, 2), per_class=3), train=False)) == 15


def test_subset_leaves_the_validation_split_held_out(fmnist_dir):
    common = dict(data_dir=fmnist_dir, val_size=40, seed=3)
    full, val = load_dataset("fashion-mnist", "train", **common), load_dataset("fashion-mnist", "val", **common)
    sub = Subset(classes=(5, 6, 7, 8, 9), per_class=4)
    train = subset_tensor(full, sub, train=True)
    assert len(train) == 20 and train.labels.bincount().tolist() == [4] * 5
    # The first 4 of each kept class in the (seeded) training split, none of them from validation.
    want = torch.cat([(full.labels == c).nonzero().flatten()[:4] for c in range(5, 10)]).sort().values
    assert torch.equal(train.images, full.images[want])
    assert not any(torch.equal(a, b) for a in train.images for b in val.images)


def test_subset_of_an_image_folder(tmp_path):
    for split in ("train", "val"):
        for c in ("ant", "bee", "cat"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / split / c / f"{i}.png")
    ds = subset_folder(folder_dataset(tmp_path, "train", train=True), Subset(classes=(1, 2), per_class=2), train=True)
    assert ds.classes == ["bee", "cat"] and ds.targets == [0, 0, 1, 1]
    assert [p.split("/")[-2:] for p, _ in ds.samples] == [["bee", "0.png"], ["bee", "1.png"], ["cat", "0.png"],
                                                          ["cat", "1.png"]]


def test_train_on_a_subset_then_evaluate_on_its_test_images(fmnist_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data-dir", str(fmnist_dir), "--iterations", "4", "--batch-size", "8", "--device", "cpu",
                 "--quiet", "--amp", "off", "--subset-classes", "5-9", "--per-class", "4", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["subset_classes"] == [5, 6, 7, 8, 9] and config["per_class"] == 4
    meta = json.loads((out / "model.json").read_text())
    assert meta["model_kwargs"]["num_classes"] == 5 and meta["classes"][0] == "Sandal"
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data-dir", str(fmnist_dir), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == 30 and list(res["per_class_acc"]) == meta["classes"]  # classes 5-9's 30 test images


@pytest.mark.parametrize("kind,text", [(cli_types.class_list, "9-5"), (cli_types.class_list, "1,1"),
                                       (cli_types.class_list, "a"), (cli_types.class_fractions, "5-9:0"),
                                       (cli_types.class_fractions, "5-9"), (cli_types.class_fractions, "5:0.1,5:0.2")])
def test_bad_subset_flags_are_one_line_errors(kind, text):
    with pytest.raises(argparse.ArgumentTypeError, match="Received"):
        kind(text)


def test_class_specs_parse():
    assert cli_types.class_list("0,3-5") == (0, 3, 4, 5)
    assert cli_types.class_fractions("5,7:0.1,8-9:0.5") == ((5, 0.1), (7, 0.1), (8, 0.5), (9, 0.5))


@pytest.mark.parametrize("sub,needle", [(Subset(classes=(3, 12)), "class 12"), (Subset(classes=(3,)), "one class"),
                                        (Subset(classes=(1, 2), fractions=((0, 0.5),)), "leaves out")])
def test_subsets_naming_missing_classes_are_user_errors(sub, needle):
    with pytest.raises(ReslabError, match=needle) as e:
        subset_tensor(_data([0, 1, 2, 3]), sub, train=True)
    assert "\n" not in str(e.value)
