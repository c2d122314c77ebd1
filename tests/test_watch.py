"""watch() and watch_queue(): following tasks through pub/sub events."""

from __future__ import annotations

import asyncio
import gc
import pickle
import time
from collections.abc import Callable

import pytest
import redis.asyncio
from helpers import subscribers, wait_until
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from torrelque import (
    Torrelque,
    TorrelqueError,
    TorrelqueEvent,
    TorrelqueLookupError,
    TorrelqueTaskSerialiser,
    TorrelqueTaskState,
    TorrelqueTaskStatus,
    TorrelqueTimeoutError,
    TorrelqueValueError,
)
from torrelque.server import RedisServer

S = TorrelqueTaskStatus


async def collect(queue: Torrelque, task_id: str, timeout: float = 10) -> list[TorrelqueTaskState]:
    return [state async for state in queue.watch(task_id, timeout=timeout)]


numsub = subscribers


async def pubsub_connections(client: redis.asyncio.Redis) -> int:
    return sum(1 for c in await client.client_list() if int(c.get('sub', 0)) or int(c.get('psub', 0)))


async def test_watch_follows_a_task_to_completion(make_queue: Callable[..., Torrelque]) -> None:
    queue, worker = make_queue(), make_queue()
    task_id = await queue.enqueue({'job': 1})
    watching = asyncio.create_task(collect(queue, task_id))
    await asyncio.sleep(0.1)
    await worker.dequeue(timeout=1)
    await worker.requeue(task_id)
    await worker.dequeue(timeout=1)
    await worker.release(task_id, result={'answer': 42})

    states = await watching
    assert [s.status for s in states] == [S.PENDING, S.WORKING, S.PENDING, S.WORKING, S.COMPLETED]
    final = states[-1]
    assert final.result == {'answer': 42}
    assert (final.dequeue_count, final.requeue_count) == (2, 1)
    assert final == await queue.get_task_state(task_id)  # the same state, to the microsecond


async def test_watch_ends_without_a_state_on_release_without_result(make_queue: Callable[..., Torrelque]) -> None:
    queue = make_queue()
    task_id = await queue.enqueue('x')
    watching = asyncio.create_task(collect(queue, task_id))
    await asyncio.sleep(0.1)
    await queue.dequeue(timeout=1)
    await queue.release(task_id)
    assert [s.status for s in await watching] == [S.PENDING, S.WORKING]


async def test_watch_of_a_released_task_yields_its_final_state(queue: Torrelque) -> None:
    task_id = await queue.enqueue('x')
    await queue.dequeue(timeout=1)
    await queue.release(task_id, result='done', status=S.REJECTED)
    states = await collect(queue, task_id)
    assert [(s.status, s.result) for s in states] == [(S.REJECTED, 'done')]


async def test_watch_sees_delayed_and_stale_returns(queue: Torrelque) -> None:
    task_id = await queue.enqueue('x', delay=5, task_timeout=1)
    watch = queue.watch(task_id, timeout=10)
    assert (await watch.__anext__()).status is S.DELAYED
    queue.clock_offset = 6
    await queue.sweep()
    assert (await watch.__anext__()).status is S.PENDING
    await queue.dequeue(timeout=1)
    assert (await watch.__anext__()).status is S.WORKING
    queue.clock_offset = 10
    await queue.sweep()
    state = await watch.__anext__()
    assert (state.status, state.dequeue_count) == (S.PENDING, 1)
    await watch.aclose()


async def test_unknown_task_raises_lookup_error(queue: Torrelque) -> None:
    with pytest.raises(TorrelqueLookupError, match='no-such'):
        await collect(queue, 'no-such-task')


async def test_watch_timeout_bounds_the_whole_watch(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    task_id = await queue.enqueue('never done')
    loop = asyncio.get_running_loop()
    start = loop.time()
    seen = []
    with pytest.raises(TorrelqueTimeoutError):
        async for state in queue.watch(task_id, timeout=0.3):
            seen.append(state.status)
    assert seen == [S.PENDING]
    assert 0.25 <= loop.time() - start < 2
    await wait_until(lambda: _no_subscriber(client, queue, task_id))


async def _no_subscriber(client: redis.asyncio.Redis, queue: Torrelque, task_id: str) -> bool:
    return await numsub(client, f'{queue.keys["task"]}:{task_id}') == 0


@pytest.mark.parametrize('timeout', [0, -1, 'soon'])
def test_bad_timeout_is_refused(queue: Torrelque, timeout: object) -> None:
    with pytest.raises(TorrelqueValueError, match='timeout'):
        queue.watch('x', timeout=timeout)  # type: ignore[arg-type]


async def test_transition_between_subscribe_and_read_is_not_missed(
    make_queue: Callable[..., Torrelque], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task completes after the watch has subscribed but before it reads
    the state: the watch still ends with the final state."""
    queue, worker = make_queue(), make_queue()
    task_id = await queue.enqueue('racy')
    await worker.dequeue(timeout=1)
    read_state = queue._scripts.snapshot

    async def release_first(task_ids: list[str]) -> list[int]:
        await worker.release(task_id, result='won the race')
        return await read_state(task_ids)

    monkeypatch.setattr(queue._events(), '_snapshot_fn', release_first)
    states = await collect(queue, task_id, timeout=3)
    assert [(s.status, s.result) for s in states] == [(S.COMPLETED, 'won the race')]


async def test_several_watchers_of_one_task_share_a_subscription(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    task_id = await queue.enqueue('x')
    watchers = [asyncio.create_task(collect(queue, task_id)) for _ in range(5)]
    channel = f'{queue.keys["task"]}:{task_id}'
    await wait_until(lambda: _subscribed(client, channel))
    assert await numsub(client, channel) == 1
    await queue.dequeue(timeout=1)
    await queue.release(task_id, result=1)
    for states in await asyncio.gather(*watchers):
        assert [s.status for s in states] == [S.PENDING, S.WORKING, S.COMPLETED]
    await wait_until(lambda: _no_subscriber(client, queue, task_id))


async def _subscribed(client: redis.asyncio.Redis, channel: str) -> bool:
    return await numsub(client, channel) > 0


async def test_leaving_early_unsubscribes(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    task_id = await queue.enqueue('x')
    channel = f'{queue.keys["task"]}:{task_id}'

    async for _ in queue.watch(task_id):
        break  # the iterator is dropped here
    gc.collect()
    await wait_until(lambda: _no_subscriber(client, queue, task_id))

    watching = asyncio.create_task(collect(queue, task_id))
    await wait_until(lambda: _subscribed(client, channel))
    watching.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watching
    await wait_until(lambda: _no_subscriber(client, queue, task_id))

    watch = queue.watch(task_id)
    await watch.__anext__()
    await watch.aclose()
    await wait_until(lambda: _no_subscriber(client, queue, task_id))
    with pytest.raises(StopAsyncIteration):
        await watch.__anext__()


async def test_aclose_ends_watches(client: redis.asyncio.Redis, queue_name: str) -> None:
    queue = Torrelque(client, queue=queue_name)
    task_id = await queue.enqueue('x')
    watch = queue.watch(task_id)
    await watch.__anext__()
    waiting = asyncio.create_task(watch.__anext__())
    await asyncio.sleep(0.05)
    await queue.aclose()
    with pytest.raises(TorrelqueError, match='closed'):
        await waiting

    # The server drops a closed connection when it next reads from it: it
    # may answer another connection's CLIENT LIST before.
    async def unsubscribed() -> bool:
        return await pubsub_connections(client) == 0

    await wait_until(unsubscribed, timeout=2)


async def test_binary_results_reach_the_watcher(
    make_client: Callable[..., redis.asyncio.Redis], queue_name: str
) -> None:
    queue = Torrelque(make_client(), queue=queue_name, serialiser=TorrelqueTaskSerialiser(pickle.dumps, pickle.loads))
    task_id = await queue.enqueue('x')
    watching = asyncio.create_task(collect(queue, task_id))
    await asyncio.sleep(0.1)
    await queue.dequeue(timeout=1)
    result = {'raw': bytes(range(256)), 'newline': b'\n\n'}
    await queue.release(task_id, result=result)
    assert (await watching)[-1].result == result
    await queue.aclose()


async def test_watch_queue_yields_every_transition(make_queue: Callable[..., Torrelque]) -> None:
    queue, worker = make_queue(), make_queue()
    events: list[TorrelqueEvent] = []

    async def tail() -> None:
        async for event in queue.watch_queue():
            events.append(event)
            if event.event in ('released', 'removed'):
                return

    tailing = asyncio.create_task(tail())
    await asyncio.sleep(0.1)
    task_id = await worker.enqueue('x', task_timeout=1)
    await worker.dequeue(timeout=1)
    worker.clock_offset = 2
    await worker.sweep()
    await worker.dequeue(timeout=1)
    await worker.requeue(task_id, delay=1)
    worker.clock_offset = 4
    await worker.sweep()
    await worker.dequeue(timeout=1)
    await worker.release(task_id, result=1)
    await asyncio.wait_for(tailing, 5)

    assert [(e.task_id, e.event, e.status) for e in events] == [
        (task_id, 'enqueued', S.PENDING),
        (task_id, 'dequeued', S.WORKING),
        (task_id, 'stale', S.PENDING),
        (task_id, 'dequeued', S.WORKING),
        (task_id, 'requeued', S.DELAYED),
        (task_id, 'due', S.PENDING),
        (task_id, 'dequeued', S.WORKING),
        (task_id, 'released', S.COMPLETED),
    ]
    times = [e.time for e in events]
    assert times == sorted(times) and times[0] > 1.7e9


async def test_watch_needs_no_server_configuration(
    make_server: Callable[..., RedisServer], make_client: Callable[..., redis.asyncio.Redis]
) -> None:
    """As on managed Redis: no keyspace notifications, CONFIG forbidden."""
    server = make_server(config={'notify-keyspace-events': '""', 'rename-command': 'CONFIG ""'})
    client = make_client(server.url)
    with pytest.raises(redis.exceptions.ResponseError):
        await client.config_get('notify-keyspace-events')
    queue = Torrelque(client, queue='managed')
    task_id = await queue.enqueue('x')
    watching = asyncio.create_task(collect(queue, task_id))
    await asyncio.sleep(0.1)
    await queue.dequeue(timeout=1)
    await queue.release(task_id, result='ok')
    assert [(s.status, s.result) for s in await watching][-1] == (S.COMPLETED, 'ok')
    await queue.aclose()


async def test_idle_watches_use_no_cpu(make_queue: Callable[..., Torrelque]) -> None:
    queue = make_queue()
    ids = [await queue.enqueue(i) for i in range(100)]
    watches = [queue.watch(task_id) for task_id in ids]
    await asyncio.gather(*(w.__anext__() for w in watches))
    waiting = [asyncio.create_task(w.__anext__()) for w in watches]
    await asyncio.sleep(0.2)

    cpu = time.process_time()
    await asyncio.sleep(2)
    used = time.process_time() - cpu
    assert used < 0.2, f'100 idle watches used {used:.3f} s of CPU in 2 s'
    assert not any(t.done() for t in waiting)
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)


@pytest.mark.slow
async def test_2000_concurrent_watches_share_one_connection(
    make_server: Callable[..., RedisServer], make_client: Callable[..., redis.asyncio.Redis]
) -> None:
    server = make_server()
    client = make_client(server.url, max_connections=50)
    queue = Torrelque(client, queue='crowd')
    count = 2000
    async with client.pipeline() as pipe:
        ids = [await queue.enqueue(i, pipeline=pipe) for i in range(count)]
        await pipe.execute()
    watching = [asyncio.create_task(collect(queue, task_id, timeout=60)) for task_id in ids]
    # A few leave early, in each way a caller can.
    early = [queue.watch(task_id) for task_id in ids[:10]]
    for watch in early[:5]:
        await watch.__anext__()
        await watch.aclose()
    del early
    await wait_until(lambda: _all_subscribed(client, queue, ids), timeout=30)
    assert await pubsub_connections(client) <= 2

    tasks = await queue.dequeue(timeout=1, max_tasks=count)
    async with client.pipeline() as pipe:
        for task_id, n in tasks:
            await queue.release(task_id, result=n * 2, pipeline=pipe)
        await pipe.execute()
    results = await asyncio.wait_for(asyncio.gather(*watching), 60)

    assert all(states[-1].status is S.COMPLETED for states in results)
    assert [states[-1].result for states in results] == [n * 2 for n in range(count)]
    assert await pubsub_connections(client) <= 2
    await wait_until(lambda: _no_channels(client, queue), timeout=10)
    await queue.aclose()


async def _all_subscribed(client: redis.asyncio.Redis, queue: Torrelque, ids: list[str]) -> bool:
    counts = await client.pubsub_numsub(*[f'{queue.keys["task"]}:{task_id}' for task_id in ids])
    return all(int(n) >= 1 for _, n in counts)


async def _no_channels(client: redis.asyncio.Redis, queue: Torrelque) -> bool:
    return await client.pubsub_channels(f'{{{queue.name}}}:*') == []


async def test_watches_survive_a_killed_connection(
    make_server: Callable[..., RedisServer], make_client: Callable[..., redis.asyncio.Redis]
) -> None:
    server = make_server()
    client = make_client(server.url)
    queue = Torrelque(client, queue='flaky')
    before, during = await queue.enqueue('before'), await queue.enqueue('during')
    watches = {task_id: asyncio.create_task(collect(queue, task_id, timeout=20)) for task_id in (before, during)}
    await wait_until(lambda: _count_pubsub(client, 1))
    await queue.dequeue(timeout=1, max_tasks=2)

    # Kill the shared pub/sub connection, and release one task at once,
    # while the watches are reconnecting.
    await client.client_kill_filter(_type='pubsub')
    await queue.release(during, result='while away')
    await wait_until(lambda: _count_pubsub(client, 1))
    await queue.release(before, result='after')

    assert [(s.status, s.result) for s in await watches[during]][-1] == (S.COMPLETED, 'while away')
    assert [(s.status, s.result) for s in await watches[before]][-1] == (S.COMPLETED, 'after')
    await queue.aclose()


async def _count_pubsub(client: redis.asyncio.Redis, expected: int) -> bool:
    return await pubsub_connections(client) == expected


async def test_watches_survive_a_server_restart(
    make_server: Callable[..., RedisServer], make_client: Callable[..., redis.asyncio.Redis]
) -> None:
    server = make_server(persistence=True)
    # A client that retries on a lost connection, as a service should use;
    # its pooled connections all die with the server.
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 10)
    client = make_client(server.url, retry=retry, retry_on_error=[redis.exceptions.ConnectionError])
    queue = Torrelque(client, queue='restarted')
    task_id = await queue.enqueue('x')
    await queue.dequeue(timeout=1)
    watching = asyncio.create_task(collect(queue, task_id, timeout=30))
    await wait_until(lambda: _count_pubsub(client, 1))

    server.kill()
    server.start()
    await wait_until(lambda: _count_pubsub(client, 1), timeout=10)
    await queue.release(task_id, result='after the restart')
    assert [(s.status, s.result) for s in await watching][-1] == (S.COMPLETED, 'after the restart')
    await queue.aclose()


async def test_queues_of_one_name_in_two_databases_do_not_hear_each_other(
    redis_url: str, make_client: Callable[..., redis.asyncio.Redis], queue_name: str
) -> None:
    """Pub/sub spans a server's databases; the queue's channels do not."""
    zero = Torrelque(make_client(redis_url), queue=queue_name)
    one = Torrelque(make_client(redis_url.rsplit('/', 1)[0] + '/1'), queue=queue_name)
    assert (zero.keys['events'], one.keys['events']) == (f'{{{queue_name}}}:events', f'{{{queue_name}}}:events@1')
    heard: list[str] = []

    async def tail(queue: Torrelque) -> None:
        async for event in queue.watch_queue():
            heard.append(f'{queue is one}:{event.event}')

    tails = [asyncio.create_task(tail(zero)), asyncio.create_task(tail(one))]
    await asyncio.sleep(0.2)
    task_id = await one.enqueue('in db 1')
    got, _ = await one.dequeue(timeout=1)
    watching = asyncio.create_task(collect(one, task_id, timeout=5))
    await asyncio.sleep(0.2)
    assert await one.release(got, result='done') is True
    assert [s.status for s in await watching] == [S.WORKING, S.COMPLETED]
    await asyncio.sleep(0.1)
    assert heard == ['True:enqueued', 'True:dequeued', 'True:released']
    for task in tails:
        task.cancel()
    await asyncio.gather(*tails, return_exceptions=True)
    await zero.aclose()
    await one.aclose()
