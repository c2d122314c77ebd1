"""requeue: back to pending or delayed, counts, wrong states, bulk."""

from __future__ import annotations

import pytest
import redis.asyncio
from helpers import (
    NOT_WORKING,
    assert_refused_without_change,
    raw,
    score,
    server_now,
    task_not_working,
    working_task,
)

from torrelque import Torrelque, TorrelqueTaskStatus, TorrelqueValueError


async def test_requeue_puts_the_task_at_the_tail(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    task_id = await working_task(queue)
    other = await queue.enqueue('other')
    assert await queue.requeue(task_id) is True

    state = await raw(client, queue)
    assert (state.pending, state.working) == ([other, task_id], [])
    task = await queue.get_task_state(task_id)
    assert task.status is TorrelqueTaskStatus.PENDING
    assert (task.requeue_count, task.dequeue_count) == (1, 1)
    assert task.last_requeue_time is not None
    assert await queue.dequeue(timeout=1) == (other, 'other')
    assert await queue.dequeue(timeout=1) == (task_id, 'job')
    assert (await queue.get_task_state(task_id)).dequeue_count == 2


async def test_requeue_with_delay(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    task_id = await working_task(queue)
    now = await server_now(client)
    assert await queue.requeue(task_id, delay=30) is True
    state = await raw(client, queue)
    assert (state.delayed, state.pending, state.working) == ([task_id], [], [])
    assert now + 29 <= await score(client, queue.keys['delayed'], task_id) <= now + 32
    task = await queue.get_task_state(task_id)
    assert (task.status, task.requeue_count) == (TorrelqueTaskStatus.DELAYED, 1)
    assert state.stats['requeued'] == 1 and state.stats['delayed'] == 1


async def test_requeue_delay_as_positional_argument(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    task_id = await working_task(queue)
    await queue.requeue(task_id, 5)
    assert (await raw(client, queue)).delayed == [task_id]


async def test_requeue_can_change_the_timeout(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    task_id = await working_task(queue)
    await queue.requeue(task_id, task_timeout=2.5)
    assert (await queue.get_task_state(task_id)).timeout == 2.5
    now = await server_now(client)
    await queue.dequeue(timeout=1)
    assert now <= await score(client, queue.keys['working'], task_id) <= now + 4


@pytest.mark.parametrize(
    ('kwargs', 'message'),
    [
        ({'delay': -1}, 'delay'),
        ({'task_timeout': 0}, 'task_timeout'),
        ({'delay': 'x'}, 'delay'),
        ({'delay': 4e9}, '100 years'),
        ({'task_timeout': 1e20}, '100 years'),
    ],
)
async def test_bad_arguments_change_nothing(
    client: redis.asyncio.Redis, queue: Torrelque, kwargs: dict[str, object], message: str
) -> None:
    task_id = await working_task(queue)
    with pytest.raises(TorrelqueValueError, match=message):
        await queue.requeue(task_id, **kwargs)  # type: ignore[arg-type]
    assert (await raw(client, queue)).working == [task_id]


@pytest.mark.parametrize('bad_id', ['', None, 12])
async def test_bad_task_id_is_refused(queue: Torrelque, bad_id: object) -> None:
    with pytest.raises(TorrelqueValueError, match='task id'):
        await queue.requeue(bad_id)  # type: ignore[arg-type]


@pytest.mark.parametrize('where', NOT_WORKING)
async def test_requeue_of_a_task_that_is_not_working_changes_nothing(
    client: redis.asyncio.Redis, queue: Torrelque, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    task_id = await task_not_working(queue, where)
    await assert_refused_without_change(client, queue, caplog, task_id, lambda: queue.requeue(task_id, delay=1))


async def test_bulk_requeue_in_a_pipeline(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    for i in range(5):
        await queue.enqueue(i)
    tasks = await queue.dequeue(timeout=1, max_tasks=5)
    async with client.pipeline(transaction=True) as pipe:
        for task_id, _ in tasks:
            assert await queue.requeue(task_id, pipeline=pipe) is None
        assert await pipe.execute() == [1] * 5
    assert (await raw(client, queue)).pending == [task_id for task_id, _ in tasks]
