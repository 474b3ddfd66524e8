"""Silent wrong results and output for people: each case now either errors in one line or does
the right thing, and output outside a terminal keeps every character."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from reslab.cli import main
from reslab.data.folder import check_folder, folder_dataset
from reslab.errors import ReslabError
from reslab.fileio import atomic_write_text
from reslab.train.progress import Progress
from reslab.train.report import reported_split
from reslab.weights import load_weights

from robust_util import image_folder, one_line_error, png_bytes, tiny_weights


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    yield set_mask
    os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_files_keep_the_users_umask(tmp_path, umask, mask):
    umask(mask)
    w = tiny_weights(tmp_path / "w")
    cfg = atomic_write_text(tmp_path / "run" / "config.json", "{}\n")
    for p in (w / "model.safetensors", w / "model.json", cfg):
        assert _mode(p) == 0o666 & ~mask, (p, oct(_mode(p)))


def test_one_class_folder_is_an_error(tmp_path, capsys):
    root = image_folder(tmp_path / "data", classes=("cat",))
    with pytest.raises(ReslabError, match=r"one class.*at least 2"):
        check_folder(root)
    one_line_error(capsys, ["train", "--data", "folder", "--data-dir", root, "--out", tmp_path / "run",
                            "--device", "cpu", "--quiet"], "one class (cat)", "at least 2")
    assert not (tmp_path / "run").exists()


def test_folder_test_split_is_used_when_present(tmp_path):
    root = image_folder(tmp_path / "data", splits=("train", "val"))
    assert Path(folder_dataset(root, "test", train=False).root) == root / "val"
    image_folder(root, splits=("test",), n=2)
    ds = folder_dataset(root, "test", train=False)
    assert Path(ds.root) == root / "test" and len(ds) == 4


def test_report_says_validation_without_a_test_split(tmp_path):
    from reslab.train import resolve_config

    root = image_folder(tmp_path / "data")
    cfg = resolve_config("imagenet-paper", data="folder", data_dir=str(root))
    split, sentence = reported_split(cfg)
    assert split == "validation" and "no test/ split" in sentence
    image_folder(root, splits=("test",), n=1)
    assert reported_split(cfg)[0] == "test"
    assert reported_split(resolve_config("cifar-paper"))[0] == "test"


def _edited(tmp_path: Path, **pre) -> Path:
    w = tiny_weights(tmp_path / "w")
    meta = json.loads((w / "model.json").read_text())
    meta["preprocess"].update(pre)
    (w / "model.json").write_text(json.dumps(meta))
    return w


def test_std_zero_is_an_error_not_nan(tmp_path, capsys):
    w = _edited(tmp_path, std=[0.25, 0, 0.25])
    with pytest.raises(ReslabError, match=r"'preprocess.std' must be a list of 3 finite numbers > 0"):
        load_weights(w)
    (tmp_path / "a.png").write_bytes(png_bytes())
    one_line_error(capsys, ["predict", w, tmp_path / "a.png"], "preprocess.std", "[0.25, 0, 0.25]")


def test_class_list_shorter_than_outputs_is_an_error(tmp_path):
    w = tiny_weights(tmp_path / "w")
    meta = json.loads((w / "model.json").read_text())
    meta["classes"] = meta["classes"][:7]
    (w / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ReslabError, match="7 class names for a network with 10 outputs"):
        load_weights(w)


# ---------------------------------------------------------------------------- output for people
def test_progress_outside_a_terminal_prints_complete_lines(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr("reslab.train.progress.LOG_SECONDS", 0.0)
    p = Progress(total=100, start=0, steps_per_epoch=50, quiet=False, title="resnet20 on fashion-mnist")
    for done in range(10, 101, 10):
        p.update(done, loss=1.23456, err=0.2612, ips=123456.0, lr=0.1)
    p.evaluated(100, float("nan"), float("inf"))
    p.close()
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("epoch")]
    assert len(lines) == 10 and "\x1b" not in captured.err and "…" not in captured.err
    assert lines[-1] == "epoch 2/2 50/50 (iter 100/100) loss 1.235 err 26.12% 123,456 img/s lr 0.1 run ETA 00:00:00"
    assert "nan" not in captured.out and "val error n/a" in captured.out


def test_predict_on_many_images_prints_one_uncut_table(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    w = tiny_weights(tmp_path / "w")
    folder = tmp_path / ("a_rather_long_folder_name_that_would_not_fit_in_eighty_columns" * 2)
    folder.mkdir()
    for i in range(200):
        (folder / f"{i:03d}.png").write_bytes(png_bytes(8, 8, seed=i))
    assert main(["predict", str(w), str(folder), "--path", "eager", "--topk", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("┃ file") == 1 and "…" not in out
    assert all(str(folder / f"{i:03d}.png") in out for i in range(200))


# ---------------------------------------------------------------------------- named data, curves
@pytest.mark.parametrize("command", [["train", "--iterations", "2"], ["bench", "train"]])
def test_a_data_dir_that_does_not_exist_is_an_error(tmp_path, capsys, command):
    missing = tmp_path / "no-such-data"
    one_line_error(capsys, [*command, "--data-dir", missing, "--device", "cpu", *(
        ["--out", tmp_path / "run"] if command[0] == "train" else ["--out", tmp_path / "b.json"])],
        str(missing), "does not exist")
    assert not (tmp_path / "run").exists() and not (tmp_path / "b.json").exists()


def test_curves_of_one_validation_pass_show_a_point(tmp_path, monkeypatch):
    from reslab.train import rundir

    figures = []
    monkeypatch.setattr(rundir, "save_figure", lambda fig, path: figures.append(fig))
    rows = [{"kind": "iter", "iteration": "10", "train_err": "0.5", "val_err": ""},
            {"kind": "eval", "iteration": "10", "train_err": "", "val_err": "0.4"}]
    rundir.plot_curves(rows, tmp_path / "curves.png", title="one pass")
    train_line, val_line = figures[0].axes[0].lines[:2]
    assert list(val_line.get_xdata()) == [10] and val_line.get_marker() == "o"
    assert train_line.get_marker() not in (None, "None", "")


def test_evaluate_val_uses_the_validation_split_the_run_held_out(tmp_path, capsys):
    """`evaluate --split val` rebuilds the run's own hold-out (its seed and size), not seed 0's."""
    from reslab.evaluate import _held_out

    run = tmp_path / "run"
    tiny_weights(run)
    (run / "config.json").write_text(json.dumps({"seed": 7, "val_size": 300}))
    assert _held_out(run) == {"seed": 7, "val_size": 300}
    tiny_weights(run / "ema")  # a run's ema/ and raw/ weights: the config is one level up
    assert _held_out(run / "ema") == {"seed": 7, "val_size": 300}
    capsys.readouterr()
    bare = tmp_path / "bare"
    tiny_weights(bare)
    assert _held_out(bare) == {}
    assert "no run config.json" in capsys.readouterr().err
