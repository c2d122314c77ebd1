"""Helpers for reading a queue's raw Redis state in tests."""

from __future__ import annotations

from dataclasses import dataclass

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


async def server_now(client: redis.asyncio.Redis) -> float:
    """The Redis server's clock, in seconds."""
    seconds, micros = await client.time()
    return seconds + micros / 1_000_000


async def score(client: redis.asyncio.Redis, key: str, member: str) -> float:
    """A deadline or due time, stored in microseconds, in seconds."""
    return await client.zscore(key, member) / 1_000_000
