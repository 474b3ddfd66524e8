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


# ---------------------------------------------------------------------------- the openvino path in --path auto
class _FakeOpenVINO:
    """An OpenVINO engine stand-in (no OpenVINO needed): the fp32 eager model, `precision` as given, its top-1
    moved to the next class on `wrong` of every 100 rows (a reduced-precision path that disagrees)."""

    def __init__(self, precision: str, wrong: int = 0) -> None:
        self.precision, self.wrong, self.built = precision, wrong, 0

    def build(self, real):
        from reslab.deploy.fast import InferenceEngine

        def build(net, path, example, *args, **kwargs):
            if path != "openvino":
                return real(net, path, example, *args, **kwargs)
            self.built += 1
            fp32 = real(net, "eager", example)

            def run(x):
                out = fp32(x).clone()  # an inference tensor: edited in a copy
                moved = torch.arange(len(x)) % 100 < self.wrong
                out[moved] = out[moved].roll(1, dims=1)
                return out

            engine = InferenceEngine(f"openvino ({self.precision})", run, build_s=0.5)
            engine.precision = self.precision  # type: ignore[attr-defined]
            return engine

        return build


def _choose(monkeypatch, fake, *, check=True, installed=True, candidates=("openvino",)):
    from reslab.deploy import auto

    monkeypatch.setattr(auto, "build_engine", fake.build(auto.build_engine))
    monkeypatch.setattr(auto, "fp32_path", lambda: "channels-last")
    monkeypatch.setattr(auto, "installed", lambda package: installed or package != "openvino")
    monkeypatch.setattr(auto, "images_per_s", lambda engine, x, repeats: 400.0 if "openvino" in engine.name else 100.0)
    torch.manual_seed(0)
    net = randomise_bn(create_model("resnet20")).eval()
    x = torch.randn(100, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    lines: list[str] = []
    engine = auto.choose_auto(net, x[:4], candidates=candidates, check=x if check else None, log=lines.append)
    return engine, lines


def test_auto_picks_openvino_bf16_when_fastest_and_agreeing(monkeypatch):
    fake = _FakeOpenVINO("bf16")
    engine, lines = _choose(monkeypatch, fake)
    assert engine.name == "openvino (bf16)"
    assert "openvino (bf16): 400.0 images/s, top-1 agreement 100.0% on 100 held-out images (accepted)" in lines[1]
    assert lines[-1].startswith("picked openvino (bf16) (400.0 images/s, 4.00x channels-last)")


def test_auto_rejects_openvino_bf16_below_99_percent(monkeypatch):
    engine, lines = _choose(monkeypatch, _FakeOpenVINO("bf16", wrong=2))  # 98% agreement
    assert engine.name == "channels-last"
    assert "top-1 agreement 98.0% on 100 held-out images (rejected: below 99%)" in lines[1]
    assert "faster but rejected on agreement: openvino (bf16)" in lines[-1]
    engine, _ = _choose(monkeypatch, _FakeOpenVINO("bf16", wrong=1))  # 99%: the bound itself passes
    assert engine.name == "openvino (bf16)"


def test_auto_openvino_bf16_without_check_images_is_not_considered(monkeypatch):
    engine, lines = _choose(monkeypatch, _FakeOpenVINO("bf16"), check=False)
    assert engine.name == "channels-last"
    assert "openvino (bf16): not considered: no images to check its agreement with fp32" in lines[0]


def test_auto_accepts_openvino_f32_without_check_images(monkeypatch):
    engine, lines = _choose(monkeypatch, _FakeOpenVINO("fp32", wrong=50), check=False)  # never checked
    assert engine.name == "openvino (fp32)"
    assert "openvino (fp32): 400.0 images/s, fp32, a peer of the reference (no check needed)" in lines[1]
    assert "channels-last: 100.0 images/s, fp32, the reference" in lines[0]


def test_auto_skips_openvino_when_not_installed(monkeypatch):
    fake = _FakeOpenVINO("bf16")
    engine, lines = _choose(monkeypatch, fake, installed=False)
    assert engine.name == "channels-last" and fake.built == 0
    assert lines[0] == "openvino: not considered: OpenVINO is not installed (pip install reslab[openvino])"


@pytest.mark.parametrize("error", [ReslabError("no"), RuntimeError("compile failed"), ImportError("gone")])
def test_auto_survives_an_openvino_build_error(monkeypatch, error):
    from reslab.deploy import auto

    def fail(real):
        def build(net, path, *args, **kwargs):
            if path == "openvino":
                raise error
            return real(net, path, *args, **kwargs)
        return build

    fake = _FakeOpenVINO("bf16")
    fake.build = fail  # type: ignore[method-assign]
    engine, lines = _choose(monkeypatch, fake, candidates=("bf16", "openvino"))
    assert engine.name in ("channels-last", "bf16")
    assert f"openvino: not considered: it did not build here ({error})" in lines
    assert auto.OPENVINO in auto.REDUCED_LONG and auto.OPENVINO in auto.REDUCED_SHORT


def test_openvino_own_exceptions_are_caught():
    ov = pytest.importorskip("openvino")
    from reslab.deploy.openvino_engine import openvino_errors

    assert ov is not None and RuntimeError in openvino_errors() and len(openvino_errors()) > 1


def test_cli_path_openvino_without_openvino_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "openvino", None)
    from fakedata import tiny_weights

    weights = tiny_weights(tmp_path / "w", PRE32)
    image = _png(tmp_path / "a.png")
    assert main(["predict", str(weights), str(image), "--path", "openvino"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert err[0].startswith("reslab predict: error: the openvino path needs OpenVINO") and INSTALL_HINT in err[0]


def test_bench_leaves_the_openvino_path_to_the_openvino_rows():
    from reslab.deploy.bench import BENCH_PATHS
    from reslab.deploy.paths import PATHS

    assert "openvino" in PATHS and "openvino" not in BENCH_PATHS  # the "openvino default" row is the path


def test_bucket_sizes():
    from reslab.deploy.openvino_engine import bucket

    assert [bucket(n, 32) for n in (1, 2, 3, 5, 9, 17, 32)] == [1, 2, 4, 8, 16, 32, 32]
    assert [bucket(n, 12) for n in (9, 12)] == [12, 12]


PRE32 = {"mode": "channel", "mean": [0.5] * 3, "std": [0.25] * 3, "size": 32, "crop": 32}


def _png(path):
    from PIL import Image

    pixels = (torch.rand(32, 32, 3, generator=torch.Generator().manual_seed(3)) * 255).to(torch.uint8).numpy()
    Image.fromarray(pixels).save(path)
    return path


def test_predict_path_openvino_agrees_with_eager(tmp_path):
    pytest.importorskip("openvino")
    from reslab.deploy.predict import predict

    from fakedata import tiny_weights

    weights = tiny_weights(tmp_path / "w", PRE32)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(5):
        from PIL import Image

        pixels = (torch.rand(32, 32, 3, generator=torch.Generator().manual_seed(i)) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"{i}.png")
    eager = predict(weights, [folder], path="eager", batch_size=4)
    ov = predict(weights, [folder], path="openvino", batch_size=4)  # batches of 4 and 1 (a padded bucket)
    assert [r["topk"][0]["class"] for r in ov] == [r["topk"][0]["class"] for r in eager]
    for a, b in zip(ov, eager, strict=True):
        assert abs(a["topk"][0]["prob"] - b["topk"][0]["prob"]) < 0.05
