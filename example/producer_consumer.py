"""A producer and consumers that run until stopped: the everyday shape of a
work queue.

Run it (it starts a private redis-server for the run; or pass --redis-url),
and stop it with Ctrl-C:

    python example/producer_consumer.py

The producer enqueues tasks at a steady rate; each consumer takes one,
works on it for a while and releases it with a result, or, when the work
fails (by chance), requeues it with an exponential back-off, and rejects it
after the last attempt. The scheduled sweep brings delayed tasks back when
they are due (and stale ones, had a consumer died). Ctrl-C (or SIGTERM)
stops the producer, lets each consumer finish the task in its hands, and
leaves every unfinished task in the queue for the next run: nothing is lost,
and no task is left half-taken.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections import Counter
from typing import Any

import _common

from torrelque import Torrelque


async def produce(queue: Torrelque, stop: asyncio.Event, args: argparse.Namespace, tally: Counter[str]) -> None:
    interval = 1 / args.rate
    while not stop.is_set():
        work = round(random.uniform(0, args.work), 3)
        await queue.enqueue({'n': tally['produced'], 'work': work}, task_timeout=args.work + 10)
        tally['produced'] += 1
        await _common.sleep_unless(stop, interval)


async def consumer(
    name: str, queue: Torrelque, stop: asyncio.Event, args: argparse.Namespace, tally: Counter[str]
) -> None:
    async def handle(batch: list[tuple[str, Any]]) -> None:
        [(task_id, task)] = batch
        # The task in hand is finished even when a stop was asked for: it is
        # short. (A long one would rather be requeued: see wait_until_complete.py.)
        await asyncio.sleep(task['work'])
        if random.random() < args.failure_chance:
            outcome = await _common.retry_or_reject(
                queue, task_id, 'the work failed', max_attempts=args.max_attempts, backoff=args.backoff
            )
            tally[outcome] += 1
        else:
            await queue.release(task_id, result={'n': task['n'], 'by': name}, result_ttl=args.result_ttl)
            tally['completed'] += 1

    await _common.consume(queue, stop, handle)


async def report(queue: Torrelque, tally: Counter[str], prefix: str = '') -> None:
    stats = await queue.get_queue_stats()
    print(
        f'{prefix}produced {tally["produced"]}, completed {tally["completed"]}, retried {tally["retried"]}, '
        f'rejected {tally["rejected"]} | queue: {stats.pending} pending, {stats.working} working, '
        f'{stats.delayed} delayed'
    )


async def main(args: argparse.Namespace, url: str, stop: asyncio.Event) -> int:
    tally: Counter[str] = Counter()
    async with _common.open_queue(url, args.queue) as (_, queue):
        queue.schedule_sweep()
        print(f'Producing {args.rate} tasks/s for {args.consumers} consumers on queue {args.queue!r}; Ctrl-C stops')
        workers = [asyncio.create_task(produce(queue, stop, args, tally))]
        workers += [
            asyncio.create_task(consumer(f'consumer-{i}', queue, stop, args, tally)) for i in range(args.consumers)
        ]
        while await _common.sleep_unless(stop, args.report_every):
            await report(queue, tally)
        # Every loop looks at `stop` between tasks, so each ends after the
        # task it holds, and no dequeue is cut off half-way.
        await asyncio.gather(*workers)
        await report(queue, tally, prefix='Stopped: ')
        stats = await queue.get_queue_stats()
        if stats.tasks:
            print(f'{stats.tasks} unfinished tasks stay in queue {args.queue!r} for the next run')
    return 0


def arguments() -> argparse.Namespace:
    parser = _common.parser(__doc__, queue='jobs', consumers=3)
    parser.add_argument(
        '--rate', type=_common.positive, default=5.0, help='tasks produced per second (default: %(default)s)'
    )
    parser.add_argument(
        '--work', type=_common.seconds, default=0.5, help='most seconds of work per task (default: %(default)s)'
    )
    parser.add_argument(
        '--failure-chance', type=_common.chance, default=0.2, help='chance that an attempt fails (default: %(default)s)'
    )
    _common.retry_arguments(parser, backoff=0.5)
    parser.add_argument(
        '--result-ttl',
        type=_common.positive,
        default=60,
        help='seconds a finished task state is kept (default: %(default)s)',
    )
    parser.add_argument(
        '--report-every',
        type=_common.positive,
        default=2.0,
        help='seconds between progress lines (default: %(default)s)',
    )
    return parser.parse_args()


if __name__ == '__main__':
    _common.run(main, arguments())
