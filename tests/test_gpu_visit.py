"""scripts/gpu_visit.py: a GPU visit's part runs end to end on the CPU at a tiny size, and packs what it keeps."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_visit.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_visit", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_part1_runs_end_to_end_on_the_cpu_and_unpacks_into_results(fmnist_dir, tmp_path):
    """The same steps as on the GPU (env, the CUDA tests, bench train, the 64k run cut to 12 iterations),
    packed into two files whose tarball unpacks as docs/results/gpu-part1/."""
    out, work = tmp_path / "out", tmp_path / "visits"
    env = {**os.environ, "RESLAB_DATA": str(fmnist_dir), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), "part1", "--out", str(out), "--device", "cpu",
                           "--iterations", "12", "--budget-s", "400", "--work", str(work), "--fresh"],
                          capture_output=True, text=True, env=env, timeout=500)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["part1.tar.gz"]  # one file
    results = tmp_path / "docs" / "results"
    unpacked = subprocess.run([sys.executable, str(SCRIPT), "unpack", str(out / "part1.tar.gz"), "--results",
                               str(results)], capture_output=True, text=True)
    assert unpacked.returncode == 0, unpacked.stderr
    part = results / "gpu-part1"
    visit = json.loads((part / "visit-part1.json").read_text())
    assert [(s["step"], s["rc"]) for s in visit["steps"]] == [("tests", 0), ("bench-eager", 0), ("resnet20-64k", 0)]
    assert visit["notes"]["compile"] == "off" and visit["notes"]["env"]["cuda_available"] is False
    run = part / "runs" / "resnet20-64k"
    for name in ("metrics.csv", "config.json", "model.safetensors", "model.json", "report.md", "curves.png"):
        assert (run / name).is_file(), name
    assert not list(part.rglob("*.pt"))  # a finished run's checkpoints stay behind
    assert json.loads((run / "config.json").read_text())["resolved"]["iterations"] == 12
    assert (part / "bench-train-eager.json").is_file() and (part / "logs" / "tests.log").is_file()
    assert "passed" in (part / "logs" / "tests.log").read_text()
    assert "resnet20-64k: rc 0" in (part / "logs" / "visit-part1.log").read_text()


def test_the_pack_keeps_an_unfinished_runs_checkpoint_and_drops_the_rest(tmp_path):
    gv = _module()
    work = tmp_path / "gpu-x"
    done, cut = work / "runs" / "done", work / "runs" / "cut"
    for run in (done, cut):
        (run / "checkpoints").mkdir(parents=True)
        for name in ("checkpoints/last.pt", "checkpoints/best.pt", "metrics.csv", "config.json"):
            (run / name).write_text("x")
    (done / "model.safetensors").write_text("w")
    (work / "runs" / "done" / "scratch.bin").write_text("?")
    (work / "old.md").write_text("from an earlier visit")
    v = gv.Visit("x", tmp_path / "out", work, "cpu", 10, time.monotonic() + 60, tiny=True)
    v.seeded = {"old.md": gv._stamp(work / "old.md")}  # what the visit started from is not packed again
    gv.pack(v)
    with tarfile.open(tmp_path / "out" / "x.tar.gz") as tar:
        names = set(tar.getnames())
    assert "gpu-x/runs/cut/checkpoints/last.pt" in names  # a later visit resumes it
    assert "gpu-x/runs/done/checkpoints/last.pt" not in names and not any(n.endswith("best.pt") for n in names)
    assert {"gpu-x/runs/done/model.safetensors", "gpu-x/runs/done/metrics.csv", "gpu-x/visit-x.json"} <= names
    assert "gpu-x/runs/done/scratch.bin" not in names and "gpu-x/old.md" not in names


def test_a_step_over_its_time_is_stopped_and_the_next_one_runs(tmp_path):
    gv = _module()
    v = gv.Visit("x", tmp_path / "out", tmp_path / "gpu-x", "cpu", 10, time.monotonic() + 60, tiny=True)
    v.work.mkdir()
    slow = gv.step(v, "slow", [sys.executable, "-c", "import time; time.sleep(60)"], cap_s=2, need_s=1)
    fast = gv.step(v, "fast", [sys.executable, "-c", "print('ok')"], cap_s=20, need_s=1)
    assert slow["timed_out"] and slow["seconds"] < 20 and fast["rc"] == 0
    skipped = gv.step(v, "late", [sys.executable, "-c", "pass"], cap_s=20, need_s=10_000)
    assert skipped["rc"] is None and "needs at least" in skipped["skipped"]
    assert (tmp_path / "out" / "x.tar.gz").is_file()  # packed after each step


def test_campaign_parts_continue_from_what_earlier_visits_left(fmnist_dir, tmp_path, monkeypatch):
    """degradation at 6 iterations, then degradation-deeper from the unpacked folder: the 20/56 runs are
    read back (not retrained, not packed again) and only depth 32's runs come back."""
    results = tmp_path / "results"
    monkeypatch.setenv("RESLAB_DATA", str(fmnist_dir))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    def visit(part: str, depths: str) -> Path:
        out = tmp_path / f"out-{part}"
        gv = _module()
        gv.PARTS[part] = (part, "gpu-campaign", [lambda v: gv.step_experiment(v, part, "degradation",
                                                                               "--depths", depths)])
        argv = [part, "--out", str(out), "--device", "cpu", "--iterations", "6", "--work", str(tmp_path / part),
                "--results", str(results)]
        assert gv.main(argv) == 0
        assert gv.unpack([str(f) for f in out.glob("*.tar*")], results) == 0
        with tarfile.open(out / f"{part}.tar.gz") as tar:
            return {n.split("/runs/")[1].split("/")[0] for n in tar.getnames() if "/runs/" in n}

    assert visit("degradation", "20,56") == {"plain20-s0", "resnet20-s0", "plain56-s0", "resnet56-s0"}
    assert visit("degradation-deeper", "20,32,56") == {"plain32-s0", "resnet32-s0"}
    folder = results / "gpu-campaign" / "degradation"
    assert json.loads((folder / "experiment.json").read_text())["config"]["depths"] == [20, 32, 56]
    assert all((folder / part / "summary.md").is_file() for part in ("degradation", "degradation-deeper"))
    assert not list(folder.rglob("*.pt"))
