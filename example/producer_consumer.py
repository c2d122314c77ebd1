"""A producer and a worker that run until stopped: the everyday shape of a
work queue.

Run it (it starts a private redis-server for the run; or pass --redis-url),
and stop it with Ctrl-C:

    python example/producer_consumer.py

The producer enqueues tasks at a steady rate. A torrelque.Worker works on
up to --consumers of them at once: its handler works on a task for a while
and returns the result, which the worker releases the task with; when the
work fails (by chance), the handler raises, and the worker tries the task
again after an exponential back-off, and after its last attempt buries it
in the queue's dead-letter set. The worker also runs the scheduled sweep,
which brings the retries back when they are due (and tasks whose process
died, once their timeout passes). Ctrl-C (or SIGTERM) stops the producer
and the worker, which lets the tasks in hand finish (for up to --grace
seconds) and gives back any still running then: every unfinished task
stays in the queue for the next run, nothing is lost, and no task is left
half-taken.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
from collections import Counter
from typing import Any

import _common

from torrelque import TaskContext, Torrelque, Worker

#: Seconds a task's process may be gone before the sweep brings the task
#: back. The worker extends the lease of each task it runs, so this bounds
#: how long a task waits after a crash, not how long its work may take.
TASK_TIMEOUT = 10


class WorkFailed(Exception):
    """The (simulated) work failed: the worker tries the task again."""


def make_worker(queue: Torrelque, args: argparse.Namespace) -> Worker:
    """The consumers: one worker that runs up to ``--consumers`` tasks at once."""

    async def work(task: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        await asyncio.sleep(task['work'])
        if random.random() < args.failure_chance:
            # Any exception fails the attempt; raise torrelque.Reject(reason)
            # instead to send the task to the dead-letter set at once.
            raise WorkFailed(f'task {task["n"]} failed on attempt {ctx.attempt} of {ctx.max_attempts}')
        return {'n': task['n'], 'attempts': ctx.attempt}  # the task's result

    return Worker(
        queue,
        work,
        concurrency=args.consumers,
        max_attempts=args.max_attempts,
        backoff=args.backoff,
        grace=args.grace,
    )


async def produce(queue: Torrelque, stop: asyncio.Event, args: argparse.Namespace, tally: Counter[str]) -> None:
    interval = 1 / args.rate
    while not stop.is_set():
        work = round(random.uniform(0, args.work), 3)
        await queue.enqueue({'n': tally['produced'], 'work': work}, task_timeout=TASK_TIMEOUT)
        tally['produced'] += 1
        await _common.sleep_unless(stop, interval)


async def report(
    queue: Torrelque, worker: Worker, tally: Counter[str], before: dict[str, int], prefix: str = ''
) -> None:
    # The queue's counters since the start of the run tell what the worker
    # did with the failed attempts: requeued them, or buried the task.
    stats = await queue.get_queue_stats()
    counters = await queue.get_queue_counters()
    retried = counters['requeued'] - before['requeued']
    dead = counters['dead'] - before['dead']
    print(
        f'{prefix}produced {tally["produced"]}, completed {worker.processed}, retried {retried}, dead {dead} | '
        f'queue: {stats.pending} pending, {stats.working} working, {stats.delayed} delayed'
    )


async def main(args: argparse.Namespace, url: str, stop: asyncio.Event) -> int:
    tally: Counter[str] = Counter()
    async with _common.open_queue(url, args.queue) as (_, queue):
        queue.result_ttl = args.result_ttl  # what the worker's releases keep their results for
        before = await queue.get_queue_counters()
        print(f'Producing {args.rate} tasks/s for a worker of {args.consumers} on queue {args.queue!r}; Ctrl-C stops')
        # `async with` runs the worker (and the sweep) in the background;
        # leaving the block stops it: no more tasks are taken, those in hand
        # finish within the grace period, and any still running are given back.
        async with make_worker(queue, args) as worker:
            producing = asyncio.create_task(produce(queue, stop, args, tally))
            while await _common.sleep_unless(stop, args.report_every):
                await report(queue, worker, tally, before)
            await producing
        await report(queue, worker, tally, before, prefix='Stopped: ')
        stats = await queue.get_queue_stats()
        if stats.tasks:
            print(f'{stats.tasks} unfinished tasks stay in queue {args.queue!r} for the next run')
    return 0


def arguments() -> argparse.Namespace:
    parser = _common.parser(__doc__, queue='jobs', consumers=3, consumers_help='tasks the worker runs at once')
    parser.add_argument(
        '--rate', type=_common.positive, default=5.0, help='tasks produced per second (default: %(default)s)'
    )
    parser.add_argument(
        '--work', type=_common.seconds, default=0.5, help='most seconds of work per task (default: %(default)s)'
    )
    parser.add_argument(
        '--failure-chance', type=_common.chance, default=0.2, help='chance that an attempt fails (default: %(default)s)'
    )
    _common.worker_arguments(parser, backoff=0.5, grace=10)
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
    # The worker logs each failed attempt and each task it buries.
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    _common.run(main, arguments())
