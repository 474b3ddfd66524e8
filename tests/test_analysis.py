"""Multiply-adds and parameters as the paper counts them (Table 1, Section 4.2)."""

import pytest

from reslab.models import create_model, list_models, model_entry
from reslab.models.analysis import count_macs, flop_counter_macs, layer_stats, stage_totals

# Table 1 at 224x224 with the paper's v1 bottleneck (stride on the first 1x1), in GMACs.
TABLE1_V1 = {"resnet18": 1.814, "resnet34": 3.664, "resnet50": 3.858, "resnet101": 7.570, "resnet152": 11.282}
TABLE1_ROUNDED = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}


@pytest.mark.parametrize("name", list(TABLE1_V1))
def test_table1_macs(name):
    macs = count_macs(create_model(name, variant="v1"), (3, 224, 224)) / 1e9
    assert round(macs, 3) == TABLE1_V1[name]
    assert abs(macs - TABLE1_ROUNDED[name]) < 0.1  # the paper's printed figure


def test_resnet50_v15_macs():
    assert round(count_macs(create_model("resnet50", variant="v1.5"), (3, 224, 224)) / 1e9, 3) == 4.089


def test_resnet20_macs():
    macs = count_macs(create_model("resnet20"), (3, 32, 32)) / 1e6
    assert abs(macs - 40.8) / 40.8 < 0.01  # "about 40.8 M"


@pytest.mark.parametrize("name", list_models())
def test_counter_agrees_with_torch_flop_counter(name):
    model = create_model(name)
    size = 32 if model_entry(name).input_size <= 32 else 64
    shape = (getattr(model, "in_chans", 3), size, size)
    assert count_macs(model, shape) == flop_counter_macs(model, shape)


def test_per_stage_breakdown_sums_to_total():
    model = create_model("resnet50")
    stats = layer_stats(model, (3, 224, 224))
    totals = stage_totals(stats)
    assert list(totals)[:2] == ["conv1", "bn1"] and "layer4" in totals and list(totals)[-1] == "fc"
    assert sum(p for p, _ in totals.values()) == 25_557_032
    assert sum(m for _, m in totals.values()) == count_macs(model, (3, 224, 224))
    conv1 = next(s for s in stats if s.name == "conv1")
    assert conv1.out_shape == (64, 112, 112) and conv1.macs == 112 * 112 * 64 * 3 * 7 * 7
