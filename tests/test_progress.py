"""Progress: what a running attempt reports is stored in its task's state,
published, and seen by watch(), watch_queue() and get_task_state()."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio
from helpers import NOT_WORKING, assert_refused_without_change, state_hash, task_not_working, working_task

from torrelque import (
    TaskContext,
    Torrelque,
    TorrelqueSerialiserError,
    TorrelqueTaskState,
    TorrelqueTaskStatus,
    TorrelqueValueError,
    Worker,
)

S = TorrelqueTaskStatus


async def test_a_handler_reports_progress_to_watchers_and_the_state(
    queue: Torrelque, make_queue: Callable[..., Torrelque]
) -> None:
    halfway, finish = asyncio.Event(), asyncio.Event()

    async def handle(task: str, ctx: TaskContext) -> str:
        assert await ctx.progress({'done': 1, 'of': 2}) is True
        halfway.set()
        await finish.wait()
        assert await ctx.progress({'done': 2, 'of': 2}) is True
        return 'ok'

    task_id = await queue.enqueue('job')
    watcher = make_queue()
    seen: list[TorrelqueTaskState] = []

    async def follow() -> None:
        async for state in watcher.watch(task_id, timeout=10):
            seen.append(state)

    following = asyncio.create_task(follow())
    async with Worker(queue, handle):
        await asyncio.wait_for(halfway.wait(), 5)
        state = await queue.get_task_state(task_id)
        assert (state.status, state.progress) == (S.WORKING, {'done': 1, 'of': 2})
        finish.set()
        await asyncio.wait_for(following, 5)
    progress = [(s.status, s.progress) for s in seen]
    # Each report is news, even without a change of status; the final state
    # keeps the last one.
    assert (S.WORKING, {'done': 1, 'of': 2}) in progress
    assert (S.WORKING, {'done': 2, 'of': 2}) in progress
    assert progress[-1] == (S.COMPLETED, {'done': 2, 'of': 2})
    assert seen[-1].result == 'ok'
    assert (await queue.get_task_state(task_id)).progress == {'done': 2, 'of': 2}


async def test_the_queue_watch_sees_progress_events(queue: Torrelque) -> None:
    task_id = await working_task(queue)
    events = queue.watch_queue()
    reading = asyncio.create_task(anext(events))
    await asyncio.sleep(0.2)  # subscribed
    assert await queue.set_progress(task_id, 0.25) is True
    event = await asyncio.wait_for(reading, 5)
    assert (event.task_id, event.event, event.status) == (task_id, 'progress', S.WORKING)
    await events.aclose()


async def test_a_state_without_progress_says_none_and_unpacks_as_in_0_9(queue: Torrelque) -> None:
    task_id = await queue.enqueue('job')
    state = await queue.get_task_state(task_id)
    assert state.progress is None
    status, timeout, result, dequeues, requeues, enqueued, dequeued, requeued, released = state
    assert (status, timeout, result, dequeues, requeues) == (S.PENDING, 300, None, 0, 0)
    assert (dequeued, requeued, released) == (None, None, None) and enqueued > 0
    assert len(state) == 9


async def test_a_state_keeps_its_progress_when_copied_pickled_or_replaced(queue: Torrelque) -> None:
    task_id = await working_task(queue)
    await queue.set_progress(task_id, [1, 'two'])
    state = await queue.get_task_state(task_id)
    assert pickle.loads(pickle.dumps(state)).progress == [1, 'two']
    assert state._replace(dequeue_count=7).progress == [1, 'two']
    assert state._replace(progress=None).progress is None


@pytest.mark.parametrize('where', [*NOT_WORKING, 'lost'])
async def test_progress_of_an_attempt_that_does_not_own_its_task_is_refused(
    client: redis.asyncio.Redis, queue: Torrelque, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    if where == 'lost':
        first = await working_task(queue)
        await queue.requeue(first)
        second, _ = await queue.dequeue(timeout=1)
        task_id = first  # carries the first attempt's lease: the second owns the task
        assert second == first
    else:
        task_id = await task_not_working(queue, where)
    await assert_refused_without_change(client, queue, caplog, task_id, lambda: queue.set_progress(task_id, 1))


@pytest.mark.parametrize(
    ('value', 'error'),
    [
        (float('nan'), TorrelqueSerialiserError),
        (object(), TorrelqueSerialiserError),
        (2**70, TorrelqueSerialiserError),
        ('x' * (64 * 1024), TorrelqueValueError),
    ],
    ids=['nan', 'object', 'huge integer', 'too long'],
)
async def test_progress_that_is_not_small_json_is_refused_before_anything_is_sent(
    client: redis.asyncio.Redis, queue: Torrelque, value: Any, error: type[Exception]
) -> None:
    task_id = await working_task(queue)
    before = await state_hash(client, queue, task_id)
    with pytest.raises(error):
        await queue.set_progress(task_id, value)
    assert await state_hash(client, queue, task_id) == before


async def test_progress_with_a_handed_over_lease(queue: Torrelque, make_queue: Callable[..., Torrelque]) -> None:
    task_id = await working_task(queue)
    other = make_queue()
    assert await other.set_progress(str(task_id), 'half', lease=task_id.lease) is True
    assert (await other.get_task_state(task_id)).progress == 'half'


async def test_a_new_attempt_starts_without_the_last_ones_progress(queue: Torrelque) -> None:
    task_id = await working_task(queue)
    await queue.set_progress(task_id, 1.0)
    await queue.requeue(task_id)
    assert (await queue.get_task_state(task_id)).progress == 1.0  # until it is taken again
    again, _ = await queue.dequeue(timeout=1)
    assert (await queue.get_task_state(again)).progress is None
