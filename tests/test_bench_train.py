"""`reslab bench train`: the reference sees the same files, the curve statistics, one tiny end-to-end run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from reslab.cli import main
from reslab.data.formats import read_mnist
from reslab.errors import ReslabError
from reslab.models.analysis import count_macs
from reslab.models.registry import create_model
from reslab.train.bench import (
    TrainBenchConfig,
    bench_train,
    curve_agreement,
    moving_average,
    print_report,
    synthetic_images,
    torchvision_root,
)


def test_torchvision_reads_the_same_images(fmnist_dir, tmp_path):
    import torchvision

    root = torchvision_root("fashion-mnist", fmnist_dir, tmp_path)
    ds = torchvision.datasets.FashionMNIST(str(root), train=True)
    images, labels = read_mnist(fmnist_dir, True)
    assert len(ds) == len(images) == 240
    torch.testing.assert_close(ds.data, images[:, 0])  # (N, 28, 28) uint8, the same bytes
    torch.testing.assert_close(ds.targets, labels)


def test_torchvision_root_names_missing_files(tmp_path):
    with pytest.raises(ReslabError, match="train-images-idx3-ubyte"):
        torchvision_root("fashion-mnist", tmp_path, tmp_path / "tv")


def test_moving_average_is_trailing():
    np.testing.assert_allclose(moving_average([1, 2, 3, 4, 5], k=2), [1, 1.5, 2.5, 3.5, 4.5])


def test_curve_agreement_against_noise():
    rng = np.random.default_rng(0)
    trend = np.linspace(2.3, 0.5, 300)
    a = (trend + rng.normal(0, 0.2, 300)).tolist()
    b = (trend + rng.normal(0, 0.2, 300)).tolist()
    same = curve_agreement(a, b)
    assert same["noise_a"] == pytest.approx(0.2 / math.sqrt(20), rel=0.2)  # noise of a 20-iteration mean
    assert same["diff_over_noise"] < 1.5  # two draws of one curve differ by about their noise
    shifted = curve_agreement(a, (np.asarray(b) + 0.5).tolist())
    assert shifted["mean_abs_diff"] == pytest.approx(0.5, abs=0.1) and shifted["diff_over_noise"] > 5


def test_refuses_datasets_without_a_torchvision_twin():
    with pytest.raises(ReslabError, match="Received: --data cifar10"):
        bench_train(TrainBenchConfig(data="cifar10"))


def test_bench_train_end_to_end(fmnist_dir, tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "train", "--data-dir", str(fmnist_dir), "--batch-size", "8", "--iterations", "4",
               "--rounds", "2", "--untimed", "1", "--curve-iters", "40", "--ref-workers", "0", "--device", "cpu",
               "--threads", "1",  # 2 threads on 2 busy cores can run 5x slower than 1
               "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "reslab / reference" in text and "same model" in text and "hardware:" in text
    report = json.loads(out.read_text())
    assert out.with_suffix(".png").is_file()
    assert [r["name"] for r in report["rows"]] == ["reference", "reslab"]
    for row in report["rows"]:
        assert len(row["blocks"]) == 2 and row["images_per_s"] > 0 and 0 < row["fraction_of_peak"] < 1
    assert report["speedup"] == pytest.approx(report["rows"][1]["images_per_s"] / report["rows"][0]["images_per_s"])
    assert report["model_macs"] == count_macs(create_model("resnet20", in_chans=1), (1, 28, 28))
    assert report["train_flops_per_image"] == 6 * report["model_macs"]
    curves = report["curves"]
    assert len(curves["reference"]) == len(curves["reslab"]) == len(curves["reslab_other_seed"]) == 40
    assert curves["agreement"]["seed_to_seed_mean_abs_diff"] >= 0
    assert all(math.isfinite(v) for v in curves["reference"] + curves["reslab"])
    assert curves["reference"][0] == pytest.approx(math.log(10), rel=0.5)  # both start near chance
    assert curves["reslab"][0] == pytest.approx(math.log(10), rel=0.5)
    assert report["reference_workers"] == 0 and report["matmul_gflops"]["fp32"] > 0


def test_bench_train_gpu_parts_run_tiny_on_cpu(fmnist_dir, capsys):
    """The CUDA benchmark's three parts, at tiny sizes on CPU: structure and printed hardware, not timings."""
    cfg = TrainBenchConfig(data="synthetic", synthetic_images=64, data_dir=str(fmnist_dir), batch_size=8, iterations=2,
                           rounds=2, warmup=1, curve_iters=40, workers=(0,), device="cpu", threads=1, resnet50_iters=2,
                           resnet50_batch=2, resnet50_size=32, full_schedule=3)
    report = bench_train(cfg, log=lambda s: None)
    assert report["config"]["data"] == "synthetic" and report["model_macs"] == count_macs(create_model("resnet20"),
                                                                                            (3, 32, 32))
    assert [r["name"] for r in report["rows"]] == ["reference", "reslab"]
    assert "fp32" in report["rows"][0]["detail"]  # on CPU the reference stays fp32; on CUDA it uses bf16 autocast
    r50 = report["resnet50"]
    assert (r50["batch"], r50["image_size"]) == (2, 32) and set(r50["images_per_s"]) == {"reslab", "torchvision"}
    assert all(len(b) == 2 for b in r50["blocks"].values()) and r50["speedup"] > 0
    full = report["full_schedule"]
    assert full["iterations"] == 3 and full["data"] == "fashion-mnist" and full["wall_s"] >= full["loop_s"] > 0
    print_report(report)
    text = capsys.readouterr().out
    assert "hardware:" in text and "resnet50, batch 2 of 32x32" in text and "full schedule: resnet20" in text


def test_synthetic_images_are_cifar_shaped_and_learnable():
    ds = synthetic_images(200, seed=0)
    assert ds.images.shape == (200, 3, 32, 32) and ds.images.dtype == torch.uint8 and len(ds.classes) == 10
    red = ds.images[:, 0].float().mean((1, 2))
    assert red[ds.labels == 9].mean() > red[ds.labels == 0].mean() + 40  # the class signal
    with pytest.raises(ReslabError, match="Received: --data cifar10"):
        bench_train(TrainBenchConfig(data="cifar10", device="cpu"))
