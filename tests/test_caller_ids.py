"""Caller-given task ids: one task per id while it is in the queue or its
state is kept, a window after its end with unique_for, retries that never
make two, and ids checked before anything is sent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis.asyncio
from helpers import raw

from torrelque import (
    TaskContext,
    Torrelque,
    TorrelqueDuplicateError,
    TorrelqueTaskStatus,
    TorrelqueValueError,
    Worker,
)

S = TorrelqueTaskStatus


async def test_an_id_is_taken_while_its_task_is_pending_delayed_or_working(queue: Torrelque) -> None:
    assert await queue.enqueue('first', task_id='order-1') == 'order-1'
    with pytest.raises(TorrelqueDuplicateError) as caught:
        await queue.enqueue('second', task_id='order-1')
    assert caught.value.task_id == 'order-1'
    task_id, task = await queue.dequeue(timeout=1)
    assert (task_id, task) == ('order-1', 'first')
    with pytest.raises(TorrelqueDuplicateError):
        await queue.enqueue('third', task_id='order-1')
    await queue.enqueue('later', task_id='order-2', delay=60)
    with pytest.raises(TorrelqueDuplicateError):
        await queue.enqueue('again', task_id='order-2')
    assert (await queue.get_queue_stats()).tasks == 2


async def test_a_kept_result_holds_the_id_and_a_removed_task_frees_it(queue: Torrelque) -> None:
    await queue.enqueue('a', task_id='kept')
    await queue.enqueue('b', task_id='removed')
    first, _ = await queue.dequeue(timeout=1)
    second, _ = await queue.dequeue(timeout=1)
    await queue.release(first, result='done')
    await queue.release(second)
    with pytest.raises(TorrelqueDuplicateError):
        await queue.enqueue('a again', task_id='kept')
    assert await queue.enqueue('b again', task_id='removed') == 'removed'
    assert (await queue.get_task_state('removed')).status is S.PENDING


async def test_unique_for_holds_the_id_after_the_task_ended(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    await queue.enqueue('job', task_id='mail-7', unique_for=30)
    task_id, _ = await queue.dequeue(timeout=1)
    await queue.release(task_id)  # without a result: its state is gone
    with pytest.raises(TorrelqueDuplicateError):
        await queue.enqueue('job', task_id='mail-7', unique_for=30)
    hold = f'{queue.keys["unique"]}:mail-7'
    assert 29_000 < await client.pttl(hold) <= 30_000
    await client.delete(hold)  # as if the window had passed
    assert await queue.enqueue('job', task_id='mail-7') == 'mail-7'


async def test_unique_for_holds_a_buried_id_too(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    await queue.enqueue('job', task_id='bad', unique_for=30)
    task_id, _ = await queue.dequeue(timeout=1)
    await queue.bury(task_id, 'broken')
    await queue.purge_dead('bad')
    with pytest.raises(TorrelqueDuplicateError):
        await queue.enqueue('job', task_id='bad')


async def test_concurrent_producers_of_one_id_make_exactly_one_task(
    queue: Torrelque, make_queue: Callable[..., Torrelque], make_client: Callable[..., redis.asyncio.Redis]
) -> None:
    producers = [make_queue(make_client()) for _ in range(20)]

    async def produce(q: Torrelque, n: int) -> bool:
        try:
            await q.enqueue(n, task_id='once')
        except TorrelqueDuplicateError:
            return False
        return True

    made = await asyncio.gather(*(produce(q, n) for n, q in enumerate(producers)))
    assert made.count(True) == 1
    assert (await queue.get_queue_stats()).tasks == 1
    assert (await queue.get_queue_counters())['enqueued'] == 1


async def test_a_retried_enqueue_is_recognised_as_the_same_call(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    """The call sent twice, as redis-py does after a lost reply: the second
    run says OK, not DUPLICATE, and makes nothing."""
    scripts = queue._scripts
    args = [b'', b'0', b'', b'call-token-1', b'', b'', b'twice', b'"payload"']
    first = await scripts._run('enqueue', scripts._enqueue_keys, args)
    second = await scripts._run('enqueue', scripts._enqueue_keys, args)
    assert (first, second) == (1, 1)
    other = await scripts._run('enqueue', scripts._enqueue_keys, [*args[:3], b'call-token-2', *args[4:]])
    assert other == -4
    assert (await raw(client, queue)).pending == ['twice']


async def test_caller_ids_in_a_pipeline(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    await queue.enqueue('x', task_id='p-2')
    async with client.pipeline(transaction=True) as pipeline:
        for name in ('p-1', 'p-2', 'p-3', 'p-1'):
            await queue.enqueue(name, task_id=name, pipeline=pipeline)
        results = await pipeline.execute()
    assert results == [[1, -4, 1, -4]]
    assert sorted((await raw(client, queue)).pending) == ['p-1', 'p-2', 'p-3']


async def test_a_worker_runs_tasks_of_caller_ids(queue: Torrelque) -> None:
    async def handle(task: str, ctx: TaskContext) -> str:
        assert ctx.task_id == 'invoice-42'
        return task.upper()

    await queue.enqueue('paid', task_id='invoice-42')
    await asyncio.wait_for(Worker(queue, handle, burst=True).run(), 10)
    assert (await queue.get_task_state('invoice-42')).result == 'PAID'


@pytest.mark.parametrize('bad', ['', 'with space', 'a\nb', 'ü', 'x' * 201, 7, b'bytes', 1.5])
async def test_bad_ids_are_refused_before_anything_is_sent(
    client: redis.asyncio.Redis, queue: Torrelque, bad: object
) -> None:
    with pytest.raises(TorrelqueValueError):
        await queue.enqueue('job', task_id=bad)  # type: ignore[arg-type]
    assert (await raw(client, queue)).pending == []


async def test_unique_for_needs_a_task_id(queue: Torrelque) -> None:
    with pytest.raises(TorrelqueValueError, match='task_id'):
        await queue.enqueue('job', unique_for=10)


async def test_replace_updates_a_waiting_task_and_pushes_its_due_time(
    client: redis.asyncio.Redis, queue: Torrelque
) -> None:
    """Debounce: each send moves the task's due time out and keeps the
    latest payload; there is only ever one task."""
    await queue.enqueue({'v': 1}, task_id='search-index', delay=5)
    first_due = await client.zscore(queue.keys['delayed'], 'search-index')
    await asyncio.sleep(0.01)
    assert await queue.enqueue({'v': 2}, task_id='search-index', delay=5, replace=True) == 'search-index'
    assert await client.zscore(queue.keys['delayed'], 'search-index') > first_due
    await queue.enqueue({'v': 3}, task_id='search-index', replace=True)  # no delay: the due time stays
    layout = await raw(client, queue)
    assert (layout.pending, layout.delayed, layout.tasks) == ([], ['search-index'], {'search-index'})
    await queue.enqueue({'v': 4}, task_id='search-index', delay=0, replace=True)  # now
    task_id, task = await queue.dequeue(timeout=1)
    assert (task_id, task) == ('search-index', {'v': 4})
    counters = await queue.get_queue_counters()
    assert (counters['enqueued'], counters['replaced']) == (1, 3)


async def test_replace_moves_a_pending_task_to_delayed(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    await queue.enqueue('a', task_id='r')
    await queue.enqueue('b', task_id='r', delay=60, replace=True)
    layout = await raw(client, queue)
    assert (layout.pending, layout.delayed) == ([], ['r'])
    assert (await queue.get_task_state('r')).status is S.DELAYED


async def test_replace_makes_the_task_when_the_id_is_free_and_never_touches_a_working_one(
    queue: Torrelque,
) -> None:
    assert await queue.enqueue('new', task_id='w', replace=True) == 'w'
    await queue.dequeue(timeout=1)
    with pytest.raises(TorrelqueDuplicateError):
        await queue.enqueue('late', task_id='w', replace=True)
    assert (await queue.get_task_state('w')).status is S.WORKING


async def test_replace_needs_an_id_and_no_pipeline(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    with pytest.raises(TorrelqueValueError):
        await queue.enqueue('x', replace=True)
    async with client.pipeline() as pipeline:
        with pytest.raises(TorrelqueValueError):
            await queue.enqueue('x', task_id='p', replace=True, pipeline=pipeline)
