"""Bulk work: enqueue many tasks in pipelined batches, drain them with
several consumers that stop on a poison pill, and check that every task was
done exactly once.

Run it (it starts a private redis-server for the run; or pass --redis-url):

    python example/batch_processing.py --tasks 10000 --consumers 4

It prints how many tasks were done, in how long, and how many per second,
and exits with 1 if any task was lost or done twice, or the queue is not
left empty.

Its consumers are written by hand, to show the batch API: each takes up to
--max-tasks tasks in one dequeue(max_tasks=...) and releases them all in one
pipelined transaction. These tasks never fail, so there is nothing to
retry. Everyday consumers are better a torrelque.Worker, which runs a
handler on each task, retries failures with back-off and stops gracefully:
see producer_consumer.py.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import _common
import redis.asyncio

from torrelque import Torrelque, TorrelqueTimeoutError

#: The poison pill: a consumer that takes it stops.
POISON = {'stop': True}


async def enqueue_all(client: redis.asyncio.Redis, queue: Torrelque, tasks: int, batch_size: int) -> int:
    """Enqueues tasks ``0 .. tasks - 1``, ``batch_size`` in one pipelined
    transaction; returns the number of round trips."""
    batches = 0
    for start in range(0, tasks, batch_size):
        async with client.pipeline(transaction=True) as pipe:
            for n in range(start, min(start + batch_size, tasks)):
                await queue.enqueue({'n': n}, pipeline=pipe)
            await pipe.execute()
        batches += 1
    return batches


class Consumer:
    """Takes up to ``max_tasks`` tasks at a time and releases each batch in
    one pipelined transaction, until it gets a poison pill."""

    def __init__(self, client: redis.asyncio.Redis, queue: Torrelque, stop: asyncio.Event, max_tasks: int) -> None:
        self.client = client
        self.queue = queue
        self.stop = stop
        self.max_tasks = max_tasks
        self.done: Counter[int] = Counter()
        self.refused = 0  # releases the queue did not accept (should stay 0)
        self.got_pill = False

    async def run(self) -> None:
        # Short blocking dequeues, so that a stop is seen between batches.
        while not self.got_pill and not self.stop.is_set():
            try:
                got = await self.queue.dequeue(timeout=0.5, max_tasks=self.max_tasks)
            except TorrelqueTimeoutError:
                continue
            await self.handle(got if isinstance(got, list) else [got])

    async def handle(self, batch: Sequence[tuple[str, Any]]) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            for task_id, task in batch:
                if task == POISON:
                    if self.got_pill:
                        # One pill stops one consumer: the others' go back.
                        await self.queue.requeue(task_id, pipeline=pipe)
                        continue
                    self.got_pill = True
                else:
                    self.done[task['n']] += 1  # the work
                await self.queue.release(task_id, pipeline=pipe)
            codes = await pipe.execute()
        # Consecutive releases share a script call, whose entry lists a code per task.
        for entry in codes:
            self.refused += sum(1 for code in (entry if isinstance(entry, list) else [entry]) if code != 1)


async def main(args: argparse.Namespace, url: str, stop: asyncio.Event) -> int:
    async with _common.open_queue(url, args.queue) as (client, queue):
        before = await queue.get_queue_stats()
        if before.tasks:
            print(f'Queue {args.queue!r} already holds {before.tasks} tasks: pass another --queue')
            return 1
        counters_before = await queue.get_queue_counters()

        started = time.perf_counter()
        consumers = [Consumer(client, queue, stop, args.max_tasks) for _ in range(args.consumers)]
        running = [asyncio.create_task(consumer.run()) for consumer in consumers]
        batches = await enqueue_all(client, queue, args.tasks, args.batch_size)
        enqueued = time.perf_counter() - started
        print(f'Enqueued {args.tasks} tasks in {batches} pipelined batches in {enqueued:.2f} s')
        for _ in consumers:
            # After every task, as the queue is first in, first out.
            await queue.enqueue(POISON)
        await asyncio.gather(*running)
        elapsed = time.perf_counter() - started
        if stop.is_set():
            print('Interrupted before all tasks were done')
            return 1

        rate = args.tasks / elapsed if elapsed else float('inf')
        print(
            f'Done {args.tasks} tasks with {args.consumers} consumers in {elapsed:.2f} s: {rate:.0f} tasks/s '
            f'(up to {args.max_tasks} tasks per dequeue)'
        )
        return await check(queue, consumers, args.tasks, counters_before)


async def check(queue: Torrelque, consumers: list[Consumer], tasks: int, counters_before: dict[str, int]) -> int:
    """Every task done exactly once, every release accepted, the queue empty."""
    done: Counter[int] = Counter()
    for consumer in consumers:
        done += consumer.done
    problems = []
    missing = tasks - len(done)
    twice = sum(1 for count in done.values() if count > 1)
    if missing or twice or set(done) != set(range(tasks)):
        problems.append(f'{missing} tasks never done, {twice} done more than once')
    refused = sum(consumer.refused for consumer in consumers)
    if refused:
        problems.append(f'{refused} releases refused')
    stats = await queue.get_queue_stats()
    if any(stats):
        problems.append(f'the queue is not empty: {stats}')
    counters = await queue.get_queue_counters()
    expected = tasks + len(consumers)  # the tasks and the pills
    for name in ('enqueued', 'released'):
        if counters[name] - counters_before[name] != expected:
            problems.append(f'{name} counter grew by {counters[name] - counters_before[name]}, not {expected}')
    if problems:
        print('Check FAILED: ' + '; '.join(problems))
        return 1
    print(f'Check passed: all {tasks} tasks done exactly once, the queue is empty')
    return 0


def arguments() -> argparse.Namespace:
    parser = _common.parser(__doc__, queue='batch', consumers=4)
    parser.add_argument(
        '-n', '--tasks', type=_common.count, default=10_000, help='tasks to enqueue (default: %(default)s)'
    )
    parser.add_argument(
        '-b', '--batch-size', type=_common.count, default=500, help='tasks per enqueue pipeline (default: %(default)s)'
    )
    parser.add_argument(
        '--max-tasks',
        type=_common.count,
        default=25,
        help='most tasks a consumer dequeues at once (default: %(default)s)',
    )
    return parser.parse_args()


if __name__ == '__main__':
    _common.run(main, arguments())
