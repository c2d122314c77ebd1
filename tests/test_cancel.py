"""Cancel: a pending or delayed task leaves at once; a working one is
aborted in its worker within milliseconds, or ended by the sweep when its
worker is gone; watchers see CANCELLED; ids of cancelled tasks are held."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest
import redis.asyncio
from helpers import raw, wait_until

from torrelque import (
    TaskContext,
    Torrelque,
    TorrelqueDuplicateError,
    TorrelqueTaskStatus,
    TorrelqueValueError,
    Worker,
)

S = TorrelqueTaskStatus


@pytest.mark.parametrize('delay', [None, 60])
async def test_a_waiting_task_is_cancelled_at_once(
    client: redis.asyncio.Redis, queue: Torrelque, delay: float | None
) -> None:
    keep = await queue.enqueue('keep')
    task_id = await queue.enqueue('drop', delay=delay)
    assert await queue.cancel(task_id) is True
    state = await queue.get_task_state(task_id)
    assert (state.status, state.release_time is not None) == (S.CANCELLED, True)
    layout = await raw(client, queue)
    assert (layout.pending, layout.delayed, layout.tasks) == ([keep], [], {keep})
    assert (await queue.get_queue_counters())['cancelled'] == 1
    assert 0 < await client.pttl(f'{queue.keys["task"]}:{task_id}') <= queue.result_ttl * 1000
    got, _ = await queue.dequeue(timeout=1)
    assert got == keep


async def test_cancel_of_an_unknown_or_ended_task_is_refused(queue: Torrelque) -> None:
    assert await queue.cancel('no-such-task') is False
    task_id = await queue.enqueue('x')
    taken, _ = await queue.dequeue(timeout=1)
    await queue.release(taken, result=1)
    assert await queue.cancel(task_id) is False
    assert (await queue.get_task_state(task_id)).status is S.COMPLETED


async def test_a_watcher_sees_the_cancel(queue: Torrelque, make_queue: Callable[..., Torrelque]) -> None:
    task_id = await queue.enqueue('x', delay=60)
    states = []

    async def follow() -> None:
        async for state in make_queue().watch(task_id, timeout=10):
            states.append(state.status)

    following = asyncio.create_task(follow())
    await asyncio.sleep(0.2)
    await queue.cancel(task_id)
    await asyncio.wait_for(following, 5)
    assert states == [S.DELAYED, S.CANCELLED]


async def test_a_running_handler_is_aborted_within_milliseconds_and_never_retried(
    queue: Torrelque, make_queue: Callable[..., Torrelque]
) -> None:
    started, stopped = asyncio.Event(), asyncio.Event()
    runs = 0

    async def handle(task: str, ctx: TaskContext) -> None:
        nonlocal runs
        runs += 1
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            stopped.set()

    task_id = await queue.enqueue('long', max_attempts=5)
    watcher = make_queue()
    states: list[S] = []

    async def follow() -> None:
        async for state in watcher.watch(task_id, timeout=20):
            states.append(state.status)

    async with Worker(queue, handle, concurrency=2):
        await asyncio.wait_for(started.wait(), 5)
        following = asyncio.create_task(follow())
        await asyncio.sleep(0.2)
        loop = asyncio.get_running_loop()
        asked = loop.time()
        assert await make_queue().cancel(task_id) is True
        await asyncio.wait_for(stopped.wait(), 5)
        assert loop.time() - asked < 0.5
        await asyncio.wait_for(following, 5)
        await asyncio.sleep(0.3)
    assert states[-1] is S.CANCELLED
    assert runs == 1
    assert (await queue.get_queue_stats()).tasks == 0
    assert (await queue.get_queue_counters())['cancelled'] == 1


@pytest.mark.parametrize('ending', ['returns', 'raises'])
async def test_an_aborted_task_ends_cancelled_however_its_handler_ends(queue: Torrelque, ending: str) -> None:
    """A handler that swallows the cancellation and then returns (or fails)
    does not make the cancelled task completed (or retried)."""
    started = asyncio.Event()

    async def handle(task: str, ctx: TaskContext) -> str:
        started.set()
        with contextlib.suppress(asyncio.CancelledError):  # as a careless handler might
            await asyncio.sleep(30)
        if ending == 'raises':
            raise RuntimeError('failed after the cancel')
        return 'done anyway'

    task_id = await queue.enqueue('stubborn', max_attempts=5)
    async with Worker(queue, handle):
        await asyncio.wait_for(started.wait(), 5)
        assert await queue.cancel(task_id) is True

        async def ended() -> bool:
            return (await queue.get_task_state(task_id)).status is S.CANCELLED

        await wait_until(ended)
    state = await queue.get_task_state(task_id)
    assert (state.status, state.result, state.dequeue_count) == (S.CANCELLED, None, 1)
    assert (await queue.get_queue_stats()).tasks == 0


async def test_a_task_whose_worker_is_gone_is_ended_by_the_sweep_not_handed_out(
    client: redis.asyncio.Redis, queue: Torrelque
) -> None:
    task_id = await queue.enqueue('x', task_timeout=5)
    await queue.dequeue(timeout=1)  # a consumer that will never come back
    assert await queue.cancel(task_id) is True
    assert (await queue.get_task_state(task_id)).status is S.WORKING
    queue.clock_offset = 10
    await queue.sweep()
    assert (await queue.get_task_state(task_id)).status is S.CANCELLED
    assert (await raw(client, queue)).pending == []


async def test_the_heartbeat_of_an_aborted_attempt_stops_its_handler(queue: Torrelque) -> None:
    """An abort message missed (say, the event connection was down) is
    caught by the next heartbeat: touch refuses a cancelled task."""
    task_id = await queue.enqueue('x')
    taken, _ = await queue.dequeue(timeout=1)
    await queue._scripts._run('cancel', queue._scripts._cancel_keys, [task_id, b'1000', b''])
    assert await queue.touch(taken) is False


async def test_a_cancelled_caller_id_is_held_for_its_unique_for(queue: Torrelque) -> None:
    await queue.enqueue('x', task_id='c-1', unique_for=30)
    await queue.cancel('c-1')
    with pytest.raises(TorrelqueDuplicateError):
        await queue.enqueue('x', task_id='c-1')


async def test_release_cannot_claim_cancelled(queue: Torrelque) -> None:
    await queue.enqueue('x')
    taken, _ = await queue.dequeue(timeout=1)
    with pytest.raises(TorrelqueValueError):
        await queue.release(taken, status=S.CANCELLED)


async def test_a_cancelled_task_is_counted_once_in_the_ledger(queue: Torrelque) -> None:
    for _ in range(3):
        await queue.enqueue('x')
    ids = [await queue.enqueue('y') for _ in range(2)]
    for task_id in ids:
        await queue.cancel(task_id)

    async def drained() -> bool:
        return (await queue.get_queue_stats()).pending == 3

    await wait_until(drained)
    counters = await queue.get_queue_counters()
    assert (counters['enqueued'], counters['cancelled']) == (5, 2)
