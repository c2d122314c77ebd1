"""The registry of workers ({queue}:workers): each running worker is listed
with what it is doing, and drops out when it stops, or stops beating."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable

import redis.asyncio
from helpers import wait_until

from torrelque import TaskContext, Torrelque, Worker


async def test_a_running_worker_is_listed_with_its_figures(queue: Torrelque) -> None:
    release = asyncio.Event()

    async def handle(task: str, ctx: TaskContext) -> str:
        if task == 'fail':
            raise ValueError('no')
        await release.wait()
        return task

    await queue.enqueue('hold')
    await queue.enqueue('fail', max_attempts=1)
    work = Worker(queue, handle, concurrency=4, beat_interval=0.1)
    async with work:

        async def busy() -> bool:
            workers = await queue.list_workers()
            return bool(workers) and (workers[0].in_flight, workers[0].failed) == (1, 1)

        await wait_until(busy)
        (info,) = await queue.list_workers()
        assert info.worker_id == work.id
        assert (info.host, info.pid, info.concurrency) == (socket.gethostname(), os.getpid(), 4)
        assert info.started <= info.last_beat < info.expires
        release.set()

        async def done() -> bool:
            workers = await queue.list_workers()
            return bool(workers) and (workers[0].processed, workers[0].in_flight) == (1, 0)

        await wait_until(done)
        started = info.started
        assert (await queue.list_workers())[0].started == started  # kept across beats
    assert await queue.list_workers() == []


async def test_an_entry_that_stops_beating_is_not_listed_and_is_removed_by_another_beat(
    client: redis.asyncio.Redis, queue: Torrelque, make_queue: Callable[..., Torrelque]
) -> None:
    async def handle(task: str, ctx: TaskContext) -> None:
        return None

    silent = Worker(make_queue(), handle, beat_interval=0.1)
    running = asyncio.create_task(silent.run(handle_signals=False))
    await wait_until(lambda: queue.list_workers())
    running.cancel()  # gone without a word: its entry stays, unrenewed
    await asyncio.gather(running, return_exceptions=True)
    await client.hset(queue.keys['workers'], silent.id, b'1 {"host":"h"}')  # as if it had expired long ago
    assert await queue.list_workers() == []
    async with Worker(queue, handle, beat_interval=0.1) as other:
        await wait_until(lambda: queue.list_workers())
        assert await client.hkeys(queue.keys['workers']) in ([other.id], [other.id.encode()])
