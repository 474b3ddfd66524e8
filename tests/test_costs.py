"""`reslab models`'s fast parameter and MAC counts equal the slow path's."""

import pytest

from reslab import costs
from reslab.analysis import count_macs, count_params
from reslab.models import create_model, model_entry


@pytest.mark.parametrize("name", ["resnet20", "resnet56", "resnet50", "plain20", "vgg11_small", "googlenet_small"])
def test_fast_costs_equal_the_full_net(name):
    entry = model_entry(name)
    model = create_model(name)
    size = (getattr(model, "in_chans", 3), entry.input_size, entry.input_size)
    assert costs.measure_costs(name) == (count_params(model), count_macs(model, size))


def test_costs_are_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv(costs.CACHE_ENV, str(tmp_path))
    costs._table.cache_clear()
    first = costs.model_costs("resnet110")
    assert costs.cache_path().is_file() and costs.cache_path().parent == tmp_path
    costs._table.cache_clear()

    def no_build(name):
        raise AssertionError("a cached table needs no net built")

    monkeypatch.setattr(costs, "measure_costs", no_build)
    assert costs.model_costs("resnet110") == first == (1_727_962, 252_887_680)  # the paper: 1.7M
    costs._table.cache_clear()
