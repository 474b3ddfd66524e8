"""Dynamic batching: requests wait at most `max_wait_s` to share one forward pass.

One worker thread builds the engine, warms it up and then owns it: it takes the first
waiting image, gathers more until `max_batch` or until `max_wait_s` has passed since that
first one, runs them as one batch and hands each caller its row. A caller that has gone
(its future cancelled before the batch formed) is skipped without running; one that goes
during the forward pass just never reads its row.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import torch
from torch import Tensor

from reslab.deploy.fast import InferenceEngine

log = logging.getLogger("reslab.serve")


@dataclass
class _Item:
    x: Tensor  # (C, H, W), as `prepare` takes it
    future: Future


class Batcher:
    """`submit(x)` an image (C, H, W); its future resolves to the engine's output row (K,).

    `build()` makes the engine inside the worker thread; each batch of submitted images,
    stacked (N, C, H, W), goes through `prepare` before the engine (the server normalises
    there: once per batch, not once per image); `example` (C, H, W) shapes the warm-up passes
    (batch 1 and `max_batch`). `on_batch(n)` is called with each batch's size,
    `on_skip()` for each image dropped because its caller left, `on_ready(engine)` once the
    engine is warm (then `ready` is set), `on_fatal(error)` if building or warming it fails
    (then `error` holds it).
    """

    def __init__(self, build: Callable[[], InferenceEngine], example: Tensor, *, max_batch: int,
                 max_wait_s: float, prepare: Callable[[Tensor], Tensor] = lambda x: x,
                 warmup_delay_s: float = 0.0, batch_delay_s: float = 0.0,
                 on_batch: Callable[[int], None] = lambda n: None, on_skip: Callable[[], None] = lambda: None,
                 on_fatal: Callable[[BaseException], None] = lambda e: None,
                 on_ready: Callable[[InferenceEngine], None] = lambda engine: None) -> None:
        self._build, self._example, self._prepare = build, example, prepare
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        # Test hooks: a slow warm-up (readiness) and slow batches (queues that fill).
        self._warmup_delay_s, self._batch_delay_s = warmup_delay_s, batch_delay_s
        self._on_batch, self._on_skip, self._on_fatal, self._on_ready = on_batch, on_skip, on_fatal, on_ready
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="reslab-inference", daemon=True)
        self.ready = threading.Event()
        self.engine: InferenceEngine | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def depth(self) -> int:
        """Images waiting for a forward pass."""
        return self._queue.qsize()

    def submit(self, x: Tensor) -> Future:
        if self.error is not None or not self._thread.is_alive():
            raise RuntimeError("the inference worker is not running")
        future: Future = Future()
        self._queue.put(_Item(x, future))
        return future

    def stop(self, timeout: float | None = None) -> None:
        """Finish every image already submitted, then end the worker."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self.engine = self._build()
            self._warm_up(self.engine)
        except BaseException as e:
            self.error = e
            self._on_fatal(e)
            return
        self.ready.set()
        self._on_ready(self.engine)
        while (items := self._next_batch()) is not None:
            self._forward(items)

    def _warm_up(self, engine: InferenceEngine) -> None:
        # The first call at each batch size picks and packs its kernels (oneDNN); pay that now.
        for n in sorted({1, self.max_batch}):
            engine(self._prepare(self._example.expand(n, *self._example.shape).contiguous()))
        time.sleep(self._warmup_delay_s)

    def _next_batch(self) -> list[_Item] | None:
        """Up to max_batch live items; None once the stop sentinel is reached."""
        items: list[_Item] = []
        deadline = None
        while len(items) < self.max_batch:
            timeout = None if deadline is None else deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=timeout) if timeout is None or timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                if items:
                    self._queue.put(None)  # run what we hold first, stop on the next call
                    break
                return None
            if not item.future.set_running_or_notify_cancel():
                self._on_skip()  # its caller has gone: no work for it
                continue
            items.append(item)
            deadline = deadline or time.monotonic() + self.max_wait_s
        return items

    def _forward(self, items: list[_Item]) -> None:
        if not items:
            return
        assert self.engine is not None
        try:
            time.sleep(self._batch_delay_s)
            out = self.engine(self._prepare(torch.stack([it.x for it in items])))
        except Exception as e:  # a bug in an engine: every caller of this batch sees it, the worker goes on
            log.exception("inference failed on a batch of %d", len(items))
            for it in items:
                it.future.set_exception(e)
            return
        self._on_batch(len(items))
        for it, row in zip(items, out, strict=True):
            it.future.set_result(row)
