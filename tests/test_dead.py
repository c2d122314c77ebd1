"""The dead-letter set: burying, listing, looking at one, requeuing, purging."""

from __future__ import annotations

import logging

import pytest
import redis.asyncio
from helpers import raw, state_hash

from torrelque import Torrelque, TorrelqueLookupError, TorrelqueTaskStatus


async def buried(queue: Torrelque, payload: object, error: object = 'it broke') -> str:
    await queue.enqueue(payload)
    task_id, _ = await queue.dequeue(timeout=1)
    assert await queue.bury(task_id, error) is True
    return task_id


async def test_bury_keeps_the_payload_and_the_error_out_of_the_queue(
    client: redis.asyncio.Redis, queue: Torrelque
) -> None:
    task_id = await buried(queue, {'order': 12}, {'type': 'Declined', 'message': 'card declined', 'attempts': 1})
    state = await raw(client, queue)
    assert (state.pending, state.working, state.tasks) == ([], [], set())
    assert await client.zscore(queue.keys['dead'], task_id) is not None
    assert await client.pttl(f'{queue.keys["task"]}:{task_id}') == -1  # no expiry
    dead = await queue.get_dead(task_id)
    assert (dead.task, dead.error['message'], dead.dequeue_count) == ({'order': 12}, 'card declined', 1)
    task = await queue.get_task_state(task_id)
    assert (task.status, task.result['type']) == (TorrelqueTaskStatus.REJECTED, 'Declined')
    assert (await queue.get_queue_stats()).tasks == 0


async def test_a_text_error_and_a_late_bury(queue: Torrelque, caplog: pytest.LogCaptureFixture) -> None:
    task_id = await buried(queue, 'x', 'plain text')
    assert (await queue.get_dead(task_id)).error == {'type': 'Rejected', 'message': 'plain text'}
    with caplog.at_level(logging.WARNING, logger='torrelque'):
        assert await queue.bury(task_id, 'again') is False  # not working any more


async def test_list_dead_pages_the_longest_buried_first(queue: Torrelque) -> None:
    ids = [await buried(queue, n) for n in range(5)]
    assert [task.task_id for task in await queue.list_dead()] == ids
    assert [task.task_id for task in await queue.list_dead(start=1, count=2)] == ids[1:3]
    assert [task.task for task in await queue.list_dead(start=4)] == [4]


async def test_requeue_dead_tries_the_task_again_from_the_start(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    task_id = await buried(queue, {'n': 1})
    assert await queue.requeue_dead(task_id) is True
    assert (await raw(client, queue)).pending == [task_id]
    assert await client.zscore(queue.keys['dead'], task_id) is None
    fields = await state_hash(client, queue, task_id)
    assert fields['status'] == '0' and not {'error', 'result', 'payload', 'dequeues'} & set(fields)
    again, payload = await queue.dequeue(timeout=1)
    assert (again, payload, again.dequeue_count) == (task_id, {'n': 1}, 1)
    assert (await queue.get_queue_counters())['revived'] == 1


async def test_requeue_dead_with_a_delay(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    task_id = await buried(queue, 'later')
    assert await queue.requeue_dead(task_id, delay=60) is True
    assert (await raw(client, queue)).delayed == [task_id]
    assert (await queue.get_task_state(task_id)).status is TorrelqueTaskStatus.DELAYED


async def test_requeue_dead_of_a_task_that_is_not_dead(queue: Torrelque, caplog: pytest.LogCaptureFixture) -> None:
    waiting = await queue.enqueue('alive')
    with caplog.at_level(logging.WARNING, logger='torrelque'):
        assert await queue.requeue_dead(waiting) is False
        assert await queue.requeue_dead('nothing') is False
    with pytest.raises(TorrelqueLookupError, match='dead-letter'):
        await queue.get_dead(waiting)


async def test_purge_dead_by_id_by_age_and_all(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    ids = [await buried(queue, n) for n in range(6)]
    assert await queue.purge_dead(ids[0], 'not-there') == 1
    assert await client.exists(f'{queue.keys["task"]}:{ids[0]}') == 0
    queue.clock_offset = 120
    assert await queue.purge_dead(older_than=300) == 0
    assert await queue.purge_dead(older_than=60) == 5
    assert await queue.list_dead() == []
    assert await buried(queue, 'last')
    assert await queue.purge_dead() == 1
    assert await client.keys(f'{{{queue.name}}}:task:*') == []
