"""The queue-wide rate limit: at most N dequeues per window across all
consumers, kept by the dequeue script on the server's clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis.asyncio

from torrelque import TaskContext, Torrelque, TorrelqueTimeoutError, TorrelqueValueError, Worker


async def test_four_workers_hold_the_limit_over_10_s_within_5_percent(
    make_client: Callable[..., redis.asyncio.Redis], queue_name: str
) -> None:
    client = make_client()
    queue = Torrelque(client, queue=queue_name)
    limit, per = 20, 0.25
    await queue.set_rate_limit(limit, per=per)
    assert await queue.get_rate_limit() == (limit, per)
    async with client.pipeline(transaction=False) as pipeline:
        for n in range(3000):
            await queue.enqueue(n, pipeline=pipeline)
        await pipeline.execute()
    done = 0

    async def handle(task: int, ctx: TaskContext) -> None:
        nonlocal done
        done += 1

    counts: dict[int, int] = {}

    async def read_counts() -> None:
        # The window's counters live a second past their window: read them
        # as they go.
        pattern = f'{queue.keys["rate"]}:*'
        if isinstance(client, redis.asyncio.RedisCluster):  # on the node of the queue's slot
            keys = await client.keys(pattern, target_nodes=client.get_node_from_key(pattern))
        else:
            keys = await client.keys(pattern)
        for key in keys:
            name = key.decode() if isinstance(key, bytes) else key
            value = await client.get(key)
            if value is not None:
                counts[int(name.rsplit(':', 1)[1])] = int(value)

    workers = [Worker(Torrelque(client, queue=queue_name), handle, concurrency=4, sweep=False) for _ in range(4)]
    for worker in workers:
        await worker.__aenter__()
    for _ in range(50):
        await asyncio.sleep(0.2)
        await read_counts()
    for worker in workers:
        await worker.__aexit__(None, None, None)
    await read_counts()
    for worker in workers:
        await worker.queue.aclose()
    await queue.aclose()
    windows = sorted(counts)
    assert len(windows) >= 38
    assert all(counts[w] <= limit for w in windows)
    inner = [counts[w] for w in windows[1:-1]]
    # The workers keep up: every full window is used to within 5%.
    assert sum(inner) >= 0.95 * limit * len(inner)
    assert done == sum(counts.values())


async def test_a_consumer_past_the_limit_sleeps_until_the_next_window(
    client: redis.asyncio.Redis, queue: Torrelque
) -> None:
    await queue.set_rate_limit(2, per=1)
    for n in range(3):
        await queue.enqueue(n)
    loop = asyncio.get_running_loop()
    seconds, micros = await client.time()
    into_window = (int(seconds) + int(micros) / 1e6) % 1
    if into_window > 0.7:
        await asyncio.sleep(1.05 - into_window)  # start near a window's beginning
    await queue.dequeue(timeout=1)
    await queue.dequeue(timeout=1)
    with pytest.raises(TorrelqueTimeoutError, match='rate limit'):
        await queue.dequeue(timeout=0.05)

    async def script_calls() -> int:
        stats = await client.info('commandstats')
        return int(stats.get('cmdstat_evalsha', {}).get('calls', 0))

    before, started = await script_calls(), loop.time()
    _, task = await queue.dequeue(timeout=2)
    assert task == 2
    assert loop.time() - started < 1.1
    assert await script_calls() - before <= 3  # it slept until the window, it did not poll


async def test_removing_the_limit(queue: Torrelque) -> None:
    await queue.set_rate_limit(1, per=60)
    await queue.enqueue('a')
    await queue.enqueue('b')
    await queue.dequeue(timeout=1)
    await queue.set_rate_limit(None)
    assert await queue.get_rate_limit() is None
    _, task = await queue.dequeue(timeout=1)
    assert task == 'b'


@pytest.mark.parametrize(('limit', 'per'), [(0, 1), (1.5, 1), (5, 0), (5, 0.0001), (5, 10**6), (5, float('nan'))])
async def test_bad_rate_limits_are_refused(queue: Torrelque, limit: object, per: object) -> None:
    with pytest.raises(TorrelqueValueError):
        await queue.set_rate_limit(limit, per=per)  # type: ignore[arg-type]
    assert await queue.get_rate_limit() is None
