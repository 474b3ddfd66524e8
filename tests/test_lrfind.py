"""`reslab lr-find`: the range test's sweep, smoothing and suggestion, and that a run it reads stays as it was."""

from __future__ import annotations

import itertools
import json
import math

import pytest

from reslab.cli import main
from reslab.errors import ReslabError
from reslab.train import resolve_config, train
from reslab.train.lrfind import smooth, suggest, sweep_lrs

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
    out = capsys.readouterr().out
    assert "suggested lr" in out and "lr-find.png" in out
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
