"""Fine-tuning (train/finetune.py): --init, --freeze, the head-then-all phases, resume mid-phase, class names."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file

from reslab.cli import main
from reslab.data.classnames import imagenet_classes
from reslab.models import create_model
from reslab.modes import eval_mode
from reslab.train import loop, resolve_config, train
from reslab.train.checkpoint import load_checkpoint
from reslab.train.finetune import init_weights
from reslab.weights import convert, load_weights
from test_train import TINY, _run_cli, _run_cli_together  # the kill-and-resume driver

from fakedata import randomise_bn, tiny_weights

STEPS_PER_EPOCH = 13  # the fake Fashion-MNIST's 240 images less the held-out ones, batch 16


@pytest.fixture(scope="module")
def pretrained(fmnist_dir, tmp_path_factory) -> Path:
    """A ResNet-20 run of 5 iterations on the fake Fashion-MNIST: the weights the tests fine-tune."""
    out = tmp_path_factory.mktemp("pretrained") / "run"
    train(resolve_config("cifar-paper", data_dir=str(fmnist_dir), iterations=5, out=str(out), **TINY))
    return out


def _tv_checkpoint(path: Path, num_classes: int) -> Path:
    torch.manual_seed(0)
    torch.save(randomise_bn(torchvision.models.resnet18(weights=None, num_classes=num_classes)).state_dict(), path)
    return path


def _image_folder(root: Path, classes: tuple[str, ...] = ("ant", "bee", "cat")) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


def _train_args(fmnist_dir: Path, out: Path, *flags: str) -> list[str]:
    return ["train", "--data-dir", str(fmnist_dir), "--batch-size", "16", "--log-every", "4", "--device", "cpu",
            "--workers", "0", "--quiet", "--out", str(out), *flags]


def test_init_from_a_torchvision_checkpoint_starts_at_the_converted_models_logits(tmp_path, monkeypatch):
    ckpt = _tv_checkpoint(tmp_path / "r18.pth", num_classes=3)
    converted, _ = load_weights(convert(ckpt, model="resnet18", out_dir=tmp_path / "converted"))
    probe = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    seen = {}

    class Stop(Exception):
        pass

    def first_step(model, *args, **kwargs):  # the loop's first train_step: look at the model, then stop
        with eval_mode(model):
            seen["logits"] = model(probe)
        raise Stop

    monkeypatch.setattr(loop, "train_step", first_step)
    cfg = resolve_config("cifar-paper", model="resnet18", data="folder", data_dir=str(_image_folder(tmp_path / "d")),
                         init=str(ckpt), iterations=4, batch_size=3, amp="off", channels_last="off", quiet=True,
                         device="cpu", workers=0, out=str(tmp_path / "run"))
    with pytest.raises(Stop):
        train(cfg)
    with eval_mode(converted):
        assert torch.equal(seen["logits"], converted(probe))


def test_a_classifier_of_another_shape_is_replaced_and_the_body_loads(tmp_path):
    ckpt = _tv_checkpoint(tmp_path / "r18.pth", num_classes=1000)
    reference, _ = load_weights(convert(ckpt, model="resnet18", out_dir=tmp_path / "converted"))
    model = create_model("resnet18", num_classes=3)
    fresh_fc = model.fc.weight.clone()
    notice, names = init_weights(model, ckpt, ["ant", "bee", "cat"])
    assert notice is not None and "fc (1000 outputs) replaced" in notice and "3 classes" in notice and names is None
    assert torch.equal(model.fc.weight, fresh_fc)
    x = torch.randn(2, 3, 64, 64)
    with eval_mode(model), eval_mode(reference):
        assert torch.equal(model.forward_head(model.forward_features(x), pre_logits=True),
                           reference.forward_head(reference.forward_features(x), pre_logits=True))
    kept = create_model("resnet18")  # a kept 1000-class head carries ImageNet's names
    assert init_weights(kept, ckpt, [f"n{i:08d}" for i in range(1000)]) == (None, imagenet_classes())
    # reslab weights name their classes: a head of the same shape for other classes is replaced too
    weights = tiny_weights(tmp_path / "w", {"mode": "channel", "mean": [0.5] * 3, "std": [0.25] * 3, "in_chans": 3,
                                            "image_size": 32, "resize": None, "crop": 32})
    same = [f"class{i}" for i in range(10)]
    assert init_weights(create_model("resnet20"), weights, same) == (None, None)
    notice, _ = init_weights(create_model("resnet20"), weights, [f"other{i}" for i in range(10)])
    assert notice is not None and "fc (10 outputs for other classes) replaced" in notice


def test_frozen_parameters_and_bn_statistics_do_not_change(fmnist_dir, tmp_path, pretrained):
    assert main(_train_args(fmnist_dir, tmp_path / "run", "--init", str(pretrained), "--iterations", "8",
                            "--freeze", "stem,layer1", "--eval-every", "4")) == 0
    before, after = load_file(pretrained / "model.safetensors"), load_file(tmp_path / "run" / "model.safetensors")
    frozen = [k for k in before if k.split(".")[0] in ("conv1", "bn1", "layer1")]
    assert any("running_mean" in k for k in frozen) and any("num_batches_tracked" in k for k in frozen)
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert not torch.equal(before["layer2.0.bn1.running_mean"], after["layer2.0.bn1.running_mean"])
    assert not torch.equal(before["layer3.0.conv1.weight"], after["layer3.0.conv1.weight"])
    groups = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["optimizer"]["param_groups"]
    assert [g["stage"] for g in groups] == ["layer2", "layer3", "fc"]  # the frozen stages are not in the optimiser


def test_the_head_trains_alone_until_exactly_head_epochs_then_everything(fmnist_dir, tmp_path, pretrained,
                                                                        monkeypatch):
    seen = []
    real = loop.train_step

    def recording_step(model, opt, *args, **kwargs):
        out = real(model, opt, *args, **kwargs)
        grads = (model.conv1.weight.grad is not None, model.fc.weight.grad is not None)
        seen.append((grads[0], model.layer3[0].bn1.training, grads[1], [g["lr"] for g in opt.param_groups]))
        return out

    monkeypatch.setattr(loop, "train_step", recording_step)
    cfg = resolve_config("cifar-paper", data_dir=str(fmnist_dir), init=str(pretrained), iterations=20, head_epochs=1,
                         lr_decay_per_stage=0.5, milestones=(), out=str(tmp_path / "run"), **TINY)
    train(cfg)
    head = [(False, False, True)] * STEPS_PER_EPOCH
    assert [s[:3] for s in seen] == head + [(True, True, True)] * (20 - STEPS_PER_EPOCH)
    assert seen[-1][3] == pytest.approx([0.1 * 0.5 ** i for i in (4, 3, 2, 1, 0)])  # stem .. fc


def test_a_run_killed_in_either_phase_resumes_bit_identically(fmnist_dir, tmp_path, pretrained):
    flags = ("--init", str(pretrained), "--iterations", "20", "--head-epochs", "1", "--lr-decay-per-stage", "0.5",
             "--ckpt-every", "4", "--eval-every", "10")
    run = tmp_path / "killed"
    # Killed in the head phase (13 iterations) after iteration 10, then again after the switch, after 18.
    full, killed = _run_cli_together((_train_args(fmnist_dir, tmp_path / "full", *flags), None),
                                     (_train_args(fmnist_dir, run, *flags), 10))
    assert full.returncode == 0, full.stderr
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 8
    killed = _run_cli(["train", "--resume", str(run), "--quiet"], kill_after=18)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 16
    resumed = _run_cli(["train", "--resume", str(run), "--quiet"])
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(run / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_finetune_recipe():
    cfg = resolve_config("finetune")
    assert (cfg.lr, cfg.schedule, cfg.epochs, cfg.head_epochs, cfg.lr_decay_per_stage) == (0.01, "cosine", 10, 1, 0.5)
    assert resolve_config("finetune", iterations=500).epochs is None  # a length in iterations replaces the epochs


@pytest.mark.parametrize("flags, needle", [
    (["--freeze", "layer9"], "'layer9': resnet20 has no stage 'layer9'; name some of its stages "
                             "stem,layer1,layer2,layer3,fc"),
    (["--freeze", "stem,layer1,layer2,layer3,fc"], "freezes every stage"),
    (["--head-epochs", "2"], "--head-epochs 2 is 26 iterations, not shorter than the run's 20"),
    (["--classes", "three.txt"], "3 names (a, b, c) for data of 10 classes"),
    (["--init", "r18.pth"], "conv1.weight: checkpoint (64, 3, 7, 7) vs model (16, 1, 3, 3) ... the first "
                            "convolution differs in output channels and input channels and kernel: another stem ... "
                            "--model must name the network"),
    (["--init", "missing"], "--init ... /missing: no such file or directory; pass a run or weights directory"),
], ids=["freeze-unknown", "freeze-all", "head-epochs", "classes", "init-architecture", "init-missing"])
def test_bad_input_is_one_line_naming_the_value(fmnist_dir, tmp_path, monkeypatch, capsys, flags, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "three.txt").write_text("a\nb\n\nc\n")
    _tv_checkpoint(tmp_path / "r18.pth", num_classes=1000)
    assert main(_train_args(fmnist_dir, tmp_path / "run", "--iterations", "20", *flags)) == 2
    err = capsys.readouterr().err.strip()
    assert all(part in err for part in needle.split(" ... ")) and len(err.splitlines()) == 1, err


def test_class_names_from_a_file_in_train_and_predict(fmnist_dir, tmp_path, pretrained, capsys):
    names = [f"kind {i}" for i in range(10)]
    (tmp_path / "names.json").write_text(json.dumps(names))
    assert main(_train_args(fmnist_dir, tmp_path / "run", "--init", str(pretrained), "--iterations", "2",
                            "--classes", str(tmp_path / "names.json"))) == 0
    assert json.loads((tmp_path / "run" / "model.json").read_text())["classes"] == names
    Image.fromarray(np.full((28, 28), 120, dtype=np.uint8)).save(tmp_path / "x.png")
    (tmp_path / "upper.txt").write_text("\n".join(n.upper() for n in names))
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "x.png"), "--json", "--classes",
                 str(tmp_path / "upper.txt")]) == 0
    top = json.loads(capsys.readouterr().out)["results"][0]["topk"]
    assert {t["class"] for t in top} <= {n.upper() for n in names}
    (tmp_path / "two.txt").write_text("a\nb\n")
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "x.png"), "--classes",
                 str(tmp_path / "two.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--classes gives 2 names" in err and "10 outputs" in err and len(err.splitlines()) == 1


def test_the_init_notice_is_printed_once_by_train_lr_find_and_by_lr_find(fmnist_dir, tmp_path, pretrained, capsys,
                                                                         monkeypatch):
    # 5 of the weights' 10 classes: --init replaces the classifier and says so. `train --lr find` loads the
    # weights twice (its sweep, then the run): the notice is the run's, once. The sweep's length is not what is
    # tested: its shortest (80 s of the suite with the default 100 iterations, next to another worker).
    monkeypatch.setattr("reslab.train.lrfind.AUTO_ITERATIONS", 10)
    replaced = "classifier fc (10 outputs for other classes) replaced by a new one for the data's 5 classes"
    assert main(_train_args(fmnist_dir, tmp_path / "run", "--init", str(pretrained), "--iterations", "2",
                            "--subset-classes", "0-4", "--lr", "find")) == 0
    err = capsys.readouterr().err
    assert err.count(replaced) == 1 and "reslab train: lr-find suggests" in err, err
    assert err.index("lr-find suggests") < err.index(replaced)  # the run's set-up, after its sweep
    assert main(["lr-find", "--data-dir", str(fmnist_dir), "--init", str(pretrained), "--subset-classes", "0-4",
                 "--iterations", "12", "--batch-size", "16", "--device", "cpu", "--quiet",
                 "--out", str(tmp_path / "lf")]) == 0
    assert capsys.readouterr().err.count(replaced) == 1  # a sweep of its own still says it
