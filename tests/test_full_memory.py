"""A server out of memory (maxmemory, noeviction): enqueues are refused with
a clear error and write nothing; operators can still read the queue;
consumers drain it; an idle consumer waits rather than spins."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis.asyncio
import redis.exceptions

from torrelque import Torrelque, TorrelqueError, TorrelqueOutOfMemoryError, TorrelqueTimeoutError
from torrelque.server import RedisServer


@pytest.fixture
async def full(make_server: Callable[..., RedisServer], make_client: Callable[..., redis.asyncio.Redis]) -> Torrelque:
    """A queue on a server that is full: it holds the tasks enqueued until
    the server refused one."""
    server = make_server(config={'maxmemory': '4mb', 'maxmemory-policy': 'noeviction'})
    queue = Torrelque(make_client(server.url), queue='full')
    with pytest.raises(TorrelqueOutOfMemoryError):
        for n in range(100_000):
            await queue.enqueue({'n': n, 'padding': 'x' * 500}, task_timeout=10)
    return queue


async def test_an_enqueue_on_a_full_server_says_so_and_writes_nothing(full: Torrelque) -> None:
    # (A MULTI of reads is refused on a full server: the queue's own reads are not.)
    before = await full.get_queue_stats(), await full.get_queue_counters(), await full._client.dbsize()
    with pytest.raises(TorrelqueOutOfMemoryError, match='out of memory') as caught:
        await full.enqueue('one more')
    assert isinstance(caught.value, TorrelqueError) and isinstance(caught.value, redis.exceptions.OutOfMemoryError)
    assert (await full.get_queue_stats(), await full.get_queue_counters(), await full._client.dbsize()) == before


async def test_a_full_queue_can_be_read(full: Torrelque) -> None:
    stats = await full.get_queue_stats()
    assert stats.tasks == stats.pending > 1000
    counters = await full.get_queue_counters()
    assert counters['enqueued'] == stats.tasks


async def test_consumers_drain_a_full_queue(full: Torrelque) -> None:
    """Dequeue, touch, requeue (with a delay too), release and the sweep all
    work on a full server: they free memory or keep it."""
    first, _ = await full.dequeue(timeout=1)
    assert await full.touch(first, 60) is True
    assert await full.requeue(first, delay=0.01) is True
    second, _ = await full.dequeue(timeout=1)
    assert await full.requeue(second) is True
    await asyncio.sleep(0.05)
    assert (await full.sweep())[1] == 1
    released = 0
    while True:
        try:
            pairs = await full.dequeue(timeout=0.2, max_tasks=100)
        except TorrelqueTimeoutError:
            break
        async with full._client.pipeline(transaction=False) as pipe:
            for task_id, _ in pairs:
                await full.release(task_id, pipeline=pipe)
            await pipe.execute()
        released += len(pairs)
    assert (await full.get_queue_stats()).tasks == 0
    assert await full.enqueue('room again')


async def test_an_idle_consumer_on_a_full_server_waits(full: Torrelque) -> None:
    empty = Torrelque(full._client, queue='nothing-here')
    await full._client.config_resetstat()
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TorrelqueTimeoutError):
        await empty.dequeue(timeout=0.5)
    assert loop.time() - start >= 0.45
    calls = await full._client.info('commandstats')
    called = {name: stats['calls'] for name, stats in calls.items()}
    # A blocking wait, not a loop: a script call or two around one BLPOP.
    assert called.get('cmdstat_evalsha', 0) + called.get('cmdstat_eval', 0) <= 3, called
    assert called.get('cmdstat_blpop', 0) <= 2, called
