"""Deployment: image decoding, predict, fast inference paths, export parity, int8, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import reslab.deploy.export as export_mod
from reslab.cli import main
from reslab.deploy.bench import bench_infer, row_precision
from reslab.deploy.export import export
from reslab.deploy.fast import build_engine, fold_bn, select_fastest
from reslab.deploy.images import load_image, normalize_view, preprocess_image
from reslab.deploy.paths import FP32_CANDIDATES, PATHS
from reslab.deploy.predict import predict
from reslab.errors import ReslabError
from reslab.models import create_model
from reslab.models.analysis import count_macs
from reslab.weights import load_weights, save_weights

from fakedata import randomise_bn, tiny_weights

PRE = {"image_size": 32, "in_chans": 3, "mode": "channel", "mean": [0.5, 0.4, 0.3], "std": [0.25, 0.25, 0.25],
       "resize": None, "crop": 32}




@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_weights(tmp_path_factory.mktemp("w"), PRE)


def _rgb(w: int = 40, h: int = 30, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _mode_images(folder) -> dict[str, tuple]:
    """{name: (path, the 8-bit RGB image the rule says it equals)} for every mode Pillow offers."""
    folder.mkdir(exist_ok=True)
    base = _rgb()
    out = {}
    for mode in ("L", "LA", "RGBA", "CMYK", "1", "P"):
        img = base.convert(mode)
        if mode in ("LA", "RGBA"):  # a real alpha channel, partly transparent
            alpha = Image.fromarray(np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (30, 1)))
            img.putalpha(alpha)
        path = folder / f"{mode}.{'jpg' if mode == 'CMYK' else 'png' if mode != '1' else 'bmp'}"
        img.save(path)
        out[mode] = (path, Image.open(path).convert("RGB"))
    p = base.convert("P")
    p.info["transparency"] = 0
    p.save(folder / "P_trns.png", transparency=0)
    out["P_trns"] = (folder / "P_trns.png", Image.open(folder / "P_trns.png").convert("RGBA").convert("RGB"))
    # 16-bit grey: full range, so clipping at 255 would show
    a16 = (np.linspace(0, 65535, 30 * 40).reshape(30, 40)).astype(np.uint16)
    Image.fromarray(a16).save(folder / "I16.png")
    expect16 = Image.fromarray(np.rint(a16 / 257).astype(np.uint8), "L").convert("RGB")
    out["I;16"] = (folder / "I16.png", expect16)
    # EXIF orientation 6: stored landscape, shown rotated 90 degrees clockwise (portrait)
    exif = Image.Exif()
    exif[0x0112] = 6
    base.save(folder / "exif.jpg", exif=exif, quality=95)
    out["exif"] = (folder / "exif.jpg", ImageOps.exif_transpose(Image.open(folder / "exif.jpg")).convert("RGB"))
    return out


# ---------------------------------------------------------------------------- images
def test_every_mode_equals_converting_to_rgb_first(tmp_path):
    images = _mode_images(tmp_path / "modes")
    assert Image.open(images["I;16"][0]).mode.startswith("I")
    for name, (path, expected) in images.items():
        img = load_image(path)
        assert img.mode == "RGB", name
        assert np.array_equal(np.asarray(img), np.asarray(expected)), name
        x = preprocess_image(img, PRE)
        assert x.shape == (3, 32, 32) and torch.isfinite(x).all(), name
        assert torch.equal(x, preprocess_image(expected, PRE)), name


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    a16 = np.array([[0, 257, 30000, 65535]], dtype=np.uint16)
    Image.fromarray(a16).save(tmp_path / "g16.png")
    assert np.asarray(load_image(tmp_path / "g16.png", mode="L")).tolist() == [[0, 1, 117, 255]]
    assert np.asarray(load_image(tmp_path / "g16.png"))[0, 2].tolist() == [117, 117, 117]


def test_exif_orientation_is_applied(tmp_path):
    path, _ = _mode_images(tmp_path / "m")["exif"]
    assert Image.open(path).size == (40, 30)
    assert load_image(path).size == (30, 40)


def test_bad_files_raise_one_line_naming_the_file(tmp_path):
    (tmp_path / "noise.png").write_bytes(np.random.default_rng(0).bytes(500))
    _rgb().save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.txt").write_text("not an image\n")
    for name in ("noise.png", "truncated.png", "notes.txt", "missing.png"):
        with pytest.raises(ReslabError) as err:
            load_image(tmp_path / name)
        assert name in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("pixels", [16 * 16, 12 * 12])  # over 2x the limit (Pillow errors), 1-2x (Pillow warns)
def test_decompression_bomb_is_refused(tmp_path, monkeypatch, pixels):
    side = math.isqrt(pixels)
    Image.new("RGB", (side, side)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ReslabError, match=r"bomb.png: refused, too many pixels"):
        load_image(tmp_path / "bomb.png")


def test_preprocess_imagenet_resize_crop_and_pixel_mean():
    img = _rgb(300, 260)
    pre = {"image_size": 224, "in_chans": 3, "mode": "channel", "mean": [0.485, 0.456, 0.406],
           "std": [0.229, 0.224, 0.225], "resize": 256, "crop": 224}
    assert preprocess_image(img, pre).shape == (3, 224, 224)
    grey = {**PRE, "in_chans": 1, "mode": "pixel-mean", "std": [0.5], "mean_image": torch.full((1, 36, 36), 0.5)}
    x = preprocess_image(Image.new("RGB", (32, 32), (255, 255, 255)), grey)
    assert x.shape == (1, 32, 32) and torch.allclose(x, torch.ones_like(x))


# ---------------------------------------------------------------------------- predict
def test_predict_every_mode_matches_rgb_conversion(tmp_path, weights):
    images = _mode_images(tmp_path / "modes")
    results = predict(weights, [tmp_path / "modes"], topk=3)
    assert len(results) == len(images)
    model, meta = load_weights(weights)
    by_file = {r["file"]: r for r in results}
    for name, (path, expected) in images.items():
        r = by_file[str(path)]
        assert len(r["topk"]) == 3 and all(math.isfinite(t["prob"]) for t in r["topk"]), name
        with torch.inference_mode():
            probs = model(preprocess_image(expected, meta["preprocess"])[None]).softmax(1)[0]
        top = probs.topk(3)
        assert [t["class"] for t in r["topk"]] == [f"class{i}" for i in top.indices.tolist()], name
        assert np.allclose([t["prob"] for t in r["topk"]], top.values.tolist(), atol=1e-5), name


def test_predict_features(tmp_path, weights):
    _rgb().save(tmp_path / "a.png")
    [r] = predict(weights, [tmp_path / "a.png"], features=True, path="eager")
    model, meta = load_weights(weights)
    with torch.inference_mode():
        x = preprocess_image(load_image(tmp_path / "a.png"), meta["preprocess"])[None]
        ref = model.forward_head(model.forward_features(x), pre_logits=True)[0]
    assert len(r["features"]) == 64 and np.allclose(r["features"], ref.tolist(), atol=1e-5)


def _bad_folder(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i in range(3):
        _rgb(seed=i).save(folder / f"good{i}.png")
    (folder / "bad_noise.png").write_bytes(np.random.default_rng(0).bytes(300))
    data = (folder / "good0.png").read_bytes()
    (folder / "bad_truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.txt").write_text("hello\n")
    return folder


def test_predict_bad_files_stop_or_skip(tmp_path, weights):
    folder = _bad_folder(tmp_path)
    with pytest.raises(ReslabError, match=r"bad_noise.png"):
        predict(weights, [folder])
    with pytest.raises(ReslabError, match=r"notes.txt"):
        predict(weights, [tmp_path / "notes.txt"])
    results = predict(weights, [folder, tmp_path / "notes.txt"], skip_bad=True, batch_size=2)
    errors = {r["file"].rsplit("/", 1)[-1] for r in results if "error" in r}
    assert errors == {"bad_noise.png", "bad_truncated.png", "notes.txt"}
    assert sum("topk" in r for r in results) == 3


def test_cli_predict(tmp_path, weights, capsys):
    folder = _bad_folder(tmp_path)
    assert main(["predict", str(weights), str(folder / "good0.png"), "--topk", "2"]) == 0
    captured = capsys.readouterr()
    assert "good0.png" in captured.out and "class" in captured.out
    assert "inference path channels-last" in captured.err

    assert main(["predict", str(weights), str(folder), "--json", "--skip-bad", "--path", "folded"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["path"] == "folded" and len(report["results"]) == 5
    assert "skipped 2 unreadable file(s)" in captured.err and "bad_truncated.png" in captured.err

    assert main(["predict", str(weights), str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 2 and "bad_noise.png" in err.splitlines()[-1]  # path line, then the error


# ---------------------------------------------------------------------------- fast paths
def test_fold_bn_removes_every_bn_and_keeps_the_function():
    for name, size in (("resnet20", 32), ("resnet50", 64)):
        torch.manual_seed(0)
        model = randomise_bn(create_model(name))
        folded = fold_bn(model)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()), name
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is untouched
        x = torch.randn(2, 3, size, size)
        with torch.inference_mode():
            ref = model(x)
            # fp32 reassociation noise grows with the logits' scale (~100 here); a wrong fold is O(scale)
            torch.testing.assert_close(folded(x), ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item(), msg=name)
    with pytest.raises(ValueError, match="eval-mode"):
        fold_bn(create_model("resnet20").train())


@pytest.mark.parametrize("path", ["eager", "folded", "channels-last", "onnxruntime"])
def test_fp32_engines_agree_with_eager(path):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = randomise_bn(create_model("resnet20"))
    x = torch.randn(4, 3, 32, 32)
    engine = build_engine(model, path, x)
    assert engine.name == path
    with torch.inference_mode():
        ref = model(x)
    for batch in (x, x[:1], torch.cat([x, x])):  # other batch sizes than the example
        n = batch.shape[0]
        assert torch.allclose(engine(batch), ref.repeat(2, 1)[:n] if n == 8 else ref[:n], atol=1e-4)


def test_compile_failure_falls_back_with_a_warning(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    model = create_model("resnet20").eval()
    x = torch.randn(2, 3, 32, 32)
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        engine = build_engine(model, "compiled", x)
    assert "compile failed" in engine.name
    with torch.inference_mode():
        assert torch.allclose(engine(x), model(x), atol=1e-4)


@pytest.mark.slow
def test_compiled_engine_agrees_with_eager():
    torch.manual_seed(0)
    model = randomise_bn(create_model("resnet20"))
    x = torch.randn(4, 3, 32, 32)
    engine = build_engine(model, "compiled", x)
    assert engine.name == "compiled"
    with torch.inference_mode():
        ref = model(x)
    assert torch.allclose(engine(x), ref, atol=1e-4)
    assert torch.allclose(engine(x[:3]), ref[:3], atol=1e-4)  # padded up to the compiled batch


def test_select_fastest_returns_an_agreeing_engine():
    model = randomise_bn(create_model("resnet20"))
    x = torch.randn(4, 3, 32, 32)
    engine = select_fastest(model, x, paths=("folded", "channels-last"), repeats=2)
    assert engine.name in ("eager", "folded", "channels-last")
    with torch.inference_mode():
        assert torch.allclose(engine(x), model(x), atol=1e-4)


def test_unknown_path_is_an_error():
    with pytest.raises(ReslabError, match=r"unknown inference path 'gpu'"):
        build_engine(create_model("resnet20").eval(), "gpu", torch.zeros(1, 3, 32, 32))
    from reslab.deploy import fast
    from reslab.deploy.paths import CHOICES

    documented = [line.split()[0] for line in fast.__doc__.splitlines() if line.startswith("  ") and line[2] != " "]
    assert documented == list(PATHS)  # every path is described in fast.py's table, in order
    assert set(FP32_CANDIDATES) <= set(PATHS) - {"bf16", "int8"}

    assert ("auto", "fastest", *PATHS) == CHOICES


def test_bf16_path_is_close_to_fp32_and_never_picked_as_fp32(monkeypatch):
    import reslab.hardware

    torch.manual_seed(0)
    model = randomise_bn(create_model("resnet20"))
    x = torch.randn(8, 3, 32, 32)
    monkeypatch.setattr(reslab.hardware, "native_bf16_cpu", lambda: False)
    with pytest.raises(ReslabError, match="bf16 instructions"):
        build_engine(model, "bf16", x)
    monkeypatch.setattr(reslab.hardware, "native_bf16_cpu", lambda: True)  # emulated where absent: correct, slow
    engine = build_engine(model, "bf16", x)
    out = engine(x)
    with torch.inference_mode():
        ref = model(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    # bf16 keeps 8 bits of mantissa: about 1% relative error per logit, not the fp32 paths' 1e-5
    assert (out - ref).abs().max() <= 0.05 * ref.abs().max()
    assert (out - ref).abs().max() > 1e-6
    assert "bf16" not in FP32_CANDIDATES


def test_bf16_compiled_is_close_to_fp32_at_every_batch_size(monkeypatch):
    import reslab.hardware

    torch.manual_seed(0)
    model = randomise_bn(create_model("resnet20"))
    x = torch.randn(4, 3, 32, 32)
    monkeypatch.setattr(reslab.hardware, "native_bf16_cpu", lambda: False)
    with pytest.raises(ReslabError, match="bf16 instructions"):  # refused, not a "compile failed" fallback
        build_engine(model, "bf16-compiled", x)
    monkeypatch.setattr(reslab.hardware, "native_bf16_cpu", lambda: True)
    engine = build_engine(model, "bf16-compiled", x)
    assert engine.name == "bf16-compiled"
    with torch.inference_mode():
        ref = model(x)
    for batch in (x, x[:3], torch.cat([x, x, x[:1]])):  # padded up to, or split into, the compiled batch
        out, want = engine(batch), ref.repeat(3, 1)[:len(batch)]
        assert out.dtype == torch.float32 and out.shape == want.shape
        assert 1e-6 < (out - want).abs().max() <= 0.05 * want.abs().max()
    assert "bf16-compiled" not in FP32_CANDIDATES


# ---------------------------------------------------------------------------- export
@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "exported-program"])
def test_export_parity(tmp_path, weights, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    result = export(weights, format=fmt, out=tmp_path / f"model.{fmt}")
    assert result.path.is_file() and result.path.stat().st_size > 100_000
    assert result.max_abs_diff < 1e-4 and result.top1_agreement == 1.0
    assert "max |logit diff|" in result.summary()
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)  # exports take raw images
    with torch.inference_mode():
        ref = load_weights(weights)[0](normalize_view(x, PRE))
    if fmt == "onnx":
        import onnx
        import onnxruntime as ort

        assert json.loads({p.key: p.value for p in onnx.load(result.path).metadata_props}["reslab"])["model"] \
            == "resnet20"
        got = torch.from_numpy(ort.InferenceSession(str(result.path)).run(None, {"input": x.numpy()})[0])
    elif fmt == "torchscript":
        with pytest.warns(FutureWarning):  # torch.jit is deprecated upstream; the file still loads
            got = torch.jit.load(str(result.path))(x)
    else:
        got = torch.export.load(str(result.path)).module()(x)
    assert torch.allclose(got, ref, atol=1e-4)


def test_export_errors(weights):
    with pytest.raises(ReslabError, match="onnx only"):
        export(weights, format="torchscript", int8=True, calib_images=".")
    with pytest.raises(ReslabError, match="--calib"):
        export(weights, format="onnx", int8=True)
    with pytest.raises(ReslabError, match="unknown export format 'tflite'"):
        export(weights, format="tflite")


# ---------------------------------------------------------------------------- int8 on a trained model
def _quadrant_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """16x16 RGB noise with one bright quadrant; the quadrant is the class (4 classes)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.integers(0, 120, (n, 16, 16, 3)).astype(np.uint8)
    for i, c in enumerate(y):
        r, col = divmod(int(c), 2)
        x[i, r * 8:(r + 1) * 8, col * 8:(col + 1) * 8] += 120
    return x, y


def test_int8_keeps_accuracy_of_a_trained_model(tmp_path):
    pytest.importorskip("onnxruntime")
    pre = {"image_size": 16, "in_chans": 3, "mode": "channel", "mean": [0.5] * 3, "std": [0.25] * 3,
           "resize": None, "crop": 16}
    kwargs = {"num_classes": 4, "widths": [8, 16, 32], "stem_width": 8}
    torch.manual_seed(0)
    model = create_model("resnet20", **kwargs)
    xs, ys = _quadrant_data(960, 0)
    to_t = (lambda a: (torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25)  # noqa: E731
    xt, yt = to_t(xs), torch.from_numpy(ys)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(30):
        i = torch.arange(step * 32, (step + 1) * 32) % len(xt)
        loss = torch.nn.functional.cross_entropy(model(xt[i]), yt[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    out = save_weights(model, tmp_path / "w", model_name="resnet20", model_kwargs=kwargs,
                       classes=["tl", "tr", "bl", "br"], preprocess=pre)
    calib = tmp_path / "calib"
    calib.mkdir()
    for i, a in enumerate(_quadrant_data(32, 1)[0]):
        Image.fromarray(a).save(calib / f"{i}.png")
    result = export(out, format="onnx", int8=True, calib_images=calib)
    assert result.path.name == "model.int8.onnx" and result.inputs == "held-out calibration images"
    assert result.batch == 8 and result.warning is None  # 8 of the 32 checked, the other 24 calibrate

    import onnxruntime as ort

    test_x, test_y = _quadrant_data(512, 2)
    with torch.inference_mode():
        fp32 = model(to_t(test_x)).argmax(1).numpy()
    raw = np.ascontiguousarray(test_x.transpose(0, 3, 1, 2))  # exports take uint8 NCHW images
    q = ort.InferenceSession(str(result.path)).run(None, {"input": raw})[0].argmax(1)
    acc32, acc8 = (fp32 == test_y).mean(), (q == test_y).mean()
    assert acc32 > 0.9, f"the tiny model did not learn the task: {acc32:.3f}"
    assert acc8 >= acc32 - 0.02 and (q == fp32).mean() >= 0.97, (acc32, acc8)


def test_int8_below_the_agreement_line_warns_with_the_figure(tmp_path, weights, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(8):
        _rgb(seed=i).save(folder / f"{i}.png")
    monkeypatch.setattr(export_mod, "INT8_AGREEMENT_MIN", 1.01)  # no agreement reaches it
    assert main(["export", str(weights), "--format", "onnx", "--int8", "--calib", str(folder), "--out",
                 str(tmp_path / "q.onnx")]) == 0
    err = capsys.readouterr().err
    assert "reslab export: warning: int8 agrees with fp32 on the top-1 class of" in err
    assert "of 2 held-out calibration images (max |logit diff|" in err and "below 101%" in err


# ---------------------------------------------------------------------------- CLI: export, bench
def test_cli_export(tmp_path, weights, capsys):
    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(4):
        _rgb(seed=i).save(folder / f"{i}.png")
    out = tmp_path / "m.pt2"
    assert main(["export", str(weights), "--format", "exported-program", "--out", str(out),
                 "--calib", str(folder)]) == 0
    assert out.is_file() and "top-1 agreement 100.0%" in capsys.readouterr().out
    assert main(["export", str(weights), "--format", "torchscript", "--int8"]) == 2
    assert "onnx only" in capsys.readouterr().err



def test_export_program_to_a_name_without_pt2_checks_parity_without_a_torch_warning(tmp_path, weights, capfd):
    out = tmp_path / "model-ep"  # --out is any file name; torch.export.load(path) warns unless it ends in .pt2
    assert main(["export", str(weights), "--format", "exported-program", "--out", str(out)]) == 0
    captured = capfd.readouterr()
    assert out.is_file() and "top-1 agreement 100.0%" in captured.out
    assert "Unable to load package" not in captured.err

def test_bench_infer_small(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["bench", "infer", "--model", "resnet20", "--image-size", "16", "--batch-size", "2", "--repeats", "1",
                 "--paths", "eager,folded", "--out", str(out), "--no-malloc-tuning", "--no-openvino"]) == 0
    report = json.loads(out.read_text())
    assert [r["name"] for r in report["rows"]] == ["reslab eager", "reslab folded"]
    assert report["reference"] == "reslab eager" and report["eager_baseline"] == "reslab eager"
    assert all(r["images_per_s"] > 0 and r["top1_agreement"] == 1.0 for r in report["rows"])
    assert report["hardware"]["threads"] >= 1 and report["args"]["model"] == "resnet20"
    printed = capsys.readouterr().out
    assert "reslab folded" in printed and "measured peak" in printed
    # the roofline: GFLOP/s from the model's multiply-adds at 16x16, against the measured matmul rate
    assert report["macs_per_image"] == count_macs(create_model("resnet20"), (3, 16, 16))
    assert report["matmul_gflops"]["fp32"] > 0 and len(report["matmul_gflops"]["fp32_rounds"]) == 1
    for r in report["rows"]:
        assert r["precision"] == "fp32"
        assert r["gflops"] == pytest.approx(2 * report["macs_per_image"] * r["images_per_s"] / 1e9)
        assert r["of_peak"] == pytest.approx(r["gflops"] / report["matmul_gflops"]["fp32"])


def test_row_precision():
    assert [row_precision(n) for n in ("torchvision eager", "reslab bf16", "reslab int8", "reslab compiled")] == \
        ["fp32", "bf16", "int8", "fp32"]


@pytest.mark.slow
def test_bench_infer_has_torchvision_baselines():
    report = bench_infer("resnet18", batch_size=2, repeats=1, image_size=32, paths=("channels-last",), malloc=False)
    rows = {r["name"]: r for r in report["rows"]}
    assert set(rows) == {"torchvision eager", "torchvision onnxruntime", "reslab channels-last"}
    eager, ort = rows["torchvision eager"]["images_per_s"], rows["torchvision onnxruntime"]["images_per_s"]
    for r in rows.values():  # the ratio columns divide by the torchvision rows, not by anything else
        assert r["vs_torchvision_eager"] == pytest.approx(r["images_per_s"] / eager)
        assert r["vs_onnxruntime"] == pytest.approx(r["images_per_s"] / ort)
    assert rows["reslab channels-last"]["max_abs_diff"] < 1e-3


def test_one_cpu_info_reader(monkeypatch):
    import reslab.deploy.bench as bench_mod

    monkeypatch.setattr(bench_mod, "cpu_model", lambda: "Test CPU 9000")
    monkeypatch.setattr(bench_mod, "cpu_flags", lambda: ["avx2", "fma"])
    info = bench_mod.hardware_info(threads=1)
    assert info["cpu"] == "Test CPU 9000" and info["flags"] == ["avx2", "fma"]
