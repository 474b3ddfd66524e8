#!/usr/bin/env python3
"""One GPU visit of the paper's campaign: run one named part within a wall budget, pack what is worth keeping.

A lent GPU machine (docs/gpu.md) comes with python3 and torch but no registry, no data and no reslab
install, gives each command at most 10 minutes and brings back at most 8 files. So a visit is one
command, from the repository root:

    RESLAB_DATA=.data python3 scripts/gpu_visit.py part1 --out "$OUT" --budget-s 540

It runs the part's steps in order, each as its own process (`python3 -m reslab ...` with src/ on the
path: nothing is installed) under a timeout cut from what is left of the budget, and after every step
packs what the visit wrote into at most two files, `<out>/<part>.tar.gz` and, when the weights would
take it past 15 MiB, `<out>/<part>-weights.tar`: a visit stopped at any point still brings back every
step that finished. A step that fails or runs out of time is recorded and the next one runs.

Packed: summaries, tables, figures, experiment.json, bench JSONs and PNGs, logs, each run's
metrics.csv, config.json, report.md, curves and final weights; no checkpoints, except the last.pt of a
run that did not finish (so a later visit resumes it). Part 1 has its own folder (gpu-part1/); every
later part adds to gpu-campaign/ and starts from it as earlier visits left it in docs/results/
(unpacked and committed): finished runs are read back, cut ones resume, and only what changed is
packed. Back on the development machine:

    python3 scripts/gpu_visit.py unpack part.tar.gz [part-weights.tar]   # into docs/results/

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
    seeded: dict = field(default_factory=dict)  # files the visit started from: {path: (size, mtime)}, not packed
    results: Path = ROOT / "docs" / "results"  # where earlier visits' folders are

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
    """The mode part 1 measured fastest (docs/results/gpu-part1/visit-part1.json), else off."""
    if "compile" in v.notes:
        return v.notes["compile"]
    try:
        return json.loads((v.results / "gpu-part1" / "visit-part1.json").read_text())["notes"]["compile"]
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


def step_experiment(v: Visit, name: str, experiment: str, *args: str, cap_s: float = 600, jobs: int = 4) -> None:
    """`reslab experiment ...` in work/<experiment>/ (an existing folder continues: finished runs are kept,
    cut ones resume); its summary, table and figure are kept under <experiment>/<name>/ too, since the
    next part that uses the folder rewrites them."""
    folder = v.work / experiment
    step(v, name, reslab("experiment", experiment, *args, "--out", experiment, "--iterations", str(v.iterations),
                         "--device", v.device, "--jobs", str(jobs if not v.tiny else 1),
                         "--compile", compile_mode(v), "--quiet"),
         cap_s=cap_s, need_s=60 if not v.tiny else 5, watch=progress(folder))
    if (folder / "summary.md").is_file() and v.steps[-1].get("rc") == 0:
        keep_dir = folder / name
        keep_dir.mkdir(exist_ok=True)
        for f in folder.iterdir():
            if f.is_file() and f.suffix in {".md", ".csv", ".png", ".json"}:
                shutil.copy2(f, keep_dir / f.name)
        pack(v)


def reuse_runs(v: Visit, source: str, target: str, labels: list[str]) -> None:
    """Finished runs of `source` that `target` would train with the same config (same label, recipe, budget
    and seed: the same run, whichever experiment trains it) are copied instead of trained again."""
    for label in labels:
        src, dst = v.work / source / "runs" / label, v.work / target / "runs" / label
        if (src / "model.safetensors").is_file() and not dst.exists():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.pt", "*.lock"))
            v.say(f"{target}: reusing {source}'s finished run {label}")


def _degradation(name: str, depths: str, seeds: str = "1") -> Callable[[Visit], None]:
    return lambda v: step_experiment(v, name, "degradation", "--depths", depths, "--seeds", seeds)


def _depth(v: Visit) -> None:
    reuse_runs(v, "degradation", "depth", [f"resnet{d}-s0" for d in (20, 32, 44, 56)])
    step_experiment(v, "depth", "depth", "--depths", "20,32,44,56,110")


def _analyses(v: Visit) -> None:
    """Responses, lesion and landscape of the degradation nets: no training."""
    src = v.work / "degradation"
    if not (src / "experiment.json").is_file():
        v.say("analyses: no degradation folder yet (run the degradation part first)")
        return
    for name in ("responses", "lesion", "landscape"):
        extra = ["--quiet"] if name == "responses" else []
        step(v, name, reslab("experiment", name, "--from", "degradation", "--out", name, "--device", v.device,
                             *extra), cap_s=240, need_s=30)


# name: (what it runs, its folder under docs/results/, its steps). Every part after part1 adds to one folder,
# gpu-campaign/, so later parts reuse earlier runs. The visits each part needs are docs/gpu.md's.
PARTS: dict[str, tuple[str, str, list[Callable[[Visit], None]]]] = {
    "part1": ("nvidia-smi and versions; the CUDA tests; bench train eager and reduce-overhead; ResNet-20's "
              "full 64k recipe", "gpu-part1", [step_env, step_tests, step_bench,
                                               lambda v: step_train(v, "resnet20-64k", "resnet20", cap_s=600)]),
    "degradation": ("Fig. 6 / Table 6: plain and residual nets of depth 20 and 56 at 64k iterations",
                    "gpu-campaign", [step_env, _degradation("degradation-20-56", "20,56")]),
    "degradation-deeper": ("depths 32 and 44 beside 20 and 56 (finished runs are kept)", "gpu-campaign",
                           [step_env, _degradation("degradation-20-32-44-56", "20,32,44,56")]),
    "degradation-seeds": ("seeds 1 and 2 of the 20/56 pairs", "gpu-campaign",
                          [step_env, _degradation("degradation-20-56-3seeds", "20,56", "3")]),
    "depth": ("Table 6: ResNet-20 ... 110 (20-56 reused from degradation)", "gpu-campaign", [step_env, _depth]),
    "shortcuts": ("Table 3 analogue: options A, B, C and plain on ResNet-20, 3 seeds", "gpu-campaign",
                  [step_env, lambda v: step_experiment(v, "shortcuts", "shortcuts", "--seeds", "3")]),
    "analyses": ("Fig. 7 responses, lesion and landscape of the 64k degradation nets (no training)",
                 "gpu-campaign", [step_env, _analyses]),
    "resnet1202": ("optional: ResNet-1202 at 64k", "gpu-campaign",
                   [step_env, lambda v: step_train(v, "resnet1202-64k", "resnet1202", cap_s=600)]),
}


# ------------------------------------------------------------------------------------------------ packing

def pack(v: Visit) -> None:
    """What this visit wrote or changed (not what it started from, which docs/results/ holds already):
    <out>/<part>.tar.gz, and, when that would pass 15 MiB, the weights and resume checkpoints apart in
    <out>/<part>-weights.tar. Members are gpu-<folder>/...; rewritten after every step."""
    record = {"part": v.part, "device": v.device, "iterations": v.iterations, "steps": v.steps, "notes": v.notes}
    (v.work / f"visit-{v.part}.json").write_text(json.dumps(record, indent=2) + "\n")
    (v.work / "logs").mkdir(exist_ok=True)
    (v.work / "logs" / f"visit-{v.part}.log").write_text("\n".join(v.log_lines) + "\n")
    files = [f for f in sorted(v.work.rglob("*")) if f.is_file() and keep(f)
             and v.seeded.get(str(f.relative_to(v.work))) != _stamp(f)]
    heavy = [f for f in files if f.suffix in {".safetensors", ".pt"}]
    light = [f for f in files if f not in heavy]
    v.out.mkdir(parents=True, exist_ok=True)
    if sum(f.stat().st_size for f in files) <= PACK_LIMIT:
        light, heavy = files, []
    if heavy:  # resume checkpoints first, then weights, while they fit
        heavy.sort(key=lambda f: (f.suffix != ".pt", str(f)))
        kept, size = [], 0
        for f in heavy:
            if size + f.stat().st_size <= PACK_LIMIT:
                kept.append(f)
                size += f.stat().st_size
        left = [str(f.relative_to(v.work)) for f in heavy if f not in kept]
        if left:
            v.notes["left_out_over_16_MiB"] = left
        _write_tar(v, v.out / f"{v.part}-weights.tar", kept, "w")
    else:
        (v.out / f"{v.part}-weights.tar").unlink(missing_ok=True)
    _write_tar(v, v.out / f"{v.part}.tar.gz", light, "w:gz")


def _write_tar(v: Visit, path: Path, files: list[Path], mode: str) -> None:
    tmp = path.with_name(f".{path.name}")
    with tarfile.open(tmp, mode) as tar:
        for f in files:
            tar.add(f, arcname=f"{v.work.name}/{f.relative_to(v.work)}")
    tmp.replace(path)


def _stamp(f: Path) -> tuple[int, int]:
    st = f.stat()
    return st.st_size, st.st_mtime_ns


def keep(path: Path) -> bool:
    if path.name == "best.pt" or "__pycache__" in path.parts or path.name.endswith(".lock"):
        return False
    if path.name == "last.pt":  # only a run that did not finish: a later visit resumes it
        return not (path.parent.parent / "model.safetensors").is_file()
    return path.suffix in {".json", ".csv", ".md", ".png", ".txt", ".log", ".safetensors", ".yaml"}


def seed_from_results(v: Visit) -> None:
    """The folder as earlier visits left it (unpacked and committed in docs/results/) is where this one starts."""
    earlier = v.results / v.work.name
    if earlier.is_dir() and not any(v.work.iterdir()):
        shutil.copytree(earlier, v.work, dirs_exist_ok=True)  # copy2: sizes and times kept
        v.say(f"continuing from {earlier}")
    v.seeded = {str(f.relative_to(v.work)): _stamp(f) for f in v.work.rglob("*") if f.is_file()}


def unpack(files: list[str], results: Path) -> int:
    """Extract a visit's files into `results` (docs/results/), over the folder earlier visits left there,
    then drop the resume checkpoints of runs that have finished since."""
    folders = set()
    for name in files:
        with tarfile.open(name) as tar:
            tar.extractall(results, filter="data")
            folders |= {m.split("/")[0] for m in tar.getnames()}
    for folder in sorted(folders):
        for last in (results / folder).rglob("checkpoints/last.pt"):
            if (last.parent.parent / "model.safetensors").is_file():
                last.unlink()
        print(f"unpacked {results / folder}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["unpack"]:
        u = argparse.ArgumentParser(prog="gpu_visit.py unpack", description=unpack.__doc__)
        u.add_argument("files", nargs="+", help="the .tar.gz (and -weights.tar) a visit brought back")
        u.add_argument("--results", default=str(ROOT / "docs" / "results"))
        a = u.parse_args(argv[1:])
        return unpack(a.files, Path(a.results))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="parts: " + "; ".join(f"{k}: {d}" for k, (d, _, _) in PARTS.items())
                                + ". `gpu_visit.py unpack FILES` puts what a visit brought back into docs/results/.")
    p.add_argument("part", choices=list(PARTS))
    p.add_argument("--out", required=True, help="the folder the packed files go to ($OUT on the GPU machine)")
    p.add_argument("--budget-s", type=float, default=540, help="wall seconds for the whole visit (default 540)")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (a tiny test of the same steps)")
    p.add_argument("--iterations", type=int, default=PAPER_ITERS,
                   help=f"iterations per training run (default the paper's {PAPER_ITERS}); a small count with "
                        "--device cpu makes the tiny test")
    p.add_argument("--work", default="visits", help="where the part's folder is built (default visits/)")
    p.add_argument("--fresh", action="store_true",
                   help="start empty, not from an earlier visit's folder in docs/results/")
    p.add_argument("--results", default=str(ROOT / "docs" / "results"),
                   help="where earlier visits' folders are (default docs/results/)")
    args = p.parse_args(argv)
    what, folder, steps = PARTS[args.part]
    work = (ROOT / args.work / folder).resolve()
    work.mkdir(parents=True, exist_ok=True)
    v = Visit(args.part, Path(args.out).resolve(), work, args.device, args.iterations,
              time.monotonic() + args.budget_s, tiny=args.iterations < 1000, results=Path(args.results))
    v.say(f"part {args.part}: {what}; budget {args.budget_s:.0f} s, {args.iterations:,} iterations per run, "
          f"device {args.device}")
    if not args.fresh:
        seed_from_results(v)
    for fn in steps:
        if v.left() < PACK_RESERVE_S:
            v.say("budget spent: the remaining steps wait for the next visit")
            break
        fn(v)
    failed = [s["step"] for s in v.steps if s.get("rc") not in (0, None) or s.get("timed_out")]
    if failed:
        v.say(f"steps that failed or ran out of time (a later visit continues them): {', '.join(failed)}")
    pack(v)
    v.say("packed: " + ", ".join(f"{f.name} ({f.stat().st_size / 2**20:.1f} MiB)" for f in sorted(v.out.iterdir())
                                 if not f.name.startswith(".")))
    pack(v)
    return 0


if __name__ == "__main__":
    sys.exit(main())
