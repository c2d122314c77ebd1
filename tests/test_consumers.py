"""Many consumers on many connections: every task is processed exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import redis.asyncio
from helpers import raw

from torrelque import Torrelque, TorrelqueTimeoutError

TASKS = 5000
CONSUMERS = 8
POISON = 'stop'


async def test_consumers_drain_the_queue_exactly_once(
    make_client: Callable[..., redis.asyncio.Redis], queue_name: str
) -> None:
    producer_client = make_client()
    producer = Torrelque(producer_client, queue=queue_name)
    processed: Counter[int] = Counter()

    async def consume(single: bool) -> None:
        # A connection (pool) of its own per consumer, as in separate processes.
        queue = Torrelque(make_client(), queue=queue_name)
        while True:
            got = await queue.dequeue(timeout=10, max_tasks=1 if single else 25)
            batch = [got] if single else got
            stop = False
            for task_id, task in batch:
                if task == POISON and not stop:
                    stop = True  # one pill each: others go back for the other consumers
                    await queue.release(task_id)
                elif task == POISON:
                    await queue.requeue(task_id)
                else:
                    processed[task] += 1
                    await queue.release(task_id)
            if stop:
                return

    consumers = [asyncio.create_task(consume(single=i % 2 == 0)) for i in range(CONSUMERS)]
    for start in range(0, TASKS, 500):
        async with producer_client.pipeline(transaction=True) as pipe:
            for n in range(start, start + 500):
                await producer.enqueue(n, pipeline=pipe)
            await pipe.execute()
    for _ in range(CONSUMERS):
        await producer.enqueue(POISON)
    await asyncio.wait_for(asyncio.gather(*consumers), 120)

    assert processed == Counter(range(TASKS))
    state = await raw(producer_client, producer)
    assert (state.pending, state.dequeueing, state.working, state.tasks) == ([], [], [], set())
    assert state.stats['enqueued'] == state.stats['released'] == TASKS + CONSUMERS
    try:
        await producer.dequeue(timeout=0.05)
    except TorrelqueTimeoutError:
        pass
    else:  # pragma: no cover
        raise AssertionError('the queue should be empty')
