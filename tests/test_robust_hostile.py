"""Hostile files: a model.json or an image from anywhere is checked before use, with limits.

Each case is a one-line ReslabError naming the field or the file; none allocates more than
the file itself justifies; pickles never run code.
"""

from __future__ import annotations

import json
import pickle
import resource
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reslab.data.formats import load_cifar_pickle
from reslab.data.images import decode_image, load_image
from reslab.errors import ReslabError
from reslab.weights import load_weights

from robust_util import one_line_error, png_bytes, png_claiming, tiny_weights

MB = 1024  # ru_maxrss is in KiB on Linux


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("good"))


def _hostile_copy(good: Path, tmp_path: Path, edit) -> Path:
    """A copy of `good` whose model.json went through `edit(meta) -> meta | str`."""
    out = tmp_path / "w"
    out.mkdir()
    (out / "model.safetensors").write_bytes((good / "model.safetensors").read_bytes())
    meta = edit(json.loads((good / "model.json").read_text()))
    (out / "model.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    return out


def _set(path: str, value):
    def edit(meta):
        *parents, last = path.split(".")
        node = meta
        for p in parents:
            node = node[p]
        node[last] = value
        return meta
    return edit


CASES = {
    "resize 100000": (_set("preprocess.resize", 100_000), "preprocess.resize"),
    "num_classes 1e12": (_set("model_kwargs.num_classes", 1e12), "model_kwargs.num_classes"),
    "num_classes 10**12": (_set("model_kwargs.num_classes", 10**12), "model_kwargs.num_classes"),
    "image_size -5": (_set("preprocess.image_size", -5), "preprocess.image_size"),
    "image_size 1e6": (_set("preprocess.image_size", 1_000_000), "preprocess.image_size"),
    "crop 1e6": (_set("preprocess.crop", 1_000_000), "preprocess.crop"),
    "classes as dicts": (_set("classes", [{"name": f"c{i}"} for i in range(10)]), "classes[0]"),
    "std 0": (_set("preprocess.std", [0.25, 0.0, 0.25]), "preprocess.std"),
    "std of 2 for 3 channels": (_set("preprocess.std", [0.25, 0.25]), "preprocess.std"),
    "mode unknown": (_set("preprocess.mode", "zca"), "preprocess.mode"),
    "widths huge": (_set("model_kwargs.widths", [4096, 4096, 4096]), "weights do not match"),
    "layers 10**6": (_set("model_kwargs.widths", [10**6]), "model_kwargs.widths[0]"),
    "nested 100,000 deep": (lambda m: '{"format": "reslab-weights", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
                            "nested too deeply"),
    "nested 20 deep": (_set("preprocess.dataset", json.loads("[" * 20 + "]" * 20)), "nested 22 levels"),
    "not JSON": (lambda m: "{not json", "not valid JSON"),
    "class list shorter than the outputs": (_set("classes", ["a", "b", "c"]), "3 class names for a network with 10"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_model_json_is_one_line_naming_the_field(case, good, tmp_path, capsys):
    edit, needle = CASES[case]
    weights = _hostile_copy(good, tmp_path, edit)
    img = tmp_path / "a.png"
    img.write_bytes(png_bytes())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    one_line_error(capsys, ["predict", weights, img], needle)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 300 * MB


def test_an_image_is_refused_by_its_header_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(30_000, 30_000))  # 900 M pixels: 2.7 GB as RGB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ReslabError, match=r"bomb\.png: refused, too many pixels") as err:
        load_image(path)
    assert "\n" not in str(err.value)
    with pytest.raises(ReslabError, match="upload: refused, too many pixels"):
        decode_image(png_claiming(30_000, 30_000), name="upload")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * MB


def test_a_long_thin_image_is_refused_before_resizing(tmp_path, good, capsys):
    weights = _hostile_copy(good, tmp_path, _set("preprocess.resize", 4096))
    img = tmp_path / "thin.png"
    img.write_bytes(png_bytes(20_000, 1))
    one_line_error(capsys, ["predict", weights, img], "thin.png", "crop the image closer to square")


# ---------------------------------------------------------------------------- pickles
def test_cifar_pickle_resaved_by_python3_protocol2_loads(tmp_path):
    d = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2], b"batch_label": b"training batch 1 of 5"}
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(d, protocol=2))
    assert b"_codecs" in path.read_bytes()  # Python 3 writes bytes as _codecs.encode(text, "latin1")
    got = load_cifar_pickle(path)
    assert got[b"batch_label"] == b"training batch 1 of 5" and got[b"data"].shape == (2, 3072)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize("payload", [
    pickle.dumps({b"data": _Evil()}, protocol=2),
    # _codecs.encode is allowed for latin-1 only: another codec is refused, not looked up
    b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00abcq\x01X\x04\x00\x00\x00zlibq\x02\x86q\x03Rq\x04.",
])
def test_malicious_pickles_still_refused(tmp_path, payload, capsys):
    path = tmp_path / "data_batch_1"
    path.write_bytes(payload)
    with pytest.raises(ReslabError, match="data_batch_1") as err:
        load_cifar_pickle(path)
    assert "\n" not in str(err.value) and "pwned" not in capsys.readouterr().out


# ---------------------------------------------------------------------------- property-based
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
                     lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                     max_leaves=12)
_FIELDS = ["model", "model_kwargs", "classes", "preprocess", "format", "version", "preprocess.resize",
           "preprocess.crop", "preprocess.image_size", "preprocess.mean", "preprocess.std", "preprocess.mode",
           "preprocess.in_chans", "model_kwargs.num_classes", "model_kwargs.widths", "model_kwargs.stem_width",
           "model_kwargs.layers", "model_kwargs.in_chans"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(_FIELDS), value=_json | st.sampled_from([0, -1, 4096, 10**9, [], [0], [4096] * 3]))
def test_random_model_json_only_raises_reslab_errors(good, tmp_path_factory, field, value):
    weights = _hostile_copy(good, tmp_path_factory.mktemp("h"), lambda m: _set_any(m, field, value))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        load_weights(weights)
    except ReslabError as e:
        assert "\n" not in str(e)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 300 * MB


def _set_any(meta, field, value):
    *parents, last = field.split(".")
    node = meta
    for p in parents:
        node = node[p] if isinstance(node.get(p), dict) else node.setdefault(p, {})
    node[last] = value
    return meta


_MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"RIFF\x00\x00\x00\x00WEBPVP8 ",
          b"II*\x00", b"P6\n"]


@settings(max_examples=150, deadline=None)
@given(magic=st.sampled_from(_MAGIC), body=st.binary(max_size=2048), cut=st.integers(0, 4096))
def test_random_bytes_as_images_only_raise_reslab_errors(magic, body, cut):
    valid = png_bytes(12, 12)
    for data in (magic + body, valid[:cut] + body[:64]):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            decode_image(data, name="upload")
        except ReslabError as e:
            assert "\n" not in str(e) and str(e).startswith("upload:")
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 300 * MB


def test_random_bytes_through_the_file_path(tmp_path):
    rng = np.random.default_rng(0)
    for i, magic in enumerate(_MAGIC):
        p = tmp_path / f"{i}.png"
        p.write_bytes(magic + rng.bytes(500))
        with pytest.raises(ReslabError, match=f"{i}.png"):
            load_image(p)
