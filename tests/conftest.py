"""Fixtures shared by the test files."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakedata import write_learnable_mnist


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fashion-MNIST-format IDX files a small net learns in a few dozen steps (240 training and 60 test
    images, see fakedata.write_learnable_mnist), written once for the whole session. Read-only for tests."""
    return write_learnable_mnist(tmp_path_factory.mktemp("fmnist"), n_train=240, n_test=60)
