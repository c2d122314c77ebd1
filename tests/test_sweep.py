"""sweep: stale and due tasks come back, lost wake-ups are made good; the scheduled sweep."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis.asyncio
from helpers import blocked_clients, raw, until_blocked

from torrelque import Torrelque, TorrelqueError, TorrelqueTaskStatus, TorrelqueValueError


async def test_stale_task_returns_to_pending(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    task_id = await queue.enqueue('slow', task_timeout=10)
    await queue.dequeue(timeout=1)
    assert await queue.sweep() == (0, 0, 0)  # not stale yet

    queue.clock_offset = 11
    assert await queue.sweep() == (1, 0, 0)
    state = await raw(client, queue)
    assert (state.pending, state.working) == ([task_id], [])
    assert state.stats['swept_stale'] == 1
    task = await queue.get_task_state(task_id)
    assert (task.status, task.dequeue_count) == (TorrelqueTaskStatus.PENDING, 1)
    # Delivered again, and the consumer can tell.
    assert await queue.dequeue(timeout=1) == (task_id, 'slow')
    assert (await queue.get_task_state(task_id)).dequeue_count == 2


async def test_stale_release_after_the_sweep_is_refused(queue: Torrelque) -> None:
    task_id = await queue.enqueue('slow', task_timeout=1)
    await queue.dequeue(timeout=1)
    queue.clock_offset = 2
    await queue.sweep()
    assert await queue.release(task_id) is False
    assert (await queue.get_task_state(task_id)).status is TorrelqueTaskStatus.PENDING


async def test_due_delayed_task_returns_to_pending(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    early = await queue.enqueue('early', delay=5)
    late = await queue.enqueue('late', delay=50)
    assert await queue.sweep() == (0, 0, 0)
    queue.clock_offset = 6
    assert await queue.sweep() == (0, 1, 0)
    state = await raw(client, queue)
    assert (state.pending, state.delayed) == ([early], [late])
    assert (await queue.get_task_state(early)).status is TorrelqueTaskStatus.PENDING


async def test_returned_tasks_join_the_tail_earliest_first(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    first = await queue.enqueue('a', task_timeout=3)
    second = await queue.enqueue('b', task_timeout=1)
    await queue.dequeue(timeout=1, max_tasks=2)
    waiting = await queue.enqueue('c')
    queue.clock_offset = 5
    assert await queue.sweep() == (2, 0, 0)
    assert (await raw(client, queue)).pending == [waiting, second, first]


async def test_the_sweep_sets_a_lost_wake_up_marker_again(
    make_client: Callable[..., redis.asyncio.Redis], queue: Torrelque
) -> None:
    """A consumer whose BLPOP took the wake-up marker but never saw the reply
    (here a bare BLPOP that is first in line) leaves the task pending and the
    other consumers asleep; the next sweep wakes one of them."""
    admin, ready = make_client(), queue.keys['ready']
    before = await blocked_clients(admin, ready)
    lost = asyncio.create_task(make_client().blpop([ready], 5))
    await until_blocked(admin, ready, before + 1)
    waiting = asyncio.create_task(queue.dequeue(timeout=5))
    await until_blocked(admin, ready, before + 2)
    task_id = await queue.enqueue('woken by the sweep')
    assert await lost is not None
    await asyncio.sleep(0.2)
    assert not waiting.done()
    assert await queue.sweep() == (0, 0, 0)
    assert await asyncio.wait_for(waiting, 2) == (task_id, 'woken by the sweep')


# Small batches, and the largest allowed (Lua's unpack() limits it).
@pytest.mark.parametrize(('size', 'stale'), [(7, 30), (5000, 6000)])
async def test_sweep_works_in_batches(client: redis.asyncio.Redis, queue: Torrelque, size: int, stale: int) -> None:
    queue.sweep_batch_size = size
    async with client.pipeline() as pipe:
        for i in range(stale):
            await queue.enqueue(i, task_timeout=1, pipeline=pipe)
        for i in range(20):
            await queue.enqueue(i, delay=1, pipeline=pipe)
        await pipe.execute()
    await queue.dequeue(timeout=1, max_tasks=stale)
    queue.clock_offset = 2
    assert await queue.sweep() == (stale, 20, 0)
    state = await raw(client, queue)
    assert (len(state.pending), state.working, state.delayed) == (stale + 20, [], [])


@pytest.mark.parametrize('size', [0, -1, 5001, 2.5, '100', True, None])
async def test_a_bad_sweep_batch_size_is_refused_before_anything_moves(
    client: redis.asyncio.Redis, queue: Torrelque, size: object
) -> None:
    await queue.enqueue('stale', task_timeout=1)
    await queue.dequeue(timeout=1)
    queue.clock_offset = 2
    queue.sweep_batch_size = size  # type: ignore[assignment]
    with pytest.raises(TorrelqueValueError, match='sweep_batch_size must be an integer from 1 to 5000'):
        await queue.sweep()
    assert (await queue.get_queue_stats()).working == 1


async def test_scheduled_sweep_returns_a_delayed_task_on_time(make_queue: Callable[..., Torrelque]) -> None:
    producer, consumer = make_queue(), make_queue()
    consumer.schedule_sweep()  # the default interval is 30 s: the due time must wake it
    await asyncio.sleep(0.1)
    loop = asyncio.get_running_loop()
    start = loop.time()
    task_id = await producer.enqueue('soon', delay=0.3)
    assert await consumer.dequeue(timeout=5) == (task_id, 'soon')
    assert 0.25 <= loop.time() - start < 2


async def test_scheduled_sweep_returns_a_stale_task_after_its_timeout(make_queue: Callable[..., Torrelque]) -> None:
    sweeper, worker = make_queue(), make_queue()
    sweeper.schedule_sweep()
    await asyncio.sleep(0.1)
    task_id = await worker.enqueue('abandoned', task_timeout=0.3)
    loop = asyncio.get_running_loop()
    assert await worker.dequeue(timeout=1) == (task_id, 'abandoned')
    start = loop.time()
    # The worker "dies"; another consumer gets the task after the timeout.
    assert await worker.dequeue(timeout=5) == (task_id, 'abandoned')
    assert 0.25 <= loop.time() - start < 2
    assert (await worker.get_task_state(task_id)).dequeue_count == 2


async def test_schedule_twice_replaces_and_unschedule_stops(queue: Torrelque) -> None:
    queue.schedule_sweep(0.05)
    first = queue._sweeper._task
    queue.schedule_sweep(0.05)
    assert first is not None
    await asyncio.wait([first], timeout=5)  # a sweep under way ends first
    assert first.cancelled()
    running = queue._sweeper._task
    assert running is not None and running is not first
    queue.unschedule_sweep()
    await asyncio.wait([running], timeout=5)
    assert running.cancelled()
    queue.unschedule_sweep()  # again: nothing to do


async def test_schedule_sweep_needs_a_running_loop(client: redis.asyncio.Redis) -> None:
    queue = Torrelque(client)
    with pytest.raises(TorrelqueValueError):
        queue.schedule_sweep(0)

    def outside_the_loop() -> None:
        with pytest.raises(TorrelqueError, match='running event loop'):
            queue.schedule_sweep()

    await asyncio.to_thread(outside_the_loop)


async def test_aclose_stops_the_sweep(client: redis.asyncio.Redis, queue_name: str) -> None:
    async with Torrelque(client, queue=queue_name) as queue:
        queue.schedule_sweep()
        task = queue._sweeper._task
    assert task is not None and task.done()


async def test_aclose_stops_the_sweep_wherever_it_is(
    make_client: Callable[..., redis.asyncio.Redis], queue_name: str
) -> None:
    """Stopped while it connects, writes a sweep or waits, the sweep ends
    (see test_a_dequeue_cancelled_at_any_moment_ends for why a write could
    keep it running)."""
    loop = asyncio.get_running_loop()
    for steps in range(24):
        queue = Torrelque(make_client(socket_timeout=2), queue=queue_name)
        queue.schedule_sweep(0.05)
        for _ in range(steps):
            await asyncio.sleep(0)
        started = loop.time()
        await queue.aclose()
        assert loop.time() - started < 1, f'stopped after {steps} steps'


async def test_a_wake_up_during_a_sweep_is_not_lost(queue: Torrelque) -> None:
    """A delayed task comes in after the sweep has read the queue but before
    it has returned: the wake-up it announces still sets the next sweep
    (not the 30 s interval)."""
    sweep = queue._sweeper._sweep

    async def slow_to_return() -> tuple[tuple[int, int, int], float | None]:
        result = await sweep()
        await asyncio.sleep(0.5)
        return result

    queue._sweeper._sweep = slow_to_return
    queue.schedule_sweep(30)
    await asyncio.sleep(0.2)  # the first sweep has read the (empty) queue
    task_id = await queue.enqueue('due soon', delay=0.4)
    got, _ = await queue.dequeue(timeout=3)
    assert got == task_id


async def test_the_sweep_starts_before_its_wake_ups_are_subscribed(queue: Torrelque) -> None:
    """Its first sweep does not wait for the wake channel's subscription."""
    await queue.enqueue('abandoned', task_timeout=10)
    await queue.dequeue(timeout=1)
    queue.clock_offset = 11
    hub = queue._events()
    join = hub.join

    async def never_confirmed(channel: bytes, listener: object) -> None:
        await asyncio.Event().wait()

    hub.join = never_confirmed  # type: ignore[method-assign]
    queue.schedule_sweep(30)
    again, _ = await queue.dequeue(timeout=2)
    assert again.dequeue_count == 2
    hub.join = join  # type: ignore[method-assign]
