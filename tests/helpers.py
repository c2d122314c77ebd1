"""Helpers for reading a queue's raw Redis state in tests."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio

from torrelque import Torrelque


def text(value: bytes | str | None) -> str | None:
    """A reply as text, whichever way the client decodes."""
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class RawQueue:
    """Where every id of a queue is, read straight from Redis."""

    pending: list[str]  # in the order they will be dequeued
    dequeueing: list[str]
    working: list[str]  # by deadline
    delayed: list[str]  # by due time
    tasks: set[str]
    stats: dict[str, int]

    def locations(self, task_id: str) -> list[str]:
        places = ('pending', 'dequeueing', 'working', 'delayed')
        return [place for place in places for _ in range(getattr(self, place).count(task_id))]


async def raw(client: redis.asyncio.Redis, queue: Torrelque) -> RawQueue:
    keys = queue.keys
    async with client.pipeline(transaction=True) as pipe:
        pipe.lrange(keys['pending'], 0, -1)
        pipe.lrange(keys['dequeueing'], 0, -1)
        pipe.zrange(keys['working'], 0, -1)
        pipe.zrange(keys['delayed'], 0, -1)
        pipe.hkeys(keys['tasks'])
        pipe.hgetall(keys['stats'])
        pending, dequeueing, working, delayed, tasks, stats = await pipe.execute()
    return RawQueue(
        pending=[text(i) for i in reversed(pending)],
        dequeueing=[text(i) for i in reversed(dequeueing)],
        working=[text(i) for i in working],
        delayed=[text(i) for i in delayed],
        tasks={text(i) for i in tasks},
        stats={text(k): int(v) for k, v in stats.items()},
    )


async def state_hash(client: redis.asyncio.Redis, queue: Torrelque, task_id: str) -> dict[str, str]:
    raw_hash = await client.hgetall(f'{queue.keys["task"]}:{task_id}')
    return {text(k): text(v) for k, v in raw_hash.items()}


async def working_task(queue: Torrelque, payload: object = 'job') -> str:
    """Enqueues a task and dequeues it: its id, now working."""
    await queue.enqueue(payload)
    task_id, _ = await queue.dequeue(timeout=1)
    return task_id


#: Where a task can be when it is not working.
NOT_WORKING = ('unknown', 'released', 'pending', 'delayed')


async def task_not_working(queue: Torrelque, where: str) -> str:
    """The id of a task that is ``where`` (one of :data:`NOT_WORKING`)."""
    if where == 'unknown':
        return 'no-such-task'
    if where == 'released':
        task_id = await working_task(queue)
        await queue.release(task_id, result='first')
        return task_id
    if where == 'pending':
        return await queue.enqueue('waiting')
    return await queue.enqueue('later', delay=60)


async def assert_refused_without_change(
    client: redis.asyncio.Redis,
    queue: Torrelque,
    caplog: pytest.LogCaptureFixture,
    task_id: str,
    operation: Callable[[], Awaitable[bool | None]],
) -> None:
    """``operation`` on ``task_id`` returns False, logs a warning naming the
    task, and leaves the queue and the task's state as they were."""
    before, before_state = await raw(client, queue), await state_hash(client, queue, task_id)
    with caplog.at_level(logging.WARNING, logger='torrelque'):
        assert await operation() is False
    assert task_id in caplog.text
    assert await raw(client, queue) == before
    assert await state_hash(client, queue, task_id) == before_state


async def wait_until(predicate: Callable[[], Awaitable[object]], timeout: float = 5) -> None:
    """Waits until ``await predicate()`` is true; fails after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, 'condition not met in time'
        await asyncio.sleep(0.02)


async def subscribers(client: redis.asyncio.Redis, channel: str) -> int:
    """How many subscribe to the channel: on a cluster, by shard on the
    master of the channel's slot (where a queue's events go)."""
    if isinstance(client, redis.asyncio.RedisCluster):
        await client.initialize()
        node = client.get_node_from_key(channel)
        reply = await client.execute_command('PUBSUB', 'SHARDNUMSUB', channel, target_nodes=node)
        return int(reply[1])
    ((_, count),) = await client.pubsub_numsub(channel)
    return int(count)


async def blocked_clients(client: redis.asyncio.Redis, key: str) -> int:
    """How many clients wait in a blocking command on the server of ``key``
    (on a cluster, the master of its slot)."""
    if isinstance(client, redis.asyncio.RedisCluster):
        await client.initialize()
        info = await client.info('clients', target_nodes=client.get_node_from_key(key))
    else:
        info = await client.info('clients')
    return int(info['blocked_clients'])


async def until_blocked(client: redis.asyncio.Redis, key: str, count: int) -> None:
    """Waits until ``count`` clients wait in blocking commands on the server
    of ``key``."""

    async def blocked() -> bool:
        return await blocked_clients(client, key) >= count

    await wait_until(blocked)


async def server_now(client: redis.asyncio.Redis) -> float:
    """The Redis server's clock, in seconds."""
    seconds, micros = await client.time()
    return seconds + micros / 1_000_000


async def score(client: redis.asyncio.Redis, key: str, member: str) -> float:
    """A deadline or due time, stored in microseconds, in seconds."""
    return await client.zscore(key, member) / 1_000_000
