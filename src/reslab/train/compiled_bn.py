"""Batch normalisation written for inductor's CPU code: what `--compile` trains with on a CPU.

The function is nn.BatchNorm2d's in training (Ioffe & Szegedy 2015; the paper's BN after every conv,
Section 3.4): batch mean and biased variance normalise, the unbiased variance and momentum update the
running statistics. Only the arithmetic is arranged differently, for the code inductor generates:

- the statistics come from one pass of sums and sums of squares of x - s, with s the running mean
  held fixed for the step (the "shifted data" algorithm, Chan, Golub & LeVeque 1983, which keeps
  E[d^2] - E[d]^2 away from cancellation once s is near the mean), instead of a Welford pass;
- the normalisation is one multiply-add per element, x * scale + shift, with scale = weight /
  sqrt(var + eps) and shift = bias - mean * scale computed once per channel; inductor's lowering of
  aten's batch norm recomputes the division and the reciprocal square root for every element.

Measured on ResNet-20's compiled bf16 training step, 2 cores of an Intel Xeon (Sapphire Rapids,
AMX), interleaved in one process: 1.23-1.36x eager against 1.12-1.24x for the compiled nn.BatchNorm2d
(docs/benchmarks.md, run 5). Evaluation (eval mode) is nn.BatchNorm2d's own code, and the parameters,
buffers and state-dict names are unchanged, so checkpoints and weights do not know the difference.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ScaleShiftBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d whose training forward is one statistics pass and one multiply-add per element.
    x (N, C, H, W) of any float dtype; the output has x's dtype, the statistics are fp32."""

    def forward(self, x: Tensor) -> Tensor:
        rm, rv, steps = self.running_mean, self.running_var, self.num_batches_tracked  # None without running stats
        if not (self.training and rm is not None and rv is not None and steps is not None and self.affine
                and self.momentum is not None):
            return super().forward(x)
        xf = x.float()
        s = rm.detach().clone()
        d = xf - s.view(1, -1, 1, 1)
        m1 = d.mean((0, 2, 3))
        var = (d * d).mean((0, 2, 3)) - m1 * m1
        mean = m1 + s  # var is not clamped at 0 (a clamp's mask costs 10% of the compiled step): its rounding
        # error is far below eps once s is near the mean, and eps keeps var + eps positive
        n = x.numel() // x.shape[1]
        with torch.no_grad():
            rm.lerp_(mean.detach(), self.momentum)
            rv.lerp_(var.detach() * (n / max(n - 1, 1)), self.momentum)
            steps.add_(1)
        scale = self.weight * torch.rsqrt(var + self.eps)
        shift = self.bias - mean * scale
        return (xf * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)).to(x.dtype)


def use_scale_shift_bn(model: nn.Module) -> int:
    """Turn every plain nn.BatchNorm2d of `model` into a ScaleShiftBatchNorm2d, in place: the same
    module objects, parameters and buffers (an optimiser built before keeps them), only the class
    changes. Subclasses (SyncBatchNorm is not one; its own conversion runs first) are left alone.
    Returns how many were changed."""
    changed = 0
    for m in model.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = ScaleShiftBatchNorm2d
            changed += 1
    return changed
