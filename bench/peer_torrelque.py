"""The Torrelque side of ``bench/peers.py``: no-op tasks through one
:class:`~torrelque.Worker`, the counterpart of ``bench/bullmq/bench.mjs``.
It uses only the public API.

::

    python bench/peer_torrelque.py PORT JOBS CONCURRENCY [LATENCY_JOBS]

On the Redis server of 127.0.0.1:PORT (a private one: ``peers.py``
flushes it before each run), on fresh queues:

throughput
    JOBS tasks enqueued in transactional pipelines (consecutive enqueues
    into one pipeline share a script call), then one Worker of CONCURRENCY
    in burst mode with a no-op handler; the time from the start of
    ``worker.run()`` until its last task is released (``in_flight`` back
    at 0 once the handler has run JOBS times).
latency
    With an idle Worker of CONCURRENCY running and a ``watch_queue()``
    listening, LATENCY_JOBS tasks (default 300, after 20 not counted)
    enqueued one at a time, each once the previous one is done; the time
    from the start of ``enqueue()`` to its ``removed`` event (released
    without a result) reaching the watch; and the time of the ``enqueue()``
    call alone.

Prints one JSON object on stdout. Times in seconds, latencies in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

import redis.asyncio
from scenarios import percentile

import torrelque
from torrelque import TaskContext, Torrelque, Worker

#: Tasks per pipeline: the most that consecutive enqueues join into one script call.
PIPELINE = 250
#: Latency tasks not counted.
WARM_UP = 20
#: Seconds between latency tasks, so that the worker waits idle.
GAP = 0.002


async def noop(task: Any, ctx: TaskContext) -> None:
    return None


async def server_cpu(client: redis.asyncio.Redis) -> float:
    info = await client.info('cpu')
    return float(info['used_cpu_user']) + float(info['used_cpu_sys'])


async def connect(client: redis.asyncio.Redis, count: int) -> None:
    """Opens ``count`` pooled connections, as BullMQ's ``waitUntilReady()``
    has its connections open before the timing starts."""
    await asyncio.gather(*(client.ping() for _ in range(count)))


async def throughput(url: str, jobs: int, concurrency: int) -> dict[str, Any]:
    client = redis.asyncio.Redis.from_url(url)
    queue = Torrelque(client, queue=f'torrelque-throughput-c{concurrency}')
    start = time.perf_counter()
    for first in range(0, jobs, PIPELINE):
        async with client.pipeline(transaction=True) as pipe:
            for n in range(first, min(first + PIPELINE, jobs)):
                await queue.enqueue({'n': n}, pipeline=pipe)
            await pipe.execute()
    enqueue_s = time.perf_counter() - start

    handled = 0
    last_handled = asyncio.Event()

    async def handler(task: Any, ctx: TaskContext) -> None:
        nonlocal handled
        handled += 1
        if handled == jobs:
            last_handled.set()

    worker = Worker(queue, handler, concurrency=concurrency, burst=True)
    await connect(client, concurrency + 2)
    cpu0, server0 = time.process_time(), await server_cpu(client)
    start = time.perf_counter()
    running = asyncio.create_task(worker.run(handle_signals=False))
    await last_handled.wait()
    while worker.in_flight:  # noqa: ASYNC110  # the last releases (no event tells of them): a few round trips
        await asyncio.sleep(0)
    end = time.perf_counter()
    cpu = time.process_time() - cpu0
    server = await server_cpu(client) - server0
    worker.stop()
    await running
    stats = await queue.get_queue_stats()
    await queue.aclose()
    await client.aclose()
    process_s = end - start
    return {
        'enqueue_s': enqueue_s,
        'enqueue_per_s': jobs / enqueue_s,
        'process_s': process_s,
        'jobs_per_s': jobs / process_s,
        'completed': worker.processed,
        'failed': worker.failed,
        'left': stats._asdict(),
        'client_cpu_us_per_job': cpu / jobs * 1e6,
        'server_cpu_us_per_job': server / jobs * 1e6,
    }


async def latency(url: str, count: int, concurrency: int) -> dict[str, Any]:
    client = redis.asyncio.Redis.from_url(url)
    queue = Torrelque(client, queue=f'torrelque-latency-c{concurrency}')
    heard: dict[str, float] = {}  # a completion may be heard before enqueue() returns
    waiting: dict[str, asyncio.Future[float]] = {}
    watch = queue.watch_queue()

    async def listen() -> None:
        async for event in watch:
            if event.event in ('removed', 'released'):
                now = time.perf_counter()
                future = waiting.pop(event.task_id, None)
                if future is None:
                    heard[event.task_id] = now
                else:
                    future.set_result(now)

    listener = asyncio.create_task(listen())
    samples: list[float] = []
    calls: list[float] = []  # the enqueue() call alone
    async with Worker(queue, noop, concurrency=concurrency):
        await asyncio.sleep(0.2)  # the watch has subscribed, and the worker waits for tasks
        loop = asyncio.get_running_loop()
        for n in range(WARM_UP + count):
            start = time.perf_counter()
            task_id = await queue.enqueue({'n': n})
            enqueued = time.perf_counter()
            if task_id in heard:
                end = heard.pop(task_id)
            else:
                future = waiting[task_id] = loop.create_future()
                end = await asyncio.wait_for(future, 10)
            if n >= WARM_UP:
                samples.append((end - start) * 1000)
                calls.append((enqueued - start) * 1000)
            await asyncio.sleep(GAP)
    listener.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listener
    await queue.aclose()
    await client.aclose()
    return {
        'latency_jobs': len(samples),
        'latency_p50_ms': percentile(samples, 50),
        'latency_p90_ms': percentile(samples, 90),
        'latency_p99_ms': percentile(samples, 99),
        'latency_max_ms': max(samples),
        'enqueue_call_p50_ms': percentile(calls, 50),
    }


async def measure(port: int, jobs: int, concurrency: int, latency_jobs: int) -> dict[str, Any]:
    url = f'redis://127.0.0.1:{port}/0'
    metrics = {**await throughput(url, jobs, concurrency), **await latency(url, latency_jobs, concurrency)}
    return {
        'side': 'torrelque',
        'package': {'name': 'torrelque', 'version': torrelque.__version__, 'file': torrelque.__file__ or ''},
        'jobs': jobs,
        'concurrency': concurrency,
        'metrics': metrics,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('port', type=int)
    parser.add_argument('jobs', type=int)
    parser.add_argument('concurrency', type=int)
    parser.add_argument('latency_jobs', type=int, nargs='?', default=300)
    options = parser.parse_args()
    result = asyncio.run(measure(options.port, options.jobs, options.concurrency, options.latency_jobs))
    print(json.dumps(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())
