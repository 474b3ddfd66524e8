"""Weights on disk: the reslab format round trip and foreign checkpoints (torchvision, timm, .pth)."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from reslab.cli import main
from reslab.errors import ReslabError
from reslab.models import create_model
from reslab.weights import (
    META_FILE,
    WEIGHTS_FILE,
    convert,
    load_checkpoint_state,
    load_into,
    load_weights,
    save_weights,
)

from fakedata import randomise_bn

PRE = {"image_size": 32, "in_chans": 3, "mode": "pixel-mean", "std": [0.25, 0.25, 0.25], "resize": None, "crop": 32}




@pytest.fixture(scope="module")
def tv_resnet18() -> torch.nn.Module:
    torch.manual_seed(0)
    return randomise_bn(torchvision.models.resnet18(weights=None))


def _logits(model: torch.nn.Module, size: int = 64) -> torch.Tensor:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        return model.eval()(x)


# ---------------------------------------------------------------------------- reslab format
def test_save_load_round_trip_with_mean_image(tmp_path):
    model = randomise_bn(create_model("resnet20"))
    mean_image = torch.rand(3, 32, 32)
    out = save_weights(model, tmp_path / "w", model_name="resnet20", model_kwargs={"num_classes": 10},
                       classes=[f"c{i}" for i in range(10)], preprocess={**PRE, "mean_image": mean_image})
    assert out == tmp_path / "w"
    assert sorted(p.name for p in out.iterdir()) == [META_FILE, WEIGHTS_FILE]  # no temp files left
    meta_json = json.loads((out / META_FILE).read_text())
    assert meta_json["format"] == "reslab-weights" and meta_json["version"] == 1
    assert meta_json["model"] == "resnet20" and meta_json["model_kwargs"] == {"num_classes": 10}
    assert "mean_image" not in meta_json["preprocess"] and meta_json["preprocess"]["std"] == PRE["std"]

    for where in (out, out / WEIGHTS_FILE):
        loaded, meta = load_weights(where)
        assert not loaded.training
        assert torch.equal(meta["preprocess"]["mean_image"], mean_image)
        assert meta["classes"][3] == "c3"
        for k, v in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[k], v), k
        assert torch.equal(_logits(loaded, 32), _logits(model, 32))


def test_load_weights_errors_name_the_path(tmp_path):
    with pytest.raises(ReslabError, match="no such file"):
        load_weights(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReslabError, match=r"empty: no model.safetensors"):
        load_weights(tmp_path / "empty")
    out = save_weights(create_model("resnet20"), tmp_path / "w", model_name="resnet20", model_kwargs={},
                       classes=[str(i) for i in range(10)], preprocess=PRE)
    (out / META_FILE).write_text("{not json")
    with pytest.raises(ReslabError, match=r"model.json: not valid JSON"):
        load_weights(out)
    (out / META_FILE).unlink()
    with pytest.raises(ReslabError, match=r"model.json: missing"):
        load_weights(out)


def test_load_weights_rejects_state_of_another_model(tmp_path):
    out = save_weights(create_model("resnet20"), tmp_path, model_name="resnet20", model_kwargs={},
                       classes=[str(i) for i in range(10)], preprocess=PRE)
    meta = json.loads((out / META_FILE).read_text())
    (out / META_FILE).write_text(json.dumps({**meta, "model": "resnet32"}))
    with pytest.raises(ReslabError, match=r"weights do not match resnet32"):
        load_weights(out)


# ---------------------------------------------------------------------------- foreign checkpoints
@pytest.mark.parametrize("wrap", ["plain", "model", "state_dict", "model_state", "ddp", "safetensors", "legacy"])
def test_torchvision_checkpoint_loads_strictly(tmp_path, tv_resnet18, wrap):
    state = tv_resnet18.state_dict()
    path = tmp_path / ("ckpt.safetensors" if wrap == "safetensors" else "ckpt.pth")
    if wrap == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    elif wrap == "ddp":
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    elif wrap == "legacy":
        torch.save(state, path, _use_new_zipfile_serialization=False)
    else:
        torch.save(state if wrap == "plain" else {wrap: state, "optimizer": {"lr": 0.1}}, path)
    net = create_model("resnet18")
    load_into(net, load_checkpoint_state(path))
    assert torch.equal(_logits(net), _logits(tv_resnet18))


def test_torchvision_resnet50_loads_strictly(tmp_path):
    torch.manual_seed(0)
    tv = randomise_bn(torchvision.models.resnet50(weights=None))
    torch.save({"model": tv.state_dict()}, tmp_path / "r50.pth")
    net = create_model("resnet50")
    load_into(net, load_checkpoint_state(tmp_path / "r50.pth"))
    assert torch.equal(_logits(net), _logits(tv))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_timm_checkpoint_loads_strictly(tmp_path, name):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    ref = randomise_bn(timm.create_model(name, pretrained=False))
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, tmp_path / "timm.pth")
    net = create_model(name)
    load_into(net, load_checkpoint_state(tmp_path / "timm.pth"))
    assert torch.allclose(_logits(net), _logits(ref), atol=1e-5)


class _Payload:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused_without_running(tmp_path, how):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"state_dict": {"fc.weight": torch.zeros(2, 2)}, "extra": _Payload(str(marker))}
    if how == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    with pytest.raises(ReslabError) as err:
        load_checkpoint_state(path)
    msg = str(err.value)
    assert "evil.pth is not a plain weights file: it would run code when unpickled" in msg
    assert "\n" not in msg
    assert not marker.exists()


def test_broken_and_unknown_checkpoints(tmp_path):
    (tmp_path / "junk.pth").write_bytes(os.urandom(256))
    with pytest.raises(ReslabError, match=r"junk.pth"):
        load_checkpoint_state(tmp_path / "junk.pth")
    (tmp_path / "w.h5").write_bytes(b"x")
    with pytest.raises(ReslabError, match=r"w.h5: unknown checkpoint type"):
        load_checkpoint_state(tmp_path / "w.h5")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pth")
    with pytest.raises(ReslabError, match=r"meta.pth: no state dict found"):
        load_checkpoint_state(tmp_path / "meta.pth")


def test_classifier_mismatch_names_both_shapes_and_finetune_keeps_fresh_head(tmp_path, tv_resnet18):
    torch.save(tv_resnet18.state_dict(), tmp_path / "r18.pth")
    net = create_model("resnet18", num_classes=10)
    with pytest.raises(ReslabError, match=r"fc.weight: checkpoint \(1000, 512\) vs model \(10, 512\); pass "
                                          r"finetune=True"):
        load_into(net, load_checkpoint_state(tmp_path / "r18.pth"))
    fresh_fc = net.fc.weight.detach().clone()
    load_into(net, load_checkpoint_state(tmp_path / "r18.pth"), finetune=True)
    assert torch.equal(net.fc.weight, fresh_fc)
    assert torch.equal(net.layer4[1].conv2.weight, tv_resnet18.layer4[1].conv2.weight)
    with torch.inference_mode():
        feats = net.eval().forward_head(net.forward_features(torch.ones(1, 3, 64, 64)), pre_logits=True)
        ref = torch.flatten(tv_resnet18.avgpool(torch.nn.Sequential(*list(tv_resnet18.children())[:-2])(
            torch.ones(1, 3, 64, 64))), 1)
    assert torch.allclose(feats, ref, atol=1e-5)


def test_other_key_mismatches_list_keys(tv_resnet18):
    with pytest.raises(ReslabError, match=r"missing layer1.2.conv1.weight.*unexpected \(none\)"):
        load_into(create_model("resnet34"), tv_resnet18.state_dict())
    with pytest.raises(ReslabError, match=r"differ in shape"):
        load_into(create_model("resnet50"), tv_resnet18.state_dict())


def test_old_checkpoint_without_bn_counters_loads(tv_resnet18):
    state = {k: v for k, v in tv_resnet18.state_dict().items() if not k.endswith("num_batches_tracked")}
    net = create_model("resnet18")
    load_into(net, state)
    assert torch.equal(_logits(net), _logits(tv_resnet18))


def test_convert_writes_imagenet_preprocess(tmp_path, tv_resnet18):
    torch.save({"model": tv_resnet18.state_dict()}, tmp_path / "r18.pth")
    out = convert(tmp_path / "r18.pth", model="resnet18", out_dir=tmp_path / "w")
    model, meta = load_weights(out)
    # a kept 1000-class classifier is ImageNet's: its names, in torchvision's (and timm's) order
    assert meta["model_kwargs"] == {"num_classes": 1000} and meta["classes"][:2] == ["tench", "goldfish"]
    assert meta["classes"][281] == "tabby" and len(meta["classes"]) == 1000
    pre = meta["preprocess"]
    assert (pre["resize"], pre["crop"], pre["mode"]) == (256, 224, "channel")
    assert pre["mean"] == [0.485, 0.456, 0.406] and pre["std"] == [0.229, 0.224, 0.225]
    assert torch.equal(_logits(model), _logits(tv_resnet18))
    with pytest.raises(ReslabError, match=r"r18.pth: fc.weight: checkpoint \(1000, 512\) vs model \(5, 512\)"):
        convert(tmp_path / "r18.pth", model="resnet18", out_dir=tmp_path / "w5", num_classes=5)
    out5 = convert(tmp_path / "r18.pth", model="resnet18", out_dir=tmp_path / "w5", finetune=True,
                   classes=["a", "b", "c", "d", "e"])
    assert load_weights(out5)[1]["classes"] == ["a", "b", "c", "d", "e"]


def test_cli_convert(tmp_path, tv_resnet18, capsys):
    torch.save({"state_dict": tv_resnet18.state_dict()}, tmp_path / "r18.pth")
    (tmp_path / "names.txt").write_text("\n".join(f"n{i}" for i in range(10)) + "\n")
    assert main(["convert", str(tmp_path / "r18.pth"), "--model", "resnet18", "--out", str(tmp_path / "w")]) == 0
    assert "model.safetensors" in capsys.readouterr().out
    assert torch.equal(_logits(load_weights(tmp_path / "w")[0]), _logits(tv_resnet18))

    argv = ["convert", str(tmp_path / "r18.pth"), "--model", "resnet18", "--out", str(tmp_path / "w10"),
            "--classes", str(tmp_path / "names.txt")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "r18.pth" in err and "--finetune" in err
    assert main([*argv, "--finetune"]) == 0
    assert load_weights(tmp_path / "w10")[1]["classes"][9] == "n9"


def test_convert_of_junk_bytes_names_the_file_and_what_to_do(tmp_path, capsys):
    junk = tmp_path / "bad.pth"
    junk.write_text("junk\n")  # torch's unpickler fails on it with a bare KeyError(174812789)
    assert main(["convert", str(junk), "--model", "resnet20", "--out", str(tmp_path / "w")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"{junk}: not a readable PyTorch checkpoint (KeyError" in line and "download it again" in line
