"""Every connection cut at random moments, through a TCP proxy, while
producers and consumers work, with and without redis-py's retry: every
call succeeds or raises, the queue's layout stays consistent, nothing
acknowledged is lost, and everything is processed once the cuts stop."""

from __future__ import annotations

import asyncio
import random
import urllib.parse
from collections.abc import Callable

import pytest
import redis.asyncio
import redis.exceptions
from helpers import raw, wait_until
from proxy import Proxy
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff, NoBackoff

from torrelque import Torrelque, TorrelqueTimeoutError

LOST_CONNECTION = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


@pytest.mark.parametrize('retry', [True, False], ids=['retry', 'no retry'])
async def test_random_cuts_lose_nothing(
    redis_url: str,
    make_client: Callable[..., redis.asyncio.Redis],
    queue_name: str,
    figures: Callable[..., None],
    retry: bool,
) -> None:
    target = urllib.parse.urlsplit(redis_url)
    direct = make_client()
    async with Proxy(target.hostname or '127.0.0.1', target.port or 6379) as proxy:
        if retry:
            options = {'retry': Retry(ConstantBackoff(0.02), 5), 'retry_on_error': [redis.exceptions.ConnectionError]}
        else:
            options = {'retry': Retry(NoBackoff(), 0)}
        queue = Torrelque(make_client(proxy.url, socket_timeout=2, **options), queue=queue_name)
        sweeper = Torrelque(direct, queue=queue_name)
        sweeper.schedule_sweep(0.2)
        total = 1000
        acknowledged: set[int] = set()
        processed: list[int] = []
        failures = {'enqueue': 0, 'dequeue': 0, 'release': 0}
        cutting = True

        async def produce() -> None:
            for n in range(total):
                while True:  # an at-least-once producer: it sends again what failed
                    try:
                        await queue.enqueue(n, task_timeout=0.5)
                        acknowledged.add(n)
                        break
                    except LOST_CONNECTION:
                        failures['enqueue'] += 1
                        await asyncio.sleep(0.01)

        async def consume() -> None:
            while True:
                try:
                    task_id, n = await queue.dequeue(timeout=0.5)
                except TorrelqueTimeoutError:
                    continue
                except LOST_CONNECTION:
                    failures['dequeue'] += 1
                    await asyncio.sleep(0.01)
                    continue
                processed.append(n)
                try:
                    await queue.release(task_id)
                except LOST_CONNECTION:
                    failures['release'] += 1  # it comes back when stale, and runs again

        async def cut() -> int:
            cuts = 0
            while cutting:
                await asyncio.sleep(random.uniform(0.02, 0.15))
                proxy.cut()
                cuts += 1
            return cuts

        loop = asyncio.get_running_loop()
        began = loop.time()
        chaos = asyncio.create_task(cut())
        consumers = [asyncio.create_task(consume()) for _ in range(3)]
        await produce()
        await asyncio.sleep(max(0.5, 3 - (loop.time() - began)))  # cuts for 3 s at least
        cutting = False
        cuts = await chaos

        async def all_processed() -> bool:
            state = await raw(direct, sweeper)
            for task_id in state.tasks:  # never in two places, mid-run or not
                assert len(state.locations(task_id)) <= 1
            return set(processed) >= acknowledged and not state.tasks

        await wait_until(all_processed, timeout=30)
        for task in consumers:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
        await sweeper.aclose()
        await queue.aclose()

    assert acknowledged == set(range(total))
    state = await raw(direct, sweeper)
    assert (state.pending, state.working, state.delayed, state.tasks) == ([], [], [], set())
    repeated = len(processed) - len(set(processed))
    made = state.stats['enqueued']
    assert made - total <= failures['enqueue']  # a second task only for an enqueue that raised
    if retry:
        assert made == total  # retried enqueues are recognised
    figures(
        cuts=cuts,
        tasks=total,
        lost=len(acknowledged - set(processed)),
        tasks_made=made,
        ran_twice=repeated,
        calls_failed=sum(failures.values()),
        **{f'{name}_failed': count for name, count in failures.items()},
    )
