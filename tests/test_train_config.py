"""`reslab train --config FILE`: a run re-created from its config.json, flags over the file, YAML, bad files."""

from __future__ import annotations

import json

import pytest

from reslab.cli import build_parser, main
from reslab.train.commands import config_from_args

TINY = ["--batch-size", "16", "--device", "cpu", "--quiet", "--log-every", "4", "--eval-every", "4"]


def _config(*argv: str):
    return config_from_args(build_parser().parse_args(["train", *argv]))


def _written(run) -> dict:
    return {k: v for k, v in json.loads((run / "config.json").read_text()).items() if k != "out"}


def test_a_run_is_recreated_from_its_config_json(fmnist_dir, tmp_path, capsys):
    x, y = tmp_path / "x", tmp_path / "y"
    # a non-default config: the file must carry every choice, not only the recipe's
    assert main(["train", "--data-dir", str(fmnist_dir), "--iterations", "8", "--shortcut", "B", "--lr", "0.05",
                 "--no-augment", "--seed", "3", *TINY, "--out", str(x)]) == 0
    assert main(["train", "--config", str(x / "config.json"), "--out", str(y)]) == 0
    assert _written(x) == _written(y)  # the resolved config, its "resolved" environment too
    assert (x / "model.safetensors").read_bytes() == (y / "model.safetensors").read_bytes()
    capsys.readouterr()


def test_flags_override_the_file(fmnist_dir, tmp_path):
    base = _config("--data-dir", str(fmnist_dir), "--iterations", "40", "--shortcut", "B", "--model", "resnet110")
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**base.to_dict(), "out": str(tmp_path / "old"), "resolved": {"device": "cpu"}}))
    assert _config("--config", str(path)).to_dict() == base.to_dict()  # the old run's folder is not reused
    cfg = _config("--config", str(path), "--iterations", "80", "--lr", "0.05", "--variant", "v1.5")
    assert (cfg.iterations, cfg.milestones, cfg.lr) == (80, (40, 60), 0.05)  # milestones keep their fractions
    assert cfg.model_kwargs == {"shortcut": "B", "variant": "v1.5"} and cfg.warmup_iters == 400 and cfg.out is None
    assert _config("--config", str(path), "--epochs", "2").epochs == 2.0


def test_a_yaml_config(tmp_path):
    path = tmp_path / "short.yaml"
    # PyYAML reads 1e-2 (no dot) as a string; the file still means the number
    path.write_text("model: resnet32\nrecipe: cifar-paper\nlr: 1e-2\nbatch_size: 64\niterations: 30\n"
                    "milestones: [10, 20]\nmodel_kwargs: {shortcut: B}\nout: runs/short\n"
                    "class_fraction: [[5, 0.1], [6, 1]]\n")
    cfg = _config("--config", str(path), "--batch-size", "32")
    assert (cfg.model, cfg.lr, cfg.batch_size, cfg.milestones, cfg.out) == ("resnet32", 0.01, 32, (10, 20),
                                                                           "runs/short")
    assert cfg.model_kwargs == {"shortcut": "B"} and cfg.momentum == 0.9  # the rest: the recipe's
    assert cfg.class_fraction == ((5, 0.1), (6, 1.0))


@pytest.mark.parametrize(("text", "needle"), [
    ("lrr: 0.1\n", "unknown option 'lrr' (did you mean lr?)"),
    ("lr: fast\n", "lr must be a number. Received: lr='fast'"),
    ("augment: 1\n", "augment must be true or false"),
    ("milestones: 3\n", "milestones must be a list of integers"),
    ("- lr\n", "expected a mapping"),
    ("lr: [0.1\n", "not valid YAML"),
    ("lr: -1.0\n", "lr must be a number > 0"),
])
def test_bad_config_files_are_one_line_errors_naming_key_and_file(tmp_path, text, needle, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and str(path) in err and len(err.strip().splitlines()) == 1


def test_config_with_resume_or_a_folder_is_an_error(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    assert main(["train", "--config", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "config.json"), "--resume", str(tmp_path)]) == 2
    assert "drop --config" in capsys.readouterr().err


def test_cifar_budget_recipe_departs_only_where_named():
    """make run's recipe: cosine and wd 5e-4 are its two departures from cifar-paper; the whole training set
    and the 10-crop test are the paper's own protocol (Sections 4.2, 3.4). Every other value is cifar-paper's."""
    from pathlib import Path

    from reslab.train.config import resolve_config

    paper, budget = resolve_config("cifar-paper").to_dict(), resolve_config("cifar-budget").to_dict()
    changed = {k: (paper[k], budget[k]) for k in paper if paper[k] != budget[k]}
    assert changed == {"recipe": ("cifar-paper", "cifar-budget"), "schedule": ("step", "cosine"),
                       "milestones": ((32_000, 48_000), ()), "weight_decay": (1e-4, 5e-4),
                       "val_size": (None, 0), "ten_crop": (False, True)}
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    assert "--recipe cifar-budget" in makefile  # what `make run` trains, documented in README and results.md


def test_resume_from_python_is_resume_from_the_cli(fmnist_dir, tmp_path):
    """reslab.train(resume=run) reads the run's config.json as `reslab train --resume run` does: the same
    resolved config for the same changes, the same refusal of a change a resumed run cannot take."""
    import reslab
    from reslab.errors import ReslabError

    run = tmp_path / "run"
    assert main(["train", "--data-dir", str(fmnist_dir), "--iterations", "8", "--lr", "0.05", "--shortcut", "B",
                 *TINY, "--out", str(run)]) == 0
    cli = _config("--resume", str(run), "--iterations", "12")
    python = reslab.resolve_config(resume=run, iterations=12)
    assert python == cli and (python.iterations, python.lr, python.model_kwargs) == (12, 0.05, {"shortcut": "B"})
    result = reslab.train(python, resume=run)
    assert result.config == cli and result.iterations == 12
    assert reslab.train(resume=run).config == cli  # no config given: the run's own, as it now stands
    with pytest.raises(ReslabError, match=r"lr=0.1 differs from the run being resumed"):
        reslab.train(reslab.resolve_config(data_dir=str(fmnist_dir), iterations=12, batch_size=16, quiet=True,
                                           model_kwargs={"shortcut": "B"}, device="cpu", log_every=4, eval_every=4),
                     resume=run)
    with pytest.raises(ReslabError, match=r"--lr 0.1 differs from the run being resumed \(lr=0.05\)"):
        reslab.resolve_config(resume=run, lr=0.1)
    with pytest.raises(ReslabError, match=r"--lr 0\.1 differs"):
        _config("--resume", str(run), "--lr", "0.1")


def test_a_gpu_runs_config_on_a_machine_without_cuda_names_the_file(tmp_path, capsys, monkeypatch):
    """docs/results/gpu-part1's runs trained with device cuda: replaying one on a CPU machine must say the
    device came from the file (the person typed no --device), and --device cpu replays it."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model": "resnet20", "device": "cuda", "iterations": 30, "milestones": [15, 22]}))
    assert main(["train", "--config", str(path)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"--config {path} says device 'cuda'" in line and "--device cpu" in line
    assert _config("--config", str(path), "--device", "cpu").device == "cpu"
    assert main(["train", "--resume", str(tmp_path)]) == 2  # the same run resumed: the same one line
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"--resume {tmp_path}: its config.json says device 'cuda'" in line and "--device cpu" in line
