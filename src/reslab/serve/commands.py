"""CLI sub-commands: `reslab serve` and `reslab bench serve`."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from reslab.cli_types import cores, float_in, int_in, worker_threads
from reslab.deploy.paths import CHOICES as PATH_CHOICES
from reslab.errors import ReslabError

_EXTRA = "the server needs its extra: pip install 'reslab[serve]'"
MAX_PIXELS_LIMIT = 1_000_000_000  # 3 GB as RGB per decode thread


def add_commands(sub: argparse._SubParsersAction, bench_sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve weights over HTTP with dynamic batching (POST /v1/predict)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("weights", help="run or weights directory, or model.safetensors")
    _server_flags(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback: this machine only)")
    p.add_argument("--port", type=int_in(1, 65535), default=8000, help="TCP port")
    p.add_argument("--drain-timeout", type=float_in(0, 3600, above=True), default=30.0,
                   help="seconds SIGTERM waits for requests in flight before cancelling them")
    p.set_defaults(func=_cmd_serve)

    p = bench_sub.add_parser("serve", help="load-test `reslab serve` on loopback against the offline engine",
                             description="Load-test `reslab serve` on loopback: the offline engine, a batched "
                             "server, a one-image server (and --hostile). --path auto is resolved once, by the "
                             "offline step, and the servers run its choice. Every good answer is checked against "
                             "the fp32 eager model: 'correct' counts top-1 agreement, 'max |dp| vs fp32' the "
                             "largest probability difference.",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--weights", help="weights to serve (default: --model with random weights)")
    p.add_argument("--model", default="resnet50", help="registered model, when no --weights")
    _server_flags(p)
    p.add_argument("--concurrency", type=int_in(1, 10_000), default=32, help="concurrent clients")
    p.add_argument("--requests", type=int_in(1, 10**7), default=640, help="good requests per load run")
    p.add_argument("--hostile", type=int_in(0, 10**6), default=0,
                   help="malformed requests mixed into an extra load run")
    p.add_argument("--time-limit", type=float_in(0, 86_400, above=True), default=120.0,
                   help="seconds each load run may take at most (the report says when a run was cut)")
    p.add_argument("--server-auto", action="store_true",
                   help="with --path auto or fastest, let each server resolve it itself (a timed choice that can "
                        "differ between processes) instead of starting the servers with the offline step's choice")
    p.add_argument("--out", help="where to save the JSON report (none: bench-serve-MODEL.json)")
    p.add_argument("--overwrite", action="store_true", help="replace the report file when it exists")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.set_defaults(func=_cmd_bench_serve)


def _server_flags(p: argparse.ArgumentParser) -> None:
    # Every bound is far above a sensible setting and far below what would exhaust memory or never answer.
    p.add_argument("--path", choices=PATH_CHOICES, default="auto", help="inference path, as for predict")
    p.add_argument("--max-batch", type=int_in(1, 4096), default=32, help="images per forward pass at most")
    p.add_argument("--calib", help="directory of a few dozen typical images: int8 calibrates on them, and --path "
                   "auto checks bf16 and int8 against fp32 on them (without them auto stays fp32)")
    p.add_argument("--max-wait-ms", type=float_in(0, 10_000), default=5.0,
                   help="how long a request waits for company")
    p.add_argument("--queue", type=int_in(1, 100_000), default=256, help="requests admitted at once; more get 503")
    p.add_argument("--workers", type=worker_threads, default=min(2, cores()),
                   help="threads that decode and preprocess images")
    p.add_argument("--max-body-mb", type=float_in(0, 1024, above=True), default=16.0,
                   help="larger request bodies get 413")
    p.add_argument("--body-timeout-s", type=float_in(0, 3600, above=True), default=60.0,
                   help="a request body not received in full within this time gets 408")
    p.add_argument("--max-pixels", type=int_in(1, MAX_PIXELS_LIMIT), default=40_000_000,
                   help="larger images are refused as decompression bombs (400)")


def _server_config(args: argparse.Namespace, weights: str, **extra):
    try:
        from reslab.serve.app import ServeConfig
    except ModuleNotFoundError as e:
        raise ReslabError(f"{_EXTRA} ({e.name} is missing)") from e
    return ServeConfig(weights=weights, path=args.path, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                       queue=args.queue, workers=args.workers, max_body_mb=args.max_body_mb,
                       body_timeout_s=args.body_timeout_s, max_pixels=args.max_pixels, **extra)


def _cmd_serve(args: argparse.Namespace) -> int:
    config = _server_config(args, args.weights, host=args.host, port=args.port, calib=args.calib,
                            drain_s=args.drain_timeout)
    from reslab.serve.app import run_server

    code = run_server(config)
    # Drained and stopped: skip the interpreter's teardown of torch and its libraries, which took 3-13 s on
    # a loaded 2-core machine (measured: 0.15 s from SIGTERM to a drained server, then 4-5 s to the exit).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _cmd_bench_serve(args: argparse.Namespace) -> int:
    if args.server_auto and args.path not in ("auto", "fastest"):
        raise ReslabError(f"--server-auto lets the servers resolve --path auto or fastest themselves; with --path "
                          f"{args.path} there is nothing to resolve. Received: --path {args.path} --server-auto; "
                          f"drop --server-auto, or pass --path auto")
    config = _server_config(args, args.weights or "", calib=args.calib)
    try:
        from reslab.serve.bench import BenchConfig, bench_serve, print_report, save_report
    except ModuleNotFoundError as e:
        raise ReslabError(f"{_EXTRA} ({e.name} is missing)") from e
    from reslab.outputs import check_file_out

    if args.out:  # fails now, not after the benchmark (the default name waits for the model's name)
        check_file_out(args.out, overwrite=args.overwrite)
    bench = BenchConfig(server=config, model=args.model, concurrency=args.concurrency, requests=args.requests,
                        hostile=args.hostile, time_limit_s=args.time_limit, server_auto=args.server_auto)
    report = bench_serve(bench)
    out = save_report(report, args.out, overwrite=args.overwrite)
    if args.json:
        from reslab.console import json_text

        print(json_text(report))
    else:
        print_report(report)
        print(f"saved {out}")
    return 0
