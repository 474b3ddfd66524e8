"""Bad flags: every mistake in a flag is one line naming the flag or the value and the fix, exit 2,
never a Python internal ("invalid <lambda> value", "range() arg 3") or a traceback.

The flag cases are fixed by the shared argument layer (`reslab.cli_types` on every parser).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from reslab.cli import main

from fakedata import write_learnable_mnist
from robust_util import tiny_weights


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_learnable_mnist(tmp_path_factory.mktemp("fm"), n_train=64, n_test=16)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("w"))


def _train(data: Path, out: Path, *flags: str) -> list[str]:
    # If a flag went unchecked, this is still a two-iteration run on tiny data in tmp_path.
    return ["train", "--data-dir", str(data), "--out", str(out), "--iterations", "2", "--batch-size", "16",
            "--device", "cpu", "--quiet", *flags]


def _bad(capsys, argv: list[str], *needles: str) -> None:
    """Exit 2 (argparse's or ours), no traceback, and one error line holding every needle."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, (code, err)
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    for internal in ("<lambda>", "range() arg", "has classes", "Expected one of"):
        assert internal not in lines[0], lines[0]


TRAIN_CASES = {
    "label smoothing 2": (["--label-smoothing", "2"], ["--label-smoothing", "'2'"], None),
    "milestones not numbers": (["--milestones", "x"], ["--milestones", "'x'"], None),
    "log every 0": (["--log-every", "0"], ["log", "0"], None),
    "batch size 0": (["--batch-size", "0"], ["batch", "0"], None),
    "lr not a number": (["--lr", "fast"], ["--lr", "'fast'"], None),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_train_flags(case, data, tmp_path, capsys, request):
    flags, needles, mark = TRAIN_CASES[case]
    if mark is not None:
        request.applymarker(mark)
    _bad(capsys, _train(data, tmp_path / "run", *flags), *needles)


def test_summary_input_size_too_large(capsys):
    _bad(capsys, ["summary", "resnet20", "--image-size", "100000"], "--image-size", "100000")


@pytest.mark.parametrize("side", ["-1", "100000"])
def test_compare_image_size_out_of_range(tmp_path, capsys, side):
    _bad(capsys, ["compare", "resnet20", "--image-size", side, "--out", str(tmp_path / "c")], "--image-size", side)


@pytest.mark.parametrize("device", ["tpu", "cuda"])
def test_evaluate_unavailable_device(weights, capsys, device):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    _bad(capsys, ["evaluate", str(weights), "--device", device], device)


def test_evaluate_multiscale_zero(weights, data, capsys):
    _bad(capsys, ["evaluate", str(weights), "--data-dir", str(data), "--multiscale", "0"], "--multiscale", "0")


# ---------------------------------------------------------------------------- paths
def test_export_out_naming_a_directory(weights, tmp_path, capsys):
    _bad(capsys, ["export", str(weights), "--format", "torchscript", "--out", str(tmp_path)], "is a directory")


def test_bench_infer_out_naming_a_directory_fails_before_the_benchmark(tmp_path, capsys):
    _bad(capsys, ["bench", "infer", "--model", "resnet20", "--out", str(tmp_path)], str(tmp_path), "is a directory")


def test_predict_topk_zero(weights, tmp_path, capsys):
    _bad(capsys, ["predict", str(weights), str(tmp_path), "--topk", "0"], "--topk", "'0'")


def test_train_out_naming_a_file(data, tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("mine\n")
    _bad(capsys, _train(data, f), str(f))
    assert f.read_text() == "mine\n"


def test_train_out_read_only(data, tmp_path, capsys):
    if os.geteuid() == 0:  # root writes through read-only modes; /sys refuses even root
        _bad(capsys, _train(data, Path("/sys/reslab-run")), "/sys/reslab-run", "cannot write")
        return
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        _bad(capsys, _train(data, ro / "run"), str(ro), "cannot write")
    finally:
        ro.chmod(0o755)
