"""Hostile and damaged dataset files (issue 28, item 5): labels outside the class count, metadata that
disagrees with the data, IDX gzips that inflate past their own header. Each is one line naming the file,
before the body is allocated; the files are left as they were."""

from __future__ import annotations

import gzip
import pickle
import resource
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reslab.data.formats import MAX_IDX_BYTES, read_cifar10, read_cifar100, read_idx, read_mnist
from reslab.errors import ReslabError

from fakedata import py2_pickle, write_cifar10, write_cifar100, write_idx, write_mnist
from robust_util import one_line_error, snapshot

MB = 1024  # ru_maxrss is in KiB on Linux


def _train_argv(data: str, folder: Path, tmp_path: Path) -> list:
    return ["train", "--data", data, "--data-dir", folder, "--model", "resnet20", "--iterations", "1",
            "--out", tmp_path / "run", "--device", "cpu", "--quiet"]


def _edit_pickle(path: Path, **changes) -> None:
    with path.open("rb") as f:
        d = pickle.load(f, encoding="bytes")
    d.update({k.encode(): v for k, v in changes.items()})
    py2_pickle(d, path)


# ---------------------------------------------------------------------------- CIFAR
@pytest.mark.parametrize("label", [-1, 57, 10])
def test_cifar10_label_outside_the_classes_is_one_line(tmp_path, capsys, label):
    data = tmp_path / "cifar-10-batches-py"
    ref = write_cifar10(data)
    _edit_pickle(data / "data_batch_2", labels=[label, *ref["data_batch_2"][b"labels"][1:]])
    before = snapshot(data)
    line = one_line_error(capsys, _train_argv("cifar10", data, tmp_path), "data_batch_2", f"label {label}",
                          "10 classes")
    assert "index 0" in line
    assert snapshot(data) == before and not (tmp_path / "run").exists()


def test_cifar10_meta_with_three_names_is_one_line(tmp_path, capsys):
    data = tmp_path / "c10"
    write_cifar10(data)
    _edit_pickle(data / "batches.meta", label_names=[b"a", b"b", b"c"])
    one_line_error(capsys, _train_argv("cifar10", data, tmp_path), "batches.meta", "3 names", "10 classes")


@pytest.mark.parametrize("names, needle", [
    ([b"cat"] * 10, "appears twice"),
    ([b""] + [b"n%d" % i for i in range(9)], "non-empty"),
    ([b"\xff\xfe"] + [b"n%d" % i for i in range(9)], "UTF-8"),
    ("not a list", "holds bytes, not names"),
])
def test_cifar10_meta_names_checked(tmp_path, names, needle):
    write_cifar10(tmp_path)
    _edit_pickle(tmp_path / "batches.meta", label_names=names)
    with pytest.raises(ReslabError, match=needle) as e:
        read_cifar10(tmp_path, train=False)
    assert "batches.meta" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("labels", [["a", "b"], [[1], [2]], [1.5, 2.5], 7])
def test_cifar_labels_not_integers(tmp_path, labels):
    write_cifar10(tmp_path)
    py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": labels}, tmp_path / "test_batch")
    with pytest.raises(ReslabError, match="test_batch") as e:
        read_cifar10(tmp_path, train=False)
    assert "\n" not in str(e.value)


def test_cifar100_fine_label_100_is_refused(tmp_path):
    ref = write_cifar100(tmp_path)
    _edit_pickle(tmp_path / "test", fine_labels=[100, *ref["test"][b"fine_labels"][1:]])
    with pytest.raises(ReslabError, match=r"test: label 100 at index 0 .*100 classes"):
        read_cifar100(tmp_path, train=False)


def test_cifar_pickle_larger_than_any_official_file_is_refused_unread(tmp_path, monkeypatch):
    from reslab.data import formats

    write_cifar10(tmp_path)
    monkeypatch.setattr(formats, "MAX_CIFAR_BYTES", 1000)
    with pytest.raises(ReslabError, match="more than the 1,000 of any official CIFAR file"):
        read_cifar10(tmp_path, train=False)


# ---------------------------------------------------------------------------- IDX
def test_fashion_mnist_label_200_is_one_line(tmp_path, capsys):
    write_mnist(tmp_path)
    labels = np.zeros(50, np.uint8)
    labels[7] = 200
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    before = snapshot(tmp_path)
    one_line_error(capsys, _train_argv("fashion-mnist", tmp_path, tmp_path / "o"), "train-labels-idx1-ubyte.gz",
                   "label 200 at index 7", "10 classes")
    assert snapshot(tmp_path) == before


def test_idx_gzip_inflating_past_its_header_is_refused_before_allocating(tmp_path):
    """The header says 50 images of 28x28 (39 KB); the gzip inflates to 256 MB: refused after reading one
    byte more than the header allows, and memory never grows by the inflated size."""
    write_mnist(tmp_path)
    header = struct.pack(">IIII", 0x803, 50, 28, 28)
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb", compresslevel=1) as f:
        f.write(header)
        chunk = bytes(2**22)
        for _ in range(64):
            f.write(chunk)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ReslabError, match=r"train-images-idx3-ubyte\.gz: IDX body holds more than the 39,200 bytes"):
        read_mnist(tmp_path, train=True)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * MB


def test_idx_header_claiming_too_much_is_refused_unread(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(struct.pack(">IIII", 0x803, 10**7, 28, 28) + bytes(100)))
    with pytest.raises(ReslabError, match=f"more than the {MAX_IDX_BYTES:,} reslab reads"):
        read_idx(path, 0x803)


def test_idx_images_of_another_size_are_refused(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((50, 32, 32), np.uint8))
    with pytest.raises(ReslabError, match="images of 32x32 pixels, this dataset's are 28x28"):
        read_mnist(tmp_path, train=True)


# ---------------------------------------------------------------------------- property-based
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(magic=st.sampled_from([0x801, 0x803, 0x802, 0x80B, 0, 0xFFFFFFFF]),
       dims=st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 40), min_size=0, max_size=4),
       body=st.binary(max_size=200), gz=st.booleans())
def test_any_idx_header_is_an_array_or_one_line(tmp_path, magic, dims, body, gz):
    raw = struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + body
    path = tmp_path / ("f.gz" if gz else "f")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    for want in (0x801, 0x803):
        try:
            arr = read_idx(path, want)
        except ReslabError as e:
            assert "\n" not in str(e) and str(path) in str(e)
        else:
            # the body is what follows the header the expected rank reads (dims [21, 0, 0] read as rank 1
            # is a valid 21-byte label file: 8 bytes of dims become its body)
            assert arr.dtype == np.uint8 and arr.ndim == (want & 0xFF) and arr.size == len(raw) - 4 - 4 * arr.ndim


_values = st.one_of(st.none(), st.integers(-2**70, 2**70), st.floats(),
                    st.text(st.characters(max_codepoint=255), max_size=4), st.binary(max_size=4),
                    st.lists(st.integers(-5, 300), max_size=6), st.lists(st.binary(max_size=3), max_size=12))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_values, labels=_values, names=_values, rows=st.integers(0, 3))
def test_any_cifar_batch_is_data_or_one_line(tmp_path, data, labels, names, rows):
    folder = tmp_path / "c"
    if not (folder / "batches.meta").exists():
        write_cifar10(folder)
    arr = np.zeros((rows, 3072), np.uint8) if isinstance(data, list) else data
    py2_pickle({b"data": arr, b"labels": labels}, folder / "test_batch")
    py2_pickle({b"label_names": names if names is not None else [b"n%d" % i for i in range(10)]},
               folder / "batches.meta")
    try:
        images, got, classes = read_cifar10(folder, train=False)
    except ReslabError as e:
        assert "\n" not in str(e)
    else:
        assert images.shape == (len(got), 3, 32, 32) and len(classes) == 10
        assert bool(((got >= 0) & (got < 10)).all())
