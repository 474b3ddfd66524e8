"""ScaleShiftBatchNorm2d, what `--compile` trains with on a CPU: nn.BatchNorm2d's function, step for step."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from reslab.models.registry import create_model
from reslab.train.compiled_bn import ScaleShiftBatchNorm2d, use_scale_shift_bn
from reslab.train.step import compile_model


def _pair(c: int = 8) -> tuple[nn.BatchNorm2d, nn.BatchNorm2d]:
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(c)
    ref.weight.data.uniform_(0.5, 1.5)
    ref.bias.data.normal_()
    fast = copy.deepcopy(ref)
    assert use_scale_shift_bn(fast) == 1 and type(fast) is ScaleShiftBatchNorm2d
    return ref, fast


def test_training_steps_match_batchnorm():
    """Five training steps on data far from zero mean (mean 5, std 2): the same outputs, input and parameter
    gradients, running statistics and step count as nn.BatchNorm2d, to fp32 rounding."""
    ref, fast = _pair()
    for _ in range(5):
        x = torch.randn(16, 8, 6, 6) * 2 + 5
        g = torch.randn(16, 8, 6, 6)
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ya, yb = ref(xa), fast(xb)
        ya.backward(g)
        yb.backward(g)
        torch.testing.assert_close(yb, ya, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-4, atol=1e-4)
        for p, q in ((fast.weight, ref.weight), (fast.bias, ref.bias)):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-4)
            p.grad = q.grad = None
        torch.testing.assert_close(fast.running_mean, ref.running_mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fast.running_var, ref.running_var, rtol=1e-4, atol=1e-5)
        assert fast.num_batches_tracked.item() == ref.num_batches_tracked.item()


def test_eval_is_batchnorms_own_and_dtype_is_kept():
    ref, fast = _pair()
    ref.eval(), fast.eval()
    ref.running_mean.normal_(), ref.running_var.uniform_(0.5, 2)
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(4, 8, 5, 5)
    assert torch.equal(fast(x), ref(x))
    fast.train()
    assert fast(x.bfloat16()).dtype == torch.bfloat16


def test_the_swap_keeps_parameters_buffers_and_names():
    """In place: the optimiser's parameters stay the model's, checkpoints keep torchvision's names."""
    model = create_model("resnet20", in_chans=1)
    params, keys = [id(p) for p in model.parameters()], list(model.state_dict())
    assert use_scale_shift_bn(model) == 19  # the stem's BN and two per block, 9 blocks
    assert [id(p) for p in model.parameters()] == params and list(model.state_dict()) == keys
    assert not any(type(m) is nn.BatchNorm2d for m in model.modules())


@pytest.mark.parametrize(("mode", "swapped"), [("off", False), ("default", True)])
def test_compile_model_uses_it_on_the_cpu_only_when_compiling(mode, swapped):
    model = create_model("resnet20", in_chans=1)
    compile_model(model, mode)  # torch.compile is lazy: nothing compiles before the first call
    assert any(isinstance(m, ScaleShiftBatchNorm2d) for m in model.modules()) is swapped
