"""The automatic choices (--amp auto, the bf16 rows, --path int8) on the CPU at hand and on a simulated one:
`reslab --cpu-flags` / $RESLAB_CPU_FLAGS make a bf16 CPU act as one without bf16, so the choice logic of
both kinds of machine is tested on either."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from reslab import hardware
from reslab.cli import main
from reslab.deploy.bench import bench_infer
from reslab.deploy.fast import build_engine
from reslab.deploy.paths import INT8_PATHS
from reslab.errors import ReslabError
from reslab.models import create_model

from fakedata import randomise_bn, tiny_weights

NO_BF16 = "avx2 fma avx512f avx512_vnni"
BF16 = "avx2 fma avx512f avx512_vnni avx512_bf16"


def test_simulated_flags_replace_the_detected_ones(monkeypatch):
    monkeypatch.setenv(hardware.SIMULATED_FLAGS_ENV, NO_BF16)
    assert hardware.cpu_flags() == ["avx2", "fma", "avx512f", "avx512_vnni"]
    assert not hardware.native_bf16_cpu() and not hardware.native_bf16(torch.device("cpu"))
    assert "simulated" in hardware.describe_line()
    monkeypatch.setenv(hardware.SIMULATED_FLAGS_ENV, "amx_bf16,amx_tile")
    assert hardware.native_bf16_cpu()
    monkeypatch.setenv(hardware.SIMULATED_FLAGS_ENV, "none")
    assert hardware.cpu_flags() == []
    monkeypatch.setenv(hardware.SIMULATED_FLAGS_ENV, "avx2 sse9")
    with pytest.raises(ReslabError, match=r"unknown CPU flag.*sse9"):
        hardware.cpu_flags()
    monkeypatch.delenv(hardware.SIMULATED_FLAGS_ENV)
    assert hardware.cpu_flags() == hardware._detected_flags()


@pytest.mark.parametrize(("flags", "amp"), [(NO_BF16, False), (BF16, True)])
def test_amp_auto_follows_the_cpu(fmnist_dir, tmp_path, monkeypatch, flags, amp):
    monkeypatch.setenv(hardware.SIMULATED_FLAGS_ENV, "none")  # restored after the test: main sets it
    out = tmp_path / "run"
    assert main(["--cpu-flags", flags, "train", "--data-dir", str(fmnist_dir), "--iterations", "2",
                 "--batch-size", "8", "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert resolved["amp"] is amp  # bf16 autocast only where the CPU has bf16 instructions


def test_bench_infer_leaves_out_bf16_without_it(monkeypatch):
    monkeypatch.setenv(hardware.SIMULATED_FLAGS_ENV, NO_BF16)
    report = bench_infer("resnet20", batch_size=2, repeats=1, paths=("channels-last", "bf16"),
                         openvino=False)  # OpenVINO picks bf16 from the real CPU, not the simulated flags
    assert [r["name"] for r in report["rows"]] == ["reslab channels-last"]
    assert "bf16" not in report["matmul_gflops"]  # no bf16 peak is measured where bf16 is emulated
    assert "simulated" not in report["hardware"]["cpu"]


PRE32 = {"mode": "channel", "mean": [0.5] * 3, "std": [0.25] * 3, "size": 32, "crop": 32}


@pytest.mark.parametrize(("flags", "allowed"), [(NO_BF16, {"onnxruntime"}), (BF16, {"onnxruntime", "bf16"})])
def test_path_auto_times_bf16_only_where_the_cpu_has_it(tmp_path, monkeypatch, flags, allowed):
    pytest.importorskip("onnxruntime")
    from reslab.deploy import auto
    from reslab.deploy.predict import AUTO_ORT_MIN, build_predict_engine, resnet50_images
    from reslab.models.analysis import count_macs
    from reslab.weights import load_weights

    model, meta = load_weights(tiny_weights(tmp_path / "w", PRE32))
    macs = count_macs(model, (3, 32, 32))
    middling = math.ceil(AUTO_ORT_MIN / resnet50_images(1, macs))  # images of this tiny net as much work as 1,000 R50
    files = _images(tmp_path / "imgs", 12)
    monkeypatch.setenv(hardware.SIMULATED_FLAGS_ENV, flags)
    monkeypatch.setitem(sys.modules, "openvino", None)  # OpenVINO (bf16 on AMX whatever the flags) absent
    built = []
    real = auto.build_engine
    monkeypatch.setattr(auto, "build_engine", lambda net, path, *a, **k: built.append(path) or real(net, path, *a, **k))
    engine = build_predict_engine(model, meta, files, "auto", batch_size=8, n_images=middling)
    assert engine.name in allowed
    assert ("bf16" in built) == ("bf16" in allowed)  # no bf16 is even timed where it would be emulated
    assert "bf16-compiled" not in built  # a middling job repays no compile
    small = build_predict_engine(model, meta, [], "auto", batch_size=8, n_images=2)
    assert small.name == "channels-last"  # a few images: nothing worth an export
    many = build_predict_engine(model, meta, files, "auto", batch_size=8, n_images=middling - 1)
    assert many.name == "channels-last"  # many images of a small net: still less work than measuring costs


def test_auto_counts_the_job_in_resnet50_images():
    """The measured choice starts at AUTO_ORT_MIN ResNet-50 images of work: 10,000 ResNet-20 images (0.041 G
    multiply-adds at 32x32) are about 99 of them, so a predict job of that size stays on the cheap path."""
    from reslab.deploy.predict import AUTO_ORT_MIN, RESNET50_MACS, resnet50_images
    from reslab.models.analysis import count_macs
    from reslab.models.registry import create_model

    assert count_macs(create_model("resnet50").eval(), (3, 224, 224)) == RESNET50_MACS
    assert resnet50_images(AUTO_ORT_MIN, RESNET50_MACS) == AUTO_ORT_MIN
    assert 98 < resnet50_images(10_000, count_macs(create_model("resnet20").eval(), (3, 32, 32))) < 100


def test_path_auto_measures_bf16_without_onnxruntime_or_openvino(tmp_path, monkeypatch):
    """A large job on a bf16 CPU with neither onnxruntime nor OpenVINO installed (`pip install reslab` alone)
    still measures: channels-last is the fp32 reference, bf16 is timed beside it."""
    from reslab.deploy import auto
    from reslab.deploy.predict import AUTO_ORT_MIN, build_predict_engine, resnet50_images
    from reslab.models.analysis import count_macs
    from reslab.weights import load_weights

    model, meta = load_weights(tiny_weights(tmp_path / "w", PRE32))
    files = _images(tmp_path / "imgs", 12)
    monkeypatch.setenv(hardware.SIMULATED_FLAGS_ENV, BF16)
    for package in ("onnxruntime", "openvino"):
        monkeypatch.setitem(sys.modules, package, None)
    built = []
    real = auto.build_engine
    monkeypatch.setattr(auto, "build_engine", lambda net, path, *a, **k: built.append(path) or real(net, path, *a, **k))
    n = math.ceil(AUTO_ORT_MIN / resnet50_images(1, count_macs(model, (3, 32, 32))))
    engine = build_predict_engine(model, meta, files, "auto", batch_size=8, n_images=n)
    assert built == ["channels-last", "bf16"] and engine.name in {"channels-last", "bf16"}


def _images(folder, n):
    from PIL import Image

    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(1)
    files = []
    for i in range(n):
        pixels = (torch.rand(32, 32, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"{i}.png")
        files.append(folder / f"{i}.png")
    return files


AMX = "avx512f avx512_bf16 amx_bf16 amx_tile"  # no VNNI, no avx2: int8 left out (a minute's build per test)


@pytest.mark.parametrize("disagree", [False, True])
def test_serve_auto_serves_reduced_precision_only_when_it_agrees(tmp_path, monkeypatch, capsys, disagree):
    pytest.importorskip("onnxruntime")
    from reslab.deploy import auto
    from reslab.deploy.fast import InferenceEngine
    from reslab.serve.app import ServeConfig, build_server_engine
    from reslab.weights import load_weights

    weights = tiny_weights(tmp_path / "w", PRE32)
    model, meta = load_weights(weights)
    _images(tmp_path / "calib", 16)
    monkeypatch.setenv(hardware.SIMULATED_FLAGS_ENV, AMX)
    monkeypatch.setitem(sys.modules, "openvino", None)  # tests/test_openvino.py tests it in this choice
    real = auto.build_engine

    def build(net, path, *args, **kwargs):
        if path != "bf16-compiled":
            return real(net, path, *args, **kwargs)
        # bf16-compiled simulated by the fp32 eager model (no compile in a test); with `disagree` its top-1
        # is moved to the next class on every image, as a broken reduced-precision path would answer
        fp32 = real(net, "eager", *args[:1])
        return InferenceEngine(path, (lambda x: fp32(x).roll(1, dims=1)) if disagree else fp32, build_s=1.0)

    monkeypatch.setattr(auto, "build_engine", build)
    monkeypatch.setattr(auto, "images_per_s", lambda engine, x, repeats: 200.0 if "bf16" in engine.name else 40.0)
    engine = build_server_engine(model, meta, ServeConfig(weights=str(weights), max_batch=8,
                                                          calib=str(tmp_path / "calib")))
    err = capsys.readouterr().err
    assert engine.name == ("onnxruntime" if disagree else "bf16-compiled")
    assert "path auto: onnxruntime: 40.0 images/s, fp32, the reference" in err
    agreement = "0.0%" if disagree else "100.0%"
    assert f"bf16-compiled: 200.0 images/s, top-1 agreement {agreement} on 8 held-out images" in err
    assert "int8-torchao: not considered: the CPU has no int8 multiply-add instructions" in err
    if disagree:
        assert "picked onnxruntime" in err and "faster but rejected on agreement: bf16-compiled" in err
    else:
        assert "picked bf16-compiled (200.0 images/s, 5.00x onnxruntime)" in err


def test_serve_auto_without_images_to_check_stays_fp32(tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    from reslab.serve.app import ServeConfig, build_server_engine
    from reslab.weights import load_weights

    weights = tiny_weights(tmp_path / "w", PRE32)
    model, meta = load_weights(weights)
    monkeypatch.setenv(hardware.SIMULATED_FLAGS_ENV, AMX)
    engine = build_server_engine(model, meta, ServeConfig(weights=str(weights), max_batch=8))
    assert engine.name == "onnxruntime"
    assert "bf16-compiled: not considered: no images to check its agreement" in capsys.readouterr().err


def test_int8_paths_agree_with_fp32_and_int8_picks_one(monkeypatch):
    pytest.importorskip("torchao")
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = randomise_bn(create_model("resnet20")).eval()
    x, calib = torch.randn(8, 3, 32, 32), torch.randn(16, 3, 32, 32)
    with torch.inference_mode():
        ref = model(x)
    for path in INT8_PATHS:
        engine = build_engine(model, path, x, calib)
        out = engine(x)
        assert engine.name == path and out.shape == ref.shape and out.dtype == torch.float32
        # int8 rounding: close to fp32, not equal to it
        assert 0 < (out - ref).abs().max() <= 0.1 * ref.abs().max(), path
        odd = engine(torch.cat([x, x[:3]]))  # a fixed-shape graph serves other batch sizes too
        assert torch.allclose(odd[8:], out[:3], atol=1e-5)
    chosen = build_engine(model, "int8", x, calib)
    assert chosen.name in INT8_PATHS
    with pytest.raises(ReslabError, match="calibration images"):
        build_engine(model, "int8", x)


def test_matmul_probe_covers_each_precision_of_the_rows():
    for dtype in (torch.float32, torch.bfloat16, torch.int8):
        assert hardware.matmul_gflops(dtype, n=128, reps=1) > 0


@pytest.mark.parametrize(("flags", "bf16_n"), [(NO_BF16, 512), ("avx2 fma avx512f avx512_bf16", 2048)])
def test_the_bf16_matmul_probe_is_small_where_bf16_is_emulated(monkeypatch, flags, bf16_n):
    # Emulated bf16 runs at about 1 GFLOP/s (14 s per 2048 product on a Zen 2): the probe must not stall there.
    monkeypatch.setenv(hardware.SIMULATED_FLAGS_ENV, flags)
    sizes: list[int] = []
    monkeypatch.setattr(hardware, "_best_rate", lambda product, n, reps, device: sizes.append(n) or 1.0)
    hardware.matmul_gflops(torch.bfloat16)
    hardware.matmul_gflops(torch.float32)
    assert sizes == [bf16_n, 2048]
    assert [hardware.probe_size(torch.bfloat16), hardware.probe_size(torch.float32)] == sizes  # what the JSON says
