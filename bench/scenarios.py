"""Benchmark scenarios, written against the API that ``torrelque`` shares
with ``Torrelque`` 0.9.0, so that the same code measures either package.

``bench/run.py`` runs this file once per scenario and package, each time in
a fresh process of that package's interpreter (both packages import as
``torrelque``). By hand::

    python bench/scenarios.py bulk --redis-url redis://127.0.0.1:PORT/0

It prints one JSON line: the scenario, the package it measured and the
metrics. Each scenario works on a queue named ``bench-SCENARIO``, the same
for both packages (key names are part of what a task costs); ``run.py``
flushes its server before each run, so by hand use a fresh server or
``--queue``. Times are wall-clock seconds (``time.perf_counter``) of this
process; latencies are in milliseconds. The ``memory`` scenario flushes the
server, and so refuses to run on a server whose ``MARKER`` key
``bench/run.py`` has not set; on such a server only, the ``sweep`` scenario
lowers the slow log's threshold while it sweeps, and restores it.

Nothing here may use what only one of the packages has: no ``aclose()``,
no ``watch_queue()``, no keyword either lacks; blocking dequeues use whole
seconds (0.9 passes them to Redis as integers).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio

import torrelque
from torrelque import Torrelque, TorrelqueTimeoutError

#: The key that marks a server as the benchmark's own, to be flushed at will.
MARKER = 'torrelque-bench:private-server'

#: The most connections the client's pool opens.
CONNECTIONS = 10_000

#: The sweep scenario logs every command that takes this long or longer (µs).
LOG_FLOOR_US = 1000

#: Tasks per pipeline where a scenario enqueues or releases in bulk.
PIPELINE = 100


def package_info() -> dict[str, str]:
    version = getattr(torrelque, '__version__', None)
    if version is None:
        version = importlib.metadata.version('Torrelque')
    return {'version': version, 'file': torrelque.__file__ or '', 'redis_py': redis.__version__}


def percentile(values: list[float], pct: float) -> float | None:
    """The ``pct`` percentile, interpolated between the nearest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(name: str, seconds: list[float]) -> dict[str, Any]:
    millis = [value * 1000 for value in seconds]
    return {
        f'{name}_p50_ms': percentile(millis, 50),
        f'{name}_p90_ms': percentile(millis, 90),
        f'{name}_p99_ms': percentile(millis, 99),
        f'{name}_max_ms': max(millis) if millis else None,
    }


class Bench:
    """What a scenario works with: a client, a queue, its options."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.url: str = args.redis_url
        # Bytes replies: 0.9 needs them. A large pool: 0.9 holds one pooled
        # connection per watch, and redis-py's default pool has 100.
        self.client = redis.asyncio.Redis.from_url(self.url, max_connections=CONNECTIONS)
        self.admin = redis.asyncio.Redis.from_url(self.url, decode_responses=True)
        # The same name for both packages: key names are part of what a task costs.
        self.queue_name = args.queue or f'bench-{args.scenario}'
        self.queue = Torrelque(self.client, queue=self.queue_name)

    def size(self, default: int) -> int:
        return int(self.args.size or default)

    async def cpu_mark(self) -> tuple[float, float, float]:
        """Now: wall-clock time, this process's CPU time, the server's."""
        info = await self.server_info('cpu')
        return time.perf_counter(), time.process_time(), info['used_cpu_user'] + info['used_cpu_sys']

    async def server_info(self, section: str) -> dict[str, Any]:
        info: dict[str, Any] = await self.admin.info(section)
        return info

    async def enqueue_bulk(self, count: int, make_task: Callable[[int], Any], **kwargs: Any) -> list[str]:
        """Enqueues ``count`` tasks in transactional pipelines of ``PIPELINE``."""
        ids: list[str] = []
        for start in range(0, count, PIPELINE):
            async with self.client.pipeline(transaction=True) as pipe:
                for n in range(start, min(start + PIPELINE, count)):
                    ids.append(await self.queue.enqueue(make_task(n), pipeline=pipe, **kwargs))
                await pipe.execute()
        return ids

    async def release_bulk(self, task_ids: list[str], **kwargs: Any) -> None:
        for start in range(0, len(task_ids), PIPELINE):
            async with self.client.pipeline(transaction=True) as pipe:
                for task_id in task_ids[start : start + PIPELINE]:
                    await self.queue.release(task_id, pipeline=pipe, **kwargs)
                await pipe.execute()

    async def dequeue_all(self, count: int) -> list[str]:
        """Dequeues ``count`` tasks, 100 at a time, and keeps them working."""
        ids: list[str] = []
        while len(ids) < count:
            pairs = await self.queue.dequeue(timeout=5, max_tasks=min(PIPELINE, count - len(ids)))
            ids.extend(task_id for task_id, _ in pairs)
        return ids

    async def drain(self, total: int, consumers: int, max_tasks: int, pipelined: bool) -> tuple[float, float, float]:
        """Consumers dequeue and release until ``total`` tasks are done;
        returns the :meth:`cpu_mark` of that moment. Consumers still waiting
        then (the queue is empty) are cancelled after it: a blocked dequeue
        may take until its timeout to give up, which is not work."""
        done = 0
        finished = asyncio.Event()

        async def consume() -> None:
            nonlocal done
            while done < total:
                try:
                    got = await self.queue.dequeue(timeout=1, max_tasks=max_tasks)
                except TorrelqueTimeoutError:
                    continue
                pairs = got if max_tasks > 1 else [got]
                if pipelined:
                    await self.release_bulk([task_id for task_id, _ in pairs])
                else:
                    for task_id, _ in pairs:
                        await self.queue.release(task_id)
                done += len(pairs)
                if done >= total:
                    finished.set()

        workers = [asyncio.create_task(consume()) for _ in range(consumers)]
        waiter = asyncio.create_task(finished.wait())
        await asyncio.wait([waiter, *workers], return_when=asyncio.FIRST_COMPLETED)
        end = await self.cpu_mark()
        for task in [waiter, *workers]:
            task.cancel()
        results = await asyncio.gather(*workers, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                raise result
        return end

    async def subscribed_channels(self, fragment: str) -> int:
        """How many pub/sub channels whose name holds ``fragment`` have a
        subscriber (each package names its channels after the task)."""
        channels = await self.admin.pubsub_channels(f'*{fragment}*')
        return len(channels)

    async def wait_subscribed(self, fragment: str, count: int, limit: float) -> bool:
        deadline = time.perf_counter() + limit
        while time.perf_counter() < deadline:
            if await self.subscribed_channels(fragment) >= count:
                return True
            await asyncio.sleep(0.005)
        return False

    async def pubsub_connections(self) -> int:
        clients = await self.admin.client_list()
        return sum(1 for client in clients if 'P' in client['flags'])

    async def close(self) -> None:
        await self.client.aclose()
        await self.admin.aclose()


# -- throughput -----------------------------------------------------------------


def phases(count: int, marks: list[tuple[float, float, float]], names: list[str]) -> dict[str, float]:
    """Per phase between marks: tasks/s, and microseconds per task of this
    process's CPU and of the server's. Overall: ``tasks_per_s``."""
    result = {'tasks_per_s': count / (marks[-1][0] - marks[0][0])}
    for name, start, end in zip(names, marks, marks[1:], strict=False):
        result[f'{name}_per_s'] = count / (end[0] - start[0])
        result[f'{name}_client_cpu_us'] = (end[1] - start[1]) / count * 1e6
        result[f'{name}_server_cpu_us'] = (end[2] - start[2]) / count * 1e6
    return result


async def bulk(bench: Bench) -> dict[str, Any]:
    """Enqueue in pipelines of 100, then 4 consumers take 100 at a time and
    release each batch in one pipeline."""
    count = bench.size(20_000)
    marks = [await bench.cpu_mark()]
    await bench.enqueue_bulk(count, lambda n: {'n': n})
    marks.append(await bench.cpu_mark())
    marks.append(await bench.drain(count, consumers=4, max_tasks=PIPELINE, pipelined=True))
    stats = await bench.queue.get_queue_stats()
    return {'tasks': count, **phases(count, marks, ['enqueue', 'consume']), 'left_in_queue': stats.tasks}


async def single(bench: Bench) -> dict[str, Any]:
    """One call per task: ``--workers`` producers enqueue one at a time,
    then as many consumers dequeue and release one at a time."""
    count = bench.size(5_000)
    workers = bench.args.workers
    counter = iter(range(count))

    async def produce() -> None:
        for n in counter:
            await bench.queue.enqueue({'n': n})

    marks = [await bench.cpu_mark()]
    await asyncio.gather(*(produce() for _ in range(workers)))
    marks.append(await bench.cpu_mark())
    marks.append(await bench.drain(count, consumers=workers, max_tasks=1, pipelined=False))
    stats = await bench.queue.get_queue_stats()
    return {
        'tasks': count,
        'workers': workers,
        **phases(count, marks, ['enqueue', 'consume']),
        'left_in_queue': stats.tasks,
    }


# -- watch ----------------------------------------------------------------------------


async def follow(bench: Bench, task_id: str, first: asyncio.Event) -> tuple[float, Any]:
    """Watches a task to its end; returns when its final state arrived and
    that state. Sets ``first`` on the first state."""
    final_at, final = 0.0, None
    async for state in bench.queue.watch(task_id):
        first.set()
        if state.status.isfinal():
            final_at, final = time.perf_counter(), state
    return final_at, final


async def idle_cpu(bench: Bench, seconds: float) -> dict[str, float]:
    """This process's and the server's CPU use while nothing happens, as a
    fraction of one core."""
    before = await bench.server_info('cpu')
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = await bench.server_info('cpu')
    server = sum(after[key] - before[key] for key in ('used_cpu_user', 'used_cpu_sys'))
    return {'idle_client_cpu': cpu / wall, 'idle_server_cpu': server / wall}


async def watch_latency(bench: Bench) -> dict[str, Any]:
    """From the start of ``release()`` to the watcher holding the final
    state, one task at a time; then the CPU that idle watchers use."""
    samples = bench.size(300)
    latencies: list[float] = []
    wrong = 0
    for n in range(samples):
        task_id = await bench.queue.enqueue({'n': n})
        await bench.queue.dequeue(timeout=5)
        first = asyncio.Event()
        watcher = asyncio.create_task(follow(bench, task_id, first))
        await first.wait()
        # 0.9 subscribes only after its first state: wait until it has.
        await bench.wait_subscribed(task_id, 1, 5)
        start = time.perf_counter()
        await bench.queue.release(task_id, result={'n': n})
        final_at, final = await asyncio.wait_for(watcher, 30)
        latencies.append(final_at - start)
        wrong += final is None or final.result != {'n': n}

    idle = bench.args.idle_watchers
    ids = await bench.enqueue_bulk(idle, lambda n: {'n': n})
    await bench.dequeue_all(idle)
    events = [asyncio.Event() for _ in ids]
    watchers = [asyncio.create_task(follow(bench, task_id, event)) for task_id, event in zip(ids, events, strict=True)]
    await asyncio.gather(*(event.wait() for event in events))
    await bench.wait_subscribed(bench.queue_name, idle, 10)
    cpu = await idle_cpu(bench, bench.args.idle_seconds)
    await bench.release_bulk(ids, result=True)
    await asyncio.wait_for(asyncio.gather(*watchers), 60)
    return {'samples': samples, 'wrong_final_state': wrong, **latency_summary('latency', latencies), **cpu}


async def many_watches(bench: Bench) -> dict[str, Any]:
    """``--size`` watches at once on working tasks, then all released: do
    they all end, on how many pub/sub connections, how fast."""
    count = bench.size(2_000)
    cap = bench.args.cap
    ids = await bench.enqueue_bulk(count, lambda n: {'n': n})
    await bench.dequeue_all(count)
    events = [asyncio.Event() for _ in ids]
    start = time.perf_counter()
    watchers = [asyncio.create_task(follow(bench, task_id, event)) for task_id, event in zip(ids, events, strict=True)]
    starting = asyncio.gather(*(event.wait() for event in events))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(starting, cap)
    subscribed = await bench.wait_subscribed(bench.queue_name, count, max(cap - (time.perf_counter() - start), 1))
    started_s = time.perf_counter() - start
    connections = await bench.pubsub_connections()
    clients = (await bench.server_info('clients'))['connected_clients']
    cpu = await idle_cpu(bench, 1.0)

    start = time.perf_counter()
    await bench.release_bulk(ids, result=True)
    done, not_done = await asyncio.wait(watchers, timeout=cap)
    complete_s = time.perf_counter() - start
    for task in not_done:
        task.cancel()
    await asyncio.gather(*not_done, return_exceptions=True)
    completed = sum(1 for task in done if task.exception() is None and task.result()[1] is not None)
    return {
        'watches': count,
        'completed': completed,
        'all_subscribed': subscribed,
        'start_s': started_s,
        'complete_s': complete_s,
        'capped': bool(not_done),
        'pubsub_connections': connections,
        'connected_clients': clients,
        **cpu,
    }


# -- lateness of the sweep --------------------------------------------------------------------


async def collect_late(
    bench: Bench,
    samples: int,
    produce: Callable[[dict[int, float]], Awaitable[None]],
    on_task: Callable[[str, int, dict[int, float]], Awaitable[bool]],
) -> dict[str, Any]:
    """Runs a producer and one consumer, with ``schedule_sweep()`` at its
    defaults. ``due`` maps a sample to the Unix time it is due back; the
    consumer records how late after it each sample is dequeued, when
    ``on_task(task_id, n, due)`` says the sample is done. Stops when every
    sample is done or ``--cap`` seconds after the producer ends; samples
    missing then count as ``cap`` late.

    Due times come from the task's own state (``get_task_state``), in the
    clock the package computed them with: the server's, or 0.9's client
    clock, on this same machine."""
    cap = bench.args.cap
    due: dict[int, float] = {}
    late: dict[int, float] = {}
    bench.queue.schedule_sweep()
    await asyncio.sleep(0.2)  # the first sweep runs at once; start after it
    producer = asyncio.create_task(produce(due))
    deadline = None
    while len(late) < samples:
        if producer.done():
            producer.result()
            deadline = deadline or time.perf_counter() + cap
            if time.perf_counter() > deadline:
                break
        try:
            task_id, task = await bench.queue.dequeue(timeout=1)
        except TorrelqueTimeoutError:
            continue
        now = time.time()
        n = task['n']
        if await on_task(task_id, n, due):
            late[n] = now - due[n]
            await bench.queue.release(task_id)
    await producer
    bench.queue.unschedule_sweep()
    missing = samples - len(late)
    values = [*late.values(), *[float(cap)] * missing]
    return {'samples': samples, 'recovered': len(late), 'capped': missing > 0, **latency_summary('late', values)}


async def delayed(bench: Bench) -> dict[str, Any]:
    """Tasks enqueued with a 0.5 s delay: how late after its due time each
    is dequeued."""
    samples = bench.size(40)
    delay = 0.5

    async def produce(due: dict[int, float]) -> None:
        for n in range(samples):
            task_id = await bench.queue.enqueue({'n': n}, delay=delay)
            due[n] = (await bench.queue.get_task_state(task_id)).enqueue_time + delay
            await asyncio.sleep(0.025)

    async def on_task(task_id: str, n: int, due: dict[int, float]) -> bool:
        return True

    return await collect_late(bench, samples, produce, on_task)


async def stale(bench: Bench) -> dict[str, Any]:
    """Tasks with ``task_timeout=1``, dequeued and abandoned: how late after
    its deadline each is dequeued again."""
    samples = bench.size(40)

    async def produce(due: dict[int, float]) -> None:
        for n in range(samples):
            await bench.queue.enqueue({'n': n}, task_timeout=1)
            await asyncio.sleep(0.02)

    async def on_task(task_id: str, n: int, due: dict[int, float]) -> bool:
        if n in due:
            return True
        state = await bench.queue.get_task_state(task_id)  # abandoned from here
        due[n] = state.last_dequeue_time + state.timeout
        return False

    return await collect_late(bench, samples, produce, on_task)


# -- memory and the sweep ---------------------------------------------------------------------------


async def used_memory(bench: Bench) -> int:
    """Bytes the server holds, less its client buffers (which depend on
    what the connections did last, not on the data)."""
    info = await bench.server_info('memory')
    return int(info['used_memory']) - int(info.get('mem_clients_normal', 0))


async def memory_by_key(bench: Bench, task_ids: list[str], samples: int = 500) -> dict[str, float]:
    """``MEMORY USAGE`` per task, by key: each key of the queue, and the
    per-task keys (named after a task id) as one, from a sample of them.
    Keys are named with the queue's name as ``Q`` and a task id as ``<id>``."""
    known = set(task_ids)
    sampled = set(task_ids[:: max(1, len(task_ids) // samples)])
    per_task: dict[str, list[int]] = {}
    usage: dict[str, float] = {}
    async for key in bench.admin.scan_iter(match=f'*{bench.queue_name}*', count=1000):
        head, _, last = key.rpartition(':')
        role = key.replace(bench.queue_name, 'Q')
        if last in known:
            if last in sampled:
                per_task.setdefault(f'{head.replace(bench.queue_name, "Q")}:<id>', []).append(
                    await bench.admin.memory_usage(key, samples=0)
                )
        else:
            usage[role] = (await bench.admin.memory_usage(key, samples=0) or 0) / len(task_ids)
    for role, sizes in per_task.items():
        usage[role] = sum(sizes) / len(sizes)
    return usage


async def memory(bench: Bench) -> dict[str, Any]:
    """``used_memory`` per task, pending and then working: 100-byte
    serialised payloads (a 98-character string, in JSON). Also where it
    goes: ``MEMORY USAGE`` per task of each key."""
    if not await bench.admin.exists(MARKER):
        raise SystemExit(f'refusing to flush a server without the {MARKER} key: start it with bench/run.py')
    count = bench.size(100_000)
    await bench.admin.flushall()
    await bench.admin.set(MARKER, '1')
    # Load the scripts and create the queue's small fixed keys first.
    await bench.queue.enqueue('warm-up')
    warm_id, _ = await bench.queue.dequeue(timeout=5)
    await bench.queue.release(warm_id)
    payload = 'x' * 98
    empty = await used_memory(bench)
    ids = await bench.enqueue_bulk(count, lambda n: payload)
    pending = await used_memory(bench)
    pending_keys = await memory_by_key(bench, ids)
    await bench.dequeue_all(count)
    working = await used_memory(bench)
    working_keys = await memory_by_key(bench, ids)
    stats = await bench.queue.get_queue_stats()
    return {
        'tasks': count,
        'pending_bytes_per_task': (pending - empty) / count,
        'working_bytes_per_task': (working - empty) / count,
        'working_count': stats.working,
        'pending_by_key': pending_keys,
        'working_by_key': working_keys,
    }


async def sweep(bench: Bench) -> dict[str, Any]:
    """``--size`` tasks with ``task_timeout=1``, dequeued and abandoned;
    once all are stale, one ``sweep()``: does it return them all, and does
    any server command of it take as long as the slow log's threshold?

    On the benchmark's own server, the slow log keeps every command of the
    sweep that takes 1 ms or more (``LOG_FLOOR_US``), which also tells the
    slowest one; those at or over the configured threshold are counted as
    the slow log would have kept them. (Below 1 ms there would be too many
    to keep: the log also holds the commands that scripts run.)"""
    count = bench.size(200_000)
    await bench.enqueue_bulk(count, lambda n: {'n': n}, task_timeout=1)
    setup_slow = len(await bench.admin.slowlog_get(1024))
    await bench.dequeue_all(count)
    await asyncio.sleep(1.2)  # past every deadline
    config = await bench.admin.config_get('slowlog-*')
    threshold = int(config['slowlog-log-slower-than'])
    private = await bench.admin.exists(MARKER)
    if private:
        await bench.admin.config_set('slowlog-max-len', 100_000)
        await bench.admin.config_set('slowlog-log-slower-than', min(threshold, LOG_FLOOR_US))
    await bench.admin.slowlog_reset()
    start = time.perf_counter()
    error = None
    swept = (0, 0, 0)
    try:
        swept = tuple(await bench.queue.sweep())
    except Exception as exc:  # 0.9's single script call fails on large backlogs
        error = f'{type(exc).__name__}: {exc}'
    elapsed = time.perf_counter() - start
    logged = await bench.admin.slowlog_get(100_000)
    if private:
        await bench.admin.config_set('slowlog-log-slower-than', threshold)
        await bench.admin.config_set('slowlog-max-len', config['slowlog-max-len'])
    durations = [entry['duration'] for entry in logged]
    stats = await bench.queue.get_queue_stats()
    return {
        'tasks': count,
        'returned': swept[0],
        'pending_after': stats.pending,
        'all_returned': swept[0] == count and stats.pending == count,
        'sweep_s': elapsed,
        'error': error,
        'slowlog_threshold_us': threshold,
        'slowlog_entries': sum(1 for duration in durations if duration >= threshold),
        'slowest_command_ms': max(durations, default=0) / 1000,  # 0: none took LOG_FLOOR_US
        'commands_logged': len(durations),
        'slowlog_entries_in_setup': setup_slow,
    }


async def backlog(bench: Bench) -> dict[str, Any]:
    """Script calls on a large backlog: ``--size`` tasks enqueued in
    pipelines of 250 (the most the library joins into one call), then
    100,000 of them (at most) taken 250 at a time and released in pipelines
    of 250. For each phase, from the slow log (every command of 1 ms or
    more, on the benchmark's own server): the slowest command, and how many
    took 10 ms or more."""
    count = bench.size(1_000_000)
    consume = min(count, 100_000)
    private = await bench.admin.exists(MARKER)
    config = await bench.admin.config_get('slowlog-*')
    if private:
        await bench.admin.config_set('slowlog-max-len', 100_000)
        await bench.admin.config_set('slowlog-log-slower-than', LOG_FLOOR_US)

    async def logged() -> list[int]:
        durations = [entry['duration'] for entry in await bench.admin.slowlog_get(100_000)]
        await bench.admin.slowlog_reset()
        return durations

    await bench.admin.slowlog_reset()
    start = time.perf_counter()
    for first in range(0, count, 250):
        async with bench.client.pipeline(transaction=True) as pipe:
            for n in range(first, min(first + 250, count)):
                await bench.queue.enqueue({'n': n}, pipeline=pipe)
            await pipe.execute()
    enqueue_s = time.perf_counter() - start
    enqueued = await logged()
    start = time.perf_counter()
    done = 0
    while done < consume:
        pairs = await bench.queue.dequeue(timeout=5, max_tasks=min(250, consume - done))
        async with bench.client.pipeline(transaction=True) as pipe:
            for task_id, _ in pairs:
                await bench.queue.release(task_id, pipeline=pipe)
            await pipe.execute()
        done += len(pairs)
    consume_s = time.perf_counter() - start
    consumed = await logged()
    if private:
        await bench.admin.config_set('slowlog-log-slower-than', config['slowlog-log-slower-than'])
        await bench.admin.config_set('slowlog-max-len', config['slowlog-max-len'])
    return {
        'tasks': count,
        'consumed': consume,
        'enqueue_per_s': count / enqueue_s,
        'consume_per_s': consume / consume_s,
        'enqueue_slowest_ms': max(enqueued, default=0) / 1000,
        'enqueue_over_10ms': sum(1 for duration in enqueued if duration >= 10_000),
        'enqueue_over_1ms': len(enqueued),
        'consume_slowest_ms': max(consumed, default=0) / 1000,
        'consume_over_10ms': sum(1 for duration in consumed if duration >= 10_000),
        'consume_over_1ms': len(consumed),
    }


SCENARIOS: dict[str, Callable[[Bench], Awaitable[dict[str, Any]]]] = {
    'backlog': backlog,
    'bulk': bulk,
    'single': single,
    'watch': watch_latency,
    'many-watches': many_watches,
    'delayed': delayed,
    'stale': stale,
    'memory': memory,
    'sweep': sweep,
}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(args)
    try:
        start = time.perf_counter()
        metrics = await SCENARIOS[args.scenario](bench)
        metrics['scenario_s'] = time.perf_counter() - start
    finally:
        await bench.close()
    return {'scenario': args.scenario, 'package': package_info(), 'metrics': metrics}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('scenario', choices=sorted(SCENARIOS))
    parser.add_argument('--redis-url', required=True, help='a server of the benchmark alone')
    parser.add_argument('--queue', help='the queue name (default: bench-SCENARIO)')
    parser.add_argument('--size', type=int, help='tasks, samples or watches (each scenario has a default)')
    parser.add_argument('--workers', type=int, default=1, help='producers and consumers (single)')
    parser.add_argument('--cap', type=float, default=40.0, help='most seconds to wait for late tasks or watches')
    parser.add_argument('--idle-watchers', type=int, default=100, help='watchers whose idle CPU is measured')
    parser.add_argument('--idle-seconds', type=float, default=2.0, help='how long idle CPU is measured')
    return parser.parse_args(argv)


if __name__ == '__main__':
    # Thousands of watches may each hold a connection (0.9 does).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    result = asyncio.run(main(parse_args()))
    json.dump(result, sys.stdout)
    sys.stdout.write('\n')
