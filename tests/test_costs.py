"""`reslab models`'s fast parameter and MAC counts equal the slow path's."""

import os
import subprocess
import sys

import pytest

from reslab.models import costs, create_model, list_models, model_entry
from reslab.models.analysis import count_macs, count_params


@pytest.mark.parametrize("name", ["resnet20", "resnet56", "resnet50", "plain20", "vgg11_small", "googlenet_small"])
def test_fast_costs_equal_the_full_net(name):
    entry = model_entry(name)
    model = create_model(name)
    size = (getattr(model, "in_chans", 3), entry.input_size, entry.input_size)
    assert costs.measure_costs(name) == (count_params(model), count_macs(model, size))


def test_costs_are_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv(costs.CACHE_ENV, str(tmp_path))
    first = costs.model_costs("resnet110")
    assert costs.cache_path().is_file() and costs.cache_path().parent == tmp_path
    assert [p.name for p in tmp_path.iterdir()] == [costs.cache_path().name]  # one cache file, one set of facts

    def no_build(name):
        raise AssertionError("a cached table needs no net built")

    monkeypatch.setattr(costs, "measure_costs", no_build)
    assert costs.model_costs("resnet110") == first == (1_727_962, 252_887_680)  # the paper: 1.7M


def test_reslab_models_answers_from_the_cache_without_torch(tmp_path):
    """`reslab models` pays for importing torch once; after that the rows come from the cache."""
    env = {**os.environ, costs.CACHE_ENV: str(tmp_path)}
    probe = ("import sys; from reslab.cli import main; code = main(['models', 'resnet1*']);"
             "print('TORCH', 'torch' in sys.modules); sys.exit(code)")
    outs = [subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
            for _ in range(2)]
    assert [o.returncode for o in outs] == [0, 0], outs[0].stderr
    assert "TORCH True" in outs[0].stdout and "TORCH False" in outs[1].stdout  # cold, then cached
    table = outs[1].stdout
    assert "1,727,962" in table and "resnet152" in table and "resnet20 " not in table  # resnet110's row; the filter


def test_model_rows_measure_again_when_the_cache_is_damaged(tmp_path, monkeypatch):
    monkeypatch.setenv(costs.CACHE_ENV, str(tmp_path))
    first = costs.model_rows(family="cifar")
    costs.cache_path().write_text('[{"name": 1}]')  # not a row list: measured again, never trusted
    assert costs.model_rows(family="cifar") == first
    assert [r["name"] for r in costs.model_rows()] == list_models()
