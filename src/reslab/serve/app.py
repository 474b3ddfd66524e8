"""`reslab serve`: the HTTP app (Starlette on uvicorn) over one batching inference worker.

Routes: POST /v1/predict (one image as the raw body, or one or more as multipart files;
?topk=), POST /v1/explain (the class activation map of one image as a PNG; ?class=),
GET /healthz (the process answers), GET /readyz (engine built and warmed up), GET /metrics
(Prometheus text), GET / (a page to drop an image on, see the top-k and the CAM of any of them),
GET /favicon.ico.

Where the work happens: the event loop only reads bodies and writes JSON. Decoding and the
geometry of preprocessing (resize, crop: uint8) run in a thread pool (`workers` threads); the
batcher's one worker thread normalises each batch and runs the forward pass. Admission: at most
`queue` predict requests are in the server at once (decoding, waiting or in a forward pass);
one more gets 503 with Retry-After before its body is read, and so does one whose body would
take the uploads held at once past 16 x `max_body_mb`: a flood costs no memory. A request
counts against `queue` only once its body has arrived, and a body not complete within
`body_timeout_s` gets 408, so clients that never finish their bodies cannot keep others out. A
body over `max_body_mb` gets 413; an image that does not decode, is not in an accepted format,
or is a decompression bomb (more than `max_pixels`), gets 400 with the reason, and never
reaches a batch; so does a query value that is not plain ASCII digits where a number is asked
for.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import io
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from urllib.parse import quote

import torch
import uvicorn
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from torch import Tensor, nn

from reslab.deploy.fast import InferenceEngine
from reslab.deploy.images import image_mode, load_image, normalize_view, raw_view
from reslab.deploy.predict import AUTO_BUILD_MIN, build_predict_engine, expand_inputs
from reslab.errors import ReslabError
from reslab.hardware import tune_malloc
from reslab.metadata import WeightsMeta
from reslab.serve.batcher import Batcher
from reslab.serve.explain import Explainer
from reslab.serve.metrics import ServeMetrics, route_label
from reslab.weights import load_weights

MAX_FILES = 64  # images in one multipart request
BUFFERED_BODIES = 16
RETRY_AFTER_S = 1
TRIM_PIXELS = 4_000_000  # after decoding an image this large, hand the freed heap back to the system
CLIENT_GONE = 499  # nginx's "client closed request": counted in the metrics, never seen by anyone


@dataclass(frozen=True)
class ServeConfig:
    weights: str
    host: str = "127.0.0.1"
    port: int = 8000
    path: str = "auto"
    max_batch: int = 32
    max_wait_ms: float = 5.0
    queue: int = 256
    workers: int = 2
    max_body_mb: float = 16.0
    body_timeout_s: float = 60.0
    max_pixels: int = 40_000_000
    calib: str | None = None
    drain_s: float = 30.0  # after SIGTERM, requests in flight get this long; then they are cancelled


class _State:
    """Everything the routes share: metadata, the batcher, the decode pool, the metrics."""

    def __init__(self, config: ServeConfig, model: nn.Module, meta: WeightsMeta) -> None:
        self.config, self.meta = config, meta
        self.pre, self.mode = meta["preprocess"], image_mode(meta["preprocess"])
        self.max_body = int(config.max_body_mb * 2**20)
        # Uploads held at once (read, decoding or waiting): room for BUFFERED_BODIES bodies of the largest size.
        self.max_buffered, self.buffered = BUFFERED_BODIES * self.max_body, 0
        self.in_flight = 0
        self.on_fatal: Callable[[BaseException], None] = lambda e: None
        example = raw_view(Image.new(self.mode, (64, 64)), self.pre)  # uint8 (C, H, W) as a request's
        self.metrics = ServeMetrics(max_batch=config.max_batch, queue_depth=lambda: self.batcher.depth(),
                                    in_flight=lambda: self.in_flight)
        warmup_s, batch_s = (float(os.environ.get(k, "0")) for k in _TEST_HOOKS)
        self.batcher = Batcher(lambda: build_server_engine(model, meta, config), example, max_batch=config.max_batch,
                               max_wait_s=config.max_wait_ms / 1000, prepare=self.normalize,
                               warmup_delay_s=warmup_s, batch_delay_s=batch_s,
                               on_batch=self.metrics.batch_size.observe, on_skip=self.metrics.skipped.inc,
                               on_fatal=lambda e: self.on_fatal(e), on_ready=_say_ready)
        # One intra-op thread per decoder: the engine's threads own the cores, and more OpenMP teams
        # would only spin against them. The pool starts its threads after the engine's warm-up.
        self.explainer = Explainer(model, meta)
        self.pool = ThreadPoolExecutor(config.workers, thread_name_prefix="reslab-decode",
                                       initializer=torch.set_num_threads, initargs=(1,))

    def load(self, name: str | None, data: bytes) -> Image.Image:
        """Image bytes -> decoded image; ReslabError naming the upload if they are not a safe image."""
        return load_image(io.BytesIO(data), mode=self.mode, name=name or "request body")

    def decode(self, name: str | None, data: bytes) -> Tensor:
        """Image bytes -> uint8 (C, H, W), resized and cropped; `normalize` makes it the network's input."""
        img = self.load(name, data)
        try:
            return raw_view(img, self.pre)
        finally:
            _release(img)

    def normalize(self, x: Tensor) -> Tensor:
        """uint8 (N, C, H, W) -> the float32 batch the engine takes. Per batch, in the inference thread: the
        decode threads hand over a quarter of the bytes, and one stack of uint8 views and one normalisation of
        the batch cost less than N normalisations and a stack of float32 (docs/benchmarks.md)."""
        return normalize_view(x, self.pre)

    def explain(self, name: str | None, data: bytes, class_text: str | None
                ) -> tuple[bytes, str, float, tuple[float, ...]]:
        """Image bytes -> (CAM overlay PNG, class name, probability, the part of the image the model sees)."""
        img = self.load(name, data)
        try:
            return self.explainer(img, class_text)
        finally:
            _release(img)

    def answer(self, names: list[str | None], rows: list[Tensor], topk: int) -> dict:
        """The JSON of one request: `reslab predict --json`'s rows, with the model and the path."""
        classes = self.meta["classes"]
        probs = torch.stack(rows).softmax(dim=1)
        p, idx = probs.topk(min(topk, probs.shape[1]), dim=1)
        results = [{"file": name, "topk": [{"class": classes[i] if i < len(classes) else str(i), "prob": v}
                                           for v, i in zip(pr, ix, strict=True)]}
                   for name, pr, ix in zip(names, p.tolist(), idx.tolist(), strict=True)]
        assert self.batcher.engine is not None
        return {"model": self.meta["model"], "path": self.batcher.engine.name, "results": results}


def _release(img: Image.Image) -> None:
    """Free a decoded image now. With `tune_malloc`'s thresholds glibc keeps freed memory for reuse, which
    suits activations of one size but lets a few 36-megapixel uploads hold hundreds of MB for good: after a
    large image, the heap's free pages go back to the system."""
    big = img.width * img.height >= TRIM_PIXELS
    img.close()
    if big:
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
            ctypes.CDLL("libc.so.6").malloc_trim(0)


# Test hooks (seconds): a slow warm-up, so /readyz can be seen false; slow batches, so the queue fills.
_TEST_HOOKS = ("RESLAB_TEST_SERVE_WARMUP_S", "RESLAB_TEST_SERVE_BATCH_S")


def _say_ready(engine: InferenceEngine) -> None:
    print(f"reslab serve: ready (inference path {engine.name}, built in {engine.build_s:.1f} s)", file=sys.stderr)


def build_server_engine(model: nn.Module, meta: WeightsMeta, config: ServeConfig) -> InferenceEngine:
    """The engine `reslab serve` runs: `config.path`, built for batches of `config.max_batch`."""
    calib = expand_inputs([config.calib]) if config.calib else []
    # A server sees many images: `auto` resolves as predict does for a large job (deploy/auto.py's measured
    # choice, bf16-compiled and int8 included, checked against fp32 on the --calib images).
    return build_predict_engine(model, meta, [], config.path, calib=calib, batch_size=config.max_batch,
                                n_images=max(AUTO_BUILD_MIN, config.max_batch), server=True)


# ---------------------------------------------------------------------------- predict
def _busy(reason: str) -> HTTPException:
    return HTTPException(503, f"{reason}; retry in {RETRY_AFTER_S} s", headers={"Retry-After": str(RETRY_AFTER_S)})


def _show(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def query_int(text: str) -> int | None:
    """`text` as an integer when it is 1 to 9 ASCII digits (not '²', not a thousand digits), else None."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None


def _topk(text: str | None) -> int:
    if text is None:
        return 5
    value = query_int(text)
    if value is None or value < 1:
        raise HTTPException(400, f"topk must be a positive integer in ASCII digits. Received: topk={_show(text)}")
    return value


class _Body:
    """The request's `receive`, counting its body: 413 past `max_body` bytes (a chunked body declares no
    length), 503 when all requests together would hold more than `max_buffered` bytes."""

    def __init__(self, request: Request, s: _State) -> None:
        self.receive, self.s, self.seen = request.receive, s, 0
        declared = request.headers.get("content-length", "")
        if declared.isdigit():
            self._check(int(declared), int(declared))

    def _check(self, size: int, pending: int) -> None:
        if size > self.s.max_body:
            raise HTTPException(413, f"request body of {size}+ bytes is over the limit of {self.s.max_body} "
                                     f"bytes; send a smaller image, or start the server with a larger --max-body-mb")
        if self.s.buffered + pending > self.s.max_buffered:
            raise _busy(f"the server holds {self.s.buffered} bytes of uploads already")

    async def __call__(self) -> dict:
        message = await self.receive()
        n = len(message.get("body", b""))
        self._check(self.seen + n, n)
        self.seen += n
        self.s.buffered += n
        return message

    def release(self) -> None:
        self.s.buffered -= self.seen


async def _read_images(request: Request, body: _Body) -> list[tuple[str | None, bytes]]:
    """[(file name or None, bytes)]: the raw body, or every file part of a multipart body."""
    request = Request(request.scope, body)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        async with request.form(max_files=MAX_FILES, max_fields=MAX_FILES, max_part_size=body.s.max_body) as form:
            files = [(v.filename or k, await v.read()) for k, v in form.multi_items() if isinstance(v, UploadFile)]
        if not files:
            raise HTTPException(400, "no file in the multipart body; send each image as a file part "
                                     "(curl -F file=@photo.jpg)")
        return files
    data = await request.body()
    if not data:
        raise HTTPException(400, "empty body; send the image's bytes as the body, or files as multipart/form-data")
    return [(None, data)]


async def _disconnected(receive: Callable[[], Awaitable[dict]]) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _infer(request: Request, batcher: Batcher, tensors: list[Tensor]) -> list[Tensor] | None:
    """Each tensor's output row, or None if the client left first (its images are then skipped or discarded)."""
    futures = [batcher.submit(t) for t in tensors]
    rows = asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
    gone = asyncio.ensure_future(_disconnected(request.receive))
    await asyncio.wait({rows, gone}, return_when=asyncio.FIRST_COMPLETED)
    gone.cancel()
    if rows.done():
        return rows.result()
    rows.cancel()  # cancels each future the worker has not started: it will skip them
    return None


@asynccontextmanager
async def _admitted(request: Request, s: _State):
    """Admission for the routes that take an image: 503 while warming up or full; the body is read
    (408 past `body_timeout_s`) before the request counts in flight; yields the images."""
    if not s.batcher.ready.is_set():
        raise _busy("the model is still warming up")
    if s.in_flight >= s.config.queue:
        raise _busy(f"the queue is full ({s.config.queue} requests)")
    body = _Body(request, s)
    try:
        try:
            images = await asyncio.wait_for(_read_images(request, body), s.config.body_timeout_s)
        except TimeoutError:
            raise HTTPException(408, f"the request body did not arrive within {s.config.body_timeout_s:g} s; "
                                     f"send it at once, or start the server with a larger --body-timeout-s",
                                headers={"Connection": "close"}) from None
        if s.in_flight >= s.config.queue:
            raise _busy(f"the queue is full ({s.config.queue} requests)")
        s.in_flight += 1
        try:
            yield images
        finally:
            s.in_flight -= 1
    finally:
        body.release()


async def _in_pool(s: _State, fn: Callable, calls: list[tuple]) -> list:
    """`fn(*args)` for each args in the decode pool; a ReslabError (a bad image) is the request's 400."""
    loop = asyncio.get_running_loop()
    try:
        return list(await asyncio.gather(*(loop.run_in_executor(s.pool, fn, *args) for args in calls)))
    except ReslabError as e:
        raise HTTPException(400, str(e).splitlines()[0]) from e


async def _predict(request: Request) -> Response:
    s: _State = request.app.state.serve
    topk = _topk(request.query_params.get("topk"))
    try:
        async with _admitted(request, s) as images:
            rows = await _infer(request, s.batcher, await _in_pool(s, s.decode, images))
    except ClientDisconnect:
        rows = None
    if rows is None:
        return Response(status_code=CLIENT_GONE)
    return JSONResponse(s.answer([n for n, _ in images], rows, topk))


async def _explain(request: Request) -> Response:
    """The CAM overlay of the first image as PNG; the class (`?class=`, default the top-1) in X-Class, the
    part of the image the model sees in X-View-Box (left, top, width, height as fractions of the image)."""
    s: _State = request.app.state.serve
    try:
        async with _admitted(request, s) as images:
            name, data = images[0]
            [(png, name, prob, box)] = await _in_pool(s, s.explain, [(name, data, request.query_params.get("class"))])
    except ClientDisconnect:
        return Response(status_code=CLIENT_GONE)
    return Response(png, media_type="image/png", headers={"X-Class": quote(name), "X-Probability": f"{prob:.6g}",
                                                          "X-View-Box": ",".join(f"{v:.4f}" for v in box)})


# ---------------------------------------------------------------------------- the other routes
async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _readyz(request: Request) -> Response:
    s: _State = request.app.state.serve
    b = s.batcher
    if b.ready.is_set() and b.engine is not None:
        return JSONResponse({"ready": True, "model": s.meta["model"], "path": b.engine.name,
                             "classes": len(s.meta["classes"]), "max_batch": s.config.max_batch})
    reason = f"engine failed: {b.error}" if b.error is not None else "building and warming up the engine"
    return JSONResponse({"ready": False, "reason": reason}, status_code=503)


def _favicon() -> bytes:
    """A 32 px icon drawn once: three bars, as the page's top-k bars (no file to ship, no 404 in the log)."""
    from PIL import ImageDraw

    img = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.rounded_rectangle((0, 0, 31, 31), radius=6, fill=(34, 34, 34, 255))
    for i, length in enumerate((24, 15, 8)):
        draw.rectangle((4, 5 + 8 * i, 4 + length, 10 + 8 * i), fill=(34, 170, 102, 255))
    buf = io.BytesIO()
    img.save(buf, "ICO", sizes=[(32, 32)])
    return buf.getvalue()


async def _metrics(request: Request) -> Response:
    s: _State = request.app.state.serve
    return Response(generate_latest(s.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


class _Observe:
    """ASGI middleware: counts every answer by route and status, times /v1/predict."""

    def __init__(self, app, metrics: ServeMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = asyncio.get_running_loop().time(), 500

        async def observed_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            route = route_label(scope["path"])
            self.metrics.requests.labels(route, str(status)).inc()
            if route == "/v1/predict":
                self.metrics.latency.observe(asyncio.get_running_loop().time() - start)


def create_app(config: ServeConfig, model: nn.Module, meta: WeightsMeta) -> Starlette:
    """The ASGI app for `model` with `meta` (load_weights' pair); its lifespan runs the batcher."""
    state = _State(config, model, meta)
    page = resources.files("reslab.serve").joinpath("page.html").read_text(encoding="utf-8")

    icon = _favicon()

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    async def favicon(request: Request) -> Response:
        return Response(icon, media_type="image/x-icon", headers={"Cache-Control": "max-age=86400"})

    @asynccontextmanager
    async def lifespan(app: Starlette):
        state.batcher.start()
        yield
        state.batcher.stop(config.drain_s)  # uvicorn has answered every request by now: this only ends the worker
        state.pool.shutdown()

    routes = [Route("/", index), Route("/favicon.ico", favicon),
              Route("/healthz", _healthz), Route("/readyz", _readyz), Route("/metrics", _metrics),
              Route("/v1/predict", _predict, methods=["POST"]), Route("/v1/explain", _explain, methods=["POST"])]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error},
                    middleware=[Middleware(_Observe, metrics=state.metrics)])
    app.state.serve = state
    return app


def _keep_sigterm(signum: int, frame) -> None:
    """uvicorn drains on SIGTERM, then raises it again for the handler it found: this one, so the exit is 0."""


class _Server(uvicorn.Server):
    """uvicorn's server that says when a signal starts the drain (an operator sees why it stops)."""

    def __init__(self, config: uvicorn.Config, state: _State, drain_s: float) -> None:
        super().__init__(config)
        self.state, self.drain_s = state, drain_s
        self.stop_asked: float | None = None

    def handle_exit(self, sig: int, frame) -> None:
        if self.stop_asked is None:
            self.stop_asked = time.monotonic()
            # os.write: a signal handler may interrupt a print of the main thread (print is not reentrant).
            os.write(2, f"reslab serve: {signal.Signals(sig).name}: no new connections; finishing "
                        f"{self.state.in_flight} request(s) in flight (at most {self.drain_s:g} s)\n".encode())
        super().handle_exit(sig, frame)
def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port), as uvicorn would bind it; a port in use (or a host that is not this
    machine's) is a one-line ReslabError now, before the model loads and the server says it is ready."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise ReslabError(f"--host {_show(host)}: not an address to listen on ({e})") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        hint = "; stop the other server or pass another --port" if e.errno == 98 else ""
        raise ReslabError(f"cannot listen on {host}:{port} ({e.strerror}){hint}") from None
    sock.set_inheritable(True)
    return sock


def run_server(config: ServeConfig) -> int:
    """Serve until SIGTERM or Ctrl-C; SIGTERM stops accepting, answers everything admitted, exits 0."""
    if config.path.startswith("int8") and not config.calib:
        raise ReslabError("--path int8 needs calibration images; pass --calib DIR with a few dozen typical images")
    sock = listen_socket(config.host, config.port)
    tune_malloc()
    Image.MAX_IMAGE_PIXELS = config.max_pixels  # load_image refuses anything larger (a decompression bomb)
    try:
        model, meta = load_weights(config.weights)
    except BaseException:
        sock.close()
        raise
    app = create_app(config, model, meta)
    state: _State = app.state.serve
    server = _Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="warning", access_log=False,
                                    http="h11", lifespan="on", timeout_graceful_shutdown=config.drain_s),
                     state, config.drain_s)
    state.on_fatal = lambda e: setattr(server, "should_exit", True)
    print(f"reslab serve: {meta['model']} on http://{config.host}:{config.port} (max batch {config.max_batch}, "
          f"max wait {config.max_wait_ms:g} ms, queue {config.queue}); warming up", file=sys.stderr)
    signal.signal(signal.SIGTERM, _keep_sigterm)
    server.run(sockets=[sock])
    if state.batcher.error is not None:
        raise state.batcher.error
    if server.stop_asked is not None:
        print(f"reslab serve: stopped, {time.monotonic() - server.stop_asked:.1f} s after the signal", file=sys.stderr)
    return 0
