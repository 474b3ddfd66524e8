"""Issue 28, items 1 and 2: every write is atomic and space-aware, and every --out follows one ownership rule.

A full disk is a small tmpfs when the tests run as root (mount -t tmpfs -o size=...), else skipped; the same
failures are also simulated in-process (an OSError raised where the bytes go). Every case: one line, no
traceback, exit code 2, the user's files byte-identical (checksums before and after), no temporary litter.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reslab.cli import main
from reslab.errors import ReslabError
from reslab.fileio import WriteFailed, atomic_write, atomic_write_bytes, atomic_write_group, atomic_write_text
from reslab.outputs import LOCK_FILE, MARKER, claim_output, output_folder, read_marker

from fakedata import write_learnable_mnist
from robust_util import one_line_error, png_bytes, snapshot, tiny_weights


def _litter(folder: Path) -> list[Path]:
    """Temporary files left behind (atomic_write's are .NAME.*.tmp) and locks."""
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.endswith(".lock")]


def _enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, "No space left on device")


# ---------------------------------------------------------------------------- the writer, simulated
def test_a_failed_write_keeps_the_old_file_and_names_the_path_and_free_space(tmp_path, monkeypatch):
    target = atomic_write_text(tmp_path / "report.json", "old\n")
    monkeypatch.setattr("reslab.fileio.os.fsync", _enospc)
    with pytest.raises(WriteFailed) as e:
        atomic_write_text(target, "new\n")
    msg = str(e.value)
    assert str(target) in msg and "No space left on device" in msg and "free in" in msg and "\n" not in msg
    assert "previous file is unchanged" in msg
    assert target.read_text() == "old\n" and _litter(tmp_path) == []


def test_an_oserror_that_torch_wraps_is_still_one_line(tmp_path):
    def torch_like(f):  # torch.save on a full disk: RuntimeError("... unexpected pos ...") from the OSError
        try:
            f.write(b"x")
            _enospc()
        except OSError as err:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from err

    with pytest.raises(WriteFailed, match=r"last\.pt: No space left on device"):
        atomic_write(tmp_path / "last.pt", torch_like)
    assert list(tmp_path.iterdir()) == []


def test_a_bug_in_the_writer_is_not_disguised_as_a_disk_error(tmp_path):
    def buggy(f):
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        atomic_write(tmp_path / "x.bin", buggy)
    assert list(tmp_path.iterdir()) == []


def test_a_pair_of_files_is_replaced_together_or_not_at_all(tmp_path):
    a, b = atomic_write_text(tmp_path / "model.safetensors", "A0"), atomic_write_text(tmp_path / "model.json", "B0")
    with pytest.raises(WriteFailed, match=r"model\.json"):
        atomic_write_group([(a, lambda f: f.write(b"A1")), (b, lambda f: _enospc())])
    assert (a.read_text(), b.read_text()) == ("A0", "B0") and _litter(tmp_path) == []
    atomic_write_group([(a, lambda f: f.write(b"A1")), (b, lambda f: f.write(b"B1"))])
    assert (a.read_text(), b.read_text()) == ("A1", "B1")


def test_a_read_only_folder_is_one_line(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    with pytest.raises(WriteFailed, match="choose a folder you can write"):
        atomic_write_bytes(ro / "x", b"x")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    return write_learnable_mnist(tmp_path_factory.mktemp("fm-small"), n_train=64, n_test=16)


def _train_argv(data: Path, out: Path, *flags: str) -> list[str]:
    return ["train", "--data-dir", str(data), "--out", str(out), "--iterations", "4", "--batch-size", "16",
            "--device", "cpu", "--quiet", "--amp", "off", "--workers", "0", *flags]


def test_train_that_cannot_write_its_first_checkpoint_leaves_no_half_run(small_data, tmp_path, capsys, monkeypatch):
    real_fsync = os.fsync

    def full_disk(fd):  # the disk fills when a checkpoint is written, after config.json and metrics.csv
        if ".pt." in os.readlink(f"/proc/self/fd/{fd}"):
            _enospc()
        return real_fsync(fd)

    monkeypatch.setattr("reslab.fileio.os.fsync", full_disk)
    run = tmp_path / "run"
    line = one_line_error(capsys, _train_argv(small_data, run), "No space left on device", "first checkpoint",
                          "were removed")
    assert "last.pt" in line or "best.pt" in line
    assert not run.exists()  # no half run: the folder it made is gone
    # into an existing empty folder: the folder stays (it was the user's), empty
    run.mkdir()
    one_line_error(capsys, _train_argv(small_data, run), "first checkpoint")
    assert list(run.iterdir()) == []


def test_a_resume_that_cannot_write_a_checkpoint_leaves_the_run_byte_identical(small_data, tmp_path, capsys,
                                                                              monkeypatch):
    run = tmp_path / "run"
    assert main(_train_argv(small_data, run)) == 0
    before = snapshot(run)
    real_fsync = os.fsync
    monkeypatch.setattr("reslab.fileio.os.fsync",
                        lambda fd: _enospc() if ".pt." in os.readlink(f"/proc/self/fd/{fd}") else real_fsync(fd))
    one_line_error(capsys, ["train", "--resume", run, "--iterations", "8", "--quiet"], "last.pt",
                   "No space left on device", "previous file is unchanged")
    assert snapshot(run) == before and not _litter(run)
    monkeypatch.undo()
    assert main(["train", "--resume", str(run), "--iterations", "8", "--quiet"]) == 0  # space again: it continues


# ---------------------------------------------------------------------------- ownership of --out
def test_train_overwrite_refuses_a_folder_that_merely_holds_a_config_json(small_data, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"model": "resnet20", "data": "fashion-mnist", "recipe": "cifar-paper"}')
    (mine / "notes.txt").write_text("mine\n")
    before = snapshot(mine)
    one_line_error(capsys, _train_argv(small_data, mine, "--overwrite"), str(mine), "not reslab's output")
    one_line_error(capsys, _train_argv(small_data, mine), "not reslab's output")
    assert snapshot(mine) == before


def test_train_overwrite_removes_only_the_files_the_run_wrote(small_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_train_argv(small_data, run)) == 0
    marker = read_marker(run)
    assert marker is not None and marker["kind"] == "train"
    assert {"config.json", "metrics.csv", "model.safetensors", "model.json", "checkpoints/last.pt"} <= set(
        marker["files"])
    assert all((run / f).is_file() for f in marker["files"])
    (run / "notes.txt").write_text("the user's\n")
    (run / "checkpoints" / "mine.pt").write_bytes(b"the user's checkpoint")
    (run / "extra").mkdir()
    (run / "extra" / "data.csv").write_text("1,2\n")
    users = {k: v for k, v in snapshot(run).items() if k in ("notes.txt", "checkpoints/mine.pt", "extra/data.csv")}
    assert main(_train_argv(small_data, run, "--overwrite")) == 0
    after = snapshot(run)
    assert {k: after[k] for k in users} == users  # the user's files, also in the run's own subfolder, stay
    assert LOCK_FILE not in after and not _litter(run)


def test_a_legacy_run_without_marker_is_still_a_run(small_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_train_argv(small_data, run)) == 0
    (run / MARKER).unlink()  # as a reslab from before the marker left it
    one_line_error(capsys, _train_argv(small_data, run), "is a run already", "--overwrite")
    (run / "mine.txt").write_text("x")
    assert main(_train_argv(small_data, run, "--overwrite")) == 0
    assert (run / "mine.txt").read_text() == "x" and read_marker(run) is not None


def test_explain_refuses_a_users_folder_and_replaces_only_its_own_output(tmp_path, capsys):
    weights = tiny_weights(tmp_path / "w")
    img = tmp_path / "img.png"
    img.write_bytes(png_bytes())
    users = tmp_path / "users"
    users.mkdir()
    (users / "grid.png").write_bytes(b"the user's grid")
    (users / "explain.json").write_text('{"mine": true}')
    before = snapshot(users)
    for flags in ([], ["--overwrite"]):
        one_line_error(capsys, ["explain", weights, img, "--out", users, "--device", "cpu", *flags],
                       "not reslab's output")
    assert snapshot(users) == before
    out = tmp_path / "out"
    assert main(["explain", str(weights), str(img), "--out", str(out), "--device", "cpu"]) == 0
    assert read_marker(out)["kind"] == "explain" and (out / "grid.png").is_file()
    (out / "notes.txt").write_text("mine")
    first = snapshot(out)
    one_line_error(capsys, ["explain", weights, img, "--out", out, "--device", "cpu"], "--overwrite")
    assert snapshot(out) == first
    assert main(["explain", str(weights), str(img), "--out", str(out), "--device", "cpu", "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "explain.json").is_file()


def test_compare_follows_the_rule(tmp_path, capsys):
    users = tmp_path / "users"
    users.mkdir()
    (users / "compare.md").write_text("my table\n")
    before = snapshot(users)
    one_line_error(capsys, ["compare", "resnet20", "--out", users, "--overwrite"], "not reslab's output")
    assert snapshot(users) == before
    out = tmp_path / "cmp"
    assert main(["compare", "resnet20", "--out", str(out)]) == 0
    (out / "mine.txt").write_text("x")
    one_line_error(capsys, ["compare", "resnet20", "--out", out], "compare output", "--overwrite")
    assert main(["compare", "resnet20", "--out", str(out), "--overwrite"]) == 0
    assert (out / "mine.txt").read_text() == "x" and set(read_marker(out)["files"]) == {
        "compare.md", "compare.csv", "compare.png"}


def test_lr_find_refuses_a_users_folder_before_the_sweep(small_data, tmp_path, capsys):
    users = tmp_path / "users"
    users.mkdir()
    (users / "lr-find.csv").write_text("mine\n")
    before = snapshot(users)
    one_line_error(capsys, ["lr-find", "--data-dir", small_data, "--out", users, "--device", "cpu", "--overwrite",
                            "--iterations", "20"], "not reslab's output")
    assert snapshot(users) == before


@pytest.mark.parametrize("argv", [
    ["bench", "infer", "--model", "resnet20", "--image-size", "16", "--batch-size", "1", "--repeats", "1"],
    ["bench", "train", "--model", "resnet20", "--iterations", "1"],
    ["bench", "serve", "--model", "resnet20"],
])
def test_bench_reports_never_replace_a_users_file(argv, tmp_path, capsys):
    mine = tmp_path / "my_results.json"
    mine.write_text('{"mine": true}\n')
    line = one_line_error(capsys, [*argv, "--out", mine], str(mine), "exists", "--overwrite")
    assert "Traceback" not in line and mine.read_text() == '{"mine": true}\n'


def test_a_second_export_to_the_same_path_at_once_is_refused(tmp_path, capsys):
    weights = tiny_weights(tmp_path / "w")
    out = tmp_path / "model.pt2"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # a live exporter holds the path's lock
        (tmp_path / ".model.pt2.reslab.lock").write_text(f"{holder.pid} {socket.gethostname()}\n")
        one_line_error(capsys, ["export", weights, "--format", "exported-program", "--out", out],
                       f"in use by process {holder.pid}")
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture(scope="module")
def resnet20_ckpt(tmp_path_factory) -> Path:
    from safetensors.torch import save_file

    from reslab.models import create_model

    path = tmp_path_factory.mktemp("ckpt") / "resnet20.safetensors"
    torch.manual_seed(0)
    save_file(create_model("resnet20").state_dict(), path)
    return path


def test_convert_follows_the_rule_and_recognises_weights_from_before_the_marker(resnet20_ckpt, tmp_path, capsys):
    args = ["convert", resnet20_ckpt, "--model", "resnet20"]
    users = tmp_path / "users"
    users.mkdir()
    (users / "model.json").write_text("{}")
    (users / "photo.jpg").write_bytes(b"jpeg")
    before = snapshot(users)
    one_line_error(capsys, [*args, "--out", users, "--overwrite"], "not reslab's output")
    assert snapshot(users) == before
    legacy = tiny_weights(tmp_path / "legacy")  # model.safetensors + model.json from before the marker
    one_line_error(capsys, [*args, "--out", legacy], "--overwrite")
    assert main([*map(str, args), "--out", str(legacy), "--overwrite"]) == 0
    assert read_marker(legacy) == {"reslab_output": 1, "kind": "weights", "files": ["model.safetensors", "model.json"]}
    assert json.loads((legacy / "model.json").read_text())["model_kwargs"] == {"num_classes": 10}


def test_one_commands_output_is_not_anothers_to_overwrite(small_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_train_argv(small_data, run)) == 0
    before = snapshot(run)
    one_line_error(capsys, ["compare", "resnet20", "--out", run, "--overwrite"], "train output")
    assert snapshot(run) == before


def test_a_marker_is_data_not_orders(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / MARKER).write_text(json.dumps({"kind": "compare", "files": ["../outside.txt", str(outside),
                                                                          "sub/../../outside.txt"]}))
    with output_folder(folder, "compare", overwrite=True):
        pass
    assert outside.read_text() == "keep me"
    (folder / MARKER).write_text("[" * 100_000)
    with pytest.raises(ReslabError, match="not a marker reslab wrote"):
        claim_output(folder, "compare", overwrite=True)
    assert not (folder / LOCK_FILE).exists()


def test_the_lock_on_a_full_disk_leaves_no_half_lock(tmp_path, monkeypatch):
    monkeypatch.setattr("reslab.outputs.os.fdopen", lambda *a, **k: _enospc())
    with pytest.raises(WriteFailed, match="No space left on device"):
        claim_output(tmp_path / "new", "compare")
    assert not (tmp_path / "new" / LOCK_FILE).exists()


# ---------------------------------------------------------------------------- a real full disk (tmpfs)
@pytest.fixture
def disk(tmp_path):
    """A 12 MB tmpfs (root only); `fill(disk, free)` leaves about `free` bytes."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(folder: Path, free: int) -> None:
    """Leave about `free` bytes on the filesystem of `folder` (a filler file outside anything under test)."""
    have = shutil.disk_usage(folder).free
    with open(folder / "filler", "ab") as f:
        f.write(b"\0" * max(0, have - free))


def test_full_disk_train_export_convert_resume(small_data, resnet20_ckpt, disk, tmp_path, capsys):
    # train: the first checkpoint does not fit
    fill(disk, 600_000)
    run = disk / "run"
    one_line_error(capsys, _train_argv(small_data, run), "No space left on device", "free in", "first checkpoint")
    assert not run.exists() and not _litter(disk)
    # train --resume: the previous files stay byte-identical
    (disk / "filler").unlink()
    assert main(_train_argv(small_data, run)) == 0
    kept = snapshot(run)
    fill(disk, 300_000)
    one_line_error(capsys, ["train", "--resume", run, "--iterations", "8", "--quiet"], "No space left on device",
                   "previous file is unchanged")
    assert snapshot(run) == kept and not _litter(run)  # config.json and metrics.csv too: byte for byte
    # export: one line, nothing half written
    weights = tiny_weights(tmp_path / "w")
    (disk / "filler").unlink()
    assert main(["export", str(weights), "--format", "exported-program", "--out", str(disk / "m.pt2")]) == 0
    first = (disk / "m.pt2").read_bytes()
    fill(disk, 20_000)
    one_line_error(capsys, ["export", weights, "--format", "exported-program", "--out", disk / "m.pt2",
                            "--overwrite"], "m.pt2", "No space left on device", "free in")
    assert (disk / "m.pt2").read_bytes() == first and not _litter(disk)
    one_line_error(capsys, ["export", weights, "--format", "onnx", "--out", disk / "m.onnx"], "No space left")
    assert not (disk / "m.onnx").exists()
    # explain and compare: a first output that does not fit leaves no folder behind
    img = tmp_path / "img.png"
    img.write_bytes(png_bytes(64, 64))
    one_line_error(capsys, ["explain", weights, img, "--out", disk / "ex", "--device", "cpu"], "No space left")
    one_line_error(capsys, ["compare", "resnet20", "--out", disk / "cmp"], "No space left")
    assert not (disk / "ex").exists() and not (disk / "cmp").exists() and not _litter(disk)
    # convert --overwrite onto reslab's weights: both old files stay, never a mixed pair
    (disk / "filler").unlink()
    conv = ["convert", resnet20_ckpt, "--model", "resnet20", "--out", disk / "w"]
    assert main([str(a) for a in conv]) == 0
    old = snapshot(disk / "w")
    fill(disk, 400_000)  # less than the 1.1 MB of resnet20's weights
    one_line_error(capsys, [*conv, "--overwrite"], "model.safetensors", "No space left on device")
    assert snapshot(disk / "w") == old and not _litter(disk)
