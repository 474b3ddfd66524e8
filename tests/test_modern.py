"""The modern recipe and its pieces: EMA of the weights, cosine with linear warm-up, MixUp / CutMix,
no weight decay on BN and biases; each checked against its definition, and the recipe end to end."""

from __future__ import annotations

import math
import signal

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from reslab.cli import main
from reslab.errors import ReslabError
from reslab.models import create_model
from reslab.train import resolve_config, train
from reslab.train.batches import InMemoryBatches
from reslab.train.checkpoint import load_checkpoint
from reslab.train.ema import Ema
from reslab.train.mixing import MixedBatches, batch_mixer
from reslab.train.schedule import Schedule
from reslab.train.step import make_optimizer, param_groups, train_step
from test_train import TINY, _run_cli, _run_cli_together, _tiny_batches


def _tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3))


def test_ema_equals_a_hand_computed_average():
    model, decay = _tiny_net(), 0.9
    ema = Ema(model, decay)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    by_hand: dict[str, torch.Tensor] = {}
    for step in range(5):
        x, y = torch.randn(6, 1, 5, 5), torch.randint(0, 3, (6,))
        train_step(model, opt, x, y, amp=False, channels_last=False)
        ema.update()
        for k, w in model.state_dict().items():  # the first update copies; then decay * ema + (1 - decay) * w
            by_hand[k] = w.clone() if step == 0 or not w.is_floating_point() else decay * by_hand[k] + (1 - decay) * w
    averaged = ema.module.state_dict()
    assert averaged.keys() == by_hand.keys()
    for k, v in by_hand.items():  # BN's running statistics are averaged too (use_buffers=True)
        torch.testing.assert_close(averaged[k], v, rtol=1e-6, atol=1e-7)
    assert not torch.equal(averaged["1.running_mean"], model.state_dict()["1.running_mean"])
    assert int(ema.averaged.n_averaged) == ema.updates == 5
    restored = Ema(_tiny_net(), decay)
    restored.load_state_dict(ema.state_dict())
    assert restored.updates == 5 and all(torch.equal(restored.module.state_dict()[k], v) for k, v in averaged.items())
    assert Ema(model, 0.0).state_dict() == {} and not Ema(model, 0.0).on


def test_cosine_with_linear_warmup_follows_the_formula():
    cfg = resolve_config("modern")
    s = Schedule.from_config(cfg, 429)
    assert (s.kind, s.total, s.warmup_iters, s.warmup_shape) == ("cosine", 64_000, 400, "linear")
    lr, warm, total = 0.1, 400, 64_000

    def formula(it: int) -> float:
        if it < warm:  # Goyal et al. 2017: from 0.01 in equal steps up to the base lr
            return 0.01 + (lr - 0.01) * it / warm
        return 0.5 * lr * (1 + math.cos(math.pi * (it - warm) / (total - warm)))  # SGDR without restarts

    for it in (0, 1, 200, 399, 400, 401, 10_000, 32_200, 63_999):
        assert s.lr(it) == pytest.approx(formula(it), rel=1e-12), it
    assert s.lr(0) == pytest.approx(0.01) and s.lr(400) == pytest.approx(0.1) and s.lr(32_200) == pytest.approx(0.05)
    short = Schedule.from_config(resolve_config("modern", epochs=14), 429)  # the `make run` budget
    assert (short.total, short.warmup_iters) == (6006, 400) and short.lr(3203) == pytest.approx(0.05)
    step = Schedule.from_config(resolve_config("cifar-paper", warmup_iters=10, warmup_shape="linear"), 429)
    assert [step.lr(it) for it in (0, 5, 10, 32_000)] == pytest.approx([0.01, 0.055, 0.1, 0.01])


def test_no_weight_decay_groups_hold_exactly_the_1d_params():
    model = create_model("resnet20", num_classes=10, in_chans=1)
    decay, no_decay = param_groups(model, wd_bn_bias=False)
    one_d = {id(p) for p in model.parameters() if p.ndim == 1}
    assert {id(p) for p in no_decay["params"]} == one_d and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(p) for p in model.parameters()} - one_d
    assert len(one_d) == 2 * 19 + 1  # 19 BNs' scale and shift, and the fc bias
    opt = make_optimizer(model, resolve_config("modern"), torch.device("cpu"))
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 0.0]
    paper = make_optimizer(model, resolve_config("cifar-paper"), torch.device("cpu"))
    assert len(paper.param_groups) == 1 and paper.param_groups[0]["weight_decay"] == 1e-4


@pytest.mark.parametrize(("mixup", "cutmix"), [(0.2, 0.0), (0.0, 1.0), (0.2, 1.0)])
def test_mixup_and_cutmix_give_soft_targets_summing_to_one(mixup, cutmix):
    _, _, inner = _tiny_batches(batch_size=10)
    batches = MixedBatches(inner, batch_mixer(mixup, cutmix, 10), torch.device("cpu"), seed=3)
    for it in (0, 1, 7):
        x, y = batches.batch(it)
        x0, y0 = inner.batch(it)
        assert x.shape == x0.shape and y.shape == (10, 10) and y.dtype == torch.float32
        torch.testing.assert_close(y.sum(1), torch.ones(10))
        assert ((y > 0).sum(1) <= 2).all() and (y[torch.arange(10), y0] > 0).all()  # itself and its neighbour
        assert torch.equal(batches.batch(it)[0], x)  # batch `it` is a function of (seed, it): resumes replay it
    cpu_state = torch.get_rng_state()
    batches.batch(2)
    assert torch.equal(torch.get_rng_state(), cpu_state)  # the global generator is left as it was
    assert batch_mixer(0.0, 0.0, 10) is None
    model = _tiny_net()
    _, err = train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), x, y[:, :3].softmax(1), amp=False,
                        channels_last=False)
    assert 0 <= err.item() <= 1  # soft targets: the error counts misses of the dominant label


def test_modern_recipe_end_to_end_saves_the_winner(fmnist_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--recipe", "modern", "--data-dir", str(fmnist_dir), "--iterations", "20", "--batch-size",
                 "16", "--eval-every", "10", "--warmup-iters", "5", "--ema", "0.5", "--device", "cpu", "--quiet",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    winner = ckpt["best_weights"]
    assert winner in ("raw", "ema") and "ema" in ckpt
    assert f"the {'EMA of the' if winner == 'ema' else 'raw'} weights (better on validation)" in printed
    report = (out / "report.md").read_text()
    assert "Weights (`--ema 0.5`): the " in report and "for the EMA" in report
    saved, chosen = load_file(out / "model.safetensors"), load_file(out / winner / "model.safetensors")
    assert all(torch.equal(saved[k], chosen[k]) for k in saved)  # evaluate and predict read the winner
    rows = (out / "metrics.csv").read_text().splitlines()
    assert sum(r.startswith("eval_ema,") for r in rows) == sum(r.startswith("eval,") for r in rows) == 2
    assert main(["evaluate", str(out / "ema"), "--json"]) == 0  # its data: the run's, found from ema/


def test_modern_recipe_pieces_are_each_a_flag_and_refuse_bad_values():
    cfg = resolve_config("modern")
    assert (cfg.schedule, cfg.warmup_shape, cfg.label_smoothing, cfg.mixup, cfg.cutmix, cfg.wd_bn_bias, cfg.ema) == \
        ("cosine", "linear", 0.1, 0.2, 1.0, "off", 0.999)
    paper = resolve_config("cifar-paper")
    assert (paper.mixup, paper.cutmix, paper.wd_bn_bias, paper.ema, paper.warmup_shape) == (0, 0, "on", 0, "constant")
    assert resolve_config("modern", ema=0.0, mixup=0.0).ema == 0.0
    with pytest.raises(ReslabError, match=r"ema=1\.0"):
        resolve_config("cifar-paper", ema=1.0)
    with pytest.raises(ReslabError, match=r"warmup_below=0\.8"):
        resolve_config("cifar-paper", warmup_shape="linear", warmup_iters=10, warmup_below=0.8)
    with pytest.raises(ReslabError, match="wd_bn_bias='no'"):
        resolve_config("cifar-paper", wd_bn_bias="no")


def test_modern_recipe_kill_and_resume_is_bit_identical(fmnist_dir, tmp_path):
    """The EMA (and the mixed batches, the warm-up and cosine) resume bit for bit after a SIGKILL."""
    args = ["train", "--recipe", "modern", "--data-dir", str(fmnist_dir), "--iterations", "24", "--batch-size",
            "16", "--warmup-iters", "6", "--ema", "0.8", "--eval-every", "12", "--ckpt-every", "4", "--log-every",
            "4", "--device", "cpu", "--quiet"]
    full, killed = _run_cli_together(([*args, "--out", str(tmp_path / "full")], None),
                                     ([*args, "--out", str(tmp_path / "killed")], 18))
    assert full.returncode == 0, full.stderr
    assert killed.returncode == -signal.SIGKILL
    assert load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")["ema"]["n_averaged"] == 16
    resumed = _run_cli(["train", "--resume", str(tmp_path / "killed"), "--quiet"])
    assert resumed.returncode == 0, resumed.stderr
    for name in ("model.safetensors", "ema/model.safetensors", "raw/model.safetensors"):
        a, b = load_file(tmp_path / "full" / name), load_file(tmp_path / "killed" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    last = [load_checkpoint(tmp_path / r / "checkpoints" / "last.pt")["ema"] for r in ("full", "killed")]
    assert all(torch.equal(last[0][k], last[1][k]) for k in last[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_modern_step_runs_without_host_syncs():
    """On CUDA: mixed device-side batches, the soft-target step (fused SGD, two groups) and the EMA update
    make no host sync (torch.cuda.set_sync_debug_mode raises on one)."""
    dev = torch.device("cuda")
    data, aug, _ = _tiny_batches()
    aug.pixel_mean = aug.pixel_mean.to(dev)
    batches = MixedBatches(InMemoryBatches(data.to(dev), aug, batch_size=10, seed=3), batch_mixer(0.2, 1.0, 10),
                           dev, seed=3)
    model = create_model("resnet20", in_chans=1).to(dev).to(memory_format=torch.channels_last)
    opt, ema = make_optimizer(model, resolve_config("modern", **{**TINY, "device": "cuda"}), dev), Ema(model, 0.99)
    for it in range(2):  # first calls: allocations
        train_step(model, opt, *batches.batch(it), amp=True, channels_last=True, label_smoothing=0.1)
        ema.update()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for it in range(2, 6):
            train_step(model, opt, *batches.batch(it), amp=True, channels_last=True, label_smoothing=0.1)
            ema.update()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(torch.isfinite(v).all() for v in ema.module.state_dict().values() if v.is_floating_point())


def test_train_api_reports_the_winner(fmnist_dir, tmp_path):
    res = train(resolve_config("cifar-paper", data_dir=str(fmnist_dir), iterations=6, ema=0.5, out=str(tmp_path / "r"),
                               **TINY))
    assert res.weights in ("raw", "ema")
    assert train(resolve_config("cifar-paper", data_dir=str(fmnist_dir), iterations=3, out=str(tmp_path / "p"),
                                **TINY)).weights is None
