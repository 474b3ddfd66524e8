"""OpenVINO as a peer row of `reslab bench infer` (issue 30): optional, so the suite runs without it.

Without OpenVINO the bench still runs and says how to get the rows; with it (`pip install reslab[openvino]`)
its rows compute the same function as eager, at f32 and at its default precision."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from reslab.cli import main
from reslab.deploy.bench import bench_infer, row_precision
from reslab.deploy.fast import onnx_bytes
from reslab.deploy.openvino_engine import INSTALL_HINT, OpenVINOEngine, build_openvino_engine
from reslab.errors import ReslabError
from reslab.hardware import native_bf16_cpu
from reslab.models import create_model

from fakedata import randomise_bn


def test_bench_infer_without_openvino_names_the_rows_and_the_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError, as when absent
    out = tmp_path / "b.json"
    assert main(["bench", "infer", "--model", "resnet20", "--image-size", "16", "--batch-size", "2", "--repeats", "1",
                 "--paths", "eager", "--out", str(out), "--no-malloc-tuning"]) == 0
    report = json.loads(out.read_text())
    assert [r["name"] for r in report["rows"]] == ["reslab eager"]
    assert set(report["skipped"]) == {"openvino default", "openvino f32"}
    assert all(INSTALL_HINT in why for why in report["skipped"].values())
    assert report["hardware"]["openvino"] is None
    captured = capsys.readouterr()
    assert "openvino f32: not run here" in captured.out and "pip install reslab[openvino]" in captured.out
    assert "Traceback" not in captured.out + captured.err
    with pytest.raises(ReslabError, match=r"pip install reslab\[openvino\]"):
        build_openvino_engine(create_model("resnet20").eval(), torch.zeros(1, 3, 8, 8))


def test_no_openvino_flag_leaves_the_rows_out(tmp_path):
    out = tmp_path / "b.json"
    assert main(["bench", "infer", "--model", "resnet20", "--image-size", "16", "--batch-size", "2", "--repeats", "1",
                 "--paths", "eager", "--out", str(out), "--no-malloc-tuning", "--no-openvino"]) == 0
    assert json.loads(out.read_text())["skipped"] == {}


def test_openvino_row_precision():
    assert [row_precision(n) for n in ("openvino f32", "openvino default-bf16", "openvino default-fp32")] == \
        ["fp32", "bf16", "fp32"]


def test_openvino_engine_agrees_with_eager():
    pytest.importorskip("openvino")
    torch.manual_seed(0)
    net = randomise_bn(create_model("resnet20"))
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = net(x)
    f32 = build_openvino_engine(net, x, threads=1, precision="f32")
    onnx = onnx_bytes(net, x)  # the export once more, for the default-precision engine (an export costs seconds)
    assert f32.name == "openvino f32" and f32.precision == "fp32"
    assert (f32(x) - ref).abs().max() < 1e-3
    assert (f32(x[:1]) - ref[:1]).abs().max() < 1e-3  # another batch size compiles on its first call
    default = OpenVINOEngine(onnx, x, threads=1)
    want = "bf16" if native_bf16_cpu() else "fp32"  # OpenVINO's CPU default: bf16 where the CPU has it
    assert default.precision == want and default.name == f"openvino default-{want}"
    out = default(x)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    assert (out - ref).abs().max() < (0.1 if want == "bf16" else 1e-3) * ref.abs().max()
    with pytest.raises(ReslabError, match="Received: 'int8'"):
        OpenVINOEngine(onnx, x, precision="int8")


def test_bench_infer_openvino_rows():
    pytest.importorskip("openvino")
    report = bench_infer("resnet20", batch_size=2, repeats=1, image_size=16, paths=("eager", "onnxruntime"),
                         threads=1, malloc=False)
    rows = {r["name"]: r for r in report["rows"]}
    want = "bf16" if native_bf16_cpu() else "fp32"
    assert {"openvino f32", f"openvino default-{want}"} <= set(rows) and report["skipped"] == {}
    assert rows["openvino f32"]["precision"] == "fp32" and rows["openvino f32"]["max_abs_diff"] < 1e-3
    assert rows[f"openvino default-{want}"]["precision"] == want
    assert all(r["top1_agreement"] == 1.0 and r["images_per_s"] > 0 and r["latency_s"] for r in rows.values())
    assert report["hardware"]["openvino"]
