"""Faults: consumers killed, connections dropped, Redis restarted or down.
Each is survived (nothing lost) or reported (an exception), never silent."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest
import redis.asyncio
import redis.exceptions
from helpers import raw
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from torrelque import Torrelque, TorrelqueError, TorrelqueTaskStatus
from torrelque.server import RedisServer

CONSUMER = textwrap.dedent(
    """
    import asyncio, sys
    import redis.asyncio
    from torrelque import Torrelque

    async def main(url, queue_name):
        queue = Torrelque(redis.asyncio.Redis.from_url(url), queue=queue_name)
        task_id, task = await queue.dequeue()
        print(task_id, flush=True)
        await asyncio.sleep(3600)  # "working" until killed

    asyncio.run(main(*sys.argv[1:]))
    """
)


def start_consumer(url: str, queue_name: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, '-c', CONSUMER, url, queue_name], stdout=subprocess.PIPE, text=True)


def kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()
    if process.stdout is not None:
        process.stdout.close()


async def test_consumer_killed_mid_task_gets_its_task_redelivered(
    redis_url: str, make_queue: Callable[..., Torrelque]
) -> None:
    queue = make_queue()
    queue.schedule_sweep()
    task_id = await queue.enqueue({'work': 1}, task_timeout=1)
    consumer = start_consumer(redis_url, queue.name)
    try:
        assert consumer.stdout is not None
        line = await asyncio.to_thread(consumer.stdout.readline)
        assert line.strip() == task_id
    finally:
        kill(consumer)

    # The sweep returns the abandoned task after its timeout; it is delivered again.
    assert await queue.dequeue(timeout=10) == (task_id, {'work': 1})
    state = await queue.get_task_state(task_id)
    assert (state.status, state.dequeue_count) == (TorrelqueTaskStatus.WORKING, 2)


async def test_consumer_killed_while_waiting_loses_nothing(
    redis_url: str, client: redis.asyncio.Redis, make_queue: Callable[..., Torrelque]
) -> None:
    queue = make_queue()
    consumer = start_consumer(redis_url, queue.name)
    await asyncio.sleep(0.5)  # blocked in Redis, waiting for a task
    kill(consumer)
    task_id = await queue.enqueue('after the death')
    # A waiting consumer takes nothing: the id stays pending, no sweep needed.
    assert (await raw(client, queue)).pending == [task_id]
    assert await queue.dequeue(timeout=1) == (task_id, 'after the death')


async def test_dropped_connection_of_a_waiting_dequeue_is_reported(
    make_server: Callable[..., RedisServer], make_client: Callable[..., redis.asyncio.Redis]
) -> None:
    server = make_server()
    admin = make_client(server.url)
    queue = Torrelque(make_client(server.url), queue='dropped')
    waiting = asyncio.create_task(queue.dequeue(timeout=30))
    await asyncio.sleep(0.3)
    killed = await admin.client_kill_filter(_type='normal', skipme=True)
    assert killed >= 1
    with pytest.raises(redis.exceptions.ConnectionError):
        await waiting
    task_id = await queue.enqueue('still there')
    assert await queue.dequeue(timeout=5) == (task_id, 'still there')


async def test_redis_restart_is_survived_by_tasks_and_the_scheduled_sweep(
    make_server: Callable[..., RedisServer],
    make_client: Callable[..., redis.asyncio.Redis],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_server(persistence=True)
    # The consumer's client retries on a lost connection; the sweeper's does
    # not, so its sweeps fail while the server is down, and it carries on.
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 20)
    client = make_client(server.url, retry=retry, retry_on_error=[redis.exceptions.ConnectionError])
    queue = Torrelque(client, queue='restart')
    sweeper = Torrelque(make_client(server.url), queue='restart')
    sweeper.schedule_sweep(0.2)
    slow = await queue.enqueue('slow')
    abandoned = await queue.enqueue('abandoned', task_timeout=1)
    assert await queue.dequeue(timeout=1, max_tasks=2) == [(slow, 'slow'), (abandoned, 'abandoned')]

    with caplog.at_level(logging.WARNING, logger='torrelque'):
        server.kill()
        await asyncio.sleep(0.5)  # the sweep fails meanwhile, and says so
        server.start()
        # Both tasks survived; the abandoned one is swept back after its timeout.
        assert await queue.dequeue(timeout=10) == (abandoned, 'abandoned')
    assert (await queue.get_task_state(slow)).status is TorrelqueTaskStatus.WORKING
    assert (await queue.get_task_state(abandoned)).dequeue_count == 2
    assert 'Sweep failed' in caplog.text
    await sweeper.aclose()


async def test_redis_down_is_reported_and_writes_nothing(
    make_server: Callable[..., RedisServer], make_client: Callable[..., redis.asyncio.Redis]
) -> None:
    server = make_server(persistence=True)
    client = make_client(server.url)
    queue = Torrelque(client, queue='down')
    kept = await queue.enqueue('kept')
    server.stop()
    with pytest.raises(redis.exceptions.ConnectionError):
        await queue.enqueue('refused')
    server.start()
    state = await raw(make_client(server.url), queue)
    assert (state.pending, state.tasks) == ([kept], {kept})


async def test_a_user_without_channel_rights_loses_no_task(
    make_server: Callable[..., RedisServer],
    make_client: Callable[..., redis.asyncio.Redis],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A Redis 7 ACL user with every command and key but no channel: its
    transitions go on without their events (a listener with rights makes
    the scripts publish, and the server refuses), one warning says so, and
    its watch() fails with a clear error."""
    server = make_server(config={'acl-pubsub-default': 'resetchannels'})
    admin = make_client(server.url)
    await admin.acl_setuser('app', enabled=True, passwords=['+secret'], keys=['*'], categories=['+@all'])
    user = make_client(f'redis://app:secret@{server.host}:{server.port}/0')
    queue = Torrelque(user, queue='acl')
    listener = Torrelque(admin, queue='acl')
    events = listener.watch_queue()
    seen = asyncio.create_task(events.__anext__())
    await asyncio.sleep(0.1)

    with caplog.at_level(logging.WARNING, logger='torrelque'):
        first = await queue.enqueue('first')
        second = await queue.enqueue('second', delay=0.05)
        task_id, _ = await queue.dequeue(timeout=1)
        assert task_id == first
        assert await queue.requeue(task_id, delay=0.05) is True
        await asyncio.sleep(0.1)
        assert await queue.sweep() == (0, 2, 0)
        done = await queue.dequeue(timeout=1, max_tasks=2)
        assert sorted(task_id for task_id, _ in done) == sorted([first, second])
        assert await queue.release(done[0][0], result='kept') is True
        assert await queue.release(done[1][0]) is True
        with pytest.raises(TorrelqueError, match='refused to subscribe'):
            async for _ in queue.watch(done[0][0], timeout=5):
                pass
        with pytest.raises(TorrelqueError, match='refused to subscribe'):
            await queue.watch_queue().__anext__()
        # The scheduled sweep cannot hear its wake-ups, and sweeps on its interval.
        late = await queue.enqueue('late', delay=0.05)
        queue.schedule_sweep(0.2)
        assert (await queue.dequeue(timeout=2))[0] == late
        assert await queue.release(late) is True
    state = await raw(admin, queue)
    assert (state.pending, state.working, state.delayed, state.tasks) == ([], [], [], set())
    assert (state.stats['enqueued'], state.stats['released']) == (3, 3)
    warnings = [record for record in caplog.records if 'refuses this client the channels' in record.message]
    assert len(warnings) == 1
    assert not seen.done()  # nothing reached the listener: every event was refused
    seen.cancel()
    await asyncio.gather(queue.aclose(), listener.aclose())
