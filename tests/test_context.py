from __future__ import annotations

import asyncio
import logging
import threading

from aind_log_utils import bind_context, clear_context, get_context, log_context, unbind_context
from aind_log_utils.testing import capture_logs


def test_bind_unbind_and_clear() -> None:
    bind_context(subject_id="1", stage="a")
    assert dict(get_context()) == {"subject_id": "1", "stage": "a"}
    unbind_context("stage", "not-there")
    assert dict(get_context()) == {"subject_id": "1"}
    clear_context()
    assert dict(get_context()) == {}


def test_log_context_restores_exactly_even_after_exception() -> None:
    bind_context(a=1)
    try:
        with log_context(a=2, b=3):
            assert dict(get_context()) == {"a": 2, "b": 3}
            raise RuntimeError
    except RuntimeError:
        pass
    assert dict(get_context()) == {"a": 1}


def test_context_reaches_records_and_extra_wins() -> None:
    log = logging.getLogger("ctx")
    with capture_logs() as records, log_context(subject_id="111", stage="s"):
        log.info("one")
        log.info("two", extra={"subject_id": "222"})
    assert records[0]["subject_id"] == "111" and records[0]["stage"] == "s"
    assert records[1]["subject_id"] == "222"


def test_decorator_sync_and_async() -> None:
    @log_context(step="sync")
    def work() -> dict[str, object]:
        return dict(get_context())

    @log_context(step="async")
    async def awork() -> dict[str, object]:
        await asyncio.sleep(0)
        return dict(get_context())

    assert work() == {"step": "sync"}
    assert asyncio.run(awork()) == {"step": "async"}
    assert dict(get_context()) == {}


def test_threads_are_isolated() -> None:
    barrier = threading.Barrier(4)
    seen: dict[int, dict[str, object]] = {}

    def run(i: int) -> None:
        bind_context(worker=i)
        barrier.wait(timeout=10)  # all threads have bound before any reads
        seen[i] = dict(get_context())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == {i: {"worker": i} for i in range(4)}
    assert dict(get_context()) == {}


def test_asyncio_tasks_are_isolated() -> None:
    async def task(i: int, ready: asyncio.Event, go: asyncio.Event) -> dict[str, object]:
        bind_context(task=i)
        ready.set()
        await go.wait()
        return dict(get_context())

    async def main() -> list[dict[str, object]]:
        go = asyncio.Event()
        readies = [asyncio.Event() for _ in range(5)]
        tasks = [asyncio.create_task(task(i, readies[i], go)) for i in range(5)]
        for r in readies:
            await r.wait()
        go.set()
        return list(await asyncio.gather(*tasks))

    assert asyncio.run(main()) == [{"task": i} for i in range(5)]
