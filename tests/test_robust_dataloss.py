"""Never lose a user's work: nothing is replaced without --overwrite (files that existed are
byte-identical after a refusal), and an exported model carries everything needed to use it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reslab.cli import main
from reslab.deploy.predict import predict
from reslab.train import resolve_config, train

from fakedata import write_learnable_mnist
from robust_util import one_line_error, snapshot, tiny_weights


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A tiny Fashion-MNIST-format run trained with the paper's per-pixel mean subtraction."""
    data = write_learnable_mnist(tmp_path_factory.mktemp("fm"), n_train=160, n_test=40)
    out = tmp_path_factory.mktemp("runs") / "run"
    cfg = resolve_config("cifar-paper", data_dir=str(data), iterations=12, milestones=(), out=str(out),
                         batch_size=16, log_every=4, quiet=True, device="cpu", workers=0)
    train(cfg)
    assert json.loads((out / "model.json").read_text())["preprocess"]["mode"] == "pixel-mean"
    return out


@pytest.fixture
def ckpt(tmp_path) -> Path:
    w = tiny_weights(tmp_path / "src")
    from safetensors.torch import load_file, save_file

    state = {k: v for k, v in load_file(w / "model.safetensors").items() if not k.startswith("preprocess.")}
    save_file(state, tmp_path / "ckpt.safetensors")
    return tmp_path / "ckpt.safetensors"


CONVERT = ["--model", "resnet20", "--num-classes", "10"]


def test_convert_refuses_to_replace_trained_weights(tmp_path, capsys, ckpt):
    run = tiny_weights(tmp_path / "run", seed=1)
    before = snapshot(run)
    for name in ("model.safetensors", "model.json"):
        assert (run / name).exists()
    one_line_error(capsys, ["convert", ckpt, *CONVERT, "--out", run], str(run), "earlier weights output", "--overwrite")
    assert snapshot(run) == before


def test_convert_out_is_a_file(tmp_path, capsys, ckpt):
    f = tmp_path / "notes.txt"
    f.write_text("mine\n")
    one_line_error(capsys, ["convert", ckpt, *CONVERT, "--out", f], str(f), "is a file")
    assert f.read_text() == "mine\n"


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_refuses_to_replace_a_file(tmp_path, capsys, fmt):
    w = tiny_weights(tmp_path / "w")
    target = tmp_path / "model.out"
    target.write_bytes(b"the user's file")
    one_line_error(capsys, ["export", w, "--format", fmt, "--out", target], str(target), "--overwrite")
    assert target.read_bytes() == b"the user's file"
    # the default output beside the weights, too
    default = w / f"model{'.onnx' if fmt == 'onnx' else '.torchscript.pt'}"
    default.write_bytes(b"an earlier export")
    one_line_error(capsys, ["export", w, "--format", fmt], str(default), "--overwrite")
    assert default.read_bytes() == b"an earlier export"
    if fmt == "torchscript":  # the cheap format shows that --overwrite replaces
        assert main(["export", str(w), "--format", fmt, "--overwrite"]) == 0
        assert default.stat().st_size > 10_000


def test_export_out_is_a_directory(tmp_path, capsys):
    w = tiny_weights(tmp_path / "w")
    one_line_error(capsys, ["export", w, "--format", "torchscript", "--out", tmp_path], "is a directory")


def test_onnx_export_is_self_contained(trained_run, tmp_path):
    """Only onnxruntime and the documented contract (uint8 NCHW 0..255, the metadata's geometry):
    the same predictions as `reslab predict`, per-pixel mean image included."""
    ort = pytest.importorskip("onnxruntime")
    import onnx

    out = tmp_path / "m.onnx"
    assert main(["export", str(trained_run), "--format", "onnx", "--out", str(out)]) == 0
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    contract, meta = json.loads(props["reslab.input"]), json.loads(props["reslab"])
    assert (contract["dtype"], contract["layout"], contract["range"]) == ("uint8", "NCHW", [0, 255])
    side = contract["shape"][2]
    rng = np.random.default_rng(5)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(24):
        img = rng.integers(0, 30, (28, 28), dtype=np.uint8)
        img[7:21, 7:21] = 40 + 21 * (i % 10)
        Image.fromarray(img).save(folder / f"{i:02d}.png")
    files = sorted(folder.iterdir())
    # the user's side of the contract: decode, convert to the channels, bring to side x side, stack as uint8
    raw = np.stack([np.asarray(Image.open(f).convert(contract["channels"]).resize((side, side))) for f in files])
    raw = raw[:, None] if contract["channels"] == "L" else raw.transpose(0, 3, 1, 2)
    logits = ort.InferenceSession(str(out)).run(None, {contract["name"]: np.ascontiguousarray(raw)})[0]
    probs = torch.from_numpy(logits).softmax(1)
    ours = predict(trained_run, [folder], topk=1, path="eager")
    assert [meta["classes"][i] for i in probs.argmax(1).tolist()] == [r["topk"][0]["class"] for r in ours]
    assert np.allclose(probs.max(1).values.numpy(), [r["topk"][0]["prob"] for r in ours], atol=1e-4)


# ---------------------------------------------------------------------------- run directories
def _finished_run(folder: Path) -> Path:
    tiny_weights(folder)
    # a run from before the marker (.reslab-output.json): recognised by its config.json and metrics.csv
    (folder / "config.json").write_text('{"model": "resnet20", "data": "cifar10", "recipe": "cifar-paper"}\n')
    (folder / "metrics.csv").write_text("kind,iteration\niter,10\n")
    return folder


def test_claim_refuses_a_finished_run_a_foreign_folder_and_a_file(tmp_path):
    from reslab.errors import ReslabError
    from reslab.outputs import LOCK_FILE
    from reslab.train.rundir import claim_run_dir

    run = _finished_run(tmp_path / "run")
    before = snapshot(run)
    with pytest.raises(ReslabError, match=r"is a run already; pass --resume .* --overwrite"):
        claim_run_dir(run, resume=False, overwrite=False)
    assert snapshot(run) == before  # not even a lock file is left behind
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json.bak").write_text("my notes\n")
    with pytest.raises(ReslabError, match="holds other files and is not reslab's output"):
        claim_run_dir(mine, resume=False, overwrite=True)
    assert sorted(p.name for p in mine.iterdir()) == ["config.json.bak"]
    (tmp_path / "f").write_text("x")
    with pytest.raises(ReslabError, match="is a file"):
        claim_run_dir(tmp_path / "f", resume=False, overwrite=False)
    claim_run_dir(run, resume=True, overwrite=False)
    assert (run / LOCK_FILE).read_text().split()[0] == str(os.getpid())


def test_overwrite_clears_only_the_runs_files(tmp_path):
    from reslab.outputs import release_lock
    from reslab.train.rundir import claim_run_dir

    run = _finished_run(tmp_path / "run")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.pt").write_bytes(b"x")
    (run / "README.txt").write_text("the user's note\n")
    claim_run_dir(run, resume=False, overwrite=True)
    release_lock(run)
    assert sorted(p.name for p in run.iterdir()) == ["README.txt"]


def test_a_live_lock_stops_a_second_writer_and_a_dead_one_is_taken_over(tmp_path):
    import subprocess
    import sys

    from reslab.errors import ReslabError
    from reslab.outputs import LOCK_FILE, acquire_lock, release_lock

    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        (run / LOCK_FILE).write_text(f"{holder.pid} {socket.gethostname()}\n")
        with pytest.raises(ReslabError, match=f"in use by process {holder.pid}"):
            acquire_lock(run)
    finally:
        holder.kill()
        holder.wait()
    acquire_lock(run)  # the owner is dead now: a killed run's lock is taken over
    assert (run / LOCK_FILE).read_text().split()[0] == str(os.getpid())
    release_lock(run)
    assert not (run / LOCK_FILE).exists()


# ---------------------------------------------------------------------------- train --out
@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    return write_learnable_mnist(tmp_path_factory.mktemp("fm-small"), n_train=64, n_test=16)


def _train_argv(data: Path, out: Path, *flags: str) -> list[str]:
    return ["train", "--data-dir", str(data), "--out", str(out), "--iterations", "4", "--batch-size", "16",
            "--device", "cpu", "--quiet", "--amp", "off", *flags]


def test_train_out_on_a_finished_run_refuses_unless_resume_or_overwrite(small_data, tmp_path, capsys):
    from reslab.outputs import LOCK_FILE

    run = tmp_path / "run"
    assert main(_train_argv(small_data, run)) == 0
    before = snapshot(run)
    assert LOCK_FILE not in before  # released at the end
    one_line_error(capsys, _train_argv(small_data, run), f"--out {run} is a run already", "--resume", "--overwrite")
    assert snapshot(run) == before
    one_line_error(capsys, ["train", "--resume", run, "--model", "resnet32", "--quiet"], "--model resnet32",
                   "differs from the run being resumed")
    one_line_error(capsys, _train_argv(small_data, tmp_path / "new", "--epochs", "2"), "--epochs 2",
                   "--iterations 4", "pass one of them")
    assert not (tmp_path / "new").exists()
    one_line_error(capsys, ["train", "--resume", run, "--iterations", "2", "--quiet"], "has done 4 iterations",
                   "more than the 2 asked for", "larger --iterations")
    assert snapshot(run) == before  # a shorter length: refused before anything is written
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--iterations", "6", "--quiet"]) == 0  # a longer run: works
    assert "after 6 iterations" in capsys.readouterr().out and "iter,6" in (run / "metrics.csv").read_text()
    assert main(_train_argv(small_data, run, "--overwrite")) == 0
    assert "iter,6" not in (run / "metrics.csv").read_text()  # a fresh run, not appended to the old one


def test_train_out_on_a_foreign_folder_refuses(small_data, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json.txt").write_text("my notes\n")
    (mine / "metrics.csv").write_text("my,own,data\n")
    before = snapshot(mine)
    one_line_error(capsys, _train_argv(small_data, mine), "holds other files and is not reslab's output")
    assert snapshot(mine) == before


def test_evaluate_uses_the_runs_data_dir_and_no_nan(small_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_train_argv(small_data, run, "--val-size", "0")) == 0
    captured = capsys.readouterr()
    assert "nan" not in captured.out + captured.err
    assert "nan%" not in (run / "report.md").read_text()
    assert main(["evaluate", str(run), "--json", "--device", "cpu"]) == 0  # no --data-dir: the run's own
    assert json.loads(capsys.readouterr().out)["n"] == 16
