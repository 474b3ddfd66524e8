"""`reslab bench serve` (issue 30): correctness against the fp32 model whatever path each run serves, `--path auto`
resolved once by the offline step, and ResNet-50 set up end to end. The load runs themselves (servers started as
subprocesses) are tests/test_serve.py's; here they are replaced where the test is about the plan around them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("httpx", reason="the serve extra is not installed (pip install 'reslab[serve]')")
pytest.importorskip("starlette", reason="the serve extra is not installed (pip install 'reslab[serve]')")

import reslab.serve.bench as bench_mod
from reslab.cli import build_parser
from reslab.deploy.images import image_mode, load_image, preprocess_image
from reslab.deploy.predict import expand_inputs, predict
from reslab.serve.app import ServeConfig
from reslab.serve.bench import (
    BenchConfig,
    _summarise,
    agreement,
    bench_serve,
    photos,
    print_report,
    resolve_servers,
    served_path,
)
from reslab.weights import load_weights, read_metadata

from fakedata import tiny_weights
from robust_util import one_line_error

PRE = {"image_size": 32, "in_chans": 3, "mode": "channel", "mean": [0.5, 0.4, 0.3], "std": [0.25, 0.25, 0.25],
       "resize": None, "crop": 32}
REFERENCE = [{"class": "cat", "prob": 0.80}, {"class": "dog", "prob": 0.55}]  # the fp32 answers for photos 0, 1


def _run(records: list[dict], planned: int | None = None) -> dict:
    return {"name": "batched", "path": "bf16-compiled", "max_batch": 32, "wall_s": 2.0, "records": records,
            "planned": len(records) if planned is None else planned, "mean_batch": 4.0, "server_cpu_s": 1.0,
            "rss_mb_start": 100.0, "rss_mb_end": 100.0, "stayed_up": True, "exit_code": 0}


def _good(photo: int, top1: str, prob: float, status: int = 200) -> dict:
    record = {"kind": "good", "photo": photo, "status": status, "latency_s": 0.1}
    return {**record, "top1": top1, "prob": prob} if status == 200 else record


def test_answers_of_two_reduced_precision_paths_that_keep_fp32s_top1_are_all_correct():
    # bf16 and int8 move the probabilities by more than 1e-3 (the old test against the offline engine failed
    # them all), but every top-1 is fp32's: all correct, and the largest move is reported on its own.
    bf16 = _summarise(_run([_good(0, "cat", 0.78), _good(1, "dog", 0.56), _good(0, "cat", 0.80)]), REFERENCE)
    int8 = _summarise(_run([_good(0, "cat", 0.83), _good(1, "dog", 0.51)]), REFERENCE)
    assert (bf16["good_ok"], bf16["good_correct"]) == (3, 3) and bf16["max_dprob"] == pytest.approx(0.02)
    assert (int8["good_ok"], int8["good_correct"]) == (2, 2) and int8["max_dprob"] == pytest.approx(0.04)
    assert not bf16["cut_by_time_limit"]


def test_a_flipped_top1_is_counted_wrong_and_its_probability_is_not_compared():
    run = _summarise(_run([_good(0, "cat", 0.80), _good(1, "cat", 0.50), _good(1, "dog", 0.549),
                           _good(0, "", 0.0, status=503)]), REFERENCE)
    assert (run["good"], run["good_ok"], run["good_correct"]) == (4, 3, 2)
    # 0.05 would be the flipped answer's |0.50 - 0.55|: a different class's probability is not a difference
    assert run["max_dprob"] == pytest.approx(0.001)
    assert run["statuses"]["good"] == {"200": 3, "503": 1}


def test_no_agreeing_answer_has_no_probability_difference_and_a_cut_run_says_so():
    run = _summarise(_run([_good(0, "dog", 0.9)], planned=10), REFERENCE)
    assert (run["good_correct"], run["max_dprob"], run["cut_by_time_limit"]) == (0, None, True)
    assert agreement([], []) == (0, None)


@pytest.mark.parametrize("name, path", [("bf16-compiled", "bf16-compiled"), ("int8-torchao", "int8-torchao"),
                                        ("onnxruntime", "onnxruntime"), ("bf16 (compile failed)", "bf16"),
                                        ("channels-last (compile failed)", "channels-last"),
                                        ("openvino (bf16)", "openvino"), ("openvino (fp32)", "openvino"),
                                        ("mystery", None)])
def test_served_path_names_the_path_that_builds_the_offline_engine_again(name, path):
    assert served_path(name) == path


@pytest.fixture()
def calib_dir(tmp_path) -> Path:
    folder = tmp_path / "calib"
    folder.mkdir()
    for i, data in enumerate(photos(5, size=(40, 30))):
        (folder / f"img{i}.JPG").write_bytes(data)
    return folder


def test_auto_is_resolved_once_and_the_servers_run_the_offline_choice(calib_dir, tmp_path):
    lines: list[str] = []
    config = ServeConfig(weights="w", path="auto", calib=str(calib_dir))
    served = resolve_servers(config, "int8-ort", tmp_path, server_auto=False, log=lines.append)
    assert served.path == "int8-ort" and lines == ["path auto resolved to int8-ort (offline choice); servers run "
                                                   "int8-ort"]
    # auto calibrated int8 on every other --calib image: the servers get those, in the same order
    assert [f.read_bytes() for f in expand_inputs([served.calib])] == [
        f.read_bytes() for f in expand_inputs([calib_dir])[0::2]]
    assert served.calib != str(calib_dir) and len(list(calib_dir.iterdir())) == 5  # the user's folder untouched


def test_a_resolved_fp32_or_bf16_path_keeps_the_calib_folder_and_fastest_is_resolved_too(calib_dir, tmp_path):
    config = ServeConfig(weights="w", path="auto", calib=str(calib_dir))
    assert resolve_servers(config, "bf16 (compile failed)", tmp_path, server_auto=False, log=print) == ServeConfig(
        weights="w", path="bf16", calib=str(calib_dir))
    fastest = ServeConfig(weights="w", path="fastest")
    assert resolve_servers(fastest, "compiled", tmp_path, server_auto=False, log=print).path == "compiled"


def test_server_auto_and_a_named_path_leave_the_servers_config_alone(tmp_path):
    lines: list[str] = []
    auto = ServeConfig(weights="w", path="auto")
    assert resolve_servers(auto, "int8-ort", tmp_path, server_auto=True, log=lines.append) is auto
    assert "servers resolve auto themselves (--server-auto)" in lines[0]
    named = ServeConfig(weights="w", path="onnxruntime")
    assert resolve_servers(named, "onnxruntime", tmp_path, server_auto=False, log=lines.append) is named
    assert resolve_servers(auto, "mystery", tmp_path, server_auto=False, log=lines.append) is auto
    assert len(lines) == 2 and "'mystery' is not a --path name" in lines[1]


def test_bench_serve_measures_one_path_and_checks_every_answer_against_fp32_eager(tmp_path, monkeypatch, capsys):
    """The real offline step on a ResNet-20 with --path auto; the load runs replaced by a fake that records
    the config each server would start with and answers every photo with fp32's top-1 (prob moved by 0.01)."""
    weights = tiny_weights(tmp_path / "w", PRE)
    started: list[ServeConfig] = []
    model, meta = load_weights(weights)
    files = []
    for i, data in enumerate(photos()):
        files.append(tmp_path / f"p{i}.jpg")
        files[-1].write_bytes(data)
    fp32 = [r["topk"][0] for r in predict((model, meta), files, topk=1, path="eager")]

    def fake_load_run(name, config, bench, photo_bytes, hostile, folder):
        started.append(config)
        records = [_good(i % len(fp32), fp32[i % len(fp32)]["class"], fp32[i % len(fp32)]["prob"] - 0.01)
                   for i in range(bench.requests)]
        return {**_run(records), "name": name, "path": config.path, "max_batch": config.max_batch}

    monkeypatch.setattr(bench_mod, "_load_run", fake_load_run)
    monkeypatch.delenv("COLUMNS", raising=False)  # the table at its full width, no cell cut
    lines: list[str] = []
    report = bench_serve(BenchConfig(server=ServeConfig(weights=str(weights), path="auto", max_batch=4),
                                     requests=12, concurrency=2), log=lines.append)
    off = report["offline"]
    assert report["reference"] == "fp32 eager" and off["reference"] == fp32  # the reference is the eager model
    assert off["top1_agree"] == len(fp32) and off["max_dprob"] < 1e-3  # an fp32 path agrees with eager
    assert [c.path for c in started] == [off["path"]] * 2 and report["servers_path"] == off["path"] != "auto"
    assert f"path auto resolved to {off['path']} (offline choice); servers run {off['path']}" in lines
    assert [(r["good_correct"], r["good"]) for r in report["runs"]] == [(12, 12), (12, 12)]
    assert report["runs"][0]["max_dprob"] == pytest.approx(0.01)
    print_report(report)
    out = capsys.readouterr().out
    assert "12, 12 of 12" in out and " 0.01 " in out and "max |dp|" in out and f"servers {off['path']}" in out
    assert "top-1 class is the fp32 eager model's" in " ".join(out.split())


def test_bench_serve_flags_defaults_and_a_server_auto_without_a_rule_to_resolve(capsys):
    args = build_parser().parse_args(["bench", "serve"])
    assert (args.model, args.path, args.requests, args.time_limit, args.server_auto) == (
        "resnet50", "auto", 640, 120.0, False)
    assert build_parser().parse_args(["bench", "serve", "--server-auto"]).server_auto
    one_line_error(capsys, ["bench", "serve", "--path", "onnxruntime", "--server-auto"], "--server-auto",
                   "--path onnxruntime", "drop --server-auto")


def test_resnet50_random_weights_see_the_benchmark_photos_at_224(tmp_path):
    """`bench serve --model resnet50` without --weights: ImageNet's preprocessing, 1000 classes, and the 320x240
    photos cropped to the 224x224 the model was built for."""
    weights = bench_mod._random_weights("resnet50", tmp_path)
    meta = read_metadata(weights)
    pre = meta["preprocess"]
    assert meta["model"] == "resnet50" and len(meta["classes"]) == 1000
    x = preprocess_image(load_image(io.BytesIO(photos(1)[0]), mode=image_mode(pre)), pre)
    assert x.shape == (3, 224, 224) and torch.isfinite(x).all()


@pytest.mark.slow
def test_bench_serve_resnet50_end_to_end(tmp_path, capsys):
    """The whole command on ResNet-50 with random weights, small: the offline engine and two real servers
    (3-4 min on 2 shared cores, so marked slow); every answer agrees with fp32 and every server exits 0."""
    from reslab.cli import main

    out = tmp_path / "r50.json"
    assert main(["bench", "serve", "--model", "resnet50", "--path", "auto", "--max-batch", "8", "--requests", "8",
                 "--concurrency", "4", "--time-limit", "120", "--out", str(out), "--json"]) == 0
    report = json.loads(out.read_text())
    assert report["model"] == "resnet50" and report["servers_path"] == report["offline"]["path"] != "auto"
    assert report["offline"]["top1_agree"] == report["offline"]["photos"] == 8
    for run in report["runs"]:
        assert run["path"] == report["servers_path"] and (run["good_ok"], run["good_correct"]) == (8, 8)
        assert run["stayed_up"] and run["exit_code"] == 0 and run["server_5xx"] == 0
    assert f"path auto resolved to {report['servers_path']}" in capsys.readouterr().err
