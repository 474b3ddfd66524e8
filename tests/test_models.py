"""Contracts of the ResNet family: the paper's numbers, torchvision parity, gradients."""

import pytest
import torch
import torchvision
from torch import nn

import reslab
from reslab.models import Bottleneck, PadShortcut, create_model, list_models, model_entry
from reslab.models.analysis import count_params

IMAGENET_PARAMS = {
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
}
CIFAR_PARAMS = {
    "resnet20": 269_722, "resnet32": 464_154, "resnet44": 658_586, "resnet56": 853_018,
    "resnet110": 1_727_962, "resnet1202": 19_421_274,
}


@pytest.mark.parametrize(("name", "expected"), IMAGENET_PARAMS.items())
def test_imagenet_params_match_paper(name, expected):
    assert count_params(create_model(name)) == expected


@pytest.mark.parametrize(("name", "expected"), CIFAR_PARAMS.items())
def test_cifar_params_match_paper(name, expected):
    model = create_model(name)
    assert count_params(model) == expected
    assert model.shortcut == "A"


@pytest.mark.parametrize("depth", [18, 34, 20, 32, 44, 56, 110])
def test_plain_nets_have_no_shortcut(depth):
    plain, res = create_model(f"plain{depth}"), create_model(f"resnet{depth}")
    blocks = [m for m in plain.modules() if hasattr(m, "residual")]
    assert blocks and not any(b.residual or b.downsample is not None for b in blocks)
    if depth in (18, 34):  # option B projections are the only extra parameters of the ResNet
        proj = sum(p.numel() for n, p in res.named_parameters() if "downsample" in n)
        assert count_params(plain) == count_params(res) - proj
    else:  # option A is parameter-free
        assert count_params(plain) == count_params(res)


def test_plain_forward_ignores_identity_path():
    # Structural check: a plain block's output does not depend on x except through F(x).
    torch.manual_seed(0)
    block = create_model("plain20").layer1[0].eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        for m in (block.conv1, block.conv2):
            m.weight.zero_()
        assert torch.count_nonzero(block(x)) == 0  # F(x)=0 (BN bias 0) and no shortcut -> 0
    res_block = create_model("resnet20").layer1[0].eval()
    with torch.no_grad():
        for m in (res_block.conv1, res_block.conv2):
            m.weight.zero_()
        torch.testing.assert_close(res_block(x), torch.relu(x))  # identity survives


def test_shortcut_options():
    a, b, c = (create_model("resnet34", shortcut=s) for s in "ABC")
    assert count_params(a) < count_params(b) < count_params(c)
    assert not any("downsample" in n for n, _ in a.named_parameters())
    assert isinstance(a.layer2[0].downsample, PadShortcut) and a.layer2[1].downsample is None
    assert b.layer2[1].downsample is None and isinstance(c.layer2[1].downsample, nn.Sequential)
    assert all(blk.downsample is not None for st in c.stages() for blk in st)


@pytest.mark.parametrize("name, in_chans, expected", [
    ("resnet34", 3, (21_623_848, 21_797_672, 22_716_840)),
    ("resnet20", 3, (269_722, 272_474, 283_962)),  # CIFAR-10
    ("resnet20", 1, (269_434, 272_186, 283_674)),  # Fashion-MNIST: what `experiment shortcuts` trains
])
def test_shortcut_option_param_counts(name, in_chans, expected):
    # docs/reproduction.md states these counts (Section 3.3: A is parameter-free, B projects where the
    # dimensions change, C everywhere); the plain net has option A's count.
    assert tuple(count_params(create_model(name, shortcut=s, in_chans=in_chans)) for s in "ABC") == expected
    assert count_params(create_model(name.replace("resnet", "plain"), in_chans=in_chans)) == expected[0]


def test_option_a_zero_pads_and_subsamples():
    x = torch.arange(2 * 4 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4, 4)
    y = PadShortcut(4, 8, 2)(x)
    assert y.shape == (2, 8, 2, 2)
    torch.testing.assert_close(y[:, :4], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 4:]) == 0


@pytest.mark.parametrize(("variant", "strides"), [("v1", (2, 1)), ("v1.5", (1, 2))])
def test_bottleneck_stride_placement(variant, strides):
    blk = create_model("resnet50", variant=variant).layer2[0]
    assert isinstance(blk, Bottleneck)
    assert (blk.conv1.stride[0], blk.conv2.stride[0]) == strides


def test_zero_init_last_is_opt_in():
    assert all(b.last_bn().weight.eq(1).all() for b in create_model("resnet20").modules() if hasattr(b, "last_bn"))
    model = create_model("resnet50", zero_init_last=True)
    assert all(b.last_bn().weight.eq(0).all() for b in model.modules() if hasattr(b, "last_bn"))


def test_he_init():
    conv = create_model("resnet20").layer3[0].conv2  # 64 -> 64, 3x3: fan_out = 576
    assert abs(conv.weight.std().item() - (2 / 576) ** 0.5) < 0.01


@pytest.mark.parametrize("name", list(IMAGENET_PARAMS))
def test_torchvision_parity(name):
    torch.manual_seed(0)
    ref = getattr(torchvision.models, name)(weights=None).eval()
    ours = create_model(name).eval()  # default v1.5 is torchvision's layout
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-5)


def test_fashion_mnist_shape_net():
    model = create_model("resnet20", in_chans=1, num_classes=10)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    big = create_model("resnet18", in_chans=1, num_classes=10)
    assert big(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def _small_input(name):
    entry = model_entry(name)
    return 32 if entry.input_size <= 32 else 64


@pytest.mark.parametrize("name", [n for n in list_models() if n != "resnet1202"])
def test_every_model_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7)
    size = _small_input(name)
    out = model(torch.randn(2, getattr(model, "in_chans", 3), size, size))
    if isinstance(out, tuple):  # auxiliary heads in training mode
        out = out[0]
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient reaches {missing[:5]}"


def test_resnet1202_forward_backward():
    # 8x8 (not CIFAR's 32x32): every one of the 1202 layers still runs and gets a gradient (the stages
    # leave 8 -> 4 -> 2 pixels), at a sixteenth of the activations; 32x32 took minutes on a busy 2-core machine.
    model = create_model("resnet1202")
    out = model(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_seams():
    model = create_model("resnet50", num_classes=5).eval()
    x = torch.randn(1, 3, 64, 64)
    feats = model.forward_features(x)
    assert feats.shape == (1, 2048, 2, 2)
    assert model.forward_head(feats, pre_logits=True).shape == (1, 2048)
    torch.testing.assert_close(model.forward_head(feats), model(x))
    assert [t.shape[1] for t in model.forward_stages(x)] == [256, 512, 1024, 2048]
    model.reset_classifier(3)
    assert model(x).shape == (1, 3)


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: create_model("resnet5"), "resnet56"),
        (lambda: create_model("resnet50", shortcut="D"), "shortcut='D'"),
        (lambda: create_model("resnet50", variant="v2"), "variant='v2'"),
        (lambda: create_model("resnet50", num_clases=10), "num_classes"),
        (lambda: create_model("resnet20", num_classes=0), "num_classes=0"),
    ],
)
def test_errors_name_the_value(call, needle):
    with pytest.raises(ValueError, match="Received") as info:
        call()
    assert needle in str(info.value)


def test_public_api():
    assert "resnet50" in reslab.list_models() and "plain110" in reslab.list_models("plain*")
    assert isinstance(reslab.create_model("resnet20"), reslab.ResNet)
