"""Second hardening round (issue 28, items 6 and 10): images in formats outside the allow-list, Pillow's
own failures, the one pixel limit; weights whose tensors are NaN, relabelled or disagree with model.json.
Each case is one line on stderr, exit 2, no traceback, the user's files unchanged."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from reslab.data.images import ACCEPTED_FORMATS, DEFAULT_MAX_PIXELS, decode_image, load_image
from reslab.errors import ReslabError
from reslab.weights import load_weights

from robust_util import one_line_error, png_bytes, png_claiming, snapshot, tiny_weights


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("good"))


def _saved(fmt: str, size=(16, 16), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, (10, 200, 30) if mode == "RGB" else 7).save(buf, fmt)
    return buf.getvalue()


# ---------------------------------------------------------------------------- images
REFUSED = {"BLP": "P", "DDS": "RGB", "SPIDER": "F", "TGA": "RGB", "ICO": "RGB", "PCX": "RGB", "SGI": "RGB",
           "MSP": "1", "QOI": "RGB", "XBM": "1", "EPS": "RGB"}


@pytest.mark.parametrize("fmt", list(REFUSED))
def test_formats_outside_the_allow_list_are_one_line(fmt, good, tmp_path, capsys):
    try:
        data = _saved(fmt, mode=REFUSED[fmt])
    except (OSError, KeyError) as e:  # EPS needs Ghostscript to write
        pytest.skip(f"Pillow cannot write {fmt} here ({e})")
    img = tmp_path / f"x.{fmt.lower()}"
    img.write_bytes(data)
    before = snapshot(tmp_path)
    one_line_error(capsys, ["predict", good, img], f"x.{fmt.lower()}", "not an image in a format reslab reads",
                   "JPEG, PNG")
    assert snapshot(tmp_path) == before
    with pytest.raises(ReslabError, match="upload: not an image in a format"):
        decode_image(data, name="upload")


@pytest.mark.parametrize("fmt", ["BLP", "DDS", "SPIDER"])
@pytest.mark.parametrize("cut", [8, 40, 100, 200])
def test_fuzzed_files_pillow_would_take_as_other_formats_are_one_line(fmt, cut):
    data = bytearray(_saved(fmt, mode=REFUSED[fmt]))[:cut]
    with pytest.raises(ReslabError) as e:
        decode_image(bytes(data), name="fuzz")
    assert str(e.value).startswith("fuzz: ") and "\n" not in str(e.value)


@pytest.mark.parametrize("fmt, mode", [("JPEG", "RGB"), ("PNG", "RGB"), ("WEBP", "RGB"), ("BMP", "RGB"),
                                       ("GIF", "P"), ("TIFF", "RGB"), ("PPM", "RGB"), ("PPM", "L"), ("MPO", "RGB")])
def test_accepted_formats_decode(fmt, mode):
    assert fmt in ACCEPTED_FORMATS or fmt == "MPO"  # a JPEG to Pillow's opener
    img = decode_image(_saved(fmt, mode=mode))
    assert img.mode == "RGB" and img.size == (16, 16)


def test_every_pillow_exception_is_the_one_line(monkeypatch):
    """Pillow's plugins fail in ways no list foresees (NotImplementedError, AttributeError, IndexError...)."""
    from PIL import PngImagePlugin

    for exc in (NotImplementedError("no"), AttributeError("x"), IndexError("y"), KeyError("z"), TypeError("t"),
                RecursionError("deep"), ZeroDivisionError("z")):
        def load(self, exc=exc):
            raise exc
        monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", load)
        with pytest.raises(ReslabError, match=r"^up: broken or truncated image \(") as e:
            decode_image(png_bytes(), name="up")
        assert "\n" not in str(e.value)


def test_the_bomb_refusal_quotes_the_one_documented_limit(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(20_000, 10_000))  # 200 M pixels: past Pillow's own 2x error threshold
    with pytest.raises(ReslabError) as e:
        load_image(path)
    assert f"{DEFAULT_MAX_PIXELS:,}" in str(e.value) and "178,956,970" not in str(e.value)
    path.write_bytes(png_claiming(10_000, 10_000))  # 100 M: between 1x and 2x, Pillow only warns
    with pytest.raises(ReslabError, match=f"the limit is {DEFAULT_MAX_PIXELS:,}"):
        load_image(path)


def test_docs_name_the_formats_and_the_limit():
    docs = (Path(__file__).parents[1] / "docs" / "deployment.md").read_text()
    assert "89,478,485" in docs and "178,956,970" not in docs
    for name in ("JPEG", "PNG", "WebP", "BMP", "GIF", "TIFF", "PPM"):
        assert name in docs


# ---------------------------------------------------------------------------- weights
def _copy(good: Path, tmp_path: Path, *, tensors=None, meta=None) -> Path:
    out = tmp_path / "w"
    out.mkdir()
    state = load_file(good / "model.safetensors")
    if tensors:
        tensors(state)
    save_file(state, out / "model.safetensors", metadata={"format": "reslab-weights"})
    m = json.loads((good / "model.json").read_text())
    if meta:
        meta(m)
    (out / "model.json").write_text(json.dumps(m))
    return out


def _set_tensor(name, value):
    def edit(state):
        state[name] = state[name].clone()
        state[name].view(-1)[3] = value
    return edit


@pytest.mark.parametrize("name, value", [("conv1.weight", float("nan")), ("fc.bias", float("inf")),
                                         ("bn1.running_var", float("-inf"))])
def test_nonfinite_weights_refused_naming_the_tensor(good, tmp_path, capsys, name, value):
    w = _copy(good, tmp_path, tensors=_set_tensor(name, value))
    img = tmp_path / "a.png"
    img.write_bytes(png_bytes())
    before = snapshot(tmp_path)
    one_line_error(capsys, ["predict", w, img], f"tensor {name} holds 1 NaN or infinite values")
    assert snapshot(tmp_path) == before


def test_float_bytes_relabelled_as_int_refused(good, tmp_path):
    def relabel(state):
        state["conv1.weight"] = state["conv1.weight"].view(torch.int32)
    w = _copy(good, tmp_path, tensors=relabel)
    with pytest.raises(ReslabError, match=r"tensor conv1\.weight is stored as I32, the network holds torch\.float32"):
        load_weights(w)


def test_half_precision_weights_still_load(good, tmp_path):
    def half(state):
        for k, v in state.items():
            if v.is_floating_point():
                state[k] = v.half()
    model, _ = load_weights(_copy(good, tmp_path, tensors=half))
    assert model.conv1.weight.dtype == torch.float32


@pytest.mark.parametrize("edit, needle", [
    (lambda m: m["preprocess"].update(in_chans=1, mean=[0.5], std=[0.25]),
     "preprocess.in_chans is 1 but resnet20 takes 3-channel images"),
    (lambda m: m.update(classes=["c0", "c1", "c2", "c0", *[f"x{i}" for i in range(6)]]),
     "'classes[3]' must be a name no other class has"),
    (lambda m: m["preprocess"].update(crop=64),
     "'preprocess.crop' must be at most image_size (16) when there is no resize"),
])
def test_model_json_checked_against_the_network(good, tmp_path, capsys, edit, needle):
    w = _copy(good, tmp_path, meta=edit)
    img = tmp_path / "a.png"
    img.write_bytes(png_bytes())
    one_line_error(capsys, ["predict", w, img], needle)
