"""Dynamic micro-batching: requests that arrive together share one forward pass.

A batch starts when the model is free, with every waiting request that has the same options, up to
`max_batch` items. Under concurrent traffic (the last batch merged several requests) a batch that is
not full also waits up to `max_wait_ms` after its first request for company; a lone client never pays
that wait (measured in bench/NOTES.md: it halved an int8 model's single-client rate). The batch runs on one worker
thread (the model uses all cores itself; two batches at once would only fight over them), off the
event loop, and each request gets back its own slice. Inside the batch the Predictor sorts by length.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from stepwise.serve.metrics import ServeMetrics

#: predict(items, key) -> one result per item, in order
PredictFn = Callable[[list[Any], Hashable], list[Any]]


class Overloaded(Exception):
    """More items are waiting than the queue may hold."""


@dataclass
class _Job:
    items: Sequence[Any]
    key: Hashable
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


class MicroBatcher:
    def __init__(self, predict: PredictFn, *, max_batch: int, max_wait_ms: float, max_queue: int,
                 metrics: ServeMetrics | None = None) -> None:
        self.predict = predict
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.metrics = metrics
        self._jobs: deque[_Job] = deque()
        self._waiting = 0  # items in _jobs
        self._wakeup: asyncio.Event | None = None
        self._concurrent = False  # did the last batch merge several requests? then a batch waits for company
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stepwise-predict")

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, timeout_s: float = 60.0) -> None:
        """Finish what is queued (for at most `timeout_s`), then stop the worker."""
        deadline = time.monotonic() + timeout_s
        while self._jobs and time.monotonic() < deadline and self._worker is not None and not self._worker.done():
            await asyncio.sleep(0.005)
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    @property
    def waiting(self) -> int:
        return self._waiting

    async def submit(self, items: Sequence[Any], key: Hashable = None) -> list[Any]:
        """The results for `items`, computed in a batch with whatever else is waiting."""
        if self._waiting + len(items) > self.max_queue and self._waiting:
            raise Overloaded(f"{self._waiting} items are waiting (limit {self.max_queue})")
        job = _Job(items, key, asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self._set_waiting(self._waiting + len(items))
        assert self._wakeup is not None, "start() the batcher first"
        self._wakeup.set()
        return await job.future

    def _set_waiting(self, n: int) -> None:
        self._waiting = n
        if self.metrics:
            self.metrics.queue_depth.set(n)

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._jobs:
                self._wakeup.clear()
                await self._wakeup.wait()
            first = self._jobs[0]
            window = self.max_wait if self._concurrent else 0.0
            while self._ready_items(first.key) < self.max_batch:
                remaining = first.arrived + window - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            batch = self._take(first.key)
            if not batch:
                continue
            self._concurrent = len(batch) > 1
            items = [item for job in batch for item in job.items]
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self.predict, items, first.key)
            except Exception as err:  # noqa: BLE001 — a failed batch fails its requests, not the server
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(err)
                continue
            if self.metrics:
                self.metrics.inference.observe(time.perf_counter() - started)
                self.metrics.batch_items.observe(len(items))
                self.metrics.batch_requests.observe(len(batch))
                self.metrics.items.inc(len(items))
            start = 0
            for job in batch:
                if not job.future.done():  # a request that timed out no longer waits for its answer
                    job.future.set_result(results[start:start + len(job.items)])
                start += len(job.items)

    def _ready_items(self, key: Hashable) -> int:
        return sum(len(job.items) for job in self._jobs if job.key == key and not job.future.done())

    def _take(self, key: Hashable) -> list[_Job]:
        """Jobs with this key, in arrival order, up to max_batch items (a larger single job goes alone)."""
        taken: list[_Job] = []
        kept: deque[_Job] = deque()
        size = 0
        for job in self._jobs:
            if job.future.done():  # timed out or cancelled while waiting: drop it
                self._set_waiting(self._waiting - len(job.items))
            elif job.key == key and (not taken or size + len(job.items) <= self.max_batch):
                taken.append(job)
                size += len(job.items)
                self._set_waiting(self._waiting - len(job.items))
            else:
                kept.append(job)
        self._jobs = kept
        return taken
