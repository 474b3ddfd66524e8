"""`reslab bench serve`: the server under load on loopback, beside the offline engine, in one run.

Runs, one after another on the same weights and images (so background load hits them
alike, and nothing else of this process computes while a server is measured):
  offline   the engine the server builds, called directly on preprocessed batches of
            `--max-batch` images (no HTTP, no decoding): the ceiling;
  batched   `reslab serve --max-batch B`, driven by `--concurrency` clients that each send
            one JPEG per request, `--requests` in all, bounded by `--time-limit`;
  single    the same server with `--max-batch 1`: one image per forward pass;
  hostile   (with `--hostile N`) the batched server again, N malformed requests shuffled into
            the good ones: truncated files, wrong content types, random bytes, empty bodies,
            decompression bombs, broken multipart, huge headers, bodies over the limit.
Each server is a subprocess (`python -m reslab serve`); it is stopped with SIGTERM and must
exit 0.

`--path auto` (and `fastest`) is resolved once, by the offline step, and the servers are started
with the path it picked, so that the four rows measure one path: the measured choice depends on
timings, and servers that each chose again could serve a different path from the offline row's
(docs/benchmarks.md, "--path auto measured"). `server_auto` lets each server choose for itself.

Correctness is judged against the fp32 eager model (the reference --path auto checks agreement
against), not against the offline engine: a good answer is correct when its top-1 class is the fp32
model's on the same image; how far its probability moved is reported apart, as the largest |dp|.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image
from rich.table import Table
from safetensors.torch import save_file

from reslab.console import console as make_console
from reslab.console import json_text
from reslab.deploy.bench import hardware_info
from reslab.deploy.fast import time_call
from reslab.deploy.images import image_mode, load_image, preprocess_image
from reslab.deploy.paths import PATHS
from reslab.deploy.predict import expand_inputs, predict
from reslab.errors import ReslabError
from reslab.fileio import atomic_write_text
from reslab.models import create_model
from reslab.outputs import save_file_output
from reslab.serve.app import ServeConfig, build_server_engine
from reslab.weights import convert, load_weights, read_metadata

PHOTO_SIZE = (320, 240)
N_PHOTOS = 8
HOSTILE_MAX_BODY_MB = 1.0  # the hostile run's body limit, so that "over the limit" bodies stay cheap to send
RESOLVED_OFFLINE = ("auto", "fastest")  # --path rules whose choice is measured: the offline step makes it once
REFERENCE = "fp32 eager"  # what every answer is checked against


@dataclass(frozen=True)
class BenchConfig:
    server: ServeConfig  # weights "" means `model` with random weights
    model: str = "resnet50"
    concurrency: int = 32
    requests: int = 640
    hostile: int = 0
    # Per load run: a ResNet-50 run of 640 requests takes about 30 s on 2 idle cores (docs/benchmarks.md), so
    # 120 s cuts only a machine 4x slower, and the whole command stays within a few minutes.
    time_limit_s: float = 120.0
    server_auto: bool = False  # servers resolve --path auto themselves instead of running the offline choice


@dataclass
class Job:
    """One request of a load run: `kind` "good" carries the index of its photo in `photo`."""

    kind: str
    content: bytes
    headers: dict[str, str] = field(default_factory=dict)
    query: str = ""
    photo: int = -1


# ---------------------------------------------------------------------------- the server process
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(config: ServeConfig, port: int, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m reslab serve` on 127.0.0.1:`port` with `config`'s flags; stdout and stderr go to `log`."""
    args = [sys.executable, "-m", "reslab", "serve", config.weights, "--port", str(port), "--path", config.path,
            "--max-batch", str(config.max_batch), "--max-wait-ms", str(config.max_wait_ms), "--queue",
            str(config.queue), "--workers", str(config.workers), "--max-body-mb", str(config.max_body_mb),
            "--max-pixels", str(config.max_pixels), "--drain-timeout", str(config.drain_s),
            "--body-timeout-s", str(config.body_timeout_s)]
    if config.calib:
        args += ["--calib", config.calib]
    with open(log, "wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def wait_ready(port: int, proc: subprocess.Popen, log: Path, timeout_s: float = 300.0) -> None:
    """Poll /readyz until it answers 200; ReslabError with the server's last output if it dies or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ReslabError(f"the server exited with {proc.returncode}: {_tail(log)}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise ReslabError(f"the server was not ready after {timeout_s:.0f} s: {_tail(log)}")


def stop_server(proc: subprocess.Popen, timeout_s: float = 120.0) -> int:
    """SIGTERM, then the exit code (the server drains first)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def _tail(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return " | ".join(lines[-3:]) or "(no output)"


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def batch_stats(port: int) -> tuple[float, float]:
    """(forward passes, images in them) so far, from the server's /metrics."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    values = {k: float(v) for k, v in (line.rsplit(" ", 1) for line in text.splitlines()
                                       if line.startswith(("reslab_batch_size_count", "reslab_batch_size_sum")))}
    return values.get("reslab_batch_size_count", 0.0), values.get("reslab_batch_size_sum", 0.0)


# ---------------------------------------------------------------------------- payloads
def photos(n: int = N_PHOTOS, size: tuple[int, int] = PHOTO_SIZE, seed: int = 0) -> list[bytes]:
    """`n` photo-sized JPEGs: smooth colour waves with sensor-like noise (W x H = `size`)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    out = []
    for _ in range(n):
        freq, phase = rng.uniform(2, 12, (3, 2)), rng.uniform(0, 2 * np.pi, 3)
        waves = np.stack([np.sin(f[0] * xx + f[1] * yy + p) for f, p in zip(freq, phase, strict=True)], axis=-1)
        pixels = (127.5 * (1 + waves) + rng.normal(0, 12, waves.shape)).clip(0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def png_bomb(side: int = 30_000) -> bytes:
    """A tiny PNG whose header claims `side` x `side` grey pixels: Pillow's size check refuses it before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (side + 1) * 8)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def good_jobs(photo_bytes: list[bytes], n: int) -> list[Job]:
    return [Job("good", photo_bytes[i % len(photo_bytes)], {"content-type": "image/jpeg"}, photo=i % len(photo_bytes))
            for i in range(n)]


def hostile_jobs(n: int, photo: bytes, max_body: int, seed: int = 0) -> list[Job]:
    """`n` malformed requests, the kinds taken in turn."""
    rng = np.random.default_rng(seed)
    jpeg, boundary = {"content-type": "image/jpeg"}, {"content-type": "multipart/form-data; boundary=xyz"}
    part = b'--xyz\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n--xyz--\r\n'
    kinds = [
        Job("truncated", photo[: len(photo) // 3], jpeg),
        Job("wrong type", b"hello, this is not an image", {"content-type": "text/plain"}),
        Job("wrong type", b'{"image": "cat.jpg"}', {"content-type": "application/json"}),
        Job("random bytes", rng.bytes(4096), {"content-type": "image/png"}),
        Job("empty", b"", jpeg),
        Job("bomb", png_bomb(), {"content-type": "image/png"}),
        Job("broken multipart", b'--xyz\r\nContent-Disposition: form-data; name="f"; filename="a.jpg"\r\n\r\n'
            + photo[:200], boundary),
        Job("multipart without a file", part, boundary),
        Job("huge header", photo, {**jpeg, "x-filler": "a" * 2**20}),
        Job("bad topk", photo, jpeg, query="topk=-3"),
        Job("over the limit", b"\0" * (max_body + 1), jpeg),
    ]
    return [kinds[i % len(kinds)] for i in range(n)]


# ---------------------------------------------------------------------------- load
async def _send(client: httpx.AsyncClient, job: Job) -> dict:
    record: dict = {"kind": job.kind, "photo": job.photo, "status": None}
    start = time.perf_counter()
    try:
        r = await client.post("/v1/predict" + (f"?{job.query}" if job.query else ""), content=job.content,
                              headers=job.headers)
        record["status"] = r.status_code
        if r.status_code == 200:
            top = r.json()["results"][0]["topk"][0]
            record["top1"], record["prob"] = top["class"], top["prob"]
    except httpx.HTTPError as e:  # no answer at all (the connection was closed on us)
        record["error"] = type(e).__name__
    record["latency_s"] = time.perf_counter() - start
    return record


async def drive(port: int, jobs: list[Job], concurrency: int, time_limit_s: float) -> tuple[list[dict], float]:
    """Send `jobs` from `concurrency` clients, each waiting for its answer before the next; (records, wall s).

    Stops starting new requests after `time_limit_s`.
    """
    pending = list(reversed(jobs))
    records: list[dict] = []
    deadline = time.monotonic() + time_limit_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=120) as client:
        async def client_loop() -> None:
            while pending and time.monotonic() < deadline:
                records.append(await _send(client, pending.pop()))

        start = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        return records, time.perf_counter() - start


# ---------------------------------------------------------------------------- runs
def _random_weights(model: str, folder: Path) -> Path:
    """`model` with its initial random weights, written as reslab weights by `convert` (its preprocessing rule)."""
    torch.manual_seed(0)
    ckpt = folder / "random.safetensors"
    save_file(create_model(model).state_dict(), ckpt)
    return convert(ckpt, model=model, out_dir=folder / "weights")


def agreement(answers: list[tuple[str, float]], reference: list[tuple[str, float]]) -> tuple[int, float | None]:
    """(how many of `answers` have the top-1 class of their `reference`, the largest |prob - reference prob|
    among those); each is (class, prob). The largest difference is None when no answer agrees: the
    probabilities of two different classes are not compared."""
    diffs = [abs(p - ref_p) for (c, p), (ref_c, ref_p) in zip(answers, reference, strict=True) if c == ref_c]
    return len(diffs), max(diffs, default=None)


def _top1(results: list[dict]) -> list[tuple[str, float]]:
    return [(r["topk"][0]["class"], r["topk"][0]["prob"]) for r in results]


def _offline(config: ServeConfig, photo_bytes: list[bytes], folder: Path) -> dict:
    """The server's engine called directly on batches of max_batch preprocessed photos; the fp32 eager model's
    answers (the reference), and the engine's."""
    model, meta = load_weights(config.weights)
    files = []
    for i, b in enumerate(photo_bytes):
        files.append(folder / f"photo{i}.jpg")
        files[-1].write_bytes(b)
    reference = _top1(predict((model, meta), files, topk=1, batch_size=config.max_batch, path="eager"))
    engine = build_server_engine(model, meta, config)
    pre = meta["preprocess"]
    x = torch.stack([preprocess_image(load_image(io.BytesIO(b), mode=image_mode(pre)), pre) for b in photo_bytes])
    batch = x.repeat(-(-config.max_batch // len(x)), 1, 1, 1)[: config.max_batch].contiguous()
    times = time_call(lambda: engine(batch), repeats=5, warmup=2)
    answers = _top1(predict((model, meta), files, topk=1, batch_size=config.max_batch, engine=engine))
    agree, max_dprob = agreement(answers, reference)
    return {"path": engine.name, "batch_size": config.max_batch, "images_per_s": config.max_batch /
            statistics.median(times), "batch_s": times, "reference": [{"class": c, "prob": p} for c, p in reference],
            "answers": [{"class": c, "prob": p} for c, p in answers], "photos": len(files), "top1_agree": agree,
            "max_dprob": max_dprob}


def served_path(engine_name: str) -> str | None:
    """The --path that builds the engine named `engine_name` again: its own name, or when its compile failed here
    the eager path that ran instead ("bf16 (compile failed)" -> bf16), or for OpenVINO, whose name carries the
    precision it chose by the CPU ("openvino (bf16)"), the openvino path (which chooses it again on this CPU);
    None for a name that is no --path."""
    name = engine_name.removesuffix(" (compile failed)")
    if name.startswith("openvino ("):
        name = "openvino"
    return name if name in PATHS else None


def server_calib(calib: str | None, path: str, folder: Path) -> str | None:
    """The --calib for servers that run `path` as auto's choice. Auto calibrates int8 on every other --calib
    image and checks agreement on the rest (deploy/predict.py, build_predict_engine), while `--path int8-*`
    calibrates on all of them: the servers get a folder of auto's half, so that they build the engine the
    offline step measured, not one with other activation ranges."""
    if not calib or not path.startswith("int8"):
        return calib
    half = folder / "calib-int8"
    half.mkdir()
    for i, f in enumerate(expand_inputs([calib])[0::2]):  # numbered names keep expand_inputs' sorted order
        (half / f"{i:05d}{f.suffix}").write_bytes(f.read_bytes())
    return str(half)


def resolve_servers(config: ServeConfig, offline_path: str, folder: Path, *, server_auto: bool,
                    log: Callable[[str], None] = print) -> ServeConfig:
    """The servers' config: `config` with a measured --path rule (auto, fastest) replaced by the offline step's
    choice `offline_path`, unless `server_auto` (or the choice is no --path name); one line says which."""
    if config.path not in RESOLVED_OFFLINE:
        return config
    path = served_path(offline_path)
    if server_auto or path is None:
        why = "--server-auto" if server_auto else f"{offline_path!r} is not a --path name"
        log(f"path {config.path} resolved to {offline_path} (offline choice); servers resolve {config.path} "
            f"themselves ({why}), and may pick another path")
        return config
    log(f"path {config.path} resolved to {path} (offline choice); servers run {path}")
    calib = server_calib(config.calib, path, folder) if config.path == "auto" else config.calib
    return replace(config, path=path, calib=calib)


def _load_run(name: str, config: ServeConfig, bench: BenchConfig, photo_bytes: list[bytes], hostile: int,
              folder: Path) -> dict:
    """One server: start, warm up with 2 x concurrency requests, measure one load run, SIGTERM."""
    port, log = free_port(), folder / f"server-{name}.log"
    proc = start_server(config, port, log)
    try:
        wait_ready(port, proc, log)
        path = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).json().get("path")  # what auto picked
        asyncio.run(drive(port, good_jobs(photo_bytes, 2 * bench.concurrency), bench.concurrency,
                          bench.time_limit_s))
        passes0, images0 = batch_stats(port)
        rss_start, cpu_start = resident_mb(proc.pid), cpu_seconds(proc.pid)
        jobs = good_jobs(photo_bytes, bench.requests)
        jobs += hostile_jobs(hostile, photo_bytes[0], int(config.max_body_mb * 2**20))
        planned = len(jobs)
        random.Random(0).shuffle(jobs)
        records, wall = asyncio.run(drive(port, jobs, bench.concurrency, bench.time_limit_s))
        passes1, images1 = batch_stats(port)
        rss_end, cpu = resident_mb(proc.pid), cpu_seconds(proc.pid) - cpu_start
        up = proc.poll() is None and httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    finally:
        exit_code = stop_server(proc)
    passes = passes1 - passes0
    return {"name": name, "path": path, "max_batch": config.max_batch, "wall_s": wall, "records": records,
            "planned": planned,
            "mean_batch": (images1 - images0) / passes if passes else 0.0, "server_cpu_s": cpu,
            "rss_mb_start": rss_start, "rss_mb_end": rss_end, "stayed_up": up, "exit_code": exit_code}


def _summarise(run: dict, reference: list[dict]) -> dict:
    """Throughput and latency of the good requests, their agreement with the fp32 `reference` (one {"class",
    "prob"} per photo): top-1 agreement as "good_correct", the largest |dp| of an agreeing answer as
    "max_dprob"; and every status seen, by kind."""
    records = run.pop("records")
    good = [r for r in records if r["kind"] == "good"]
    ok = [r for r in good if r["status"] == 200]
    correct, max_dprob = agreement([(r["top1"], r["prob"]) for r in ok],
                                   [(reference[r["photo"]]["class"], reference[r["photo"]]["prob"]) for r in ok])
    ms = np.array([1000 * r["latency_s"] for r in ok]) if ok else np.array([float("nan")])
    statuses: dict[str, dict[str, int]] = {}
    for r in records:
        key = str(r["status"] if r["status"] is not None else r.get("error", "no answer"))
        statuses.setdefault(r["kind"], {}).setdefault(key, 0)
        statuses[r["kind"]][key] += 1
    return {**run, "requests": len(records), "good": len(good), "good_ok": len(ok), "good_correct": correct,
            "max_dprob": max_dprob, "cut_by_time_limit": len(records) < run.get("planned", len(records)),
            "server_5xx": sum(1 for r in records if r["status"] is not None and r["status"] >= 500),
            "no_answer": sum(1 for r in records if r["status"] is None),
            "images_per_s": len(ok) / run["wall_s"],
            "cpu_ms_per_request": 1000 * run["server_cpu_s"] / max(1, len(records)),
            **{f"p{q}_ms": float(np.percentile(ms, q)) for q in (50, 95, 99)}, "statuses": statuses}


def _say(line: str) -> None:
    print(f"reslab bench serve: {line}", file=sys.stderr, flush=True)


def bench_serve(bench: BenchConfig, log: Callable[[str], None] = _say) -> dict:
    """Offline engine, batched server, one-image server (and the hostile mix): the report as a dict."""
    hardware = hardware_info(torch.get_num_threads())
    photo_bytes = photos()
    with tempfile.TemporaryDirectory(prefix="reslab-bench-serve-") as tmp:
        folder = Path(tmp)
        config = bench.server
        if not config.weights:
            config = replace(config, weights=str(_random_weights(bench.model, folder)))
        log(f"offline: building the {config.path} engine at batch {config.max_batch}")
        offline = _offline(config, photo_bytes, folder)
        served = resolve_servers(config, offline["path"], folder, server_auto=bench.server_auto, log=log)
        plan = [("batched", served, 0), ("single", replace(served, max_batch=1), 0)]
        if bench.hostile:
            plan.append(("hostile", replace(served, max_body_mb=HOSTILE_MAX_BODY_MB), bench.hostile))
        runs = []
        for name, cfg, hostile in plan:
            log(f"{name}: --path {cfg.path}, max batch {cfg.max_batch}, {bench.concurrency} clients, "
                f"{bench.requests} good requests" + (f" and {hostile} malformed" if hostile else ""))
            runs.append(_summarise(_load_run(name, cfg, bench, photo_bytes, hostile, folder), offline["reference"]))
            if runs[-1]["cut_by_time_limit"]:
                log(f"{name}: stopped by the time limit ({bench.time_limit_s:g} s) after {runs[-1]['requests']} of "
                    f"{runs[-1]['planned']} requests")
        model = read_metadata(config.weights)["model"]
    by_name = {r["name"]: r for r in runs}
    return {"model": model, "weights": bench.server.weights or None, "config": asdict(bench), "hardware":
            hardware, "loadavg_end": list(os.getloadavg()), "reference": REFERENCE,
            "servers_path": served.path, "offline": offline, "runs": runs,
            "server_vs_offline": by_name["batched"]["images_per_s"] / offline["images_per_s"],
            "batched_vs_single": by_name["batched"]["images_per_s"] / max(1e-9, by_name["single"]["images_per_s"])}


# ---------------------------------------------------------------------------- report
def _dp(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"  # 0.012, 3.8e-06: fp32 paths differ by far less than 1e-4


def print_report(report: dict) -> None:
    """One table: the offline engine, then each server run; hardware, load and the paths above it, what
    "correct" means in its caption."""
    hw, off, cfg = report["hardware"], report["offline"], report["config"]
    reference = report.get("reference", REFERENCE)
    console = make_console()
    console.print(f"[bold]{report['model']}[/], --path {cfg['server']['path']}: offline {off['path']}, servers "
                  f"{report.get('servers_path', off['path'])}; {cfg['concurrency']} clients, {hw['cpu']}, "
                  f"{hw['physical_cores']} cores, torch {hw['torch']}; load {hw['loadavg'][0]:.1f} -> "
                  f"{report['loadavg_end'][0]:.1f}")
    table = Table(title="reslab bench serve (latency of good requests; images/s = good answers per second)",
                  caption=f"correct: the top-1 class is the {reference} model's on the same image (the reference "
                          f"--path auto checks agreement against); max |dp|: the largest difference from it in that "
                          f"class's probability, over the answers that agree")
    for col in ("run (path)", "max batch", "images/s", "p50 ms", "p95 ms", "p99 ms", "mean batch", "CPU ms/req",
                "good: ok, correct", f"max |dp| vs {reference.split()[0]}", "malformed", "5xx",
                "RSS MB start -> end", "up, exit"):
        table.add_column(col, justify="left" if col.startswith("run") else "right")
    table.add_row(f"offline engine ({off['path']})", str(off["batch_size"]), f"{off['images_per_s']:.1f}", "-", "-",
                  "-", str(off["batch_size"]), "-", f"{off['top1_agree']} of {off['photos']} photos",
                  _dp(off["max_dprob"]), "-", "-", "-", "-")
    for r in report["runs"]:
        table.add_row(f"{r['name']} ({r.get('path')})", str(r["max_batch"]), f"{r['images_per_s']:.1f}",
                      f"{r['p50_ms']:.0f}", f"{r['p95_ms']:.0f}", f"{r['p99_ms']:.0f}", f"{r['mean_batch']:.1f}",
                      f"{r['cpu_ms_per_request']:.0f}", f"{r['good_ok']}, {r['good_correct']} of {r['good']}",
                      _dp(r["max_dprob"]), str(r["requests"] - r["good"]),
                      str(r["server_5xx"]), f"{r['rss_mb_start']:.0f} -> {r['rss_mb_end']:.0f}",
                      f"{'yes' if r['stayed_up'] else 'NO'}, {r['exit_code']}")
    console.print(table)
    console.print(f"batched server / offline engine: {report['server_vs_offline']:.0%}; batched / one image per "
                  f"request: {report['batched_vs_single']:.2f}x")
    for r in report["runs"]:
        if r["requests"] > r["good"]:
            kinds = "; ".join(f"{k} " + ", ".join(f"{n}x {code}" for code, n in v.items())
                              for k, v in r["statuses"].items() if k != "good")
            console.print(f"{r['name']} answers by kind: {kinds}")
        if r.get("cut_by_time_limit"):
            console.print(f"{r['name']}: stopped by the time limit after {r['requests']} of {r['planned']} requests "
                          f"(--time-limit {cfg['time_limit_s']:g})")


def save_report(report: dict, path: str | Path | None, *, overwrite: bool = False) -> Path:
    """The JSON report at `path` (default bench-serve-MODEL.json); an existing file only with `overwrite`."""
    return save_file_output(path or f"bench-serve-{report['model']}.json", overwrite=overwrite,
                            write=lambda p: atomic_write_text(p, json_text(report) + "\n"))
