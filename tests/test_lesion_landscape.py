"""Analyses of trained nets: the lesion study (Veit et al. 2016) and the loss landscape (Li et al. 2018)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from reslab.cli import main
from reslab.errors import ReslabError
from reslab.experiments.config import ExperimentConfig
from reslab.experiments.landscape import (
    LandscapeConfig,
    evaluate_points,
    landscape_claims,
    local_minima,
    nonconvexity,
    random_direction,
)
from reslab.experiments.lesion import Lesion, LesionConfig, Site, lesion_claims, lesion_sites, removed
from reslab.experiments.runs import read_record, write_manifest
from reslab.models import create_model
from reslab.train.rundir import RunDir
from reslab.weights import save_weights

from fakedata import randomise_bn, read_csv, verdicts, write_learnable_mnist

# Labels as a degradation experiment names its nets; narrow, shallow builds keep every test fast.
NETS = {"plain20": (1, 1, 1), "resnet20": (1, 1, 1), "plain32": (2, 2, 2), "resnet32": (2, 2, 2)}
KWARGS = {"in_chans": 1, "widths": [4, 8, 16], "stem_width": 4}
PRE = {"dataset": "fashion-mnist", "in_chans": 1, "image_size": 28, "mode": "channel", "mean": [0.2], "std": [0.3]}


@pytest.fixture(scope="module")
def degradation_dir(tmp_path_factory) -> Path:
    """A degradation experiment folder in the format `reslab experiment degradation` writes, without the
    training: seeded nets with random BN statistics, each with its metrics.csv and model files."""
    data = write_learnable_mnist(tmp_path_factory.mktemp("fmnist"), n_train=160, n_test=40)
    folder = tmp_path_factory.mktemp("exp") / "degradation"
    records = []
    for i, (label, layers) in enumerate(NETS.items()):
        torch.manual_seed(i)
        kwargs = {**KWARGS, "layers": list(layers)}
        run_dir = folder / "runs" / f"{label}-s0"
        save_weights(randomise_bn(create_model(label, **kwargs)), run_dir, model_name=label, model_kwargs=kwargs,
                     classes=[f"c{k}" for k in range(10)], preprocess=PRE)
        run = RunDir(run_dir)
        run.append_metrics({"kind": "iter", "iteration": 6, "train_err": 0.9, "elapsed_s": 1.0})
        run.append_metrics({"kind": "eval", "iteration": 6, "val_err": 0.9})
        run.append_metrics({"kind": "test", "iteration": 6, "val_err": 0.9})
        records.append(read_record(run_dir, label=label, seed=0))
    write_manifest(folder, ExperimentConfig(name="degradation", data_dir=str(data), depths=(20, 32), iterations=6),
                   records)
    return folder






def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------------- lesion
def test_lesion_sites_of_residual_and_plain_nets():
    res = lesion_sites(create_model("resnet20"))
    assert len(res) == 9 and [s.name for s in res if s.downsampling] == ["layer2.0", "layer3.0"]
    plain = lesion_sites(create_model("plain20"))
    assert len(plain) == 7 and not any(s.downsampling for s in plain)  # plain downsampling blocks are skipped
    assert [s.position for s in res] == list(range(1, 10)) and [s.position for s in plain] == [1, 2, 3, 5, 6, 8, 9]
    with pytest.raises(ReslabError, match=r"layer2\.0"), removed(create_model("plain20"), ["layer2.0"]):
        pass


@pytest.mark.parametrize("block", ["layer2.1", "layer2.0"])  # an identity and an option-A downsampling shortcut
def test_removing_a_block_whose_last_bn_is_zero_changes_nothing(block):
    torch.manual_seed(0)
    model = randomise_bn(create_model("resnet20", in_chans=1))
    stage, i = block.split(".")
    bn = getattr(model, stage)[int(i)].last_bn()
    bn.weight.data.zero_()
    bn.bias.data.zero_()  # the residual branch now outputs exactly zero
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        intact = model(x)
        with removed(model, [block]):
            lesioned = model(x)
        again = model(x)
    torch.testing.assert_close(lesioned, intact)
    assert torch.equal(again, intact)  # the block is back


def test_removing_a_plain_block_is_the_identity_there():
    torch.manual_seed(0)
    model = randomise_bn(create_model("plain20", in_chans=1))
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad(), removed(model, ["layer1.1"]):
        out = model(x)
        h = model.layer1[0](model.forward_stem(x))
        expected = model.forward_head(model.layer3(model.layer2(model.layer1[2](h))))
    torch.testing.assert_close(out, expected)


def test_lesion_claims_both_ways():
    res = Lesion("resnet56", 0.08, [(Site("layer1.0", False), 0.09), (Site("layer2.0", True), 0.30)])
    plain = Lesion("plain56", 0.10, [(Site("layer1.0", False), 0.88), (Site("layer1.1", False), 0.80)])
    claims = lesion_claims({"plain56": plain, "resnet56": res}, 10)
    assert [c.held for c in claims] == [True, True]  # the downsampling block's rise does not count
    assert "+1.00 points" in claims[1].ours and "median 84.00%" in claims[0].ours
    res_bad = Lesion("resnet56", 0.08, [(Site("layer1.0", False), 0.20)])
    plain_bad = Lesion("plain56", 0.10, [(Site("layer1.0", False), 0.12), (Site("layer1.1", False), 0.74)])
    assert [c.held for c in lesion_claims({"plain56": plain_bad, "resnet56": res_bad}, 10)] == [False, False]
    with pytest.raises(ReslabError):
        lesion_claims({}, 10)


def test_lesion_end_to_end(degradation_dir, tmp_path, capsys):
    before = _tree(degradation_dir)
    out = tmp_path / "lesion"
    assert main(["experiment", "lesion", "--from", str(degradation_dir), "--test-images", "40", "--draws", "2",
                 "--out", str(out)]) == 0
    assert "summary:" in capsys.readouterr().out
    for name in ("summary.md", "table.md", "table.csv", "lesion.csv", "random.csv", "lesion.png", "experiment.json"):
        assert (out / name).is_file(), name
    assert _tree(degradation_dir) == before  # the source is only read
    rows = read_csv(out / "lesion.csv")
    counts = {net: sum(r["net"] == net for r in rows) for net in NETS}
    assert counts == {"plain20": 1, "resnet20": 3, "plain32": 4, "resnet32": 6}  # plain downsampling: skipped
    table = {r["net"]: r for r in read_csv(out / "table.csv")}
    lesions = {}
    for net, t in table.items():
        label = net.replace("plain-", "plain").replace("ResNet-", "resnet")
        single = [(Site(r["block"], r["downsampling"] == "1"), float(r["error"]))
                  for r in rows if r["net"] == label]
        lesions[label] = Lesion(label, float(t["intact error"].rstrip("%")) / 100, single)
    assert verdicts(out / "summary.md") == [c.outcome for c in lesion_claims(lesions, 10)]
    draws = read_csv(out / "random.csv")
    assert {r["draw"] for r in draws} == {"0", "1"} and max(int(r["k"]) for r in draws if r["net"] == "resnet32") == 4


def test_lesion_refuses_to_write_into_the_source(degradation_dir, capsys):
    assert main(["experiment", "lesion", "--from", str(degradation_dir), "--out", str(degradation_dir / "x")]) == 2
    assert "outside the source" in capsys.readouterr().err


# ---------------------------------------------------------------------------- landscape
def test_directions_are_filter_normalised_with_zero_bn_and_bias():
    torch.manual_seed(0)
    model = create_model("resnet20", in_chans=1)
    d = random_direction(model, torch.Generator().manual_seed(1))
    for p, dp in zip(model.parameters(), d, strict=True):
        if p.dim() <= 1:
            assert not dp.any()
        else:
            torch.testing.assert_close(dp.flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1))


def test_landscape_at_the_origin_is_the_models_own_loss():
    torch.manual_seed(0)
    model = randomise_bn(create_model("resnet20", in_chans=1, layers=(1, 1, 1)))
    x, y = torch.randn(12, 1, 28, 28), torch.arange(12) % 10
    g = torch.Generator().manual_seed(0)
    dirs = [random_direction(model, g), random_direction(model, g)]
    theta = [p.detach().clone() for p in model.parameters()]
    (err0, loss0), (_, loss1) = evaluate_points(model, x, y, dirs, [(0.0, 0.0), (0.5, -0.25)])
    with torch.no_grad():
        logits = model(x)
    assert loss0 == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    assert err0 == pytest.approx((logits.argmax(1) != y).float().mean().item())
    assert loss1 != pytest.approx(loss0)
    assert all(torch.equal(p, t) for p, t in zip(model.parameters(), theta, strict=True))  # theta restored


def test_roughness_measures():
    xs = [i / 20 for i in range(-20, 21)]
    assert local_minima([x * x for x in xs]) == 1
    assert local_minima([3, 1, 3, 2, 3, 0, 3]) == 3 and local_minima([3, 1, 1, 1, 3]) == 1  # a flat bottom once
    assert local_minima([x * x + 1e-6 * (-1) ** i for i, x in enumerate(xs)]) == 1  # noise below 1% of the range
    assert local_minima(xs) == 0 and local_minima([1.0] * 5) == 0
    h = 0.1
    axis = [h * i for i in range(-5, 6)]
    bowl = [[a * a + 2 * b * b for b in axis] for a in axis]
    saddle = [[a * a - b * b for b in axis] for a in axis]
    assert max(v for row in nonconvexity(bowl, h) for v in row) == pytest.approx(0)
    assert min(v for row in nonconvexity(saddle, h) for v in row) == pytest.approx(1)
    plateau = [[a * a if a < 0 else 1e-9 * (-1) ** (i + j) for j, _ in enumerate(axis)] for i, a in enumerate(axis)]
    flat = nonconvexity(plateau, h)[-3:]  # the noisy plateau (alpha > 0) is left out
    assert all(math.isnan(v) for row in flat for v in row)


def test_landscape_claims_both_ways():
    smooth = landscape_claims({"plain56": [3, 2, 4], "resnet56": [1, 1, 1]}, {"plain56": 0.4, "resnet56": 0.05}, 56)
    assert [c.held for c in smooth] == [True, True] and "smoother" in smooth[0].claim
    rough = landscape_claims({"plain56": [1, 1], "resnet56": [1, 2]}, {"plain56": 0.1, "resnet56": 0.1}, 56)
    assert [c.held for c in rough] == [False, False]
    with pytest.raises(ReslabError, match="plain-20"):
        landscape_claims({"plain56": [1], "resnet56": [1]}, {}, 20)


def test_landscape_end_to_end(degradation_dir, tmp_path):
    out = tmp_path / "landscape"
    assert main(["experiment", "landscape", "--from", str(degradation_dir), "--train-images", "24", "--steps", "7",
                 "--grid", "5", "--slices", "2", "--out", str(out)]) == 0
    for name in ("summary.md", "table.csv", "landscape.csv", "landscape-1d.png", "landscape-2d.png", "roughness.png"):
        assert (out / name).is_file(), name
    table = {r["net"]: r for r in read_csv(out / "table.csv")}
    assert list(table) == ["plain-32", "ResNet-32"]  # the deepest pair by default
    points = read_csv(out / "landscape.csv")
    assert len(points) == 2 * (2 * 7 + 5 * 5)
    minima = {k.replace("plain-", "plain").replace("ResNet-", "resnet"): [int(v) for v in r[
        "local minima per 1-D slice"].split(", ")] for k, r in table.items()}
    nonconvex = {k.replace("plain-", "plain").replace("ResNet-", "resnet"): float(r["non-convexity (2-D)"])
                 for k, r in table.items()}
    claims = landscape_claims(minima, nonconvex, 32)
    assert verdicts(out / "summary.md") == [c.outcome for c in claims]


@pytest.mark.parametrize("name, cfg, keys", [("lesion", LesionConfig(), ("images", "draws")),
                                             ("landscape", LandscapeConfig(), ("images", "steps", "grid", "slices"))])
def test_help_states_the_config_defaults(name, cfg, keys, capsys):
    with pytest.raises(SystemExit):
        main(["experiment", name, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for key in keys:
        assert f"(default {getattr(cfg, key)})" in text, key


def test_ticker_prints_complete_progress_lines_and_is_silent_when_quiet(capsys):
    from reslab.experiments.trained import Ticker

    t = Ticker("landscape plain56", 3, every=0.0)
    for _ in range(3):
        t.tick()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("landscape plain56: 1/3 points") and "min left" in lines[0]
    assert lines[-1].startswith("landscape plain56: 3/3 points") and "left" not in lines[-1]
    quiet = Ticker("lesion resnet20", 2, unit="nets", quiet=True, every=0.0)
    quiet.tick()
    quiet.tick()
    assert capsys.readouterr().err == ""
