"""The thin CLI: models and summary print tables; bad input is one line, exit 2."""

import subprocess
import sys

from reslab.cli import main


def test_models_lists_registered_nets(capsys):
    assert main(["models", "resnet2*"]) == 0
    out = capsys.readouterr().out
    assert "resnet20" in out and "269,722" in out


def test_summary_totals(capsys):
    assert main(["summary", "resnet50", "--variant", "v1"]) == 0
    out = capsys.readouterr().out
    assert "layer4.2.conv3" in out and "25,557,032" in out and "3.858 G" in out


def test_summary_fashion_mnist(capsys):
    assert main(["summary", "resnet20", "--in-chans", "1", "--input-size", "28", "--stages"]) == 0
    assert "1x28x28" in capsys.readouterr().out


def test_unknown_model_is_one_line(capsys):
    assert main(["summary", "resnet5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "resnet5" in err and "resnet56" in err


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "reslab", "models", "plain1*"], capture_output=True, text=True,
                         check=True).stdout
    assert "plain110" in out
