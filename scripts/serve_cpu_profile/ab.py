"""A/B of `reslab serve` builds: each variant (its src folder as PYTHONPATH, env, flags) is started, warmed up
with 2 x conc requests, driven by `conc` clients for `requests` JPEG requests (bench serve's photos), stopped;
prints images/s, server CPU ms per request and the CPU per request of each thread. sitecustomize.py (beside
this file) names Python threads for the kernel, so /proc shows reslab-inference (with the OpenMP team it
starts), reslab-decode_N and main (the event loop). Usage: python ab.py '<json spec>' (docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "src"))
from reslab.serve.bench import (  # after the path above
    batch_stats,
    cpu_seconds,
    drive,
    free_port,
    good_jobs,
    photos,
    stop_server,
    wait_ready,
)


def threads(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of `pid` by name (the main thread as "main")."""
    out: dict[str, float] = defaultdict(float)
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = "main" if t.name == str(pid) else (t / "comm").read_text().strip()
            fields = (t / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def run(label: str, src: str, env: dict[str, str], args: list[str], weights: str, requests: int, conc: int,
        calib: str | None) -> dict:
    port, log = free_port(), Path(f"/tmp/serve-cpu-profile-{label}.log")
    cmd = [sys.executable, "-m", "reslab", "serve", weights, "--port", str(port), *args]
    if calib:
        cmd += ["--calib", calib]
    pythonpath = f"{src}:{Path(__file__).parent}"
    with open(log, "wb") as o:
        p = subprocess.Popen(cmd, stdout=o, stderr=subprocess.STDOUT,
                             env={**os.environ, "PYTHONPATH": pythonpath, **env})
    try:
        wait_ready(port, p, log)
        ph = photos()
        asyncio.run(drive(port, good_jobs(ph, 2 * conc), conc, 120))
        t0, c0, b0 = threads(p.pid), cpu_seconds(p.pid), batch_stats(port)
        recs, wall = asyncio.run(drive(port, good_jobs(ph, requests), conc, 120))
        t1, c1, b1 = threads(p.pid), cpu_seconds(p.pid), batch_stats(port)
    finally:
        stop_server(p)
    ok = sum(r["status"] == 200 for r in recs)
    per = {k: round(1000 * (t1[k] - t0.get(k, 0)) / len(recs), 2) for k in t1 if t1[k] - t0.get(k, 0) > 0}
    return {"label": label, "img_s": round(ok / wall, 1), "cpu_ms_req": round(1000 * (c1 - c0) / len(recs), 2),
            "ok": ok, "mean_batch": round((b1[1] - b0[1]) / max(1, b1[0] - b0[0]), 1), "wall": round(wall, 1),
            "n": len(recs), "threads_ms_req": per}


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    print(loadavg(), flush=True)
    for _ in range(spec.get("reps", 1)):
        for v in spec["variants"]:
            r = run(v["label"], v["src"], v.get("env", {}), v.get("args", []) + spec["args"], spec["weights"],
                    spec["requests"], spec["conc"], spec.get("calib"))
            print(json.dumps(r), flush=True)
    print(loadavg(), flush=True)
