"""The server under hostile input (issue 28, item 7): every decode error a 400, strict query values, a
100 KB request line, a port in use, bounded flags, bodies that never finish, NaN weights. The real server
runs as a subprocess on a free loopback port."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from safetensors.torch import load_file, save_file

httpx = pytest.importorskip("httpx", reason="the serve extra is not installed (pip install 'reslab[serve]')")
pytest.importorskip("starlette", reason="the serve extra is not installed (pip install 'reslab[serve]')")

from reslab.cli import main  # noqa: E402
from reslab.serve.app import ServeConfig, query_int  # noqa: E402
from reslab.serve.bench import free_port, start_server, stop_server, wait_ready  # noqa: E402

from robust_util import png_bytes, tiny_weights  # noqa: E402

PRE = {"image_size": 16, "in_chans": 3, "mode": "channel", "mean": [0.5, 0.4, 0.3], "std": [0.25, 0.25, 0.25],
       "resize": None, "crop": 16}
QUEUE = 2


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("w"), preprocess=PRE)


@pytest.fixture(scope="module")
def server(weights, tmp_path_factory):
    """A queue of 2 and a 2 s body timeout."""
    config = ServeConfig(weights=str(weights), path="channels-last", max_batch=4, queue=QUEUE, body_timeout_s=2.0,
                         workers=1)
    port, log = free_port(), tmp_path_factory.mktemp("log") / "server.log"
    proc = start_server(config, port, log)
    wait_ready(port, proc, log, timeout_s=120)
    yield f"http://127.0.0.1:{port}"
    assert stop_server(proc) == 0


def _saved(fmt: str, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (16, 16), 7).save(buf, fmt)
    return buf.getvalue()


def _no_5xx(url: str) -> None:
    metrics = httpx.get(f"{url}/metrics").text
    codes = [line for line in metrics.splitlines() if line.startswith("reslab_http_requests_total{")]
    # /readyz answers 503 while the server warms up (the readiness protocol the fixture polls): not an error
    warming = 'reslab_http_requests_total{route="/readyz",status="503"}'
    errors = [c for c in codes if 'status="5' in c and not c.startswith(warming)]
    assert codes and not errors, codes


def test_hostile_uploads_are_400_never_5xx(server):
    hostile = {"BLP": _saved("BLP", "P"), "DDS": _saved("DDS"), "SPIDER": _saved("SPIDER", "F"),
               "TGA": _saved("TGA"), "cut DDS": _saved("DDS")[:60], "cut SPIDER": _saved("SPIDER", "F")[:300]}
    for route in ("/v1/predict", "/v1/explain"):
        for name, data in hostile.items():
            r = httpx.post(f"{server}{route}", content=data, timeout=30)
            assert r.status_code == 400, (route, name, r.status_code, r.text)
            assert "\n" not in r.json()["error"]
    _no_5xx(server)


@pytest.mark.parametrize("query", ["topk=²", "topk=١", "topk=0", "topk=-1", "topk=1e3", "topk=" + "9" * 5000,
                                   "topk=99999999999"])
def test_topk_must_be_ascii_digits(server, query):
    r = httpx.post(f"{server}/v1/predict?{query}", content=png_bytes(), timeout=30)
    assert r.status_code == 400 and "topk" in r.json()["error"] and len(r.json()["error"]) < 300


@pytest.mark.parametrize("value", ["²", "٣", "9" * 5000, "x" * 10_000])
def test_class_must_be_a_name_or_ascii_digits(server, value):
    r = httpx.post(f"{server}/v1/explain", params={"class": value}, content=png_bytes(), timeout=30)
    assert r.status_code == 400 and "class" in r.json()["error"] and len(r.json()["error"]) < 300
    _no_5xx(server)


def test_query_int():
    assert [query_int(t) for t in ("3", "003", "²", "", "12345678901", "1e3", " 3")] == [3, 3, None, None, None,
                                                                                       None, None]


def test_a_100kb_request_line_is_answered_cleanly(server):
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /v1/predict?topk=" + b"9" * 100_000 + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 4"), reply[:100]
    assert httpx.get(f"{server}/healthz").status_code == 200


async def _slow_bodies(url: str, n: int) -> list[asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    writers = []
    for _ in range(n):
        _, w = await asyncio.open_connection(host, int(port))
        w.write(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 5000\r\n\r\n"
                + b"\x89PNG")
        await w.drain()
        writers.append(w)
    return writers


def test_bodies_that_never_finish_do_not_keep_good_requests_out(server):
    """Five times the queue's size of bodies that stop after four bytes: good requests are still answered
    at once (a request counts against --queue only once its body is in)."""
    async def scenario() -> tuple[list[int], float]:
        writers = await _slow_bodies(server, 5 * QUEUE)
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient(base_url=server, timeout=30) as client:
            t0 = time.monotonic()
            good = await asyncio.gather(*(client.post("/v1/predict", content=png_bytes()) for _ in range(QUEUE)))
            took = time.monotonic() - t0
        for w in writers:
            w.close()
        return [r.status_code for r in good], took

    codes, took = asyncio.run(scenario())
    assert codes == [200] * QUEUE and took < 2.0, (codes, took)


def test_a_slow_body_gets_408(server):
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n\x89PNG")
        reply = b""
        while chunk := s.recv(4096):  # the server closes the connection after its answer
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"did not arrive within 2 s" in reply


def _serve_cli(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reslab", "serve", *map(str, argv)], capture_output=True,
                          text=True, timeout=timeout)


def test_a_port_in_use_is_one_line_before_ready(weights):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = _serve_cli([weights, "--port", port, "--path", "channels-last"])
    assert r.returncode == 2 and "Traceback" not in r.stderr and "serve: ready" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0] and "in use" in lines[0], lines


def test_nan_weights_are_refused_at_start(weights, tmp_path):
    bad = tmp_path / "nan"
    bad.mkdir()
    state = load_file(weights / "model.safetensors")
    state["layer1.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    save_file(state, bad / "model.safetensors", metadata={"format": "reslab-weights"})
    (bad / "model.json").write_text((weights / "model.json").read_text())
    r = _serve_cli([bad, "--port", free_port(), "--path", "channels-last"])
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "serve: ready" not in r.stderr, r.stderr
    assert "tensor layer1.0.conv1.weight holds 1 NaN" in lines[0]
    assert json.loads((bad / "model.json").read_text())["model"] == "resnet20"


@pytest.mark.parametrize("flag, value", [("--max-wait-ms", "1e308"), ("--max-body-mb", "1e308"),
                                         ("--max-body-mb", "0"), ("--queue", "1000000000"),
                                         ("--workers", "100000"), ("--max-batch", "1000000"),
                                         ("--max-pixels", "10000000000000"), ("--port", "70000"),
                                         ("--body-timeout-s", "1e9"), ("--max-wait-ms", "nan")])
def test_server_flags_are_bounded(weights, capsys, flag, value):
    with pytest.raises(SystemExit) as e:
        main(["serve", str(weights), flag, value])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert e.value.code == 2 and len(lines) == 1 and flag in lines[0] and "Traceback" not in err, err
