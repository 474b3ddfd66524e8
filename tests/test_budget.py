"""`reslab train --time-budget`: the length chosen from a (simulated) step rate, recorded in config.json,
replayed by --config, and `make run`'s budget on a fast and a slow CPU (simulated)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from reslab.cli import main
from reslab.cli_types import duration_seconds
from reslab.train import budget, loop
from reslab.train.budget import Costs, choose_epochs

from fakedata import read_csv

TINY = ["--batch-size", "16", "--device", "cpu", "--quiet", "--val-size", "0"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def slow_step(monkeypatch):
    """A simulated clock that only training steps move: `seconds[0]` per step."""
    now, seconds = [0.0], [1.0]
    real_step = loop.train_step

    def step(*args, **kwargs):
        now[0] += seconds[0]
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", step)
    monkeypatch.setattr(budget, "clock", lambda: now[0])
    return seconds


def _weights(run: Path) -> bytes:
    return (run / "model.safetensors").read_bytes()


def test_a_slow_step_gets_fewer_epochs_recorded_and_replayed(fmnist_dir, tmp_path, slow_step, capsys):
    # 240 images, batch 16: 15 steps per epoch at 1 s each (simulated). In 60 s, less 3% for the finish and the
    # 15 s of the first epoch already run, 3 epochs fit (45 s + 1.8 s), 4 do not (61.8 s).
    run = tmp_path / "run"
    assert main(["train", "--data-dir", str(fmnist_dir), *TINY, "--epochs", "10", "--time-budget", "1m",
                 "--out", str(run)]) == 0
    out = capsys.readouterr().out
    cfg = json.loads((run / "config.json").read_text())
    rec = cfg["time_budget"]
    assert cfg["epochs"] == 3 and rec["epochs"] == 3 and rec["fewer"] and rec["asked_epochs"] == 10
    assert rec["seconds"] == 60 and rec["measured_iters"] == 15 and rec["step_seconds"] == pytest.approx(1.0)
    assert cfg["resolved"]["iterations"] == 45
    assert "time budget 1.0 min: 16 images/s measured" in out and "trains 3 whole epochs of the 10 epochs asked" in out
    rows = read_csv(run / "metrics.csv")
    assert max(int(r["iteration"]) for r in rows) == 45  # the measured iterations counted: 45 in all, not 45 + 15

    # --config replays the choice without measuring (however slow the machine is now), bit for bit
    slow_step[0] = 100.0
    again = tmp_path / "again"
    assert main(["train", "--config", str(run / "config.json"), "--data-dir", str(fmnist_dir),
                 "--out", str(again)]) == 0
    out = capsys.readouterr().out
    assert "nothing measured" in out and "images/s measured" not in out
    assert json.loads((again / "config.json").read_text())["resolved"]["iterations"] == 45
    assert _weights(again) == _weights(run)


def test_a_budget_that_fits_changes_nothing(fmnist_dir, tmp_path, slow_step, capsys):
    args = ["train", "--data-dir", str(fmnist_dir), *TINY, "--epochs", "2"]
    assert main([*args, "--time-budget", "1h", "--out", str(tmp_path / "budget")]) == 0
    assert "trains the 2 epochs asked" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    cfg = json.loads((tmp_path / "budget" / "config.json").read_text())
    assert cfg["epochs"] == 2 and not cfg["time_budget"]["fewer"] and cfg["resolved"]["iterations"] == 30
    assert _weights(tmp_path / "budget") == _weights(tmp_path / "plain")  # measuring changed no bit


def test_the_choice_counts_evaluations_the_test_and_time_spent():
    costs = Costs(step=0.1, evaluation=2.0, test=30.0, spent=20.0)
    # 100 steps per epoch: an epoch is 10 s of steps + 2 s of validation
    assert choose_epochs(1000, costs, steps_per_epoch=100, asked_total=1100, done=20, eval_every=100) == (
        None, pytest.approx(20 + 108 + 22 + 30 + 30))
    epochs, expected = choose_epochs(150, costs, steps_per_epoch=100, asked_total=1100, done=20, eval_every=100)
    assert epochs == 8 and expected == pytest.approx(20 + 78 + 16 + 30 + 4.5) and expected <= 150  # 9: 160.5
    assert choose_epochs(10, costs, steps_per_epoch=100, asked_total=1100, done=20, eval_every=100)[0] == 1


@pytest.mark.parametrize("text, seconds", [("600", 600), ("600s", 600), ("10m", 600), ("1.5h", 5400), (" 2M ", 120)])
def test_durations(text, seconds):
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("value", ["10x", "0", "-5m", "m", "inf", "1e9h", ""])
def test_bad_budgets_are_one_line_errors(value, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--time-budget", value])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and "--time-budget" in err[-1] and "Traceback" not in "".join(err)


def _make_run(tmp_path: Path, *, setup_seconds: int) -> str:
    """What `make run` would run, with set-up simulated as `setup_seconds` long (make -n: nothing runs)."""
    out = subprocess.run(["make", "-s", "-n", "run", "RUN_T0=1000", f"RUN_NOW={1000 + setup_seconds}", "PY=python",
                          f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    out = out.replace("\\\n", " ")  # the recipe's continued line
    return [line for line in out.splitlines() if "-m reslab train" in line][-1]


@pytest.mark.parametrize("setup_seconds, left", [(30, 675), (200, 505), (700, 60)])
def test_make_run_passes_what_is_left_of_12_minutes(tmp_path, setup_seconds, left):
    line = _make_run(tmp_path, setup_seconds=setup_seconds)  # 15 s for the interpreter's start and exit; >= 60 s
    assert "--epochs 11" in line and f"--time-budget {left}s" in line


@pytest.mark.parametrize("images_per_s, epochs", [(1600, None), (800, 8), (400, 3)])
def test_make_runs_choice_on_a_fast_and_a_slow_cpu(images_per_s, epochs):
    # The main job's figures: 60,000 images, batch 128 (468 steps per epoch), no validation, a 10-crop test of
    # 10,000 images at a third of a training image's cost; 675 s left after 30 s of set-up; the choice after 25
    # iterations. 1600 images/s (a Xeon with AMX, bf16): the 11 epochs; 400 (a Zen 3, fp32): 3.
    step = 128 / images_per_s
    costs = Costs(step=step, evaluation=0.0, test=100_000 * step / 128 / 3, spent=10 + 25 * step)
    chosen, expected = choose_epochs(675, costs, steps_per_epoch=468, asked_total=11 * 468, done=25, eval_every=468)
    assert chosen == epochs and expected <= 675
    if chosen is not None:  # the most that fit: one epoch more would not
        assert expected + 468 * step > 675


def test_a_run_resumed_after_its_choice_keeps_the_chosen_length(fmnist_dir, tmp_path, slow_step, capsys):
    from reslab.train import resolve_config, train

    cfg = resolve_config("cifar-paper", data_dir=str(fmnist_dir), batch_size=16, device="cpu", quiet=True,
                         val_size=0, epochs=10, time_budget="1m", out=str(tmp_path / "whole"))
    train(cfg)

    class Killed(Exception):
        pass

    def kill(done):
        if done == 31:  # after the choice (iteration 15) and the checkpoint of epoch 2 (iteration 30)
            raise Killed

    cut = tmp_path / "cut"
    with pytest.raises(Killed):
        train(resolve_config("cifar-paper", data_dir=str(fmnist_dir), batch_size=16, device="cpu", quiet=True,
                             val_size=0, epochs=10, time_budget="1m", out=str(cut)), on_iteration_end=kill)
    slow_step[0] = 100.0  # however slow the machine is now: nothing is measured again
    result = train(resume=cut)
    assert result.iterations == 45 and result.config.epochs == 3
    assert _weights(cut) == _weights(tmp_path / "whole")
