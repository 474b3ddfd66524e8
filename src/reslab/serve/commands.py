"""CLI sub-commands: `reslab serve` and `reslab bench serve`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from reslab.cli_types import nonneg_float, nonneg_int, positive_float, positive_int
from reslab.deploy.paths import CHOICES as PATH_CHOICES
from reslab.errors import ReslabError

_EXTRA = "the server needs its extra: pip install 'reslab[serve]'"


def add_commands(sub: argparse._SubParsersAction, bench_sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve weights over HTTP with dynamic batching (POST /v1/predict)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("weights", help="run or weights directory, or model.safetensors")
    _server_flags(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback: this machine only)")
    p.add_argument("--port", type=positive_int, default=8000, help="TCP port")
    p.add_argument("--calib", help="directory of calibration images (--path int8)")
    p.add_argument("--drain-timeout", type=positive_float, default=30.0,
                   help="seconds SIGTERM waits for requests in flight before cancelling them")
    p.set_defaults(func=_cmd_serve)

    p = bench_sub.add_parser("serve", help="load-test `reslab serve` on loopback against the offline engine",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--weights", help="weights to serve (default: --model with random weights)")
    p.add_argument("--model", default="resnet50", help="registered model, when no --weights")
    _server_flags(p)
    p.add_argument("--concurrency", type=positive_int, default=32, help="concurrent clients")
    p.add_argument("--requests", type=positive_int, default=640, help="good requests per load run")
    p.add_argument("--hostile", type=nonneg_int, default=0, help="malformed requests mixed into an extra load run")
    p.add_argument("--time-limit", type=positive_float, default=600.0, help="seconds each load run may take at most")
    p.add_argument("--out", help="where to save the JSON report (none: bench-serve-MODEL.json)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.set_defaults(func=_cmd_bench_serve)


def _server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--path", choices=PATH_CHOICES, default="auto", help="inference path, as for predict")
    p.add_argument("--max-batch", type=positive_int, default=32, help="images per forward pass at most")
    p.add_argument("--max-wait-ms", type=nonneg_float, default=5.0, help="how long a request waits for company")
    p.add_argument("--queue", type=positive_int, default=256, help="requests admitted at once; more get 503")
    p.add_argument("--workers", type=positive_int, default=2, help="threads that decode and preprocess images")
    p.add_argument("--max-body-mb", type=positive_float, default=16.0, help="larger request bodies get 413")
    p.add_argument("--max-pixels", type=positive_int, default=40_000_000,
                   help="larger images are refused as decompression bombs (400)")


def _server_config(args: argparse.Namespace, weights: str, **extra):
    try:
        from reslab.serve.app import ServeConfig
    except ModuleNotFoundError as e:
        raise ReslabError(f"{_EXTRA} ({e.name} is missing)") from e
    return ServeConfig(weights=weights, path=args.path, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                       queue=args.queue, workers=args.workers, max_body_mb=args.max_body_mb,
                       max_pixels=args.max_pixels, **extra)


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
    config = _server_config(args, args.weights or "")
    try:
        from reslab.serve.bench import BenchConfig, bench_serve, print_report, save_report
    except ModuleNotFoundError as e:
        raise ReslabError(f"{_EXTRA} ({e.name} is missing)") from e
    bench = BenchConfig(server=config, model=args.model, concurrency=args.concurrency, requests=args.requests,
                        hostile=args.hostile, time_limit_s=args.time_limit)
    report = bench_serve(bench)
    out = save_report(report, args.out)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
        print(f"saved {out}")
    return 0
