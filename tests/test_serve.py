"""`reslab serve`: the real server as a subprocess on a free loopback port, driven by a real HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import time
from types import SimpleNamespace
from urllib.parse import unquote

import pytest
import torch
from PIL import Image

httpx = pytest.importorskip("httpx", reason="the serve extra is not installed (pip install 'reslab[serve]')")
pytest.importorskip("starlette", reason="the serve extra is not installed (pip install 'reslab[serve]')")

from starlette.exceptions import HTTPException  # noqa: E402

from reslab.deploy.fast import InferenceEngine  # noqa: E402
from reslab.deploy.images import image_mode, load_image, normalize_view, preprocess_image, raw_view  # noqa: E402
from reslab.deploy.predict import predict  # noqa: E402
from reslab.serve.app import ServeConfig, _Body  # noqa: E402
from reslab.serve.batcher import Batcher  # noqa: E402
from reslab.serve.bench import (  # noqa: E402
    batch_stats,
    free_port,
    photos,
    png_bomb,
    start_server,
    stop_server,
    wait_ready,
)

from fakedata import tiny_weights  # noqa: E402

PRE = {"image_size": 32, "in_chans": 3, "mode": "channel", "mean": [0.5, 0.4, 0.3], "std": [0.25, 0.25, 0.25],
       "resize": None, "crop": 32}
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_weights(tmp_path_factory.mktemp("w"), PRE)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("img")
    files = []
    for i, data in enumerate(photos(4, size=(80, 60))):
        files.append(folder / f"photo{i}.jpg")
        files[-1].write_bytes(data)
    return files


def test_batcher_groups_waiting_images_and_skips_cancelled_ones():
    sizes, skipped = [], []
    engine = InferenceEngine("sum", lambda x: x.sum(dim=(2, 3)))  # (N, C, H, W) -> (N, C)
    batcher = Batcher(lambda: engine, torch.zeros(2, 4, 4), max_batch=4, max_wait_s=0.2, batch_delay_s=0.3,
                      on_batch=sizes.append, on_skip=lambda: skipped.append(1))
    batcher.start()
    assert batcher.ready.wait(10)
    futures = [batcher.submit(torch.full((2, 4, 4), float(i))) for i in range(6)]
    futures[5].cancel()  # its caller left while the first batch ran
    assert [futures[i].result(10).tolist() for i in range(5)] == [[16.0 * i] * 2 for i in range(5)]
    batcher.stop(10)
    assert sizes == [4, 1] and skipped == [1]


def test_batcher_prepares_each_batch_once_before_the_engine():
    seen = []
    engine = InferenceEngine("sum", lambda x: x.sum(dim=(2, 3)))

    def prepare(x):
        seen.append((tuple(x.shape), x.dtype))
        return x.float() / 2

    batcher = Batcher(lambda: engine, torch.zeros(2, 4, 4, dtype=torch.uint8), max_batch=3, max_wait_s=0.5,
                      prepare=prepare)
    batcher.start()
    assert batcher.ready.wait(10)
    futures = [batcher.submit(torch.full((2, 4, 4), i, dtype=torch.uint8)) for i in range(3)]
    assert [f.result(10).tolist() for f in futures] == [[8.0 * i] * 2 for i in range(3)]
    batcher.stop(10)
    # warm-up at batch 1 and max_batch, then the three images as one stacked uint8 batch
    assert seen == [((1, 2, 4, 4), torch.uint8), ((3, 2, 4, 4), torch.uint8), ((3, 2, 4, 4), torch.uint8)]


@pytest.mark.parametrize("pre", [PRE, {**PRE, "in_chans": 1, "mode": "pixel-mean", "std": [0.5],
                                       "mean_image": torch.rand(1, 40, 40).tolist()}], ids=["channel", "pixel-mean"])
def test_server_normalising_per_batch_equals_preprocessing_each_image(pre):
    mode = image_mode(pre)
    imgs = [load_image(io.BytesIO(b), mode=mode) for b in photos(3, size=(80, 60))]
    per_batch = normalize_view(torch.stack([raw_view(img, pre) for img in imgs]), pre)
    assert per_batch.dtype == torch.float32
    assert torch.equal(per_batch, torch.stack([preprocess_image(img, pre) for img in imgs]))


def test_uploads_held_at_once_are_bounded():
    state = SimpleNamespace(max_body=100, max_buffered=250, buffered=0)

    async def receive():
        return {"type": "http.request", "body": b"x" * 100, "more_body": False}

    def request(length=None):
        return SimpleNamespace(receive=receive, headers={} if length is None else {"content-length": str(length)})

    held = [_Body(request(), state), _Body(request(), state)]
    for body in held:
        asyncio.run(body())
    assert state.buffered == 200
    with pytest.raises(HTTPException) as busy:
        _Body(request(100), state)  # would hold 300 > 250 bytes: refused before reading
    assert busy.value.status_code == 503 and busy.value.headers["Retry-After"]
    with pytest.raises(HTTPException) as chunked:
        asyncio.run(_Body(request(), state)())  # no length declared: refused when the bytes arrive
    assert chunked.value.status_code == 503
    with pytest.raises(HTTPException) as large:
        _Body(request(101), state)
    assert large.value.status_code == 413
    for body in held:
        body.release()
    assert state.buffered == 0


def _serve(weights, tmp_path, env=None, **flags):
    config = ServeConfig(weights=str(weights), path="channels-last", **flags)
    port, log = free_port(), tmp_path / f"server-{time.monotonic_ns()}.log"
    return start_server(config, port, log, env=env), port, log


@pytest.fixture(scope="module")
def server(weights, tmp_path_factory):
    """max batch 8, 200 ms to gather a batch, 256 KiB body limit."""
    proc, port, log = _serve(weights, tmp_path_factory.mktemp("log"), max_batch=8, max_wait_ms=200,
                             max_body_mb=0.25)
    wait_ready(port, proc, log, timeout_s=120)
    yield f"http://127.0.0.1:{port}"
    assert stop_server(proc) == 0


async def _post_all(url: str, bodies: list[bytes], query: str = "") -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await asyncio.gather(*(client.post(f"/v1/predict{query}", content=b) for b in bodies))


def test_concurrent_requests_share_batches_and_equal_predict(server, weights, images):
    passes0, images0 = batch_stats(int(server.rsplit(":", 1)[1]))
    bodies = [f.read_bytes() for f in images] * 3
    answers = asyncio.run(_post_all(server, bodies, "?topk=3"))
    assert [a.status_code for a in answers] == [200] * len(bodies)
    passes1, images1 = batch_stats(int(server.rsplit(":", 1)[1]))
    assert images1 - images0 == len(bodies)
    assert (images1 - images0) / (passes1 - passes0) > 1  # concurrent requests were grouped
    expected = predict(weights, images, topk=3, path="channels-last")
    for i, a in enumerate(answers):
        body = a.json()
        assert body["model"] == "resnet20" and body["path"] == "channels-last"
        got, want = body["results"][0]["topk"], expected[i % len(images)]["topk"]
        assert [r["class"] for r in got] == [r["class"] for r in want]
        assert [r["prob"] for r in got] == pytest.approx([r["prob"] for r in want], abs=1e-5)


def test_multipart_several_files(server, images):
    files = [("file", (f.name, f.read_bytes(), "image/jpeg")) for f in images[:2]]
    r = httpx.post(f"{server}/v1/predict?topk=1", files=files, timeout=60)
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["file"] for x in results] == [f.name for f in images[:2]] and len(results[0]["topk"]) == 1


def test_bad_inputs_get_one_line_4xx_and_leave_good_ones_alone(server, images):
    photo = images[0].read_bytes()
    bad = {b"": "empty body", photo[: len(photo) // 3]: "truncated", b"hello": "not an image",
           png_bomb(): "too many pixels"}
    answers = asyncio.run(_post_all(server, [photo, *bad, photo]))
    assert answers[0].status_code == answers[-1].status_code == 200
    assert answers[0].json() == answers[-1].json()
    for a, reason in zip(answers[1:-1], bad.values(), strict=True):
        assert a.status_code == 400, a.text
        error = a.json()["error"]
        assert reason in error and "\n" not in error
    big = httpx.post(f"{server}/v1/predict", content=b"\0" * (300 * 1024), timeout=60)
    assert big.status_code == 413 and "limit" in big.json()["error"]
    chunked = httpx.post(f"{server}/v1/predict", content=(b"\0" * (100 * 1024) for _ in range(3)), timeout=60)
    assert chunked.status_code == 413  # no Content-Length: refused once the body passes the limit
    assert httpx.post(f"{server}/v1/predict?topk=x", content=photo).status_code == 400
    form = b'--xyz\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n--xyz--\r\n'
    no_file = httpx.post(f"{server}/v1/predict", content=form,
                         headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert no_file.status_code == 400 and "no file" in no_file.json()["error"]


def test_explain_answers_the_cam_overlay_as_png(server, weights, images):
    photo = images[0].read_bytes()
    r = httpx.post(f"{server}/v1/explain", content=photo, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    top1 = predict(weights, images[:1], topk=1, path="channels-last")[0]["topk"][0]
    assert unquote(r.headers["X-Class"]) == top1["class"]
    assert float(r.headers["X-Probability"]) == pytest.approx(top1["prob"], abs=1e-4)
    assert Image.open(io.BytesIO(r.content)).size == (224, 224)  # the 32 px view, enlarged to be seen
    other = httpx.post(f"{server}/v1/explain?class=class3", content=photo, timeout=60)
    assert other.status_code == 200 and other.headers["X-Class"] == "class3" and other.content != r.content
    unknown = httpx.post(f"{server}/v1/explain?class=dog", content=photo, timeout=60)
    assert unknown.status_code == 400 and "dog" in unknown.json()["error"]
    assert httpx.post(f"{server}/v1/explain", content=b"hello").status_code == 400
    assert r.headers["X-View-Box"] == "0.0000,0.0000,1.0000,1.0000"  # a 32 px net sees the whole image


def test_view_box_is_the_part_of_the_image_the_model_sees():
    from reslab.serve.explain import view_box

    imagenet = {"image_size": 224, "resize": 256, "crop": 224}
    assert view_box((400, 300), imagenet) == pytest.approx((0.1719, 0.0625, 0.6562, 0.875), abs=1e-3)
    assert view_box((300, 400), imagenet) == pytest.approx((0.0625, 0.1719, 0.875, 0.6562), abs=1e-3)
    assert view_box((640, 480), {"image_size": 28, "resize": None, "crop": 28}) == (0, 0, 1, 1)  # squashed whole
    assert view_box((100, 50), {"image_size": 32, "resize": None, "crop": 24}) == (0.125, 0.125, 0.75, 0.75)


def test_health_metrics_and_page(server):
    assert httpx.get(f"{server}/healthz").json() == {"status": "ok"}
    metrics = httpx.get(f"{server}/metrics").text
    for name in ("reslab_http_requests_total", "reslab_predict_latency_seconds_bucket", "reslab_batch_size_bucket",
                 "reslab_queue_depth"):
        assert name in metrics
    page = httpx.get(f"{server}/")
    assert page.status_code == 200 and "reslab serve" in page.text and "://" not in page.text  # no external assets
    icon = httpx.get(f"{server}/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert Image.open(io.BytesIO(icon.content)).size == (32, 32)


def test_readiness_full_queue_disconnect_and_sigterm_drain(weights, images, tmp_path):
    """Slow on purpose (test hooks): a 3 s warm-up, then 0.4 s per one-image batch, queue of 3."""
    env = {"RESLAB_TEST_SERVE_WARMUP_S": "3", "RESLAB_TEST_SERVE_BATCH_S": "0.4"}
    proc, port, log = _serve(weights, tmp_path, env=env, max_batch=1, queue=3)
    url = f"http://127.0.0.1:{port}"
    photo = images[0].read_bytes()
    try:
        _wait_until_answering(url, proc)
        assert httpx.get(f"{url}/readyz").status_code == 503
        early = httpx.post(f"{url}/v1/predict", content=photo)
        assert early.status_code == 503 and "Retry-After" in early.headers
        wait_ready(port, proc, log, timeout_s=120)
        answers = asyncio.run(_post_all(url, [photo] * 6))
        codes = sorted(a.status_code for a in answers)
        assert codes.count(200) >= 3 and 503 in codes, codes
        assert all(a.headers["Retry-After"] for a in answers if a.status_code == 503)
        assert asyncio.run(_abandon(url, photo)) >= 1
        start = time.monotonic()
        assert asyncio.run(_sigterm_during(url, proc, photo)) == [200, 200, 200]
        assert proc.wait(60) == 0
        assert time.monotonic() - start < 10  # 3 x 0.4 s of batches; the interpreter's teardown is skipped
    finally:
        stop_server(proc)
    said = log.read_text()
    assert "SIGTERM: no new connections; finishing 3 request(s) in flight (at most 30 s)" in said
    assert "reslab serve: stopped," in said


def test_sigterm_cancels_what_outlasts_the_drain_timeout(weights, images, tmp_path):
    """A 20 s batch and --drain-timeout 1: the server exits in seconds, not after the batch."""
    proc, port, log = _serve(weights, tmp_path, env={"RESLAB_TEST_SERVE_BATCH_S": "20"}, max_batch=1, drain_s=1.0)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(port, proc, log, timeout_s=120)
        asyncio.run(_post_then_terminate(url, proc, images[0].read_bytes()))
        start = time.monotonic()
        proc.wait(30)
        assert time.monotonic() - start < 8
    finally:
        stop_server(proc)
    assert "(at most 1 s)" in log.read_text()


async def _post_then_terminate(url: str, proc, photo: bytes) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        pending = asyncio.ensure_future(client.post("/v1/predict", content=photo))
        await asyncio.sleep(0.5)
        proc.terminate()
        with contextlib.suppress(httpx.HTTPError):  # the cancelled request's connection may close unanswered
            await pending


def _wait_until_answering(url: str, proc) -> None:
    for _ in range(600):
        assert proc.poll() is None, "the server exited"
        try:
            httpx.get(f"{url}/healthz")
            return
        except httpx.TransportError:
            time.sleep(0.1)


async def _abandon(url: str, photo: bytes) -> float:
    """One request waits behind another and gives up: the server must skip its image."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        first = asyncio.ensure_future(client.post("/v1/predict", content=photo))
        await asyncio.sleep(0.1)
        with pytest.raises(httpx.TimeoutException):
            await client.post("/v1/predict", content=photo, timeout=0.15)
        assert (await first).status_code == 200
        await asyncio.sleep(0.5)
        metrics = (await client.get("/metrics")).text
    skipped = [line for line in metrics.splitlines() if line.startswith("reslab_skipped_images_total")]
    return float(skipped[0].split()[1])


async def _sigterm_during(url: str, proc, photo: bytes) -> list[int]:
    """Three requests in the queue, SIGTERM: all three answered, then no new connection is accepted."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        pending = [asyncio.ensure_future(client.post("/v1/predict", content=photo)) for _ in range(3)]
        await asyncio.sleep(0.2)
        proc.terminate()
        codes = [r.status_code for r in await asyncio.gather(*pending)]
    await asyncio.sleep(0.3)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz", timeout=2)
    return codes


def test_page_in_headless_chromium(server, weights, images, tmp_path):
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"no browser: {CHROMIUM} is missing (Debian: apt-get install chromium; `make test` installs it "
                    f"when run as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra has it)")
    expected = predict(weights, images[:1], topk=1, path="channels-last")[0]["topk"][0]["class"]
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page(viewport={"width": 800, "height": 600})
            missing = []
            page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
            page.goto(server + "/")
            page.set_input_files("#file", str(images[0]))
            label = page.locator("#results .label").first
            label.wait_for(timeout=30_000)
            assert label.text_content() == expected
            page.wait_for_function("document.getElementById('overlay').naturalWidth > 0", timeout=30_000)
            assert expected in page.locator("#cam-caption").text_content()
            assert "resnet20" in page.locator("#model").text_content()
            assert page.locator("#scale").is_visible()
            first_map = page.locator("#overlay").screenshot()
            # Click the second class: its map replaces the first, and its button shows as chosen.
            second = page.locator("#results button").nth(1)
            name = second.locator(".label").text_content()
            second.click()
            page.wait_for_function(f"document.getElementById('cam-caption').textContent.includes({name!r})",
                                   timeout=30_000)
            page.wait_for_function("document.getElementById('overlay').complete", timeout=30_000)
            assert second.get_attribute("aria-pressed") == "true"
            assert page.locator("#overlay").screenshot() != first_map
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            # A file that is no image: a sentence a person can act on, the server's words under "details".
            (tmp_path / "notes.txt").write_text("not a picture")
            page.set_input_files("#file", str(tmp_path / "notes.txt"))
            page.locator("#error details").wait_for(timeout=30_000)
            said = page.locator("#error").inner_text()
            assert said.startswith("notes.txt does not look like an image") and "Pillow" not in said
            assert page.locator("#view").is_hidden()
            assert missing == []  # the favicon included
        finally:
            browser.close()
