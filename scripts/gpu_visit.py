#!/usr/bin/env python3
"""One GPU visit of the paper's campaign: run one named part within a wall budget, pack what is worth keeping.

A lent GPU machine (docs/gpu.md) comes with python3 and torch but no registry, no data and no reslab
install, gives each command at most 10 minutes and brings back at most 8 files. So a visit is one
command, from the repository root:

    RESLAB_DATA=.data python3 scripts/gpu_visit.py part1 --out "$OUT" --budget-s 540

It runs the part's steps in order, each as its own process (`python3 -m reslab ...` with src/ on the
path: nothing is installed) under a timeout cut from what is left of the budget, and after every step
packs the part's folder into `<out>/<part>.tar.gz` plus a plain `<out>/<part>.log`: two files, so a
visit stopped at any point still brings back every step that finished. A step that fails or runs out
of time is recorded and the next one runs. The tarball unpacks into docs/results/ (its members are
`gpu-<part>/...`):

    tar -xzf <part>.tar.gz -C docs/results/

Packed: summaries, tables, figures, experiment.json, bench JSONs and PNGs, each run's metrics.csv,
config.json, report.md, curves and final weights; no checkpoints, except the last.pt of a run that did
not finish (so a later visit can resume it). A part whose folder already sits in docs/results/ (an
earlier visit's, unpacked and committed) starts from it: finished runs are read back, not retrained.

On the CPU, `--device cpu --iterations 20` runs the same steps at a tiny size (tests/test_gpu_visit.py).
Stdlib only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAPER_ITERS = 64_000
PACK_LIMIT = 15 * 2**20  # the device tool brings back files of at most 16 MiB
PACK_RESERVE_S = 20  # seconds of the budget kept for the last pack


@dataclass
class Visit:
    part: str
    out: Path  # where the two files go ($OUT)
    work: Path  # the part's folder, packed as gpu-<part>/
    device: str
    iterations: int  # per training run: the paper's 64000, or a tiny count on the CPU
    deadline: float  # time.monotonic() by which the last pack must be done
    tiny: bool
    steps: list[dict] = field(default_factory=list)
    notes: dict = field(default_factory=dict)
    log_lines: list[str] = field(default_factory=list)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def say(self, text: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')} {self.left():6.0f}s left] {text}"
        print(line, flush=True)
        self.log_lines.append(line)


def reslab(*args: str) -> list[str]:
    return [sys.executable, "-m", "reslab", *args]


def env() -> dict[str, str]:
    e = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
             PYTHONUNBUFFERED="1", COLUMNS="120")
    if "RESLAB_DATA" not in e and (ROOT / ".data").is_dir():
        e["RESLAB_DATA"] = str(ROOT / ".data")
    return e


def step(v: Visit, name: str, cmd: list[str], *, cap_s: float, need_s: float = 10,
         watch: Callable[[], str] | None = None) -> dict:
    """Run `cmd` (log: work/logs/<name>.log) for at most min(cap_s, what the budget leaves); record it."""
    log = v.work / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    limit = min(cap_s, v.left() - PACK_RESERVE_S)
    rec = {"step": name, "command": " ".join(cmd), "limit_s": round(limit, 1)}
    if limit < need_s:
        rec.update(rc=None, skipped=f"{max(limit, 0):.0f} s left, the step needs at least {need_s:.0f} s")
        v.say(f"{name}: skipped ({rec['skipped']})")
        v.steps.append(rec)
        return rec
    v.say(f"{name}: start (limit {limit:.0f} s): {rec['command']}")
    t0 = time.monotonic()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=v.work, env=env(), stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own group: a timeout stops its children too
        next_note = t0 + 30
        while proc.poll() is None:
            now = time.monotonic()
            if now - t0 > limit:
                _stop(proc)
                rec["timed_out"] = True
                break
            if watch is not None and now >= next_note:
                v.say(f"{name}: {watch()}")
                next_note = now + 30
            time.sleep(0.5)
    rec.update(rc=proc.returncode, seconds=round(time.monotonic() - t0, 1))
    tail = log.read_text(errors="replace").splitlines()[-3:]
    v.say(f"{name}: rc {proc.returncode} after {rec['seconds']} s{' (TIMED OUT)' if rec.get('timed_out') else ''}"
          + "".join(f"\n    | {t[:200]}" for t in tail))
    v.steps.append(rec)
    pack(v)
    return rec


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


# ---------------------------------------------------------------------------------------------- the steps

def step_env(v: Visit) -> None:
    """nvidia-smi and the versions: what every figure of the visit ran on."""
    probe = ("import json, platform, torch, torchvision; d = {'python': platform.python_version(), "
             "'torch': torch.__version__, 'torchvision': torchvision.__version__, 'cuda': torch.version.cuda, "
             "'cudnn': torch.backends.cudnn.version(), 'cuda_available': torch.cuda.is_available()}\n"
             "if torch.cuda.is_available():\n"
             "    p = torch.cuda.get_device_properties(0); d.update(gpu=p.name, sm=f'{p.major}.{p.minor}', "
             "multiprocessors=p.multi_processor_count, memory_gib=round(p.total_memory / 2**30, 1))\n"
             "print(json.dumps(d))")
    info = {"cpu": _cpu_model(), "cores": os.cpu_count(), "host_python": platform.python_version()}
    try:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env())
        info.update(json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else
                    {"probe_error": out.stderr.strip()[-500:]})
    except (subprocess.TimeoutExpired, IndexError, json.JSONDecodeError) as e:
        info["probe_error"] = repr(e)
    smi = shutil.which("nvidia-smi")
    if smi:
        q = subprocess.run([smi], capture_output=True, text=True, timeout=60)
        (v.work / "nvidia-smi.txt").write_text(q.stdout + q.stderr)
    v.notes["env"] = info
    v.say(f"env: {json.dumps(info)}")
    pack(v)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def step_tests(v: Visit) -> None:
    """The CUDA-marked tests (skipped without CUDA), the CUDA kill/resume test and the compile fallback."""
    step(v, "tests", [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                      "--durations=5", "-rs", str(ROOT / "tests" / "test_train.py"),
                      "-k", "cuda or failing_compile"], cap_s=240, need_s=30)


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def bench_ips(path: Path) -> float | None:
    return next((r["images_per_s"] for r in _json(path).get("rows", []) if r.get("name") == "reslab"), None)


def step_bench(v: Visit) -> None:
    """`bench train` eager, then with reduce-overhead (CUDA graphs); picks the faster mode for the runs."""
    tiny = ["--iterations", "4", "--rounds", "2", "--curve-iters", "40", "--untimed", "1", "--ref-workers", "0",
            "--resnet50-iters", "0", "--data", "fashion-mnist"]
    full = ["--iterations", "500", "--rounds", "5", "--ref-workers", "0,2,4,8", "--resnet50-iters", "50"]
    size = tiny if v.tiny else full
    step(v, "bench-eager", reslab("bench", "train", "--device", v.device, *size, "--out", "bench-train-eager.json"),
         cap_s=180, need_s=30)
    eager = bench_ips(v.work / "bench-train-eager.json")
    modes = {"off": eager}
    if v.device.startswith("cuda"):
        workers = _json(v.work / "bench-train-eager.json").get("reference_workers", 2)  # the eager run's best
        size = [*size[:size.index("--ref-workers")], "--ref-workers", str(workers), "--resnet50-iters", "0"]
        step(v, "bench-reduce-overhead", reslab("bench", "train", "--device", v.device, *size, "--compile",
                                                "reduce-overhead", "--out", "bench-train-reduce-overhead.json"),
             cap_s=200, need_s=60)
        modes["reduce-overhead"] = bench_ips(v.work / "bench-train-reduce-overhead.json")
    measured = {k: ips for k, ips in modes.items() if ips}
    best = max(measured, key=measured.__getitem__) if measured else "off"
    if best != "off" and measured[best] < 1.05 * measured.get("off", 0):
        best = "off"  # within 5%: eager, which compiles nothing
    v.notes["compile"] = best
    v.notes["reslab_images_per_s"] = measured
    v.notes["resnet20_step_ms"] = {k: round(1000 * 128 / ips, 3) for k, ips in measured.items()}
    v.say(f"bench: reslab images/s by compile mode {measured}; the runs use --compile {best}")
    pack(v)


def compile_mode(v: Visit) -> str:
    """The mode part 1 measured fastest (its visit.json in docs/results/gpu-part1/), else off."""
    if "compile" in v.notes:
        return v.notes["compile"]
    try:
        return json.loads((ROOT / "docs" / "results" / "gpu-part1" / "visit.json").read_text())["notes"]["compile"]
    except (OSError, ValueError, KeyError):
        return "off"


def progress(run: Path) -> Callable[[], str]:
    def note() -> str:
        done = 0
        for metrics in sorted(run.glob("**/metrics.csv")):
            try:
                with open(metrics) as f:
                    done += max((int(r["iteration"]) for r in csv.DictReader(f) if r.get("kind") == "iter"), default=0)
            except (OSError, ValueError, KeyError):
                continue
        return f"{done:,} iterations logged"
    return note


def step_train(v: Visit, name: str, model: str, *, cap_s: float) -> None:
    """The cifar-paper recipe at `v.iterations` (resumed when the folder holds an unfinished run)."""
    run = v.work / "runs" / name
    mode = compile_mode(v)
    if (run / "model.safetensors").is_file():
        v.say(f"{name}: finished already")
        return
    if (run / "checkpoints" / "last.pt").is_file():
        cmd = reslab("train", "--resume", f"runs/{name}", "--quiet", "--device", v.device)
    else:
        shutil.rmtree(run, ignore_errors=True)
        cmd = reslab("train", "--model", model, "--data", "fashion-mnist", "--iterations", str(v.iterations),
                     "--device", v.device, "--compile", mode, "--out", f"runs/{name}", "--quiet")
    step(v, name, cmd, cap_s=cap_s, need_s=60 if not v.tiny else 5, watch=progress(run))


def step_experiment(v: Visit, name: str, *args: str, cap_s: float = 600, jobs: int = 4) -> None:
    """`reslab experiment ...` in work/<folder>; an existing folder continues (finished runs are kept)."""
    step(v, name, reslab("experiment", *args, "--budget", str(v.iterations), "--device", v.device,
                         "--jobs", str(jobs if not v.tiny else 1), "--compile", compile_mode(v), "--quiet"),
         cap_s=cap_s, need_s=60 if not v.tiny else 5, watch=progress(v.work))


def _degradation(depths: str, seeds: str = "1") -> Callable[[Visit], None]:
    def run(v: Visit) -> None:
        step_experiment(v, f"degradation-{depths.replace(',', '-')}", "degradation", "--depths", depths,
                        "--seeds", seeds, "--out", "degradation")
    return run


def _analyses(v: Visit) -> None:
    deg = v.work.parent / "gpu-degradation" / "degradation"
    src = deg if deg.is_dir() else ROOT / "docs" / "results" / "gpu-degradation" / "degradation"
    for name in ("responses", "lesion", "landscape"):
        extra = ["--device", v.device] if name != "responses" else ["--device", v.device, "--quiet"]
        step(v, name, reslab("experiment", name, "--from", str(src), "--out", name, *extra), cap_s=240, need_s=30)


PARTS: dict[str, tuple[str, list[Callable[[Visit], None]]]] = {
    "part1": ("nvidia-smi and versions; the CUDA tests; bench train eager and reduce-overhead; ResNet-20's "
              "full 64k recipe", [step_env, step_tests, step_bench,
                                  lambda v: step_train(v, "resnet20-64k", "resnet20", cap_s=600)]),
    "degradation": ("Fig. 6 / Table 6: plain and residual nets of depth 20 and 56 at 64k iterations",
                    [step_env, _degradation("20,56")]),
    "degradation-deeper": ("depths 32 and 44 beside 20 and 56 (the same folder: finished runs are kept)",
                           [step_env, _degradation("20,32,44,56")]),
    "degradation-seeds": ("seeds 1-2 of the 20/56 pairs", [step_env, _degradation("20,56", "0,1,2")]),
    "depth": ("Table 6: ResNet-20 ... 110", [step_env, lambda v: step_experiment(
        v, "depth", "depth", "--depths", "20,32,44,56,110", "--out", "depth")]),
    "shortcuts": ("Table 3 analogue: options A, B, C and plain, 3 seeds", [step_env, lambda v: step_experiment(
        v, "shortcuts", "shortcuts", "--seeds", "3", "--out", "shortcuts")]),
    "analyses": ("Fig. 7 responses, lesion and landscape of the 64k degradation nets (no training)",
                 [step_env, _analyses]),
    "resnet1202": ("optional: ResNet-1202 at 64k", [step_env, lambda v: step_train(v, "resnet1202-64k",
                                                                                   "resnet1202", cap_s=600)]),
}


# ------------------------------------------------------------------------------------------------ packing

def pack(v: Visit) -> None:
    """<out>/<part>.tar.gz (members gpu-<part>/...) and <out>/<part>.log, rewritten after every step."""
    (v.work / "visit.json").write_text(json.dumps({"part": v.part, "device": v.device, "iterations": v.iterations,
                                                   "steps": v.steps, "notes": v.notes}, indent=2) + "\n")
    v.out.mkdir(parents=True, exist_ok=True)
    (v.out / f"{v.part}.log").write_text("\n".join(v.log_lines) + "\n")
    tmp = v.out / f".{v.part}.tar.gz"
    for weights in (True, False):
        with tarfile.open(tmp, "w:gz") as tar:
            for path in sorted(v.work.rglob("*")):
                if path.is_file() and keep(path, weights):
                    tar.add(path, arcname=f"gpu-{v.part}/{path.relative_to(v.work)}")
        if tmp.stat().st_size <= PACK_LIMIT:
            break
        v.notes["weights_left_out"] = "the pack was over 15 MiB with the weights"
    tmp.replace(v.out / f"{v.part}.tar.gz")


def keep(path: Path, weights: bool) -> bool:
    if path.name == "best.pt" or "__pycache__" in path.parts or path.name.endswith(".lock"):
        return False
    if path.name == "last.pt":  # only a run that did not finish: a later visit resumes it
        return not (path.parent.parent / "model.safetensors").is_file()
    if path.suffix == ".safetensors":
        return weights
    return path.suffix in {".json", ".csv", ".md", ".png", ".txt", ".log", ".safetensors", ".yaml"}


def seed_from_results(v: Visit) -> None:
    """An earlier visit's folder of this part, unpacked in docs/results/, is where this one starts."""
    earlier = ROOT / "docs" / "results" / f"gpu-{v.part}"
    if earlier.is_dir() and not any(v.work.iterdir()):
        shutil.copytree(earlier, v.work, dirs_exist_ok=True)
        v.say(f"continuing from {earlier.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="parts: " + "; ".join(f"{k}: {d}" for k, (d, _) in PARTS.items()))
    p.add_argument("part", choices=list(PARTS))
    p.add_argument("--out", required=True, help="the folder the two packed files go to ($OUT on the GPU machine)")
    p.add_argument("--budget-s", type=float, default=540, help="wall seconds for the whole visit (default 540)")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (a tiny test of the same steps)")
    p.add_argument("--iterations", type=int, default=PAPER_ITERS,
                   help=f"iterations per training run (default the paper's {PAPER_ITERS}); a small count with "
                        "--device cpu makes the tiny test")
    p.add_argument("--work", default="visits", help="where the part's folder is built (default visits/)")
    p.add_argument("--fresh", action="store_true",
                   help="start empty, not from an earlier visit's folder in docs/results/")
    args = p.parse_args(argv)
    work = (ROOT / args.work / f"gpu-{args.part}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    v = Visit(args.part, Path(args.out).resolve(), work, args.device, args.iterations,
              time.monotonic() + args.budget_s, tiny=args.iterations < 1000)
    v.say(f"part {args.part}: {PARTS[args.part][0]}; budget {args.budget_s:.0f} s, {args.iterations:,} iterations "
          f"per run, device {args.device}")
    if not args.fresh:
        seed_from_results(v)
    for fn in PARTS[args.part][1]:
        if v.left() < PACK_RESERVE_S:
            v.say("budget spent: the remaining steps wait for the next visit")
            break
        fn(v)
    pack(v)
    v.say(f"packed {v.out / (args.part + '.tar.gz')} ({(v.out / (args.part + '.tar.gz')).stat().st_size / 2**20:.1f} "
          f"MiB) and {v.out / (args.part + '.log')}")
    failed = [s["step"] for s in v.steps if s.get("rc") not in (0, None) or s.get("timed_out")]
    if failed:
        v.say(f"steps that failed or ran out of time: {', '.join(failed)}")
    pack(v)
    return 0


if __name__ == "__main__":
    sys.exit(main())
