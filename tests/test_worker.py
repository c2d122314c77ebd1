"""The worker: handlers, results, retries with back-off, the dead-letter
set, heartbeats, time limits, stopping."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio
from helpers import raw, score, server_now, state_hash, wait_until

from torrelque import (
    Reject,
    Retry,
    TaskContext,
    Torrelque,
    TorrelqueLookupError,
    TorrelqueTaskStatus,
    TorrelqueValueError,
    Worker,
)

S = TorrelqueTaskStatus


async def until_empty(queue: Torrelque) -> None:
    async def empty() -> bool:
        return (await queue.get_queue_stats()).tasks == 0

    await wait_until(empty, timeout=10)


async def test_results_are_released_and_watchers_see_them(
    queue: Torrelque, make_queue: Callable[..., Torrelque]
) -> None:
    async def double(task: int, ctx: TaskContext) -> int:
        assert (ctx.attempt, ctx.dequeue_count, ctx.max_attempts) == (1, 1, 3)
        return task * 2

    task_id = await queue.enqueue(21)
    watching = asyncio.create_task(_states(make_queue(), task_id))
    async with Worker(queue, double):
        states = await asyncio.wait_for(watching, 5)
    assert (states[-1].status, states[-1].result) == (S.COMPLETED, 42)
    assert (await queue.get_queue_counters())['completed'] == 1


async def _states(queue: Torrelque, task_id: str) -> list[Any]:
    return [state async for state in queue.watch(task_id, timeout=10)]


async def test_a_handler_that_returns_nothing_releases_without_a_result(queue: Torrelque) -> None:
    done: list[str] = []

    async def handle(task: str, ctx: TaskContext) -> None:
        done.append(task)

    task_id = await queue.enqueue('job')
    async with Worker(queue, handle):
        await until_empty(queue)
    assert done == ['job']
    with pytest.raises(TorrelqueLookupError):
        await queue.get_task_state(task_id)


async def test_a_plain_function_runs_in_a_thread(queue: Torrelque) -> None:
    threads: list[str] = []

    def handle(task: int, ctx: TaskContext) -> int:
        threads.append(threading.current_thread().name)
        return task + 1

    task_id = await queue.enqueue(1)
    result = asyncio.create_task(_states(queue, task_id))
    await Worker(queue, handle, burst=True).run(handle_signals=False)
    assert (await result)[-1].result == 2
    assert threads and threads[0] != threading.main_thread().name


async def test_concurrency_runs_tasks_at_once(queue: Torrelque) -> None:
    running, most = 0, 0

    async def handle(task: int, ctx: TaskContext) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.2)
        running -= 1

    for n in range(8):
        await queue.enqueue(n)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await Worker(queue, handle, concurrency=4, burst=True).run(handle_signals=False)
    assert most == 4
    assert 0.35 < loop.time() - start < 1.5  # two rounds of 0.2 s
    assert (await queue.get_queue_stats()).tasks == 0


async def test_a_failing_task_is_tried_again_after_a_growing_back_off(
    client: redis.asyncio.Redis, queue: Torrelque
) -> None:
    attempts: list[tuple[int, float]] = []
    loop = asyncio.get_running_loop()

    async def flaky(task: str, ctx: TaskContext) -> str:
        attempts.append((ctx.attempt, loop.time()))
        if ctx.attempt < 3:
            raise ConnectionError('not yet')
        return 'at last'

    task_id = await queue.enqueue('x')
    worker = Worker(queue, flaky, backoff=0.2, backoff_factor=2, jitter=0, max_attempts=5)
    async with worker:
        await _done(queue, task_id)
    assert [n for n, _ in attempts] == [1, 2, 3]
    first_wait, second_wait = attempts[1][1] - attempts[0][1], attempts[2][1] - attempts[1][1]
    assert 0.18 < first_wait < 0.6 and 0.38 < second_wait < 1.0  # 0.2 s, then 0.4 s
    state = await queue.get_task_state(task_id)
    assert (state.status, state.result, state.requeue_count, state.dequeue_count) == (S.COMPLETED, 'at last', 2, 3)
    assert (worker.processed, worker.failed) == (1, 2)


async def _done(queue: Torrelque, task_id: str) -> None:
    async with asyncio.timeout(10):
        while True:
            try:
                if (await queue.get_task_state(task_id)).status.isfinal():
                    return
            except TorrelqueLookupError:
                return
            await asyncio.sleep(0.02)


def test_the_back_off_grows_to_its_cap_with_its_jitter(queue: Torrelque) -> None:
    worker = Worker(queue, print, backoff=1, backoff_factor=3, backoff_cap=20, jitter=0)
    assert [worker.backoff(n) for n in (1, 2, 3, 4)] == [1, 3, 9, 20]
    jittered = Worker(queue, print, backoff=10, jitter=0.5)
    assert all(5 <= jittered.backoff(1) <= 10 for _ in range(100))
    assert len({round(jittered.backoff(1), 6) for _ in range(20)}) > 1


async def test_spent_attempts_bury_the_task_in_the_dead_letter_set(
    client: redis.asyncio.Redis, queue: Torrelque, make_queue: Callable[..., Torrelque]
) -> None:
    async def broken(task: dict[str, int], ctx: TaskContext) -> None:
        raise ValueError(f'cannot do {task["n"]}')

    task_id = await queue.enqueue({'n': 7})
    watching = asyncio.create_task(_states(make_queue(), task_id))
    async with Worker(queue, broken, max_attempts=2, backoff=0.01):
        final = (await asyncio.wait_for(watching, 5))[-1]
    assert final.status is S.REJECTED and final.result['type'] == 'ValueError'
    dead = await queue.get_dead(task_id)
    assert (dead.task, dead.dequeue_count) == ({'n': 7}, 2)
    assert (dead.error['type'], dead.error['message'], dead.error['attempts']) == ('ValueError', 'cannot do 7', 2)
    assert 'Traceback' in dead.error['traceback'] and 'broken' in dead.error['traceback']
    assert [task.task_id for task in await queue.list_dead()] == [task_id]
    state = await raw(client, queue)
    assert (state.pending, state.working, state.delayed, state.tasks) == ([], [], [], set())
    counters = await queue.get_queue_counters()
    assert (counters['dead'], counters['rejected'], counters['released']) == (1, 1, 1)


async def test_the_task_s_own_max_attempts_wins(queue: Torrelque) -> None:
    tries: list[int] = []

    async def broken(task: str, ctx: TaskContext) -> None:
        tries.append(ctx.attempt)
        raise RuntimeError('no')

    task_id = await queue.enqueue('once', max_attempts=1)
    async with Worker(queue, broken, max_attempts=5, backoff=0.01):
        await _done(queue, task_id)
    assert tries == [1]
    assert (await queue.get_dead(task_id)).error['attempts'] == 1


async def test_retry_asks_for_another_attempt_after_its_delay(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    seen: list[int] = []

    async def later(task: str, ctx: TaskContext) -> str:
        seen.append(ctx.attempt)
        if ctx.attempt == 1:
            raise Retry(delay=30)
        return 'done'

    task_id = await queue.enqueue('x')
    worker = Worker(queue, later)
    async with worker:

        async def delayed() -> bool:
            return bool((await raw(client, queue)).delayed)

        await wait_until(delayed)
        assert await score(client, queue.keys['delayed'], task_id) > await server_now(client) + 25
        queue.clock_offset = 31  # the due time passes
        await queue.sweep()
        await _done(queue, task_id)
    assert seen == [1, 2]


async def test_reject_buries_at_once(queue: Torrelque) -> None:
    async def refuse(task: str, ctx: TaskContext) -> None:
        raise Reject('malformed order')

    task_id = await queue.enqueue('x')
    async with Worker(queue, refuse, max_attempts=5):
        await _done(queue, task_id)
    dead = await queue.get_dead(task_id)
    assert (dead.error['type'], dead.error['message'], dead.error['attempts']) == ('Reject', 'malformed order', 1)


async def test_a_handler_over_its_time_limit_is_cancelled_and_fails_the_attempt(queue: Torrelque) -> None:
    cancelled: list[int] = []

    async def slow(task: str, ctx: TaskContext) -> str:
        try:
            await asyncio.sleep(10 if ctx.attempt == 1 else 0)
        except asyncio.CancelledError:
            cancelled.append(ctx.attempt)
            raise
        return 'quick the second time'

    task_id = await queue.enqueue('x')
    async with Worker(queue, slow, time_limit=0.2, backoff=0.01):
        await _done(queue, task_id)
    assert cancelled == [1]
    assert (await queue.get_task_state(task_id)).result == 'quick the second time'


async def test_heartbeats_keep_a_long_task_from_going_stale(queue: Torrelque) -> None:
    async def long(task: str, ctx: TaskContext) -> str:
        await asyncio.sleep(1.2)  # past the 0.4 s timeout, three times over
        return 'finished once'

    task_id = await queue.enqueue('x', task_timeout=0.4)
    async with Worker(queue, long):  # its sweep runs, and would return a stale task
        await _done(queue, task_id)
    state = await queue.get_task_state(task_id)
    assert (state.result, state.dequeue_count) == ('finished once', 1)


async def test_a_lost_lease_cancels_the_handler(queue: Torrelque, make_queue: Callable[..., Torrelque]) -> None:
    """The task goes stale and another consumer takes it (the worker's Redis
    was away too long, say): the worker's next heartbeat finds the lease
    lost, cancels its handler, and leaves the task to its new owner."""
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def stuck(task: str, ctx: TaskContext) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task_id = await queue.enqueue('x', task_timeout=30)
    other = make_queue()
    async with Worker(queue, stuck, heartbeat=0.1, sweep=False):
        await asyncio.wait_for(started.wait(), 5)
        other.clock_offset = 31
        await other.sweep()
        taken, _ = await other.dequeue(timeout=1)
        await asyncio.wait_for(cancelled.wait(), 2)
    assert taken == task_id
    assert await other.release(taken, result='by the other') is True


async def test_stop_lets_running_tasks_finish_and_takes_no_more(queue: Torrelque) -> None:
    started = asyncio.Event()

    async def handle(task: int, ctx: TaskContext) -> int:
        started.set()
        await asyncio.sleep(0.3)
        return task

    first = await queue.enqueue(1)
    second = await queue.enqueue(2)
    worker = Worker(queue, handle)
    running = asyncio.create_task(worker.run(handle_signals=False))
    await asyncio.wait_for(started.wait(), 5)
    worker.stop()
    await asyncio.wait_for(running, 5)
    assert (await queue.get_task_state(first)).result == 1
    assert (await queue.get_task_state(second)).status is S.PENDING


async def test_stop_after_the_grace_gives_the_rest_back_at_once(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    started = asyncio.Event()

    async def endless(task: str, ctx: TaskContext) -> None:
        started.set()
        await asyncio.Event().wait()

    task_id = await queue.enqueue('x', task_timeout=300)
    worker = Worker(queue, endless, grace=0.2)
    running = asyncio.create_task(worker.run(handle_signals=False))
    await asyncio.wait_for(started.wait(), 5)
    worker.stop()
    await asyncio.wait_for(running, 5)
    state = await raw(client, queue)
    assert (state.pending, state.working) == ([task_id], [])  # not after its 300 s timeout
    assert 'dequeues' not in await state_hash(client, queue, task_id)  # as if never taken


async def test_a_burst_stops_when_the_queue_is_empty(queue: Torrelque) -> None:
    for n in range(5):
        await queue.enqueue(n)
    done: list[int] = []

    async def handle(task: int, ctx: TaskContext) -> None:
        done.append(task)

    await asyncio.wait_for(Worker(queue, handle, burst=True, concurrency=2).run(handle_signals=False), 10)
    assert sorted(done) == [0, 1, 2, 3, 4]


async def test_the_worker_sweeps_unless_told_not_to(queue: Torrelque, make_queue: Callable[..., Torrelque]) -> None:
    abandoned = await queue.enqueue('abandoned', task_timeout=0.3)
    await make_queue().dequeue(timeout=1)  # a consumer that dies
    done: list[str] = []

    async def handle(task: str, ctx: TaskContext) -> None:
        done.append(task)

    async with Worker(queue, handle):
        await _done(queue, abandoned)
    assert done == ['abandoned']
    assert not queue._sweeper.running  # it stops the sweep it started


@pytest.mark.parametrize(
    ('kwargs', 'message'),
    [
        ({'concurrency': 0}, 'concurrency'),
        ({'max_attempts': 0}, 'max_attempts'),
        ({'backoff': -1}, 'backoff'),
        ({'backoff_factor': 0.5}, 'backoff_factor'),
        ({'jitter': 2}, 'jitter'),
        ({'time_limit': 0}, 'time_limit'),
        ({'grace': -1}, 'grace'),
    ],
)
def test_bad_settings_are_refused(queue: Torrelque, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TorrelqueValueError, match=message):
        Worker(queue, print, **kwargs)


def test_a_worker_needs_a_queue_and_a_callable(queue: Torrelque) -> None:
    with pytest.raises(TorrelqueValueError, match='queue'):
        Worker('not a queue', print)  # type: ignore[arg-type]
    with pytest.raises(TorrelqueValueError, match='callable'):
        Worker(queue, 'not callable')  # type: ignore[arg-type]


async def test_a_task_that_kills_its_consumer_each_time_is_buried(
    queue: Torrelque, make_queue: Callable[..., Torrelque]
) -> None:
    """Server-side: the sweep buries a stale task whose enqueue's attempts
    are all spent. Worker-side: a task taken past its attempts (its
    consumers died) is buried, not run."""
    own = await queue.enqueue('poison', task_timeout=10, max_attempts=2)
    consumer = make_queue()
    for _ in range(2):  # two consumers die with it
        await consumer.dequeue(timeout=1)
        consumer.clock_offset += 11
        await consumer.sweep()
    dead = await queue.get_dead(own)
    assert (dead.error['type'], dead.error['attempts'], dead.task) == ('Stale', 2, 'poison')
    assert (await queue.get_queue_counters())['dead'] == 1

    ran: list[str] = []

    async def handle(task: str, ctx: TaskContext) -> None:
        ran.append(task)

    other = await queue.enqueue('poison too', task_timeout=10)  # the worker's limit: 2
    for _ in range(2):
        await consumer.dequeue(timeout=1)
        consumer.clock_offset += 11
        await consumer.sweep()
    await Worker(queue, handle, max_attempts=2, burst=True, sweep=False).run(handle_signals=False)
    assert ran == []
    assert (await queue.get_dead(other)).error['type'] == 'Stale'


async def test_while_tasks_are_ready_each_costs_one_script_call(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    """The release of a task takes the next one in the same call."""
    done: list[int] = []

    async def handle(task: int, ctx: TaskContext) -> int:
        done.append(task)
        return task

    for n in range(200):
        await queue.enqueue(n)

    async def calls() -> int:
        stats = await client.info('commandstats')
        return sum(int(v['calls']) for k, v in stats.items() if k in ('cmdstat_evalsha', 'cmdstat_eval'))

    before = await calls()
    await asyncio.wait_for(Worker(queue, handle, burst=True, sweep=False, beat_interval=60).run(), 30)
    assert done == list(range(200))  # in order, one at a time
    assert await calls() - before < 200 + 20
    assert (await queue.get_queue_counters())['completed'] == 200


async def test_results_are_kept_for_the_workers_result_ttl(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    async def handle(task: int, ctx: TaskContext) -> int:
        return task

    first, second = await queue.enqueue(1), await queue.enqueue(2)
    await asyncio.wait_for(Worker(queue, handle, burst=True, result_ttl=5).run(), 10)
    for task_id in (first, second):  # one released alone, one with the next task taken
        assert 0 < await client.pttl(f'{queue.keys["task"]}:{task_id}') <= 5000


async def test_releases_of_slots_that_finish_together_join_into_one_call(
    client: redis.asyncio.Redis, queue: Torrelque
) -> None:
    done: list[int] = []

    async def handle(task: int, ctx: TaskContext) -> None:
        done.append(task)

    async with client.pipeline(transaction=False) as pipeline:
        for n in range(400):
            await queue.enqueue(n, pipeline=pipeline)
        await pipeline.execute()
    stats = await client.info('commandstats')
    before = sum(int(v['calls']) for k, v in stats.items() if k in ('cmdstat_evalsha', 'cmdstat_eval'))
    await asyncio.wait_for(Worker(queue, handle, concurrency=8, burst=True, sweep=False, beat_interval=60).run(), 30)
    stats = await client.info('commandstats')
    after = sum(int(v['calls']) for k, v in stats.items() if k in ('cmdstat_evalsha', 'cmdstat_eval'))
    assert sorted(done) == list(range(400))
    assert after - before < 400 / 4  # about one call per 8 tasks
    assert (await queue.get_queue_stats()).tasks == 0
