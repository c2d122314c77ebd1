"""Consecutive enqueues, and releases without a result, into one pipeline
share one script call; an id that is taken is refused, alone or in a batch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis.asyncio
from helpers import raw, server_now, state_hash, subscribers, wait_until

import torrelque._codec
from torrelque import Torrelque, TorrelqueEvent
from torrelque import TorrelqueTaskStatus as S


async def test_a_long_run_is_split_into_bounded_calls(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    async with client.pipeline(transaction=True) as pipe:
        ids = [await queue.enqueue(n, pipeline=pipe) for n in range(600)]
        assert len(pipe) == 3
        results = await pipe.execute()
    assert results == [[1] * 250, [1] * 250, [1] * 100]
    state = await raw(client, queue)
    assert state.pending == ids
    assert state.stats == {'enqueued': 600}
    assert [await queue.dequeue(timeout=1) for _ in range(3)] == [(ids[0], 0), (ids[1], 1), (ids[2], 2)]


async def test_another_command_ends_the_batch(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    async with client.pipeline(transaction=True) as pipe:
        first = [await queue.enqueue(n, pipeline=pipe) for n in range(2)]
        pipe.llen(queue.keys['pending'])
        last = await queue.enqueue(2, pipeline=pipe)
        results = await pipe.execute()
    # The LLEN ran between the two calls, where the caller put it.
    assert results == [[1, 1], 2, [1]]
    assert (await raw(client, queue)).pending == [*first, last]


async def test_tasks_with_other_options_start_a_new_call(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    now = await server_now(client)
    async with client.pipeline(transaction=True) as pipe:
        plain = [await queue.enqueue('plain', pipeline=pipe) for _ in range(2)]
        later = await queue.enqueue('later', delay=60, pipeline=pipe)
        short = [await queue.enqueue('short', task_timeout=5, pipeline=pipe) for _ in range(2)]
        assert len(pipe) == 3
        assert await pipe.execute() == [[1, 1], [1], [1, 1]]
    state = await raw(client, queue)
    assert state.pending == [*plain, *short]
    assert state.delayed == [later]
    assert state.stats == {'enqueued': 5, 'delayed': 1}
    assert (await queue.get_task_state(later)).status == S.DELAYED
    assert now + 59 <= (await client.zscore(queue.keys['delayed'], later)) / 1e6 <= now + 62
    assert [float((await state_hash(client, queue, task_id))['timeout']) for task_id in short] == [5, 5]
    assert 'timeout' not in await state_hash(client, queue, plain[0])


async def test_delayed_tasks_of_one_call_share_their_due_time(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    async with client.pipeline(transaction=True) as pipe:
        ids = [await queue.enqueue(n, delay=30, pipeline=pipe) for n in range(3)]
        await pipe.execute()
    state = await raw(client, queue)
    assert sorted(state.delayed) == sorted(ids)
    assert state.stats == {'enqueued': 3, 'delayed': 3}
    assert len({await client.zscore(queue.keys['delayed'], task_id) for task_id in ids}) == 1


async def test_a_new_clock_offset_starts_a_new_call(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    async with client.pipeline(transaction=True) as pipe:
        now = await queue.enqueue('now', pipeline=pipe)
        queue.clock_offset = 1000
        ahead = await queue.enqueue('ahead', pipeline=pipe)
        assert len(pipe) == 2
        await pipe.execute()
    times = [(await queue.get_task_state(task_id)).enqueue_time for task_id in (now, ahead)]
    assert 999 < times[1] - times[0] < 1001


async def test_a_pipeline_used_again_starts_afresh(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    async with client.pipeline(transaction=False) as pipe:
        first = [await queue.enqueue(n, pipeline=pipe) for n in range(3)]
        assert await pipe.execute() == [[1, 1, 1]]
        second = [await queue.enqueue(n, pipeline=pipe) for n in range(2)]
        assert await pipe.execute() == [[1, 1]]
    assert (await raw(client, queue)).pending == [*first, *second]


@pytest.mark.single_server  # a cluster's transaction keeps to one slot
async def test_queues_sharing_a_pipeline_keep_their_own_calls(
    client: redis.asyncio.Redis, make_queue: Callable[..., Torrelque], queue_name: str
) -> None:
    one, other = make_queue(), make_queue(queue=f'{queue_name}-other')
    async with client.pipeline(transaction=True) as pipe:
        await one.enqueue(1, pipeline=pipe)
        await other.enqueue(2, pipeline=pipe)
        await one.enqueue(3, pipeline=pipe)
        assert await pipe.execute() == [[1], [1], [1]]
    assert [len((await raw(client, queue)).pending) for queue in (one, other)] == [2, 1]


@pytest.mark.single_server  # a cluster's pipelines have no WATCH
async def test_a_watched_pipeline_runs_each_enqueue_at_once(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    async with client.pipeline(transaction=True) as pipe:
        await pipe.watch(queue.keys['pending'])
        # Watching, before multi(), a pipeline executes commands at once.
        task_id = await queue.enqueue('now', pipeline=pipe)
        assert (await raw(client, queue)).pending == [task_id]
        other = await queue.enqueue('also now', pipeline=pipe)
        assert (await raw(client, queue)).pending == [task_id, other]


async def test_every_task_of_a_batch_has_its_event(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    events: list[TorrelqueEvent] = []

    async def tail() -> None:
        async for event in queue.watch_queue():
            events.append(event)
            if len(events) == 5:
                return

    tailing = asyncio.create_task(tail())
    await wait_until(lambda: subscribers(client, queue.keys['events']))
    async with client.pipeline(transaction=True) as pipe:
        ids = [await queue.enqueue(n, pipeline=pipe) for n in range(5)]
        await pipe.execute()
    await asyncio.wait_for(tailing, 5)
    assert [(event.task_id, event.event, event.status) for event in events] == [
        (task_id, 'enqueued', S.PENDING) for task_id in ids
    ]


def draw_ids(monkeypatch: pytest.MonkeyPatch, *ids: str) -> None:
    """Makes the queue draw these task ids, in this order."""
    drawn = iter(ids)
    monkeypatch.setattr(torrelque._codec, 'new_task_id', lambda: next(drawn).encode())


@pytest.mark.parametrize('where', ['pending', 'kept', 'removed'])
async def test_an_enqueue_whose_id_is_taken_was_done_already(
    client: redis.asyncio.Redis, queue: Torrelque, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Ids are drawn at random, so a taken id is the same call sent again
    (redis-py's retry after a lost reply): it counts as done, and nothing
    more is written, whether the task waits, was released with a result, or
    was just removed."""
    draw_ids(monkeypatch, 'first', 'first')
    assert await queue.enqueue('one') == 'first'
    if where != 'pending':
        task_id, _ = await queue.dequeue(timeout=1)
        await queue.release(task_id, result='done' if where == 'kept' else None)
    before = await raw(client, queue)
    assert await queue.enqueue('one') == 'first'
    assert await raw(client, queue) == before
    assert before.stats['enqueued'] == 1


async def test_a_taken_id_in_a_pipeline_counts_as_done(
    client: redis.asyncio.Redis, queue: Torrelque, monkeypatch: pytest.MonkeyPatch
) -> None:
    draw_ids(monkeypatch, 'first', 'same', 'same', 'first', 'last')
    await queue.enqueue('one')
    async with client.pipeline(transaction=True) as pipe:
        for n in range(4):
            await queue.enqueue(n, pipeline=pipe)
        assert await pipe.execute() == [[1, 1, 1, 1]]
    state = await raw(client, queue)
    assert state.pending == ['first', 'same', 'last']
    assert await client.hget(queue.keys['tasks'], 'same') in (b'0', '0')
    assert state.stats['enqueued'] == 3


async def test_consecutive_plain_releases_share_a_call(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    for n in range(6):
        await queue.enqueue(n)
    (a, _), (b, _), (c, _), (d, _), (e, _), (f, _) = await queue.dequeue(timeout=1, max_tasks=6)
    async with client.pipeline(transaction=True) as pipe:
        await queue.release(a, pipeline=pipe)
        await queue.release(b, pipeline=pipe)
        await queue.release(a, pipeline=pipe)  # twice in one call: refused the second time
        await queue.release(c, status=S.REJECTED, pipeline=pipe)  # another status: a new call
        await queue.release(d, result='kept', pipeline=pipe)  # a result: a call of its own
        await queue.release(e, pipeline=pipe)
        await queue.release('unknown', pipeline=pipe)
        assert len(pipe) == 4
        results = await pipe.execute()
    assert results == [[1, 1, -1], [1], [1], [1, 0]]
    state = await raw(client, queue)
    assert (state.working, state.tasks) == ([f], {f})
    assert state.stats['released'] == 5
    assert (state.stats['completed'], state.stats['rejected']) == (4, 1)
    assert await state_hash(client, queue, a) == {}
    assert await client.exists(f'{queue.keys["gone"]}:{a}') == 1
    assert (await queue.get_task_state(d)).result == 'kept'


async def test_every_task_of_a_release_batch_has_its_event(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    for n in range(3):
        await queue.enqueue(n)
    tasks = await queue.dequeue(timeout=1, max_tasks=3)
    events: list[TorrelqueEvent] = []

    async def tail() -> None:
        async for event in queue.watch_queue():
            events.append(event)
            if len(events) == 3:
                return

    tailing = asyncio.create_task(tail())
    watch = queue.watch(tasks[0][0], timeout=5)
    assert (await watch.__anext__()).status is S.WORKING
    async with client.pipeline(transaction=True) as pipe:
        for task_id, _ in tasks:
            await queue.release(task_id, pipeline=pipe)
        await pipe.execute()
    await asyncio.wait_for(tailing, 5)
    assert [(e.task_id, e.event, e.status) for e in events] == [(i, 'removed', S.COMPLETED) for i, _ in tasks]
    with pytest.raises(StopAsyncIteration):  # released without a result: the watch ends
        await watch.__anext__()
