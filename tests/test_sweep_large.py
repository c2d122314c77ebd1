"""A sweep of a large backlog returns everything without holding the server."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis.asyncio

from torrelque import Torrelque
from torrelque.server import RedisServer

STALE = 200_000


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_sweep_of_200000_stale_tasks_keeps_every_call_short(
    make_server: Callable[..., RedisServer], make_client: Callable[..., redis.asyncio.Redis]
) -> None:
    server = make_server()
    client = make_client(server.url)
    queue = Torrelque(client, queue='large')
    for start in range(0, STALE, 5000):
        async with client.pipeline(transaction=False) as pipe:
            for n in range(start, start + 5000):
                await queue.enqueue(n, task_timeout=1, pipeline=pipe)
            await pipe.execute()
    taken = 0
    while taken < STALE:
        taken += len(await queue.dequeue(timeout=1, max_tasks=1000))
    assert (await queue.get_queue_stats()).working == STALE

    await client.config_set('slowlog-log-slower-than', 10_000)  # microseconds
    await client.slowlog_reset()
    queue.clock_offset = 2
    assert await queue.sweep() == (STALE, 0, 0)
    slow = await client.slowlog_get(128)
    assert slow == [], f'{len(slow)} calls over 10 ms, the slowest {max(e["duration"] for e in slow)} µs'
    stats = await queue.get_queue_stats()
    assert (stats.pending, stats.working) == (STALE, 0)
