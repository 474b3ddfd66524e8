"""One training step and what it runs on: the model, the optimiser, torch.compile, the loss window.

The CUDA step has no host sync: the batch is already on the device (train/batches.py), the loss
and error stay there (`Window`), and the optimiser is fused SGD (one kernel per step, with the lr
passed as a number). The CPU step is the same code; its optimiser is the for-loop SGD, which
measured faster on CPU than foreach (docs/gpu.md) and gives the same bits.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reslab.models.registry import create_model
from reslab.train.compiled_bn import use_scale_shift_bn
from reslab.train.config import TrainConfig
from reslab.train.distributed import Dist, convert_sync_batchnorm, mean_over_ranks
from reslab.train.finetune import stage_groups

AUX_WEIGHT = 0.3  # GoogLeNet's auxiliary losses join the main loss with weight 0.3 (Szegedy et al. 2015, Sec. 5)


def model_kwargs(cfg: TrainConfig, num_classes: int, in_chans: int) -> dict:
    """The architecture's arguments: what model.json records and `create_model` receives."""
    return {"num_classes": num_classes, "in_chans": in_chans, **cfg.model_kwargs}


def build_model(cfg: TrainConfig, kwargs: dict, device: torch.device, channels_last: bool) -> nn.Module:
    model = create_model(cfg.model, **kwargs).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.SGD:
    """SGD with momentum and weight decay (Section 3.4): fused on CUDA; the for-loop kernel on CPU. One
    group of every parameter, or with fine-tuning flags one per trained stage (train/finetune.py)."""
    cuda = device.type == "cuda"
    groups = param_groups(model, cfg.wd_bn_bias == "on", stage_groups(model, cfg))
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           nesterov=cfg.nesterov, fused=cuda or None, foreach=None if cuda else False)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Every group's lr: `lr`, times the group's "lr_scale" when it has one (fine-tuning's per-stage rates)."""
    for group in opt.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def param_groups(model: nn.Module, wd_bn_bias: bool, groups: list[dict] | None = None) -> list[dict]:
    """`groups`, by default one group of every parameter (the paper decays them all; fine-tuning flags:
    one per stage), or with `wd_bn_bias` False each split in two: the weights of convs and fc, then the
    1-D tensors (BN's scale and shift, biases) with weight decay 0 (Jia et al. 2018; He et al. 2019,
    "Bag of Tricks": decaying them only shrinks BN's scale)."""
    groups = groups or [{"params": list(model.parameters())}]
    if wd_bn_bias:
        return groups
    return ([{**g, "params": [p for p in g["params"] if p.ndim > 1]} for g in groups]
            + [{**g, "params": [p for p in g["params"] if p.ndim <= 1], "weight_decay": 0.0} for g in groups])


def step_model(model: nn.Module, cfg: TrainConfig, dist: Dist, device: torch.device) -> nn.Module:
    """What the step calls: the model, under DDP with several processes (with --sync-bn the batch
    statistics of the global batch), compiled with `cfg.compile`'s mode. Evaluation uses `model`."""
    if dist.enabled:
        if cfg.sync_bn:
            model = convert_sync_batchnorm(model, device)
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                    else None)
    return compile_model(model, cfg.compile)


def compile_model(model: nn.Module, mode: str) -> nn.Module:
    """torch.compile with `mode` (default | max-autotune | reduce-overhead, the last with CUDA graphs),
    or the eager model for "off". On the CPU the model's BatchNorm2d layers become ScaleShiftBatchNorm2d
    first, in place: the same function in arithmetic that inductor's CPU code runs faster
    (train/compiled_bn.py).

    torch.compile is lazy: a missing compiler, Triton or an unsupported op fails at the first call, not
    here. So the compiled model is returned inside `CompileFallback`, which runs the eager model, with a
    warning, when compiling fails."""
    if mode == "off":
        return model
    if next(model.parameters()).device.type == "cpu":
        use_scale_shift_bn(model)
    try:
        compiled = torch.compile(model, mode=None if mode == "default" else mode)
    except Exception as e:
        _warn_eager(e)
        return model
    return CompileFallback(compiled, model)


class CompileFallback(nn.Module):
    """The compiled model, or the eager one from the call where compiling failed on: the first call
    (where torch.compile builds its graph) falls back on any error, a later one on the compiler's own
    errors (a recompile). An error of the model itself raises again from the eager call.
    `compiled_ok`: whether the compiled model is still the one called."""

    def __init__(self, compiled: Callable[..., Any], eager: nn.Module) -> None:
        super().__init__()
        self.compiled, self.eager = compiled, eager
        self.compiled_ok, self._calls = True, 0

    def forward(self, *args, **kwargs):
        if self.compiled_ok:
            try:
                out = self.compiled(*args, **kwargs)
                self._calls += 1
                return out
            except Exception as e:
                if self._calls and not _compiler_error(e):
                    raise
                self.compiled_ok = False
                _warn_eager(e)
        return self.eager(*args, **kwargs)


def _compiler_error(e: Exception) -> bool:
    from torch._dynamo.exc import TorchDynamoException

    return isinstance(e, TorchDynamoException) or type(e).__module__.startswith("torch._inductor")


def _warn_eager(e: Exception) -> None:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    warnings.warn(f"torch.compile failed ({type(e).__name__}: {first}); training in eager mode", stacklevel=3)


@contextmanager
def kernel_choice(device: torch.device, deterministic: bool) -> Iterator[None]:
    """The kernels a run may use, for its duration (the settings are the process's; restored after).

    On CUDA, by default, cuDNN times its algorithms for each new shape once and keeps the fastest
    (`cudnn.benchmark`): training batches have one shape, so that is paid once. Its choice, and some
    of its backward algorithms (atomic adds), can differ from one process to the next, so a resumed
    run is not bit-identical to an uninterrupted one. `deterministic` asks for deterministic kernels
    only: cuDNN without benchmark, cuBLAS with a fixed workspace (CUBLAS_WORKSPACE_CONFIG, read when
    cuBLAS starts), `torch.use_deterministic_algorithms` (an op without a deterministic kernel warns).
    The CPU's kernels are deterministic already."""
    cudnn = torch.backends.cudnn
    saved = (cudnn.benchmark, cudnn.deterministic, torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        cudnn.benchmark, cudnn.deterministic = False, True
        torch.use_deterministic_algorithms(True, warn_only=True)
    elif device.type == "cuda":
        cudnn.benchmark = True
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.deterministic = saved[0], saved[1]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: Tensor, y: Tensor, *, amp: bool,
               channels_last: bool, label_smoothing: float = 0.0, cuda_graphs: bool = False,
               class_weight: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One SGD step on a batch x (N, C, H, W) float, y (N,) int64, both on the model's device: forward
    under bf16 autocast when `amp` (weights, optimiser and loss stay fp32), backward, update.

    `y` may be soft targets (N, K) float (MixUp / CutMix, train/mixing.py): the loss takes them as they
    are, and the error counts a prediction wrong when it misses the target's largest share, the
    dominant label.

    A model that returns a tuple in training (GoogLeNet with aux_logits: main, aux1, aux2) trains on the
    main loss plus AUX_WEIGHT times each auxiliary loss; its error is the main logits'. Returns the loss
    () and the batch's top-1 error () as device tensors; nothing waits for the device. `cuda_graphs`:
    the model was compiled with mode reduce-overhead, whose graphs need a step boundary marked.
    `class_weight` (K,): cross-entropy weights per class (--balance loss), None: unweighted.
    """
    if cuda_graphs:
        torch.compiler.cudagraph_mark_step_begin()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(x)
        logits, aux = (out[0], out[1:]) if isinstance(out, tuple) else (out, ())
        loss = F.cross_entropy(logits, y, weight=class_weight, label_smoothing=label_smoothing)
        for a in aux:
            loss = loss + AUX_WEIGHT * F.cross_entropy(a, y, weight=class_weight, label_smoothing=label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    labels = y if y.ndim == 1 else y.argmax(1)
    return loss.detach().float(), (logits.detach().argmax(1) != labels).float().mean()


class Window:
    """Each iteration's loss and error since the last log line, kept on the device: the host reads
    them once per line (`read`), not once per step."""

    def __init__(self, size: int, device: torch.device, start: int) -> None:
        self.losses = torch.zeros(size, device=device)
        self.errs = torch.zeros(size, device=device)
        self.start, self.n, self.t0 = start, 0, time.perf_counter()

    def add(self, loss: Tensor, err: Tensor) -> None:
        self.losses[self.n] = loss
        self.errs[self.n] = err
        self.n += 1

    def last_err(self, dist: Dist) -> float:
        """The latest iteration's error, the mean over ranks (a host sync: for the warm-up rule only)."""
        return mean_over_ranks(dist, self.errs[self.n - 1]).item()

    def read(self, dist: Dist) -> tuple[Tensor, Tensor, float]:
        """(losses (n,), errors (n,)) of the global batch (means over ranks) on the CPU, and the seconds
        since the window opened; then a new window opens."""
        losses, errs = mean_over_ranks(dist, torch.stack([self.losses[:self.n], self.errs[:self.n]])).cpu()
        now = time.perf_counter()
        seconds, self.start, self.n, self.t0 = now - self.t0, self.start + self.n, 0, now
        return losses, errs, seconds
