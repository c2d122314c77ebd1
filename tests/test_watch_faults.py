"""Watches and the shared event connection under faults: restarts, cut
connections, refused logins, readers that fall behind, watches nobody
closes. Each is survived or reported, never a hang or a leak."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import urllib.parse
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio
from helpers import wait_until
from proxy import Proxy
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

import torrelque._events
from torrelque import Torrelque, TorrelqueError, TorrelqueLagError, TorrelqueTaskStatus
from torrelque.server import RedisServer

S = TorrelqueTaskStatus


async def subscribers(admin: redis.asyncio.Redis) -> int:
    """Connections of the server that are subscribed to something."""
    return sum(1 for client in await admin.client_list() if int(client.get('sub', 0)))


async def working(queue: Torrelque) -> str:
    await queue.enqueue('job')
    task_id, _ = await queue.dequeue(timeout=1)
    return task_id


async def first_state(watch: torrelque._events.TaskWatch) -> TorrelqueTaskStatus:
    return (await watch.__anext__()).status


async def test_a_watch_collected_by_the_garbage_collector_unsubscribes(
    client: redis.asyncio.Redis, queue: Torrelque
) -> None:
    task_id = await working(queue)
    watch = queue.watch(task_id)
    assert await first_state(watch) is S.WORKING
    assert await subscribers(client) == 1
    del watch
    gc.collect()

    async def unsubscribed() -> bool:
        return await subscribers(client) == 0

    await wait_until(unsubscribed, timeout=5)  # after the hub's linger it disconnects too


async def test_a_watch_closed_from_another_task_ends_its_iteration(queue: Torrelque) -> None:
    task_id = await working(queue)
    watch = queue.watch(task_id)
    states: list[TorrelqueTaskStatus] = []

    async def follow() -> None:
        async for state in watch:
            states.append(state.status)

    following = asyncio.create_task(follow())
    await asyncio.sleep(0.2)
    await watch.aclose()
    await asyncio.wait_for(following, 1)  # ended, not blocked
    assert states == [S.WORKING]


async def test_a_queue_watch_nobody_reads_holds_a_bounded_backlog_then_says_so(
    client: redis.asyncio.Redis, queue: Torrelque
) -> None:
    events = queue.watch_queue(backlog=10)
    first = asyncio.create_task(events.__anext__())

    async def listening() -> bool:
        return await subscribers(client) == 1

    await wait_until(listening)
    for n in range(50):
        await queue.enqueue(n)
    await asyncio.sleep(0.3)  # every transition has reached the watch by now
    read = [await first]
    with pytest.raises(TorrelqueLagError) as caught:
        while True:
            read.append(await events.__anext__())
    # What came after the first one while nobody read: 10 held, the rest dropped.
    assert len(read) == 11 and all(event.event == 'enqueued' for event in read)
    assert caught.value.missed == 39
    with pytest.raises(StopAsyncIteration):
        await events.__anext__()


@pytest.mark.parametrize('backlog', [0, -1, 1.5])
def test_a_queue_watch_needs_a_backlog_of_one_at_least(queue: Torrelque, backlog: object) -> None:
    with pytest.raises(torrelque.TorrelqueValueError, match='backlog'):
        queue.watch_queue(backlog=backlog)  # type: ignore[arg-type]


async def test_instances_nobody_closes_hold_no_connection_nor_task(
    client: redis.asyncio.Redis, make_client: Callable[..., redis.asyncio.Redis], redis_url: str, queue_name: str
) -> None:
    """The habit of Torrelque 0.9 users: one instance per web request,
    never closed. Once its watch is over, it holds nothing."""
    shared = make_client(redis_url)
    tasks_before = len(asyncio.all_tasks())
    for _ in range(20):
        queue = Torrelque(shared, queue=queue_name)
        task_id = await working(queue)
        watching = asyncio.create_task(anext(aiter(queue.watch(task_id, timeout=5))))
        await watching
        await queue.release(task_id, result='done')
        del queue, watching
    gc.collect()

    async def nothing_left() -> bool:
        return await subscribers(client) == 0 and len(asyncio.all_tasks()) <= tasks_before

    await wait_until(nothing_left, timeout=5)


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[Proxy]:
    server = urllib.parse.urlsplit(redis_url)
    async with Proxy(server.hostname or '127.0.0.1', server.port or 6379) as proxy:
        yield proxy


async def test_the_event_connection_waits_longer_after_each_failure(
    proxy: Proxy,
    make_client: Callable[..., redis.asyncio.Redis],
    make_queue: Callable[..., Torrelque],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every connection is cut as it subscribes: the reconnections back off
    (they reset only after a read succeeds), and the watch still ends when
    the cuts stop."""
    direct = make_queue()
    task_id = await working(direct)
    queue = make_queue(on=make_client(proxy.url))
    proxy.cut_on(b'SUBSCRIBE')
    watching = asyncio.create_task(anext(aiter(queue.watch(task_id, timeout=20))))
    with caplog.at_level(logging.WARNING, logger='torrelque'):
        await asyncio.sleep(2.5)
    delays = [float(d) for d in re.findall(r'reconnecting in ([0-9.]+) s', caplog.text)]
    assert len(delays) >= 4
    assert delays[:4] == sorted(delays[:4]) and delays[3] > delays[0]
    proxy.cut_on(None)
    assert (await asyncio.wait_for(watching, 10)).status is S.WORKING


async def test_a_refused_login_reaches_every_waiting_watch(
    make_server: Callable[..., RedisServer], make_client: Callable[..., redis.asyncio.Redis]
) -> None:
    """A wrong password cannot be mended by trying again: each watch raises
    the server's error at once, rather than timing out."""
    server = make_server(config={'requirepass': 'right'})
    queue = Torrelque(make_client(f'redis://:wrong@{server.host}:{server.port}/0'), queue='login')
    watches = [asyncio.create_task(anext(aiter(queue.watch(f'task-{n}', timeout=30)))) for n in range(3)]
    for watching in watches:
        with pytest.raises(TorrelqueError, match='refused the event connection'):
            await asyncio.wait_for(watching, 5)
    await queue.aclose()


@pytest.mark.parametrize('fault', ['restart', 'cut'])
async def test_a_watch_ends_with_the_final_state_across_a_fault(
    make_server: Callable[..., RedisServer], make_client: Callable[..., redis.asyncio.Redis], fault: str
) -> None:
    """The task is released while the watch's connection is down (Redis
    restarted, or the connection cut), with a client that does not retry:
    the watch reads the state again once it is back, as often as it
    takes, and ends with the final state."""
    server = make_server(persistence=True)
    no_retry = Retry(NoBackoff(), 0)
    watcher = Torrelque(make_client(server.url, retry=no_retry), queue='faulty')
    worker = Torrelque(make_client(server.url, retry=no_retry), queue='faulty')
    task_id = await working(worker)
    watch = watcher.watch(task_id, timeout=30)
    assert await first_state(watch) is S.WORKING
    if fault == 'restart':
        server.kill()
        server.start()
    else:
        await make_client(server.url).client_kill_filter(_type='pubsub')
    for _ in range(50):  # the worker's own connection may be a dead one at first
        try:
            assert await worker.release(task_id, result='done') is True
            break
        except redis.exceptions.ConnectionError:
            await asyncio.sleep(0.05)
    final = await asyncio.wait_for(anext(aiter(watch)), 15)
    assert (final.status, final.result) == (S.COMPLETED, 'done')
    await asyncio.gather(watcher.aclose(), worker.aclose())
