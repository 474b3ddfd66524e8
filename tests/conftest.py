"""Fixtures shared by the test files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fakedata import write_learnable_mnist


# `make test` runs the suite on every core with pytest-xdist. Its workers are started with COLUMNS=80 in
# their environment, which reslab's consoles take as a terminal width (reslab/console.py) and cut their
# tables to: each worker gets the COLUMNS the command was started with, or none.
@pytest.hookimpl(optionalhook=True)  # an xdist hook: plain `pytest` runs without xdist too
def pytest_configure_node(node) -> None:  # the controller, once per worker
    node.workerinput["columns"] = os.environ.get("COLUMNS")


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and workerinput.get("columns") is None:
        os.environ.pop("COLUMNS", None)


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fashion-MNIST-format IDX files a small net learns in a few dozen steps (240 training and 60 test
    images, see fakedata.write_learnable_mnist), written once for the whole session. Read-only for tests."""
    return write_learnable_mnist(tmp_path_factory.mktemp("fmnist"), n_train=240, n_test=60)
