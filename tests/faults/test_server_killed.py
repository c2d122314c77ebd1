"""The Redis server killed (SIGKILL) and started again on the same data,
with ``appendfsync always``: no acknowledged enqueue is lost, and a
consumer blocked in a dequeue and a watch waiting both carry on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff, NoBackoff

from torrelque import Torrelque, TorrelqueTaskStatus
from torrelque.server import RedisServer


async def test_no_acknowledged_enqueue_is_lost_when_the_server_is_killed(
    make_server: Callable[..., RedisServer],
    make_client: Callable[..., redis.asyncio.Redis],
    figures: Callable[..., None],
) -> None:
    server = make_server(persistence=True)  # appendonly yes, appendfsync always
    producers = [Torrelque(make_client(server.url, retry=Retry(NoBackoff(), 0)), queue='durable') for _ in range(4)]
    acknowledged: list[str] = []
    failed = 0

    async def produce(queue: Torrelque) -> None:
        nonlocal failed
        n = 0
        while True:
            try:
                acknowledged.append(await queue.enqueue({'n': n}))
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                failed += 1
                return
            n += 1

    running = [asyncio.create_task(produce(queue)) for queue in producers]
    await asyncio.sleep(1.5)
    server.kill()
    await asyncio.gather(*running)
    server.start()
    reader = make_client(server.url)
    stored = {key.decode() for key in await reader.hkeys('{durable}:tasks')}
    lost = [task_id for task_id in acknowledged if task_id not in stored]
    assert acknowledged and lost == []
    assert await reader.llen('{durable}:pending') == len(stored)
    figures(
        acknowledged=len(acknowledged),
        lost=len(lost),
        stored=len(stored),
        unacknowledged_but_stored=len(stored) - len(acknowledged),
        calls_failed=failed,
    )


async def test_a_blocked_consumer_a_waiting_watch_and_the_sweep_survive_a_restart(
    make_server: Callable[..., RedisServer],
    make_client: Callable[..., redis.asyncio.Redis],
    figures: Callable[..., None],
) -> None:
    """A delayed task falls due while the server is being restarted: the
    scheduled sweep (which fails meanwhile, and says so) returns it, the
    consumer blocked in a dequeue that waits for ever (its client retries a
    lost connection, as redis-py's does by default) gets it, and the watch,
    without a timeout, ends with its final state."""
    server = make_server(persistence=True)
    retrying = Retry(ConstantBackoff(0.1), 50)
    producer = Torrelque(make_client(server.url), queue='restart')
    consumer = Torrelque(
        make_client(server.url, retry=retrying, retry_on_error=[redis.exceptions.ConnectionError]), queue='restart'
    )
    watcher = Torrelque(make_client(server.url), queue='restart')
    producer.schedule_sweep(0.5)
    blocked = asyncio.create_task(consumer.dequeue())
    task_id = await producer.enqueue('due during the restart', delay=1.0)
    watch = watcher.watch(task_id)
    assert (await anext(watch)).status is TorrelqueTaskStatus.DELAYED
    loop = asyncio.get_running_loop()
    begun = loop.time()
    await asyncio.sleep(0.3)
    server.kill()
    await asyncio.sleep(0.5)
    server.start()
    got, payload = await asyncio.wait_for(blocked, 15)
    delivered = loop.time() - begun
    assert (got, payload) == (task_id, 'due during the restart')
    assert await consumer.release(got, result='after the restart') is True
    states = [state async for state in watch]
    assert states[-1].status is TorrelqueTaskStatus.COMPLETED and states[-1].result == 'after the restart'
    figures(due_after_s=1.0, delivered_after_s=round(delivered, 2), watch_ended_with=states[-1].status.name)
    await asyncio.gather(producer.aclose(), consumer.aclose(), watcher.aclose())
