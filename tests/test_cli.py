"""The thin CLI: models and summary print tables; bad input is one line, exit 2."""

import argparse
import subprocess
import sys

import pytest
import torch

from reslab import cli, cli_types
from reslab.cli import build_parser, main
from reslab.errors import ReslabError
from reslab.hardware import check_device


def test_models_lists_registered_nets(capsys):
    assert main(["models", "resnet2*"]) == 0
    out = capsys.readouterr().out
    assert "resnet20" in out and "269,722" in out


def test_summary_totals(capsys):
    assert main(["summary", "resnet50", "--variant", "v1"]) == 0
    out = capsys.readouterr().out
    assert "layer4.2.conv3" in out and "25,557,032" in out and "3.858 G" in out


def test_summary_fashion_mnist(capsys):
    assert main(["summary", "resnet20", "--in-chans", "1", "--image-size", "28", "--stages"]) == 0
    assert "1x28x28" in capsys.readouterr().out


def test_unknown_model_is_one_line(capsys):
    assert main(["summary", "resnet5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "resnet5" in err and "resnet56" in err


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "reslab", "models", "plain1*"], capture_output=True, text=True,
                         check=True).stdout
    assert "plain110" in out


def test_reslab_error_from_a_command_is_one_line(monkeypatch, capsys):
    def fails(args):
        raise ReslabError("bad value. Received: x=1; pass x=2")

    monkeypatch.setattr(cli, "_cmd_models", fails)
    assert main(["models"]) == 2
    assert capsys.readouterr().err.strip() == "reslab models: error: bad value. Received: x=1; pass x=2"


def test_plain_value_error_is_a_bug_with_a_traceback(monkeypatch):
    def buggy(args):
        raise ValueError("a bug, not a user's mistake")

    monkeypatch.setattr(cli, "_cmd_models", buggy)
    with pytest.raises(ValueError, match="a bug"):
        main(["models"])


def test_missing_file_is_one_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing" in err


def test_unknown_or_absent_device_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name, needle in (("tpu", "expected auto, cpu, cuda"), ("cuda", "CUDA is not available"),
                         ("cuda:x", "expected auto")):
        try:
            check_device(name)
        except ReslabError as e:
            assert needle in str(e) and name in str(e)
        else:
            raise AssertionError(name)
    assert check_device("auto").type == "cpu" and check_device("cpu").type == "cpu"


def _flags(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.Action]:
    """Every option of every (sub-)command, as 'command --flag' -> action."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= _flags(sub, f"{prefix}{name} ")
        for opt in action.option_strings:
            found[prefix + opt] = action
    return found


def test_one_vocabulary_across_commands():
    flags = _flags(build_parser())
    for key, action in flags.items():
        flag = key.split()[-1]
        if flag == "--json":  # a switch printing JSON to stdout, never a path
            assert action.nargs == 0, key
        if flag == "--workers":  # a count, at most the CPUs (issue 28)
            assert action.type in (cli_types.worker_count, cli_types.worker_threads), key
        if flag in ("--input-size", "--warmup"):
            raise AssertionError(f"{key}: use --image-size, --untimed or --warmup-iters")
        if action.type is int or getattr(action.type, "__name__", "") == "<lambda>":
            raise AssertionError(f"{key}: use a reslab.cli_types type")
    assert "bench train --ref-workers" in flags and "bench infer --out" in flags and "summary --image-size" in flags
    # One name per meaning (issue 26): --iterations for a run's length (--budget only as a deprecated alias),
    # --test-images / --train-images for image counts, one type for --eval-every.
    for key, action in flags.items():
        flag = key.split()[-1]
        if flag == "--budget":
            assert action.dest == "iterations" and action.help == argparse.SUPPRESS, key
        if flag == "--images":
            command = key.rsplit(" ", 1)[0]
            named = [flags.get(f"{command} --test-images"), flags.get(f"{command} --train-images")]
            assert any(a is not None and a.dest == action.dest for a in named), f"{key}: say which images"
            assert action.help == argparse.SUPPRESS, f"{key}: a deprecated alias stays out of the help"
        if flag == "--eval-every":
            assert action.type is cli_types.nonneg_int, key
    assert "experiment degradation --iterations" in flags and "train --iterations" in flags
    assert "experiment lesion --test-images" in flags and "experiment landscape --train-images" in flags


def test_bench_train_data_choices_match_the_library():
    from reslab.train.bench import _TV_CLASS

    assert set(_flags(build_parser())["bench train --data"].choices) == {*_TV_CLASS, "synthetic"}


def test_bad_numeric_flag_is_argparse_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--batch-size", "0"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--batch-size" in err and "'0'" in err


def test_train_help_groups_its_flags():
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for group in ("model:", "data:", "schedule:", "optimiser:", "warm-up", "precision and speed:", "run:"):
        assert group in help_text
