"""`reslab lr-find`: the range test's sweep, smoothing and suggestion, and that a run it reads stays as it was."""

from __future__ import annotations

import itertools
import json
import math

import pytest

from reslab.cli import main
from reslab.errors import ReslabError
from reslab.train import resolve_config, train
from reslab.train.lrfind import edge_warning, search_window, smooth, suggest, sweep_lrs

from fakedata import read_csv

TINY = ["--batch-size", "16", "--device", "cpu", "--quiet"]


def _snapshot(folder):
    """Every file under `folder`: its bytes and modification time."""
    return {p.relative_to(folder): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_the_sweep_is_exponential():
    lrs = sweep_lrs(1e-5, 10.0, 200)
    assert len(lrs) == 200 and lrs[0] == pytest.approx(1e-5) and lrs[-1] == pytest.approx(10.0)
    ratios = [b / a for a, b in itertools.pairwise(lrs)]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-9) and ratios[0] == pytest.approx(1e6 ** (1 / 199))


def test_smoothing_and_suggestion_on_a_known_curve():
    assert smooth([2.0] * 5) == pytest.approx([2.0] * 5)  # debiased: a constant loss stays itself
    lrs = sweep_lrs(1e-4, 1.0, 101)
    # loss falls fastest (against log lr) at lr 1e-2 and is lowest at lr 1e-1
    curve = [2 - math.tanh(2 * (math.log10(lr) + 2)) + (math.log10(lr) + 1) ** 2 / 8 for lr in lrs]
    steepest, min_over_10 = suggest(lrs, curve)
    assert steepest == pytest.approx(1e-2, rel=0.15) and steepest in lrs
    assert min_over_10 == pytest.approx(lrs[curve.index(min(curve))] / 10)
    assert suggest(lrs[:60], [*curve[:50], math.nan, *curve[51:60]])[0] in lrs[:50]  # not past a non-finite loss
    with pytest.raises(ReslabError, match="min-lr"):
        suggest(lrs[:3], [math.inf] * 3)


def test_the_search_leaves_out_the_first_10_and_last_5_points_and_warns_at_its_edge():
    assert search_window(30) == (10, 25) and search_window(200) == (10, 195)
    assert search_window(14) == (0, 14)  # fewer than 5 points would remain: all of them
    lrs = sweep_lrs(1e-5, 1.0, 30)
    falling = [math.exp(-i / 3) for i in range(30)]  # steepest at the very start, on the sweep's first points
    steepest, _ = suggest(lrs, falling)
    assert steepest == lrs[10]  # the first point searched, never the second of the sweep
    warning = edge_warning(lrs, falling, steepest)
    assert warning and "sits at the start of the sweep (point 1 of the 15 searched" in warning and "--min-lr" in warning
    late = [1 - (i / 29) ** 3 for i in range(30)]  # falls faster and faster: the steepest point is the last searched
    assert suggest(lrs, late)[0] == lrs[24] and "at the end of the sweep" in edge_warning(lrs, late, lrs[24])
    curve = [2 - math.tanh(2 * (math.log10(lr) + 2)) for lr in sweep_lrs(1e-4, 1.0, 101)]
    assert edge_warning(sweep_lrs(1e-4, 1.0, 101), curve, suggest(sweep_lrs(1e-4, 1.0, 101), curve)[0]) is None


def test_train_with_lr_find_sweeps_first_and_records_the_choice(fmnist_dir, tmp_path, capsys):
    assert main(["train", "--data-dir", str(fmnist_dir), "--lr", "find", "--iterations", "3", *TINY,
                 "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    found = cfg["lr_find"]
    assert cfg["lr"] == float(f"{found['suggested_lr']:.3g}") and found["iterations"] <= 100
    assert (tmp_path / "run" / "lr-find" / "lr-find.png").is_file()
    assert "reslab train: lr-find: 100 iterations of batch 16: about" in err  # the expected duration, first
    assert f"reslab train: lr-find suggests lr {cfg['lr']:g}" in err
    assert err.index("iterations of batch 16: about") < err.index("lr-find suggests")
    rerun = resolve_config(file=tmp_path / "run" / "config.json")  # the same run again: the lr it chose, no sweep
    assert rerun.lr == cfg["lr"] and "suggested_lr" in rerun.lr_find


def test_lr_find_suggests_inside_the_sweep_and_leaves_the_run_untouched(fmnist_dir, tmp_path, capsys):
    run = tmp_path / "run"
    train(resolve_config("cifar-paper", data_dir=str(fmnist_dir), iterations=4, out=str(run), batch_size=16,
                         quiet=True, device="cpu"))
    before = _snapshot(run)
    capsys.readouterr()  # train's own lines
    rc = main(["lr-find", str(run), "--data-dir", str(fmnist_dir), "--iterations", "30", "--min-lr", "1e-4",
               "--max-lr", "1", *TINY, "--out", str(tmp_path / "lf"), "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    rows = read_csv(tmp_path / "lf" / "lr-find.csv")
    lrs = [float(r["lr"]) for r in rows]
    assert 1e-4 <= res["suggested_lr"] <= 1 and min(lrs) <= res["suggested_lr"] <= max(lrs)
    assert len(rows) == res["iterations"] <= 30 and (tmp_path / "lf" / "lr-find.png").is_file()
    assert res["init"] == str(run)  # the run's weights, and the command that fine-tunes them
    assert f"--config {run / 'config.json'} " in res["train_command"] and f"--init {run} " in res["train_command"]
    assert main(["lr-find", str(run), "--data-dir", str(fmnist_dir), *TINY, "--out", str(run / "lr")]) == 2
    assert "never writes into a run" in capsys.readouterr().err
    assert _snapshot(run) == before


def test_lr_find_of_flags_prints_the_train_command(fmnist_dir, tmp_path, capsys):
    rc = main(["lr-find", "--data-dir", str(fmnist_dir), "--shortcut", "B", "--no-augment", "--iterations", "12",
               *TINY, "--out", str(tmp_path / "lf")])
    assert rc == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "suggested lr" in out and "lr-find.png" in out
    assert "reslab lr-find: 12 iterations of batch 16" in captured.err and "reslab train" not in captured.err
    command = next(line for line in out.splitlines() if line.startswith("train with: "))
    assert command.startswith("train with: reslab train ") and " --lr " in command
    assert "--shortcut B" in command and "--no-augment" in command and f"--data-dir {fmnist_dir}" in command
    assert "--iterations" not in command and "--out" not in command  # the sweep's own flags stay out


@pytest.mark.parametrize(("flags", "needle"), [(["--min-lr", "1", "--max-lr", "0.1"], "--min-lr must be below"),
                                               (["--min-lr", "1", "--max-lr", "1"], "--min-lr must be below"),
                                               (["--iterations", "3"], "--iterations must be at least")])
def test_bad_sweeps_are_one_line_errors(tmp_path, flags, needle, capsys):
    assert main(["lr-find", "--data-dir", str(tmp_path / "none"), *flags, *TINY]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
