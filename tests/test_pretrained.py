"""Pretrained weights by name (reslab.pretrained), the first convolution's channel adaptation, and folder data
that fits the data (--image-size, --val-fraction), end to end without a network: the tests place files of the
real names and formats (random weights) in a temporary torch hub / Hugging Face cache."""

from __future__ import annotations

import json
import os

import pytest
import timm
import torch
import torchvision
from huggingface_hub import constants
from safetensors.torch import save_file

import reslab
from reslab import pretrained
from reslab.cli import main
from reslab.data.folder import held_out_samples
from reslab.errors import ReslabError
from reslab.models import create_model
from reslab.weights import adapt_first_conv, load_into, load_weights

from robust_util import image_folder


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty torch hub and Hugging Face caches, offline: a download fails at once (a proxy that refuses)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # the discard port: nothing listens, urllib fails at once
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    return tmp_path


def place_torchvision(name: str = "torchvision:resnet18") -> pretrained.Pretrained:
    """torchvision's file name for `name` in the torch hub cache, holding random weights."""
    p = pretrained.resolve(name)
    p.cache_path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1)
    torch.save(getattr(torchvision.models, p.model)().state_dict(), p.cache_path)
    return p


def place_timm(name: str = "timm:resnet18.a1_in1k") -> pretrained.Pretrained:
    """The Hugging Face cache layout as hf_hub_download leaves it: refs/main -> snapshots/<commit>/model.safetensors."""
    p = pretrained.resolve(name)
    repo = p.cache_path.parents[2]
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    save_file(timm.create_model(p.model).state_dict(), repo / "snapshots" / commit / "model.safetensors")
    return p


def test_names_resolve_to_files_urls_classes_and_preprocessing(caches):
    tv = pretrained.resolve("torchvision:resnet50")  # the default: the best ImageNet weights
    assert tv.name == "torchvision:resnet50.IMAGENET1K_V2" and tv.url.endswith("/resnet50-11ad3fa6.pth")
    assert tv.cache_path == caches / "torch" / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth"
    assert tv.preprocess["resize"] == 232 and tv.preprocess["crop"] == 224 and tv.classes[281] == "tabby"
    assert pretrained.resolve("torchvision:resnet50.IMAGENET1K_V1").preprocess["resize"] == 256
    tm = pretrained.resolve("timm:resnet18.a1_in1k")
    assert tm.model == "resnet18" and tm.url == "https://huggingface.co/timm/resnet18.a1_in1k/resolve/main/model.safetensors"
    assert tm.preprocess["resize"] == 235 and tm.classes[0] == "tench"  # floor(224 / crop_pct 0.95)
    for bad, needle in (("torchvision:resnet51", "torchvision has no model 'resnet51'"),
                        ("torchvision:resnet50.IMAGENET9K", "ResNet50_Weights has no weights 'IMAGENET9K'; choose one "
                                                            "of IMAGENET1K_V1, IMAGENET1K_V2"),
                        ("torchvision:vit_b_16", "reslab has no network 'vit_b_16'"),
                        ("timm:resnet18.no_such_tag", "timm has no pretrained weights 'resnet18.no_such_tag'")):
        with pytest.raises(ReslabError, match=needle):
            pretrained.resolve(bad)


def test_empty_cache_error_names_the_file_its_url_and_where_to_place_it(caches, tmp_path, capsys):
    image_folder(tmp_path / "photos", n=2)
    for name, file, url in (
            ("torchvision:resnet18", caches / "torch/hub/checkpoints/resnet18-f37072fd.pth",
             "https://download.pytorch.org/models/resnet18-f37072fd.pth"),
            ("timm:resnet18.a1_in1k", caches / "hf/hub/models--timm--resnet18.a1_in1k/snapshots/main/model.safetensors",
             "https://huggingface.co/timm/resnet18.a1_in1k/resolve/main/model.safetensors")):
        args = ["train", "--init", name, "--model", "resnet18", "--data", "folder", "--data-dir",
                str(tmp_path / "photos"), "--iterations", "1", "--batch-size", "2", "--out", str(tmp_path / "run")]
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert f"{file.name} is not in the cache" in err and f"download {url} and place it at {file}" in err, err
    # placing the file where the message says makes it work (the Hugging Face one without refs/main)
    file.parent.mkdir(parents=True)
    save_file(timm.create_model("resnet18").state_dict(), file)
    _, meta = load_weights("timm:resnet18.a1_in1k")
    assert meta["model"] == "resnet18" and len(meta["classes"]) == 1000


def test_named_weights_load_as_the_library_builds_them(caches):
    place_torchvision()
    place_timm()
    x = torch.randn(2, 3, 64, 64)
    for name, ref in (("torchvision:resnet18", torchvision.models.resnet18()), ("timm:resnet18.a1_in1k",
                                                                                timm.create_model("resnet18"))):
        _, state = pretrained.state_dict(name)
        ref.load_state_dict(state)
        model, meta = load_weights(name)
        with torch.inference_mode():
            assert torch.allclose(model(x), ref.eval()(x), atol=1e-4)
        assert meta["classes"][281] == "tabby" and meta["preprocess"]["mean"] == [0.485, 0.456, 0.406]
    net = reslab.create_model("resnet18", pretrained=True, num_classes=3)  # torchvision's default weights
    assert net.fc.out_features == 3 and not net.training
    with pytest.raises(ReslabError, match="are weights of resnet18, not resnet34"):
        reslab.create_model("resnet34", pretrained="torchvision:resnet18")


def test_train_from_torchvision_and_timm_names_on_a_folder(caches, tmp_path, capsys):
    place_torchvision()
    place_timm()
    photos = image_folder(tmp_path / "photos", classes=("cat", "dog", "fox"), n=4, splits=("all",), size=40) / "all"
    for name in ("torchvision:resnet18", "timm:resnet18.a1_in1k"):
        out = tmp_path / name.replace(":", "-")
        assert main(["train", "--init", name, "--model", "resnet18", "--data", "folder", "--data-dir", str(photos),
                     "--val-fraction", "0.25", "--image-size", "32", "--recipe", "finetune", "--iterations", "3",
                     "--batch-size", "4", "--workers", "0", "--quiet", "--out", str(out)]) == 0
        err = capsys.readouterr().err
        assert "classifier fc (1000 outputs) replaced by a new one for the data's 3 classes" in err
        meta = json.loads((out / "model.json").read_text())
        assert meta["classes"] == ["cat", "dog", "fox"] and meta["preprocess"]["crop"] == 32
        assert meta["preprocess"]["val_fraction"] == 0.25
        cfg = json.loads((out / "config.json").read_text())
        assert cfg["init"] == name and cfg["data_dir"] == str(photos)


def test_image_size_defaults_to_the_named_weights_own(caches, tmp_path):
    from reslab.train.config import resolve_config
    from reslab.train.data import folder_geometry

    geo = folder_geometry(resolve_config("finetune", data="folder", init="torchvision:resnet50"))
    assert (geo.image_size, geo.resize, geo.scale_range) == (224, 232, (256, 480))
    geo = folder_geometry(resolve_config("finetune", data="folder", init="torchvision:resnet50", image_size=112))
    assert (geo.image_size, geo.resize, geo.scale_range) == (112, 128, (128, 240))  # the paper's ratios
    with pytest.raises(ReslabError, match=r"image_size=64 is for folder data"):
        resolve_config(image_size=64)


@pytest.mark.parametrize("have, want", [(1, 3), (3, 1)])
def test_first_conv_adaptation_keeps_the_response_to_a_grey_image(have, want):
    torch.manual_seed(0)
    source, target = create_model("resnet18", in_chans=have), create_model("resnet18", in_chans=want)
    notes = load_into(target, source.state_dict())
    assert len(notes) == 1 and f"trained on {have}-channel images, the model takes {want}" in notes[0]
    grey = torch.rand(2, 1, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(source.conv1(grey.expand(-1, have, -1, -1)), target.conv1(grey.expand(-1, want, -1, -1)),
                              atol=1e-5)
        assert torch.allclose(source.eval()(grey.expand(-1, have, -1, -1)),
                              target.eval()(grey.expand(-1, want, -1, -1)), atol=1e-4)


def test_a_stem_of_another_shape_is_an_error_naming_the_cause():
    state = create_model("resnet20", in_chans=1).state_dict()
    assert adapt_first_conv(dict(state), create_model("resnet18").state_dict()) == []  # another stem: not adapted
    with pytest.raises(ReslabError, match=r"conv1.weight: checkpoint \(16, 1, 3, 3\) vs model \(64, 3, 7, 7\).*the "
                                          r"first convolution differs in output channels and input channels and "
                                          r"kernel: another stem"):
        load_into(create_model("resnet18"), state)


def test_a_grey_run_initialises_an_rgb_folder_run(fmnist_dir, tmp_path, capsys):
    assert main(["train", "--data-dir", str(fmnist_dir), "--iterations", "2", "--batch-size", "16", "--quiet",
                 "--out", str(tmp_path / "grey")]) == 0
    folder = image_folder(tmp_path / "photos", n=4, size=32)
    assert main(["train", "--init", str(tmp_path / "grey"), "--data", "folder", "--data-dir", str(folder),
                 "--image-size", "32", "--iterations", "2", "--batch-size", "4", "--workers", "0", "--quiet",
                 "--out", str(tmp_path / "rgb")]) == 0
    err = capsys.readouterr().err
    assert "conv1.weight was trained on 1-channel images, the model takes 3: its weights repeated" in err


def test_val_fraction_holds_out_each_class_reproducibly(tmp_path):
    root = image_folder(tmp_path / "p", classes=("a", "b"), n=10, splits=("x",), size=8) / "x"
    one, again, other = (held_out_samples(root, 0.3, seed) for seed in (0, 0, 1))
    assert one == again and one["val"] != other["val"]
    assert [sum(c == k for _, c in one["val"]) for k in (0, 1)] == [3, 3] and len(one["train"]) == 14
    assert not {f for f, _ in one["val"]} & {f for f, _ in one["train"]}
    assert "test" not in one  # reported as validation


def test_the_last_partial_batch_is_said_once_and_finetune_without_init_warns(tmp_path, capsys):
    folder = image_folder(tmp_path / "photos", n=5, size=32)  # 10 training images, batch 4: 2 dropped
    assert main(["train", "--recipe", "finetune", "--data", "folder", "--data-dir", str(folder), "--image-size",
                 "32", "--iterations", "3", "--batch-size", "4", "--workers", "0", "--quiet", "--ema", "0.99",
                 "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert err.count("2 of the 10 training images are left out of each epoch") == 1, err
    assert "reslab train: --recipe finetune without --init trains a randomly initialised network" in err
    assert "reslab train: --ema 0.99 averages over about 100 iterations, but the run has 3" in err


def test_evaluate_a_folder_run_from_python_in_another_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image_folder(tmp_path / "photos", n=4, size=32)
    cfg = reslab.resolve_config(data="folder", data_dir="photos", model="resnet20", image_size=32, iterations=2,
                                batch_size=4, workers=0, quiet=True, out="run")
    assert cfg.data_dir == str(tmp_path / "photos")  # stored absolute
    named = reslab.resolve_config(model="resnet20", init="torchvision:resnet18", out="x")
    assert named.init == "torchvision:resnet18"  # a name stays a name
    assert reslab.resolve_config(model="resnet20", init="runs/a", out="x").init == str(tmp_path / "runs" / "a")
    reslab.train(cfg)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chdir(elsewhere)
    res, classes, _ = reslab.evaluate(tmp_path / "run")
    assert res.n == 8 and classes == ["cat", "dog"]
    with pytest.raises(ReslabError, match=r"exists; pass overwrite=True to replace it"):
        reslab.export(tmp_path / "run", format="torchscript", out=str(tmp_path / "run" / "model.safetensors"))


def test_predict_and_convert_take_named_weights(caches, tmp_path, capsys):
    place_torchvision()
    image_folder(tmp_path / "img", n=1, splits=("x",), size=40)
    assert main(["predict", "torchvision:resnet18", str(tmp_path / "img"), "--json", "--topk", "2"]) == 0
    rows = json.loads(capsys.readouterr().out)["results"]
    assert len(rows) == 2 and len(rows[0]["topk"]) == 2 and not rows[0]["topk"][0]["class"].isdigit()
    assert main(["convert", "torchvision:resnet18", "--out", str(tmp_path / "w")]) == 0
    meta = json.loads((tmp_path / "w" / "model.json").read_text())
    assert meta["model"] == "resnet18" and meta["classes"][281] == "tabby" and meta["preprocess"]["resize"] == 256
