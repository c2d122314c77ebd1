"""The queue-wide working limit: at most N tasks working at once, across all
consumers, kept by the dequeue script; consumers over it sleep, not poll."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis.asyncio

from torrelque import TaskContext, Torrelque, TorrelqueTimeoutError, TorrelqueValueError, Worker


async def script_calls(client: redis.asyncio.Redis) -> int:
    stats = await client.info('commandstats')
    return sum(int(v['calls']) for k, v in stats.items() if k in ('cmdstat_evalsha', 'cmdstat_eval'))


async def test_a_dequeue_takes_no_more_than_the_room_left(queue: Torrelque) -> None:
    await queue.set_working_limit(2)
    assert await queue.get_working_limit() == 2
    for n in range(5):
        await queue.enqueue(n)
    taken = await queue.dequeue(timeout=1, max_tasks=5)
    assert [task for _, task in taken] == [0, 1]
    with pytest.raises(TorrelqueTimeoutError):
        await queue.dequeue(timeout=0.3)
    assert (await queue.get_queue_stats()).working == 2


async def test_consumers_over_the_limit_sleep_until_a_task_leaves_working(
    client: redis.asyncio.Redis, queue: Torrelque, make_queue: Callable[..., Torrelque]
) -> None:
    await queue.set_working_limit(1)
    for n in range(3):
        await queue.enqueue(n)
    first, _ = await queue.dequeue(timeout=1)
    consumers = [make_queue() for _ in range(4)]
    waiting = [asyncio.create_task(c.dequeue(timeout=10)) for c in consumers]
    await asyncio.sleep(0.3)
    before = await script_calls(client)
    await asyncio.sleep(1)
    # Blocked in Redis: no script call while nothing changes.
    assert await script_calls(client) - before <= 1
    assert not any(w.done() for w in waiting)
    await queue.release(first)
    done, still = await asyncio.wait(waiting, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1
    ((second, task),) = [w.result() for w in done]
    assert task == 1
    await asyncio.sleep(0.3)
    assert all(not w.done() for w in still)
    # A requeue with a delay frees the room too.
    await consumers[waiting.index(done.pop())].requeue(second, delay=60)
    done, still = await asyncio.wait(still, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    assert [w.result()[1] for w in done] == [2]
    for w in still:
        w.cancel()
    await asyncio.gather(*still, return_exceptions=True)


async def test_removing_or_raising_the_limit_wakes_waiting_consumers(
    queue: Torrelque, make_queue: Callable[..., Torrelque]
) -> None:
    await queue.set_working_limit(1)
    await queue.enqueue('a')
    await queue.enqueue('b')
    await queue.dequeue(timeout=1)
    waiting = asyncio.create_task(make_queue().dequeue(timeout=10))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await queue.set_working_limit(None)
    assert await queue.get_working_limit() is None
    _, task = await asyncio.wait_for(waiting, 5)
    assert task == 'b'


async def test_workers_together_never_run_more_than_the_limit(
    queue: Torrelque, make_queue: Callable[..., Torrelque]
) -> None:
    await queue.set_working_limit(3)
    running, most, done = 0, 0, 0

    async def handle(task: int, ctx: TaskContext) -> None:
        nonlocal running, most, done
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.02)
        running -= 1
        done += 1

    for n in range(60):
        await queue.enqueue(n)
    workers = [Worker(make_queue(), handle, concurrency=4, burst=True, sweep=False) for _ in range(4)]
    await asyncio.wait_for(asyncio.gather(*(w.run(handle_signals=False) for w in workers)), 30)
    assert done == 60
    assert most == 3


async def test_a_task_buried_frees_its_room(queue: Torrelque, make_queue: Callable[..., Torrelque]) -> None:
    await queue.set_working_limit(1)
    await queue.enqueue('poison')
    await queue.enqueue('next')
    first, _ = await queue.dequeue(timeout=1)
    waiting = asyncio.create_task(make_queue().dequeue(timeout=10))
    await asyncio.sleep(0.2)
    await queue.bury(first, 'no good')
    _, task = await asyncio.wait_for(waiting, 5)
    assert task == 'next'


@pytest.mark.parametrize('limit', [0, -1, 1.5, True, '3'])
async def test_a_limit_that_is_not_a_positive_integer_is_refused(queue: Torrelque, limit: object) -> None:
    with pytest.raises(TorrelqueValueError):
        await queue.set_working_limit(limit)  # type: ignore[arg-type]
    assert await queue.get_working_limit() is None
