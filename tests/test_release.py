"""release: with and without a result, statuses, wrong states, bulk."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio
from helpers import NOT_WORKING, assert_refused_without_change, raw, state_hash, task_not_working, text, working_task

from torrelque import (
    Torrelque,
    TorrelqueError,
    TorrelqueLookupError,
    TorrelqueSerialiserError,
    TorrelqueTaskStatus,
    TorrelqueValueError,
)
from torrelque._scripts import RETRY_WINDOW


async def test_release_without_result_removes_the_task(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    """All that stays is a tombstone key for the retry window, by which a
    retried call is recognised; the task reads as unknown."""
    task_id = await working_task(queue)
    assert await queue.release(task_id) is True

    state = await raw(client, queue)
    assert (state.pending, state.working, state.tasks) == ([], [], set())
    assert await state_hash(client, queue, task_id) == {}
    tombstone = f'{queue.keys["gone"]}:{task_id}'
    assert await client.exists(tombstone) == 1
    assert 0 < await client.pttl(tombstone) <= RETRY_WINDOW * 1000
    left = {text(key) for key in await client.keys(f'{{{queue.name}}}:*')}
    assert left <= {tombstone, queue.keys['stats'], queue.keys['ready']}
    with pytest.raises(TorrelqueLookupError):
        await queue.get_task_state(task_id)
    assert state.stats == {'enqueued': 1, 'dequeued': 1, 'released': 1, 'completed': 1}


async def test_release_with_result_keeps_the_state_for_the_ttl(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    task_id = await working_task(queue)
    assert await queue.release(task_id, result={'sum': 3}, result_ttl=60) is True

    state = await raw(client, queue)
    assert (state.working, state.tasks) == ([], set())
    task = await queue.get_task_state(task_id)
    assert task.status is TorrelqueTaskStatus.COMPLETED
    assert task.result == {'sum': 3}
    assert task.release_time is not None and task.release_time >= task.last_dequeue_time
    assert 55 <= await client.ttl(f'{queue.keys["task"]}:{task_id}') <= 60


async def test_default_result_ttl(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    task_id = await working_task(queue)
    await queue.release(task_id, result=1)
    assert 3590 <= await client.ttl(f'{queue.keys["task"]}:{task_id}') <= 3600


async def test_result_expires(queue: Torrelque) -> None:
    task_id = await working_task(queue)
    await queue.release(task_id, result='short-lived', result_ttl=0.2)
    assert (await queue.get_task_state(task_id)).result == 'short-lived'
    await asyncio.sleep(0.4)
    with pytest.raises(TorrelqueLookupError):
        await queue.get_task_state(task_id)


async def test_release_as_rejected(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    task_id = await working_task(queue)
    assert await queue.release(task_id, result={'error': 'boom'}, status=TorrelqueTaskStatus.REJECTED)
    task = await queue.get_task_state(task_id)
    assert (task.status, task.result) == (TorrelqueTaskStatus.REJECTED, {'error': 'boom'})
    assert (await raw(client, queue)).stats['rejected'] == 1


async def test_status_may_be_given_as_its_value(queue: Torrelque) -> None:
    task_id = await working_task(queue)
    assert await queue.release(task_id, result=0, status=4)  # type: ignore[arg-type]
    assert (await queue.get_task_state(task_id)).status is TorrelqueTaskStatus.REJECTED


@pytest.mark.parametrize('status', [TorrelqueTaskStatus.PENDING, TorrelqueTaskStatus.WORKING, 2, 9, 'done'])
async def test_non_final_status_is_refused_and_changes_nothing(
    client: redis.asyncio.Redis, queue: Torrelque, status: object
) -> None:
    task_id = await working_task(queue)
    with pytest.raises(TorrelqueError, match='status'):
        await queue.release(task_id, result=1, status=status)  # type: ignore[arg-type]
    assert (await raw(client, queue)).working == [task_id]


@pytest.mark.parametrize('ttl', [0, -1, float('nan'), 1e12])
async def test_bad_result_ttl_is_refused(client: redis.asyncio.Redis, queue: Torrelque, ttl: float) -> None:
    task_id = await working_task(queue)
    with pytest.raises(TorrelqueValueError, match='result_ttl'):
        await queue.release(task_id, result=1, result_ttl=ttl)
    assert (await raw(client, queue)).working == [task_id]


async def test_unserialisable_result_is_refused_and_changes_nothing(
    client: redis.asyncio.Redis, queue: Torrelque
) -> None:
    task_id = await working_task(queue)
    with pytest.raises(TorrelqueSerialiserError, match='result'):
        await queue.release(task_id, result=object())
    assert (await raw(client, queue)).working == [task_id]


@pytest.mark.parametrize('where', NOT_WORKING)
async def test_release_of_a_task_that_is_not_working_changes_nothing(
    client: redis.asyncio.Redis, queue: Torrelque, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    task_id = await task_not_working(queue, where)
    await assert_refused_without_change(client, queue, caplog, task_id, lambda: queue.release(task_id, result='second'))


async def test_bulk_release_in_a_pipeline(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    for i in range(20):
        await queue.enqueue(i)
    tasks = await queue.dequeue(timeout=1, max_tasks=20)
    async with client.pipeline(transaction=True) as pipe:
        for task_id, _ in tasks[:-1]:
            assert await queue.release(task_id, pipeline=pipe) is None
        await queue.release('unknown', pipeline=pipe)
        results = await pipe.execute()
    assert results == [[1] * 19 + [0]]  # consecutive plain releases share one call
    state = await raw(client, queue)
    assert state.working == [tasks[-1][0]]
    assert state.tasks == {tasks[-1][0]}
