"""The micro-batcher alone, on a recording fake model: what merges, what waits, what is turned away."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from stepwise.serve.batcher import MicroBatcher, Overloaded  # noqa: E402


class Recorder:
    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[list[Any], Any]] = []
        self.delay = delay

    def __call__(self, items: list[Any], key: Any) -> list[Any]:
        self.calls.append((list(items), key))
        time.sleep(self.delay)
        return [f"{key}:{item}" for item in items]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_concurrent_requests_merge_up_to_max_batch_and_split_back() -> None:
    model = Recorder()

    async def main() -> list[list[Any]]:
        batcher = MicroBatcher(model, max_batch=4, max_wait_ms=200, max_queue=100)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit([i, i + 100], "k") for i in range(4)))
        await batcher.stop()
        return results

    results = run(main())
    assert results == [[f"k:{i}", f"k:{i + 100}"] for i in range(4)]
    assert [len(items) for items, _ in model.calls] == [4, 4]  # two requests per batch, never more than 4 items


def test_a_full_batch_does_not_wait_for_the_window() -> None:
    model = Recorder()

    async def main() -> float:
        batcher = MicroBatcher(model, max_batch=2, max_wait_ms=5000, max_queue=100)
        batcher.start()
        started = time.monotonic()
        await asyncio.gather(batcher.submit([1], None), batcher.submit([2], None))
        await batcher.stop()
        return time.monotonic() - started

    assert run(main()) < 2.0
    assert model.calls == [([1, 2], None)]


def test_requests_with_different_options_never_share_a_batch() -> None:
    model = Recorder()

    async def main() -> list[list[Any]]:
        batcher = MicroBatcher(model, max_batch=8, max_wait_ms=50, max_queue=100)
        batcher.start()
        results = await asyncio.gather(batcher.submit(["a"], (1, "last")), batcher.submit(["b"], (3, "best")),
                                       batcher.submit(["c"], (1, "last")))
        await batcher.stop()
        return results

    assert run(main()) == [["(1, 'last'):a"], ["(3, 'best'):b"], ["(1, 'last'):c"]]
    assert sorted((items, key) for items, key in model.calls) == [(["a", "c"], (1, "last")), (["b"], (3, "best"))]


def test_a_full_queue_turns_requests_away_and_a_cancelled_one_is_not_computed() -> None:
    model = Recorder(delay=0.3)

    async def main() -> None:
        batcher = MicroBatcher(model, max_batch=1, max_wait_ms=0, max_queue=3)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit([1], None))
        await asyncio.sleep(0.05)  # the first is running; the next ones wait
        waiting = asyncio.ensure_future(batcher.submit([2, 3], None))
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded):
            await batcher.submit([4, 5], None)
        gone = asyncio.ensure_future(batcher.submit([6], None))
        await asyncio.sleep(0.01)
        gone.cancel()  # the client timed out
        assert await first == ["None:1"] and await waiting == ["None:2", "None:3"]
        await batcher.stop()

    run(main())
    assert [items for items, _ in model.calls] == [[1], [2, 3]]


def test_a_lone_client_never_waits_the_window_but_concurrent_traffic_does() -> None:
    model = Recorder()

    async def main() -> tuple[float, float]:
        batcher = MicroBatcher(model, max_batch=8, max_wait_ms=400, max_queue=100)
        batcher.start()
        started = time.monotonic()
        await batcher.submit([1], None)  # alone: runs at once
        alone = time.monotonic() - started
        await asyncio.gather(*(batcher.submit([i], None) for i in range(3)))  # merged: traffic is concurrent
        started = time.monotonic()
        await batcher.submit([9], None)  # now a batch waits for company
        after_burst = time.monotonic() - started
        await batcher.stop()
        return alone, after_burst

    alone, after_burst = run(main())
    assert alone < 0.2 <= 0.35 < after_burst
