"""AlexNet, VGG and GoogLeNet: published counts, torchvision parity, seams, the Inception arithmetic."""

import pytest
import torch
import torchvision
from torch import nn

from reslab.errors import ReslabError
from reslab.models import create_model, list_models, model_entry
from reslab.models.analysis import count_params, inception_arithmetic
from reslab.models.googlenet import GoogLeNet, GoogLeNetOutputs, Inception

CLASSIC = list_models(family="classic")
SMALL = [n for n in CLASSIC if n.endswith("_small")]

# torchvision's documented counts (1000 classes); AlexNet with LRN and two towers is
# Caffe's bvlc_alexnet (the paper's "60 million parameters").
PARAMS = {
    "alexnet": 61_100_840,
    "alexnet_lrn": 60_965_224,
    "vgg11": 132_863_336,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "vgg19": 143_667_240,
    "googlenet": 6_624_904,
}


@pytest.mark.parametrize(("name", "expected"), list(PARAMS.items()))
def test_params_match_published(name, expected):
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = create_model(name)
    assert count_params(model) == expected


def test_registry_rows():
    assert {"alexnet", "alexnet_lrn", "alexnet_small", "googlenet", "googlenet_small", "vgg11_small",
            "vgg16_small"} <= set(CLASSIC)
    for depth in (11, 13, 16, 19):
        assert {f"vgg{depth}", f"vgg{depth}_bn"} <= set(CLASSIC)
    for name in CLASSIC:
        entry = model_entry(name)
        assert entry.input_size == (32 if name in SMALL else 224), name
        with torch.device("meta"):
            model = create_model(name)
        if isinstance(model, GoogLeNet):  # stem convs + two layers per Inception module + fc
            inceptions = sum(isinstance(m, Inception) for m in model.modules())
            weighted = 3 + 2 * inceptions + 1
        else:
            weighted = sum(isinstance(m, nn.Conv2d | nn.Linear) for m in model.modules())
        assert weighted == entry.depth, name
    assert [model_entry(n).depth for n in ("alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "googlenet")] == [
        8, 11, 13, 16, 19, 22]


def _randomise_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)


@pytest.mark.parametrize(
    ("name", "ref_name", "kwargs"),
    [
        ("alexnet", "alexnet", {}),
        ("vgg11", "vgg11", {}),
        ("vgg16_bn", "vgg16_bn", {}),
        ("googlenet", "googlenet", {"aux_logits": False}),
        ("googlenet", "googlenet", {"aux_logits": True, "transform_input": True}),
    ],
)
def test_torchvision_parity(name, ref_name, kwargs):
    torch.manual_seed(0)
    ours = create_model(name, **kwargs).eval()
    _randomise_bn(ours)
    extra = {"init_weights": True, **kwargs} if ref_name == "googlenet" else {}
    with torch.device("meta"):  # the reference only lends its layout; weights come from ours
        ref = getattr(torchvision.models, ref_name)(weights=None, **extra)
    ref.load_state_dict(ours.state_dict(), strict=True, assign=True)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ref.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = ref(x)
        torch.testing.assert_close(ours(x), expected, rtol=1e-4, atol=1e-5)
    assert expected.abs().max() > 1e-3  # a real comparison, not of two near-zero vectors


@pytest.mark.parametrize("name", CLASSIC)
def test_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7)
    size = 16 if name in SMALL else 64  # >= every minimum (AlexNet's 63); 28 and 32 px are tested below
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient reaches {missing[:5]}"


@pytest.mark.parametrize("name", ["googlenet", "googlenet_small"])
def test_googlenet_aux_heads(name):
    model = create_model(name, num_classes=5, aux_logits=True)
    x = torch.randn(2, 3, 16 if name.endswith("_small") else 32, 32)
    out = model(x)
    assert isinstance(out, GoogLeNetOutputs)
    assert [t.shape for t in out] == [(2, 5)] * 3
    (out.logits + 0.3 * (out.aux1 + out.aux2)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    assert create_model(name).aux1 is None
    assert model(x).shape == (2, 5)  # eval: logits only, as torchvision


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("size", [28, 32])
def test_small_variants_take_grey_28px(name, size):
    model = create_model(name, in_chans=1, num_classes=10).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, size, size))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "features"), [
    ("alexnet_small", (256, 3, 3)), ("vgg11_small", (512, 1, 1)), ("googlenet_small", (1024, 8, 8)),
])
def test_seams(name, features):
    model = create_model(name, num_classes=5, in_chans=1).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, *features)
        assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features)
        torch.testing.assert_close(model.forward_head(feats), model(x))
        model.reset_classifier(3)
        assert model(x).shape == (2, 3) and model.num_classes == 3


@pytest.mark.parametrize(("name", "min_size"), [
    ("alexnet", 63), ("alexnet_small", 15), ("vgg11_small", 1), ("googlenet", 15), ("googlenet_small", 2),
])
def test_minimum_input_size(name, min_size):
    model = create_model(name, num_classes=3).eval()
    assert model.min_size == min_size
    with torch.no_grad():
        assert model(torch.randn(1, 3, min_size, min_size + 5)).shape == (1, 3)
        if min_size > 1:
            with pytest.raises(ReslabError, match=f">= {min_size}"):
                model(torch.randn(1, 3, min_size - 1, min_size + 5))


def test_reset_classifier_resets_aux_heads():
    model = create_model("googlenet_small", aux_logits=True)
    model.reset_classifier(4)
    assert [t.shape[1] for t in model(torch.randn(2, 3, 16, 16))] == [4, 4, 4]


def test_alexnet_as_published():
    model = create_model("alexnet_lrn")
    layers = list(model.features)
    lrns = [i for i, m in enumerate(layers) if isinstance(m, nn.LocalResponseNorm)]
    convs = [m for m in layers if isinstance(m, nn.Conv2d)]
    assert len(lrns) == 2
    for i in lrns:  # conv -> ReLU -> LRN -> max pool (Section 3.3, 3.4)
        assert isinstance(layers[i - 2], nn.Conv2d) and isinstance(layers[i - 1], nn.ReLU)
        assert isinstance(layers[i + 1], nn.MaxPool2d)
        assert (layers[i].size, layers[i].alpha, layers[i].beta, layers[i].k) == (5, 1e-4, 0.75, 2.0)
    assert layers[lrns[0] - 2] is convs[0] and layers[lrns[1] - 2] is convs[1]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]  # two GPU towers (Section 3.2)
    assert [m.p for m in model.classifier if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    assert [c.bias.mean().item() for c in convs] == [0.0, 1.0, 0.0, 1.0, 1.0]  # Section 5
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in create_model("alexnet").modules())

    # b = a / (k + alpha / n * sum of a^2 over n = 5 neighbouring maps)^beta, zero-padded.
    a = torch.randn(1, 8, 3, 3) * 30
    sq = nn.functional.pad(a.pow(2), (0, 0, 0, 0, 2, 2))
    window = sum(sq[:, j:j + 8] for j in range(5))
    torch.testing.assert_close(layers[lrns[0]](a), a / (2 + 1e-4 / 5 * window) ** 0.75)


def test_inception_arithmetic_inception3a():
    rows = inception_arithmetic(create_model("googlenet"))
    mods = [r["module"] for r in rows if r["branch"] == "total"]
    assert mods == [f"inception{n}" for n in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")]
    r3a = {r["branch"]: r for r in rows if r["module"] == "inception3a"}
    hw = 28 * 28  # 224 px -> 28x28 at inception3a, 192 input channels
    assert (r3a["total"]["in_channels"], r3a["total"]["height"], r3a["total"]["width"]) == (192, 28, 28)
    # Conv weights plus BN's gamma and beta; torchvision's "5x5" branch is 3x3.
    expected = {
        "branch1": (192 * 64 + 2 * 64, 192 * 64 + 2 * 64, hw * 192 * 64, hw * 192 * 64),
        "branch2": (192 * 96 + 2 * 96 + 96 * 128 * 9 + 2 * 128, 192 * 128 * 9 + 2 * 128,
                    hw * (192 * 96 + 96 * 128 * 9), hw * 192 * 128 * 9),
        "branch3": (192 * 16 + 2 * 16 + 16 * 32 * 9 + 2 * 32, 192 * 32 * 9 + 2 * 32,
                    hw * (192 * 16 + 16 * 32 * 9), hw * 192 * 32 * 9),
        "branch4": (192 * 32 + 2 * 32, 0, hw * 192 * 32, 0),  # naive: the pool passes 192 maps through
    }
    for branch, (params, naive_params, macs, naive_macs) in expected.items():
        got = r3a[branch]
        assert (got["params"], got["naive_params"], got["macs"], got["naive_macs"]) == (
            params, naive_params, macs, naive_macs), branch
    total = r3a["total"]
    assert (total["params"], total["naive_params"]) == (155_872, 289_216)
    assert (total["macs"], total["naive_macs"]) == (121_626_624, 226_394_112)
    assert (total["out_channels"], total["naive_out_channels"]) == (256, 416)
    assert r3a["branch2"]["layers"] == "1x1 96 -> 3x3 128" and r3a["branch2"]["naive_layers"] == "3x3 128"
    assert total["params"] == count_params(create_model("googlenet").inception3a)
    assert all(r["params"] < r["naive_params"] for r in rows if r["branch"] == "total")


def test_inception_arithmetic_paper_5x5():
    rows = inception_arithmetic(create_model("googlenet", kernel5=5))
    b3 = next(r for r in rows if r["module"] == "inception3a" and r["branch"] == "branch3")
    assert b3["layers"] == "1x1 16 -> 5x5 32" and b3["naive_layers"] == "5x5 32"
    assert (b3["params"], b3["naive_params"]) == (192 * 16 + 32 + 16 * 32 * 25 + 64, 192 * 32 * 25 + 64)
    assert (b3["macs"], b3["naive_macs"]) == (784 * (192 * 16 + 16 * 32 * 25), 784 * 192 * 32 * 25)
    small = inception_arithmetic(create_model("googlenet_small"))
    assert small[0]["height"] == 32  # the small stem keeps 32 px up to inception3


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: create_model("vgg11_small", num_classes=0), "num_classes=0"),
        (lambda: create_model("alexnet_small", in_chans="1"), "in_chans='1'"),
        (lambda: create_model("googlenet", kernel5=7), "kernel5=7"),
        (lambda: create_model("googlenet", in_chans=1, transform_input=True), "in_chans=1"),
        (lambda: create_model("vgg11_small", cfg=(64, "X")), "'X'"),
        (lambda: create_model("alexnet_small")(torch.randn(1, 3, 14, 14)), "(1, 3, 14, 14)"),
        (lambda: create_model("vgg11_small")(torch.randn(1, 1, 28, 28)), "(1, 1, 28, 28)"),
        (lambda: inception_arithmetic(create_model("alexnet_small")), "AlexNet"),
    ],
)
def test_errors_name_the_value(call, needle):
    with pytest.raises(ReslabError, match="Received") as info:
        call()
    assert needle in str(info.value)
