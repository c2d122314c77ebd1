"""Consumers that are separate processes, killed with SIGKILL at random
moments (waiting, dequeuing, working, releasing) while a sweeper runs:
no task is lost, and each kill repeats at most the one task it held."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable

import redis.asyncio
from helpers import raw, wait_until

from torrelque import Torrelque

# A consumer: takes one task at a time, counts its run (in Redis, outside
# the queue's keys), "works", and releases it.
CONSUMER = textwrap.dedent(
    """
    import asyncio, random, sys
    import redis.asyncio
    from torrelque import Torrelque, TorrelqueTimeoutError

    async def main(url, name):
        client = redis.asyncio.Redis.from_url(url)
        queue = Torrelque(client, queue=name)
        while True:
            try:
                task_id, n = await queue.dequeue(timeout=1)
            except TorrelqueTimeoutError:
                continue
            await client.hincrby(f'{name}:runs', str(n), 1)
            await asyncio.sleep(random.uniform(0, 0.02))
            await queue.release(task_id)

    asyncio.run(main(*sys.argv[1:]))
    """
)


def start(url: str, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, '-c', CONSUMER, url, name], stdin=subprocess.DEVNULL)


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


async def test_consumers_killed_at_random_lose_nothing(
    redis_url: str,
    make_client: Callable[..., redis.asyncio.Redis],
    queue_name: str,
    figures: Callable[..., None],
) -> None:
    client = make_client()
    queue = Torrelque(client, queue=queue_name)
    total = 400
    async with client.pipeline(transaction=True) as pipe:
        for n in range(total):
            await queue.enqueue(n, task_timeout=0.5, pipeline=pipe)
        await pipe.execute()
    sweeper = Torrelque(client, queue=queue_name)
    sweeper.schedule_sweep(0.2)
    consumers = [start(redis_url, queue.name) for _ in range(4)]
    kills = 0
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        while loop.time() - began < 6:
            await asyncio.sleep(random.uniform(0.05, 0.3))
            victim = random.randrange(len(consumers))
            kill(consumers[victim])
            kills += 1
            consumers[victim] = start(redis_url, queue.name)

        async def all_released() -> bool:
            return (await queue.get_queue_stats()).tasks == 0

        await wait_until(all_released, timeout=60)
    finally:
        for process in consumers:
            kill(process)
        await sweeper.aclose()
    elapsed = loop.time() - began
    runs = {int(n): int(count) for n, count in (await client.hgetall(f'{queue.name}:runs')).items()}
    assert set(runs) == set(range(total))  # every task ran: none lost
    repeated = sum(runs.values()) - total
    assert repeated <= kills  # each kill repeats at most the task its consumer held
    state = await raw(client, queue)
    assert (state.pending, state.working, state.delayed, state.tasks) == ([], [], [], set())
    assert state.stats['enqueued'] == state.stats['released'] == total
    figures(tasks=total, consumers=4, kills=kills, lost=0, ran_twice=repeated, seconds=round(elapsed, 1))
    await client.delete(f'{queue.name}:runs')
