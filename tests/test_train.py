"""Training: the paper's schedules, checkpoints, kill-and-resume, divergence, end-to-end CLI."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from safetensors.torch import load_file

from reslab.cli import main
from reslab.errors import ReslabError
from reslab.evaluate import CPU_EVAL_CHUNK, metrics_from_probs, predict_probs, tensor_batches
from reslab.models.registry import create_model
from reslab.modes import eval_mode
from reslab.train import TrainingDiverged, resolve_config, train
from reslab.train.checkpoint import load_checkpoint, save_checkpoint
from reslab.train.schedule import Plateau, Schedule, WarmupRule, step_lr

TINY = dict(batch_size=16, log_every=5, quiet=True, device="cpu", workers=0)


def _lr(cfg, it):
    return step_lr(it, base_lr=cfg.lr, milestones=cfg.milestones, warmup_iters=cfg.warmup_iters,
                   warmup_lr=cfg.warmup_lr)


def test_cifar_paper_schedule():
    cfg = resolve_config("cifar-paper", model="resnet56")
    assert (cfg.batch_size, cfg.momentum, cfg.weight_decay, cfg.iterations) == (128, 0.9, 1e-4, 64_000)
    assert cfg.warmup_iters == 0
    values = {it: _lr(cfg, it) for it in (0, 399, 400, 31_999, 32_000, 47_999, 48_000, 63_999)}
    assert values == pytest.approx({0: 0.1, 399: 0.1, 400: 0.1, 31_999: 0.1, 32_000: 0.01, 47_999: 0.01,
                                    48_000: 0.001, 63_999: 0.001})


@pytest.mark.parametrize("model", ["resnet110", "resnet1202", "plain110"])
def test_resnet110_warms_up(model):
    cfg = resolve_config("cifar-paper", model=model)
    # Section 4.2: 0.01 "until the training error is below 80% (about 400 iterations)"
    assert cfg.warmup_iters == 400 and cfg.warmup_below == 0.8
    assert [_lr(cfg, it) for it in (0, 399, 400, 32_000, 48_000)] == pytest.approx([0.01, 0.01, 0.1, 0.01, 0.001])
    assert resolve_config("cifar-paper", model=model, warmup_iters=400).warmup_below is None  # a fixed count
    assert resolve_config("cifar-paper", model="resnet56").warmup_below is None


def test_warmup_rule_ends_below_the_error_or_at_the_cap():
    rule = WarmupRule(400, 0.8)
    errs = [0.9] * 5 + [0.7] * 20
    ended = [it for it, e in enumerate(errs) if rule.active(it) and rule.observe(it, e)]
    # the mean of the last 10 errors: 5 x 0.9 + 5 x 0.7 = 0.8 (not below) at it 9; 0.78 at it 10
    assert ended == [10] and rule.length == 11 and not rule.active(11)
    capped = WarmupRule(3, 0.8)
    assert [capped.observe(it, 0.9) for it in range(3)] == [False, False, True] and capped.length == 3
    assert WarmupRule(400).ended and not WarmupRule(400).active(0)  # a fixed count needs no observing
    # resuming from the saved state switches at the same iteration
    first = WarmupRule(400, 0.8)
    for it, e in enumerate(errs[:7]):
        first.observe(it, e)
    again = WarmupRule(**first.state())
    assert [it for it, e in enumerate(errs) if it >= 7 and again.active(it) and again.observe(it, e)] == [10]


def test_warmup_below_in_a_run(fmnist_dir, tmp_path):
    out = tmp_path / "run"
    cfg = resolve_config("cifar-paper", data_dir=str(fmnist_dir), iterations=40, milestones=(), warmup_iters=30,
                         warmup_below=0.85, out=str(out), **{**TINY, "log_every": 1})
    train(cfg)
    state = load_checkpoint(out / "checkpoints" / "last.pt")["warmup"]
    assert state["ended"] and 1 <= state["length"] < 30 and sum(state["recent"]) / len(state["recent"]) < 0.85
    lrs = [float(r.split(",")[3]) for r in (out / "metrics.csv").read_text().splitlines() if r.startswith("iter,")]
    assert lrs == [0.01] * state["length"] + [0.1] * (40 - state["length"])


@pytest.mark.parametrize(("flags", "needle"), [
    (dict(warmup_below=0.8, warmup_iters=0), "warmup_iters >= 1"), (dict(warmup_below=1.5), "warmup_below=1.5"),
])
def test_bad_warmup_names_value(flags, needle):
    with pytest.raises(ReslabError, match=needle):
        resolve_config("cifar-paper", **flags)


def test_imagenet_paper_recipe():
    cfg = resolve_config("imagenet-paper", model="resnet50")
    assert (cfg.batch_size, cfg.lr, cfg.schedule, cfg.iterations) == (256, 0.1, "plateau", 600_000)
    p = Plateau(0.1, patience=2)
    assert [p.step(e) for e in (0.5, 0.4, 0.41, 0.40)] == pytest.approx([0.1, 0.1, 0.1, 0.01])


def test_epochs_keep_milestone_fractions():
    cfg = resolve_config("cifar-paper", epochs=10)
    s = Schedule.from_config(cfg, steps_per_epoch=429)
    assert s.total == 4290 and s.milestones == (2145, 3218) and s.warmup_iters == 0
    cfg = resolve_config("cifar-paper", iterations=6400)
    assert cfg.milestones == (3200, 4800)


@pytest.mark.parametrize(("flags", "needle"), [
    (dict(lr=-1.0), "lr=-1.0"), (dict(batch_size=0), "batch_size=0"), (dict(schedule="linear"), "linear"),
    (dict(milestones=(10, 5)), "milestones"), (dict(amp="fp8"), "fp8"),
])
def test_bad_config_names_value(flags, needle):
    with pytest.raises(ReslabError, match="Received") as e:
        resolve_config("cifar-paper", **flags)
    assert needle in str(e.value)


def test_unknown_recipe():
    with pytest.raises(ReslabError, match="cifar-paper"):
        resolve_config("cifar-papr")


def test_metrics_against_hand_computed_values():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]])
    labels = torch.tensor([0, 1, 1, 2])
    r = metrics_from_probs(probs, labels, 3)
    assert r.top1_err == pytest.approx(0.5)  # rows 1 and 2 are wrong
    assert r.top5_err == 0.0  # k = min(5, classes) = 3: always right
    assert r.loss == pytest.approx(-(math.log(0.7) + math.log(0.3) + math.log(0.4) + math.log(0.6)) / 4)
    assert r.per_class_acc == pytest.approx([1.0, 0.0, 1.0])
    assert r.confusion.tolist() == [[1, 0, 0], [1, 0, 1], [0, 0, 1]]


def test_ten_crop_views_geometry():
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    (x, _), = list(tensor_batches(images, torch.arange(3), lambda t: t.float(), ten_crop_pad=4))
    assert x.shape == (3, 10, 1, 28, 28)
    torch.testing.assert_close(x[:, 4], images.float())  # the centre view of the padded image is the image
    torch.testing.assert_close(x[:, 9], images.float().flip(-1))  # and its mirror
    assert x[:, 0, :, :4, :4].eq(0).all()  # top-left corner view starts in the padding


def test_ten_crop_test_runs_in_cache_sized_forward_passes():
    """500 images in 10 crops are 5,000 views: on the CPU they go through the net CPU_EVAL_CHUNK at a time
    (2.8x faster on an EPYC Zen 4), with the same scores as one pass over them all."""
    torch.manual_seed(0)
    net = create_model("resnet20", num_classes=10, in_chans=1)
    sizes = []
    net.register_forward_pre_hook(lambda mod, args: sizes.append(len(args[0])))
    images = torch.randint(0, 256, (60, 1, 28, 28), dtype=torch.uint8)
    batches = list(tensor_batches(images, torch.arange(60) % 10, lambda t: t.float() / 255, batch_size=50,
                                  ten_crop_pad=4))
    probs, labels = predict_probs(net, batches, device=torch.device("cpu"))
    assert sizes == [CPU_EVAL_CHUNK, 500 - CPU_EVAL_CHUNK, 100]  # 50 and 10 images, 10 views each
    assert probs.shape == (60, 10) and labels.tolist() == (torch.arange(60) % 10).tolist()
    with eval_mode(net):
        whole = net(torch.cat([x.flatten(0, 1) for x, _ in batches])).softmax(1).view(60, 10, 10).mean(1)
    torch.testing.assert_close(probs, whole, rtol=1e-4, atol=1e-5)


def test_checkpoint_is_atomic(tmp_path):
    path = tmp_path / "ckpt" / "last.pt"
    save_checkpoint(path, {"iteration": 1, "w": torch.ones(3)})
    assert load_checkpoint(path)["iteration"] == 1
    with pytest.raises((AttributeError, RuntimeError, TypeError)):
        save_checkpoint(path, {"bad": lambda: 0})  # unpicklable: the old file must survive
    assert load_checkpoint(path)["iteration"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ReslabError, match=r"last\.pt"):
        load_checkpoint(path)


def test_train_end_to_end_cli(fmnist_dir, tmp_path, capsys):
    out = tmp_path / "run"
    # --amp off: `evaluate` runs fp32, so the training's own test pass must too for the two to agree exactly
    # (with bf16 autocast one of the 60 images can fall on the other side of a tie).
    rc = main(["train", "--data-dir", str(fmnist_dir), "--iterations", "40", "--batch-size", "16",
               "--eval-every", "20", "--log-every", "5", "--device", "cpu", "--quiet", "--amp", "off",
               "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "test accuracy" in text and "report.md" in text
    for name in ("config.json", "metrics.csv", "checkpoints/last.pt", "checkpoints/best.pt", "model.safetensors",
                 "model.json", "curves.png", "confusion.png", "report.md"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "resnet20" and config["resolved"]["iterations"] == 40
    assert config["resolved"]["milestones"] == [20, 30]  # 32k/48k of 64k, rescaled
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("kind,iteration") and any(r.startswith("eval,20") for r in rows)
    header = rows[0].split(",")
    test_err = float(next(r for r in rows if r.startswith("test,")).split(",")[header.index("test_err")])
    assert test_err < 0.7  # the learnable fake data is being learned: 10 classes, chance is 0.9
    meta = json.loads((out / "model.json").read_text())
    assert meta["classes"][0] == "T-shirt/top" and meta["preprocess"]["dataset"] == "fashion-mnist"

    assert main(["evaluate", str(out), "--data-dir", str(fmnist_dir), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["top1_err"] == pytest.approx(test_err, abs=1e-6) and res["n"] == 60
    assert (out / "confusion-test.png").is_file()
    assert main(["evaluate", str(out), "--data-dir", str(fmnist_dir), "--ten-crop", "--json"]) == 0


def test_evaluate_refuses_other_classes(fmnist_dir, tmp_path, capsys):
    out = tmp_path / "run"
    train(resolve_config("cifar-paper", data_dir=str(fmnist_dir), iterations=5, out=str(out), **TINY))
    meta = json.loads((out / "model.json").read_text())
    meta["classes"] = [f"c{i}" for i in range(10)]
    (out / "model.json").write_text(json.dumps(meta))
    assert main(["evaluate", str(out), "--data-dir", str(fmnist_dir)]) == 2
    err = capsys.readouterr().err
    assert "classes" in err and "c0" in err and len(err.strip().splitlines()) == 1


KILL_DRIVER = str(Path(__file__).with_name("killdriver.py"))


def _run_cli(args: list[str], kill_after: int | None = None) -> subprocess.CompletedProcess:
    return _run_cli_together((args, kill_after))[0]


def _run_cli_together(*runs: tuple[list[str], int | None]) -> list[subprocess.CompletedProcess]:
    """Independent `reslab` runs (args, kill_after) at the same time, one thread each, so that a test's
    uninterrupted run and its killed one keep the 2 cores busy together."""
    # One thread per process: bit identity does not depend on it, and it keeps the test fast on busy cores.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = []
    for args, kill_after in runs:
        # killdriver.py: `reslab train` that SIGKILLs itself after iteration `kill_after` (train's on_iteration_end).
        cmd = ["-m", "reslab", *args] if kill_after is None else [KILL_DRIVER, str(kill_after), "-1", *args[1:]]
        procs.append((cmd, subprocess.Popen([sys.executable, *cmd], env=env, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True)))
    done = []
    for cmd, proc in procs:
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for _, p in procs:
                p.kill()
            raise
        done.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    return done


@pytest.mark.parametrize("warmup", [[], ["--warmup-iters", "20", "--warmup-below", "0.6"]], ids=["plain", "warmup"])
def test_kill_and_resume_is_bit_identical(fmnist_dir, tmp_path, warmup):
    args = ["train", "--data-dir", str(fmnist_dir), "--iterations", "24", "--batch-size", "16", "--eval-every",
            "12", "--ckpt-every", "4", "--log-every", "4", "--device", "cpu", "--quiet", *warmup]
    full, killed = _run_cli_together(([*args, "--out", str(tmp_path / "full")], None),
                                     ([*args, "--out", str(tmp_path / "killed")], 18))
    assert full.returncode == 0, full.stderr
    assert killed.returncode == -signal.SIGKILL  # died mid-epoch (13 iterations per epoch), after iteration 18
    assert load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")["iteration"] == 16
    resumed = _run_cli(["train", "--resume", str(tmp_path / "killed"), "--quiet"])
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(tmp_path / "full" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = (tmp_path / "killed" / "metrics.csv").read_text().splitlines()
    iters = [r.split(",")[1] for r in rows if r.startswith("iter,")]
    assert len(iters) == len(set(iters))  # nothing logged twice after the resume


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_kill_and_resume_is_bit_identical_when_deterministic(fmnist_dir, tmp_path):
    """On CUDA with --deterministic (cuDNN without benchmark, cuBLAS's fixed workspace): killed after
    iteration 18 and resumed, a run ends with the same bits as an uninterrupted one."""
    args = ["train", "--data-dir", str(fmnist_dir), "--iterations", "24", "--batch-size", "16", "--eval-every",
            "12", "--ckpt-every", "4", "--log-every", "4", "--device", "cuda", "--deterministic", "--quiet"]
    full, killed = _run_cli_together(([*args, "--out", str(tmp_path / "full")], None),
                                     ([*args, "--out", str(tmp_path / "killed")], 18))
    assert full.returncode == 0, full.stderr
    assert killed.returncode == -signal.SIGKILL
    assert load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")["iteration"] == 16
    resumed = _run_cli(["train", "--resume", str(tmp_path / "killed"), "--quiet"])
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((tmp_path / "killed" / "config.json").read_text())["resolved"]["device"].startswith("cuda")
    a = load_file(tmp_path / "full" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_kernel_choice_is_restored_after_a_run():
    """--deterministic changes process-wide settings for the run only; CUDA runs get cudnn.benchmark."""
    from reslab.train.step import kernel_choice

    before = (torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled())
    with kernel_choice(torch.device("cpu"), True):
        assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    with kernel_choice(torch.device("cuda"), False):
        assert torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
    assert (torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled()) == before


def test_divergence_stops_with_iteration_and_keeps_checkpoint(fmnist_dir, tmp_path):
    out = tmp_path / "run"
    # Four sane warm-up iterations (each checkpointed), then an lr that blows the weights up.
    cfg = resolve_config("cifar-paper", data_dir=str(fmnist_dir), iterations=40, lr=1e12, milestones=(),
                         warmup_iters=4, warmup_lr=0.01, ckpt_every=1, out=str(out), **TINY)
    with pytest.raises(TrainingDiverged, match=r"iteration \d+") as e:
        train(cfg)
    assert "last.pt" in str(e.value)
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")  # the last good state is kept, and it is finite
    assert 4 <= ckpt["iteration"] < 40
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_missing_data_is_one_clear_line(tmp_path, monkeypatch, capsys):
    from reslab.data import datasets

    monkeypatch.setattr(datasets, "DEFAULT_ROOT", tmp_path / "nowhere")
    monkeypatch.setattr(datasets, "CACHE_ROOT", tmp_path / "cache")
    monkeypatch.delenv("RESLAB_DATA", raising=False)
    assert main(["train", "--data", "cifar10", "--iterations", "2", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cifar10" in err and "--download" in err


def test_resume_needs_a_run_dir(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "config.json" in capsys.readouterr().err


class _FakeWriter:
    calls: ClassVar[list] = []

    def __init__(self, logdir):
        self.calls.append(("init", logdir))

    def add_scalar(self, tag, value, step):
        self.calls.append((tag, value, step))

    def flush(self):
        pass

    def close(self):
        self.calls.append(("close",))


@pytest.fixture
def tensorboard_calls(monkeypatch) -> list:
    import types

    monkeypatch.setattr(_FakeWriter, "calls", [])
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=_FakeWriter))
    return _FakeWriter.calls


def test_metrics_go_to_tensorboard_when_installed(tmp_path, tensorboard_calls):
    from reslab.train.rundir import RunDir

    calls = tensorboard_calls
    run = RunDir(tmp_path)
    run.append_metrics({"kind": "iter", "iteration": 50, "lr": 0.1, "train_loss": 1.5, "train_err": 0.4})
    run.append_metrics({"kind": "eval", "iteration": 50, "val_err": 0.3})
    assert calls[0] == ("init", str(tmp_path / "tensorboard"))
    assert ("iter/train_err", 0.4, 50) in calls and ("eval/val_err", 0.3, 50) in calls
    assert len(run.read_metrics()) == 2


def test_a_run_closes_its_tensorboard_writer(fmnist_dir, tmp_path, tensorboard_calls):
    train(resolve_config("cifar-paper", data_dir=str(fmnist_dir), iterations=2, out=str(tmp_path / "r"), **TINY))
    assert tensorboard_calls[0][0] == "init" and tensorboard_calls[-1] == ("close",)


def test_a_plateau_run_that_stops_early_reports_its_real_length(fmnist_dir, tmp_path, monkeypatch):
    def divide(self, val_error):  # every evaluation a plateau: the run stops at its 4th evaluation
        self.lr *= self.gamma
        return self.lr

    monkeypatch.setattr(Plateau, "step", divide)
    out = tmp_path / "run"
    cfg = resolve_config("imagenet-paper", data_dir=str(fmnist_dir), iterations=40, eval_every=1, out=str(out),
                         **TINY)
    result = train(cfg)
    assert result.iterations == 4
    test_row = next(r for r in (out / "metrics.csv").read_text().splitlines() if r.startswith("test,"))
    assert test_row.split(",")[1] == "4"
    assert "for 4 iterations" in (out / "report.md").read_text()
    assert load_checkpoint(out / "checkpoints" / "best.pt")["iteration"] <= 4


def test_a_run_without_validation_says_it_tested_its_last_weights(fmnist_dir, tmp_path):
    """cifar-budget trains on the whole training set: nothing picks a checkpoint, and the report says so."""
    out = tmp_path / "run"
    train(resolve_config("cifar-budget", data_dir=str(fmnist_dir), iterations=4, out=str(out), **TINY))
    text = (out / "report.md").read_text()
    assert "with the last weights" in text and "lowest validation error" not in text


def test_googlenet_aux_logits_train_with_the_papers_weight(tmp_path):
    import copy

    import torch.nn.functional as F

    from reslab.models import create_model
    from reslab.train.step import train_step

    torch.manual_seed(0)
    model = create_model("googlenet_small", num_classes=10, aux_logits=True)
    ref = copy.deepcopy(model)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    torch.manual_seed(1)  # the same dropout draws in both forwards
    loss, err = train_step(model, torch.optim.SGD(model.parameters(), lr=0.0), x, y, amp=False, channels_last=False)
    torch.manual_seed(1)
    main_logits, aux1, aux2 = ref(x)
    expected = F.cross_entropy(main_logits, y) + 0.3 * (F.cross_entropy(aux1, y) + F.cross_entropy(aux2, y))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert err.item() == (main_logits.argmax(1) != y).float().mean().item()
    assert isinstance(model.eval()(x), torch.Tensor)  # evaluation sees the main logits only


def test_multiscale_test_on_image_folders(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from reslab.evaluate import evaluate_weights
    from reslab.models import create_model
    from reslab.weights import IMAGENET_PREPROCESS, save_weights

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("cat", "dog"):
            (tmp_path / "data" / split / c).mkdir(parents=True)
            for i in range(3):
                size = (40 + 8 * i, 32)  # sizes differ: the test must take whole images of any size
                Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(
                    tmp_path / "data" / split / c / f"{i}.png")
    model = create_model("resnet18", num_classes=2)
    save_weights(model.eval(), tmp_path / "w", model_name="resnet18", model_kwargs={"num_classes": 2},
                 classes=["cat", "dog"], preprocess={**IMAGENET_PREPROCESS, "dataset": "folder"})
    res, classes, png = evaluate_weights(tmp_path / "w", data_dir=str(tmp_path / "data"), multiscale=(32, 48))
    assert classes == ["cat", "dog"] and res.n == 6 and png.is_file() and math.isfinite(res.loss)
    assert main(["evaluate", str(tmp_path / "w"), "--data", "fashion-mnist", "--multiscale"]) == 2
    assert "multi-scale" in capsys.readouterr().err


def _tiny_batches(batch_size: int = 10, world: int = 1):
    from reslab.data.augment import BatchAugment
    from reslab.data.datasets import InMemoryDataset, per_pixel_mean
    from reslab.train.batches import InMemoryBatches

    g = torch.Generator().manual_seed(0)
    data = InMemoryDataset(torch.randint(0, 256, (50, 1, 8, 8), dtype=torch.uint8, generator=g),
                           torch.arange(50) % 10, [str(i) for i in range(10)])
    aug = BatchAugment(std=(0.3,), mode="pixel-mean", pixel_mean=per_pixel_mean(data.images), pad=2)
    return data, aug, InMemoryBatches(data, aug, batch_size=batch_size, seed=3, world=world)


def test_batches_normalised_once_have_the_bits_of_per_batch_normalising():
    from reslab.data.augment import crop_flip
    from reslab.train.batches import _seed

    data, aug, batches = _tiny_batches()
    for it in (0, 7):
        x, y = batches.batch(it)
        idx = batches.indices(it)
        expected = crop_flip(aug.normalize(data.images[idx]), 2, aug.sample(10, torch.Generator().manual_seed(
            _seed(3, it, 1))))
        assert torch.equal(x, expected) and torch.equal(y, data.labels[idx])


def test_a_batch_the_processes_cannot_share_is_a_user_error():
    with pytest.raises(ReslabError, match="--batch-size 10"):
        _tiny_batches(batch_size=10, world=3)
    with pytest.raises(ReslabError, match="--batch-size 60"):
        _tiny_batches(batch_size=60)


def test_schedule_state_round_trips_and_old_checkpoints_load():
    cfg = resolve_config("cifar-paper", model="resnet110", iterations=6400)
    s = Schedule.from_config(cfg, steps_per_epoch=429)
    assert [s.lr(it) for it in (0, 399, 400, 3199, 3200, 4800)] == pytest.approx([0.01, 0.01, 0.1, 0.1, 0.01, 0.001])
    for it in range(5):
        if s.observing(it):
            s.observe(it, 0.5)  # below 80% from the start: the warm-up ends after 1 iteration
    assert s.warmup_iters == 1 and s.lr(1) == 0.1
    again = Schedule.from_config(cfg, steps_per_epoch=429)
    again.load_state_dict({"warmup": s.warmup.state(), "plateau": None})  # the checkpoint keys of before
    assert again.warmup_iters == 1 and again.state_dict() == s.state_dict()


def test_epochs_and_iterations_rescale_by_one_rule():
    # The warm-up keeps its length in iterations under either (no cap at a tenth of the run).
    by_iters = Schedule.from_config(resolve_config("cifar-paper", model="resnet110", iterations=1287), 429)
    by_epochs = Schedule.from_config(resolve_config("cifar-paper", model="resnet110", epochs=3), 429)
    assert by_iters.total == by_epochs.total == 1287
    assert by_iters.milestones == by_epochs.milestones == (644, 965)
    assert by_iters.warmup_iters == by_epochs.warmup_iters == 400


@pytest.mark.slow
def test_a_compiled_step_follows_the_eager_step():
    """torch.compile (mode default) on CPU: the same losses as eager, within float tolerance (about
    two minutes of compiling on the busy project machine)."""
    import copy

    from torch import nn

    from reslab.train.step import compile_model, train_step

    torch.manual_seed(0)
    eager = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 10))
    model = copy.deepcopy(eager)
    compiled = compile_model(model, "default")
    assert compiled is not model
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (model, eager)]
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    for _ in range(3):
        a, _ = train_step(compiled, opts[0], x, y, amp=False, channels_last=False)
        b, _ = train_step(eager, opts[1], x, y, amp=False, channels_last=False)
        assert a.item() == pytest.approx(b.item(), rel=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_step_runs_without_host_syncs(fmnist_dir, tmp_path):
    """On CUDA: a short run trains (fused SGD, bf16, channels_last), and the steps between log lines
    make no host sync (torch.cuda.set_sync_debug_mode raises on one)."""
    from reslab.models import create_model
    from reslab.train.batches import InMemoryBatches
    from reslab.train.distributed import Dist
    from reslab.train.step import Window, make_optimizer, train_step

    cfg = resolve_config("cifar-paper", data_dir=str(fmnist_dir), iterations=20, out=str(tmp_path / "r"),
                         **{**TINY, "device": "cuda"})
    assert train(cfg).test is not None
    dev = torch.device("cuda")
    data, aug, _ = _tiny_batches()
    aug.pixel_mean = aug.pixel_mean.to(dev)
    batches = InMemoryBatches(data.to(dev), aug, batch_size=10, seed=3)
    model = create_model("resnet20", in_chans=1).to(dev).to(memory_format=torch.channels_last)
    opt, window = make_optimizer(model, cfg, dev), Window(4, dev, 0)
    train_step(model, opt, *batches.batch(0), amp=True, channels_last=True)  # first call: allocations
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for it in range(1, 5):
            window.add(*train_step(model, opt, *batches.batch(it), amp=True, channels_last=True))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(window.read(Dist())[0]).all()


def test_old_configs_load_with_sync_bn_and_compile_moved():
    from reslab.train.config import TrainConfig

    old = TrainConfig.from_dict({"model_kwargs": {"sync_bn": True, "shortcut": "B"}, "compile": True})
    assert old.sync_bn is True and old.model_kwargs == {"shortcut": "B"} and old.compile == "default"
    assert resolve_config("cifar-paper", compile=False).compile == "off"
    with pytest.raises(ReslabError, match="compile='fast'"):
        resolve_config("cifar-paper", compile="fast")


def test_a_failing_compile_warns_and_trains_eager(tmp_path, monkeypatch):
    """torch.compile fails at the first call, not when wrapped: with inductor pointed at a missing C++
    compiler (and a fresh cache, so nothing compiled before is reused), the step warns once and trains
    the eager model, with the same result as an eager step."""
    import copy

    import torch._inductor.config as inductor_config
    from torch import nn

    from reslab.train.step import CompileFallback, compile_model, train_step

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    monkeypatch.setattr(inductor_config, "fx_graph_cache", False)
    monkeypatch.setattr(inductor_config.cpp, "cxx", (str(tmp_path / "no-such-g++"),))
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = nn.Sequential(nn.Conv2d(1, 5, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 7 * 7, 3))
    model = copy.deepcopy(eager)
    stepper = compile_model(model, "default")
    assert isinstance(stepper, CompileFallback) and stepper.compiled_ok
    opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (model, eager)]
    x, y = torch.randn(4, 1, 7, 7), torch.randint(0, 3, (4,))
    with pytest.warns(UserWarning, match="torch.compile failed .*training in eager mode"):
        a, _ = train_step(stepper, opts[0], x, y, amp=False, channels_last=False)
    assert not stepper.compiled_ok
    b, _ = train_step(eager, opts[1], x, y, amp=False, channels_last=False)
    assert torch.equal(a, b)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), eager.parameters(), strict=True))
    torch._dynamo.reset()


def test_the_test_error_has_its_own_column_and_old_runs_still_read(fmnist_dir, tmp_path):
    from reslab.train.rundir import RunDir, test_error

    out = tmp_path / "run"
    result = train(resolve_config("cifar-paper", data_dir=str(fmnist_dir), iterations=4, out=str(out), **TINY))
    rows = RunDir(out).read_metrics()
    test = next(r for r in rows if r["kind"] == "test")
    assert test["val_err"] == "" and float(test["test_err"]) == pytest.approx(result.test.top1_err, abs=1e-6)
    assert test_error(rows) == pytest.approx(result.test.top1_err, abs=1e-6)
    old = [{"kind": "eval", "iteration": "4", "val_err": "0.5"}, {"kind": "test", "iteration": "4", "val_err": "0.25"}]
    assert test_error(old) == 0.25 and test_error(old[:1]) is None  # a run written before the column
