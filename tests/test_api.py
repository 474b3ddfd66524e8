"""The Python API: reslab.train, evaluate, predict (with embeddings) and export on a tiny run."""

import importlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import reslab

from fakedata import write_learnable_mnist


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data = write_learnable_mnist(tmp_path_factory.mktemp("mnist"), n_train=64, n_test=16)
    cfg = reslab.resolve_config("cifar-paper", model="resnet20", data="mnist", data_dir=str(data), iterations=4,
                                milestones=(), batch_size=16, val_size=16, quiet=True, device="cpu", workers=0,
                                out=str(tmp_path_factory.mktemp("run") / "r"))
    return reslab.train(cfg), data


def test_the_api_is_named_and_cheap_to_import():
    assert {"train", "evaluate", "predict", "export", "TrainConfig", "create_model"} <= set(dir(reslab))
    assert reslab.__version__ and callable(reslab.train) and callable(reslab.evaluate)
    importlib.import_module("reslab.train.loop")  # bound on the package once imported, whatever ran before
    assert reslab.train.loop.train is reslab.train.train  # still the package as well
    lazy = subprocess.run([sys.executable, "-c", "import sys, reslab; print('reslab.train.loop' in sys.modules)"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert lazy == "False"
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        reslab.trian  # noqa: B018


def test_train_evaluate_predict_export(run, tmp_path):
    result, data = run
    assert result.iterations == 4 and result.test is not None
    res, classes, png = reslab.evaluate(result.run_dir, data_dir=str(data))
    assert len(classes) == 10
    assert res.n == 16 and res.top1_err == pytest.approx(result.test.top1_err) and png.is_file()
    img = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(img)
    [top] = reslab.predict(result.run_dir, [img], topk=3)
    [emb] = reslab.predict(result.run_dir, [img], features=True, path="eager")
    assert len(top["topk"]) == 3 and len(emb["features"]) == 64  # ResNet-20's pre-logits width
    exported = reslab.export(result.run_dir, format="torchscript", out=tmp_path / "m.pt")
    assert exported.path.is_file() and exported.top1_agreement == 1.0
