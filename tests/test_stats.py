"""get_queue_stats, get_queue_counters and get_task_state."""

from __future__ import annotations

import pytest
import redis.asyncio

from torrelque import COUNTERS, Torrelque, TorrelqueLookupError, TorrelqueQueueStats, TorrelqueTaskStatus


async def test_queue_stats_count_every_place(queue: Torrelque) -> None:
    assert await queue.get_queue_stats() == TorrelqueQueueStats(0, 0, 0, 0)
    for i in range(4):
        await queue.enqueue(i)
    await queue.enqueue('later', delay=60)
    await queue.dequeue(timeout=1, max_tasks=2)
    stats = await queue.get_queue_stats()
    assert stats == TorrelqueQueueStats(tasks=5, pending=2, working=2, delayed=1)
    assert (stats.tasks, stats.pending, stats.working, stats.delayed) == (5, 2, 2, 1)


async def test_counters_are_plain_integers_in_the_stats_hash(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    assert await queue.get_queue_counters() == dict.fromkeys(COUNTERS, 0)
    for i in range(3):
        await queue.enqueue(i)
    first, second, third = await queue.dequeue(timeout=1, max_tasks=3)
    await queue.release(first[0])
    await queue.release(second[0], result='no', status=TorrelqueTaskStatus.REJECTED)
    await queue.requeue(third[0], delay=1)
    queue.clock_offset = 2
    await queue.sweep()

    counters = await queue.get_queue_counters()
    assert counters == {
        **dict.fromkeys(COUNTERS, 0),
        'enqueued': 3,
        'dequeued': 3,
        'released': 2,
        'completed': 1,
        'rejected': 1,
        'requeued': 1,
        'delayed': 1,
        'swept_delayed': 1,
    }
    raw = await client.hgetall(queue.keys['stats'])
    assert {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()} == {
        name: value for name, value in counters.items() if value
    }


async def test_task_state_of_a_new_task(queue: Torrelque) -> None:
    task_id = await queue.enqueue('x', task_timeout=5)
    task = await queue.get_task_state(task_id)
    assert task.status is TorrelqueTaskStatus.PENDING
    assert task.timeout == 5.0 and isinstance(task.timeout, float)
    assert (task.result, task.dequeue_count, task.requeue_count) == (None, 0, 0)
    assert (task.last_dequeue_time, task.last_requeue_time, task.release_time) == (None, None, None)
    assert task.enqueue_time > 1.7e9


async def test_unknown_task_state_raises_lookup_error(queue: Torrelque) -> None:
    with pytest.raises(TorrelqueLookupError, match='nope'):
        await queue.get_task_state('nope')


async def test_queues_are_independent(client: redis.asyncio.Redis, queue_name: str) -> None:
    one, two = Torrelque(client, queue=f'{queue_name}-1'), Torrelque(client, queue=f'{queue_name}-2')
    await one.enqueue('for one')
    assert (await two.get_queue_stats()).tasks == 0
    assert (await one.get_queue_stats()).tasks == 1
