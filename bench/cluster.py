"""Throughput of 8 queues on a Redis Cluster of 3 masters (each with a
replica) against the same 8 queues on one server, side by side on this
machine.

One command, from the repository's root, with this project's venv::

    .venv/bin/python bench/cluster.py            # 3 rounds of 5,000 tasks per queue
    .venv/bin/python bench/cluster.py --quick    # 1 round of 1,000 tasks per queue

It starts one private server (``torrelque.server.RedisServer``) and the
tests' cluster of 3 masters and 3 replicas (``tests/cluster.py``), on free
loopback ports, with the server program the tests use (``redis-server`` on
``PATH``, or what ``$TORRELQUE_REDIS_SERVER`` names). It picks 8 queue
names whose slots fall 3, 3 and 2 on the masters, and uses the same names
on the server.

A run is of one side, emptied by FLUSHALL first: one process per queue
(``spawn``), each with its own client, enqueues N tasks in pipelines of 250
(``transaction=False``); once every process has (a barrier), each runs C
consumer coroutines that dequeue (``timeout=1``) and release (with a
result) one task at a time until its N tasks are done. A phase's
throughput is all the tasks (8 N) over the time of the slowest process in
it. Rounds alternate the sides (server, cluster, server, cluster, ...);
the table gives the medians, and the ratio cluster/server as the median of
each round's pair. A second table says where the CPU went in each phase:
the client processes (their own rusage), the Redis nodes (``/proc/<pid>/stat``,
else ``INFO cpu``) and the rest of the machine. Everything is written as
JSON to ``bench/results/cluster-<time>.json`` (or ``--json PATH``).

Everything it starts (the nodes, the server, the processes) is stopped at
the end, on failure, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.metadata
import json
import multiprocessing
import multiprocessing.queues
import multiprocessing.synchronize
import os
import platform
import resource
import signal
import statistics
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from types import FrameType
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
# The cluster is the tests' own (tests/cluster.py, which the package does
# not ship), so tests/ goes on the path, and first: this file is named
# cluster.py too, and its own directory is on the path as the script's.
sys.path.insert(0, str(ROOT / 'tests'))

import redis  # noqa: E402
import redis.asyncio  # noqa: E402

# (mypy finds this file as `cluster`, not the tests' module.)
from cluster import Cluster  # type: ignore[attr-defined]  # noqa: E402

from torrelque import Torrelque, TorrelqueTimeoutError  # noqa: E402
from torrelque.server import RedisServer, server_version  # noqa: E402

SERVER, CLUSTER = 'server', 'cluster'

#: The queues, and how many of them fall on each of the 3 masters.
QUEUES = 8
SPREAD = (3, 3, 2)

#: Tasks per pipeline of the enqueue phase (the most the library joins into
#: one script call).
PIPELINE = 250

#: Redis's own default: a node is failed over after this long without
#: answering, which a busy machine must not cause (the tests' clusters use
#: 1 s, to test failovers quickly).
NODE_TIMEOUT_MS = 15_000

#: The most seconds a process may take to start, or a phase to finish.
PHASE_TIMEOUT = 900.0


# -- one queue's process ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where a queue's process connects: the server's URL, or a cluster node."""

    side: str
    url: str = ''
    host: str = ''
    port: int = 0

    def client(self) -> redis.asyncio.Redis | redis.asyncio.RedisCluster:
        if self.side == CLUSTER:
            return redis.asyncio.RedisCluster(host=self.host, port=self.port)
        return redis.asyncio.Redis.from_url(self.url)


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def queue_process(
    target: Target,
    name: str,
    tasks: int,
    consumers: int,
    barrier: multiprocessing.synchronize.Barrier,
    reports: multiprocessing.queues.Queue[dict[str, Any]],
) -> None:
    """The body of one queue's process: its report (or its error) goes to
    ``reports``."""
    # Ctrl-C is the parent's to handle: it stops this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        report = asyncio.run(exercise(target, name, tasks, consumers, barrier))
    except BaseException:
        barrier.abort()  # the other processes and the parent stop waiting for this one
        reports.put({'queue': name, 'error': traceback.format_exc()})
        sys.exit(1)
    reports.put(report)


async def exercise(
    target: Target, name: str, tasks: int, consumers: int, barrier: multiprocessing.synchronize.Barrier
) -> dict[str, Any]:
    """Enqueues ``tasks`` tasks, waits for the other processes to have
    done the same, and consumes them; returns the times of both phases."""
    client = target.client()
    try:
        if isinstance(client, redis.asyncio.RedisCluster):
            await client.initialize()  # the slot map, before the clock starts
        else:
            await client.ping()
        queue = Torrelque(client, queue=name)
        try:
            # Blocks the event loop, which has nothing else to do meanwhile.
            barrier.wait(PHASE_TIMEOUT)  # every process is connected
            start, cpu = time.perf_counter(), own_cpu()
            await enqueue_all(client, queue, tasks)
            end, cpu_end = time.perf_counter(), own_cpu()
            enqueue = {'start': start, 'end': end, 'seconds': end - start, 'cpu_s': cpu_end - cpu}
            barrier.wait(PHASE_TIMEOUT)  # every queue is full
            start, cpu = time.perf_counter(), own_cpu()
            end, cpu_end = await consume_all(queue, tasks, consumers, barrier)
            consume = {'start': start, 'end': end, 'seconds': end - start, 'cpu_s': cpu_end - cpu}
            left = {
                role: await (client.llen(key) if role == 'pending' else client.zcard(key))
                for role, key in ((role, queue.keys[role]) for role in ('pending', 'working', 'delayed'))
            }
            if any(left.values()):
                raise RuntimeError(f'queue {name} is not empty after {tasks} releases: {left}')
        finally:
            await queue.aclose()
    finally:
        await client.aclose()
    return {'queue': name, 'pid': os.getpid(), 'enqueue': enqueue, 'consume': consume}


async def enqueue_all(client: redis.asyncio.Redis | redis.asyncio.RedisCluster, queue: Torrelque, tasks: int) -> None:
    """``tasks`` tasks in pipelines of :data:`PIPELINE`, checking that each
    was enqueued."""
    for first in range(0, tasks, PIPELINE):
        count = min(PIPELINE, tasks - first)
        async with client.pipeline(transaction=False) as pipe:
            for n in range(first, first + count):
                await queue.enqueue({'n': n}, pipeline=pipe)
            replies = await pipe.execute()
        codes = [code for reply in replies for code in (reply if isinstance(reply, list) else [reply])]
        if codes != [1] * count:
            raise RuntimeError(f'queue {queue.name}: a pipeline of {count} enqueues replied {codes[:10]}...')


async def consume_all(
    queue: Torrelque, tasks: int, consumers: int, barrier: multiprocessing.synchronize.Barrier
) -> tuple[float, float]:
    """``consumers`` coroutines dequeue and release one task at a time until
    ``tasks`` are done; returns the clock and CPU time of that moment.
    Consumers still waiting then (the queue is empty) are cancelled after
    it, and after every process is done (the barrier, where the parent
    marks the end of the phase): a blocked dequeue would wait out its
    timeout, and its cancellation takes a moment too, which is not work."""
    done = 0
    finished = asyncio.Event()

    async def consume() -> None:
        nonlocal done
        while done < tasks:
            try:
                got = await queue.dequeue(timeout=1)
            except TorrelqueTimeoutError:
                continue
            task_id, task = got[0] if isinstance(got, list) else got
            if not await queue.release(task_id, result={'n': task['n']}):
                raise RuntimeError(f'queue {queue.name}: the release of {task_id} was refused')
            done += 1
            if done == tasks:
                finished.set()

    workers = [asyncio.create_task(consume()) for _ in range(consumers)]
    waiter = asyncio.create_task(finished.wait())
    try:
        await asyncio.wait([waiter, *workers], return_when=asyncio.FIRST_COMPLETED)
        end, cpu = time.perf_counter(), own_cpu()
        if finished.is_set():
            barrier.wait(PHASE_TIMEOUT)  # as above, blocks the loop
    finally:
        for task in [waiter, *workers]:
            task.cancel()
        results = await asyncio.gather(*workers, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            raise result
    if done < tasks:
        raise RuntimeError(f'queue {queue.name}: the consumers stopped after {done} of {tasks} tasks')
    return end, cpu


# -- the nodes' CPU -------------------------------------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """CPU seconds of a process of this machine (Linux)."""
    fields = Path(f'/proc/{pid}/stat').read_text().rpartition(')')[2].split()
    # After the name: field 3 (the state) first; fields 14 and 15 are utime and stime.
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def node_cpu(node: RedisServer) -> float:
    """CPU seconds a node has used: from /proc, without a command, else by
    INFO cpu."""
    executor = node._executor
    if executor is not None and executor.process is not None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return process_cpu(executor.process.pid)
    with redis.Redis(host=node.host, port=node.port, socket_timeout=10) as client:
        info = client.info('cpu')
    return float(info['used_cpu_user']) + float(info['used_cpu_sys'])


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (Linux), else 0."""
    try:
        fields = Path('/proc/stat').read_text().split('\n', 1)[0].split()[1:]
    except OSError:
        return 0.0
    ticks = [int(value) for value in fields]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return (sum(ticks[:8]) - idle) / os.sysconf('SC_CLK_TCK')


@dataclass
class Mark:
    """The clock, each node's CPU and the machine's at a moment."""

    at: float
    nodes: dict[int, float]
    machine: float

    @classmethod
    def take(cls, nodes: list[RedisServer]) -> Mark:
        return cls(time.perf_counter(), {node.port: node_cpu(node) for node in nodes}, machine_busy())


# -- the runs ---------------------------------------------------------------------------------------------------


@dataclass
class Side:
    """The server, or the cluster: its masters, their replicas, and where
    the processes connect."""

    name: str
    target: Target
    masters: list[RedisServer]
    replicas: list[RedisServer] = field(default_factory=list)

    def flush(self) -> None:
        """Empties every master, and waits for the replicas to have too."""
        for node in self.masters:
            with redis.Redis(host=node.host, port=node.port, socket_timeout=30) as client:
                client.flushall()
                if self.replicas:
                    client.wait(1, 10_000)
                client.config_resetstat()

    def commands(self) -> dict[str, int]:
        """The commands the masters ran since :meth:`flush`, by name."""
        calls: dict[str, int] = {}
        for node in self.masters:
            with redis.Redis(host=node.host, port=node.port, socket_timeout=30, decode_responses=True) as client:
                for name, stats in client.info('commandstats').items():
                    command = name.removeprefix('cmdstat_')
                    calls[command] = calls.get(command, 0) + int(stats['calls'])
        return dict(sorted(calls.items(), key=lambda item: -item[1]))


def watch(processes: list[Any], barrier: multiprocessing.synchronize.Barrier, stop: threading.Event) -> None:
    """Breaks the barrier when a process has died, so that nothing waits
    for it (a process that fails with an exception breaks it itself)."""
    while not stop.wait(0.2):
        if any(process.exitcode not in (None, 0) for process in processes):
            barrier.abort()
            return


def failure(
    reports: multiprocessing.queues.Queue[dict[str, Any]], processes: list[Any], first: dict[str, Any] | None = None
) -> str:
    """What went wrong in the queue processes: the traceback of the first
    that failed of itself (not because another broke the barrier), else
    which died."""
    errors = [] if first is None else [first]
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not all(process.exitcode is not None for process in processes):
        with contextlib.suppress(Empty):
            errors.append(reports.get(timeout=0.2))
    with contextlib.suppress(Empty):
        while True:
            errors.append(reports.get_nowait())
    errors = [report for report in errors if 'error' in report]
    own = [report for report in errors if 'BrokenBarrierError' not in report['error']]
    died = {process.name: process.exitcode for process in processes if process.exitcode not in (None, 0)}
    said = f' (exit codes: {died})' if died else ''
    if own:
        return f'the process of queue {own[0]["queue"]} failed{said}:\n{own[0]["error"]}'
    return f'a queue process stopped or did not answer{said}'


def meet(
    barrier: multiprocessing.synchronize.Barrier,
    reports: multiprocessing.queues.Queue[dict[str, Any]],
    processes: list[Any],
) -> None:
    try:
        barrier.wait(PHASE_TIMEOUT)
    except threading.BrokenBarrierError:
        raise RuntimeError(failure(reports, processes)) from None


def collect(
    reports: multiprocessing.queues.Queue[dict[str, Any]], processes: list[Any], count: int
) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + PHASE_TIMEOUT
    while len(got) < count:
        try:
            report = reports.get(timeout=0.5)
        except Empty:
            if time.monotonic() > deadline:
                raise RuntimeError(f'the queue processes did not finish within {PHASE_TIMEOUT:g} s') from None
            if any(process.exitcode not in (None, 0) for process in processes):
                raise RuntimeError(failure(reports, processes)) from None
            continue
        if 'error' in report:
            raise RuntimeError(failure(reports, processes, report))
        got.append(report)
    return got


def stop_processes(processes: list[Any]) -> None:
    """Ends the processes that are still running."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join(5)


def run_side(side: Side, names: list[str], tasks: int, consumers: int, every_node: list[RedisServer]) -> dict[str, Any]:
    """One run of ``side``: the processes' reports and what each phase took."""
    side.flush()
    context = multiprocessing.get_context('spawn')
    barrier = context.Barrier(len(names) + 1)  # the processes and this one, to mark the phases
    reports: multiprocessing.queues.Queue[dict[str, Any]] = context.Queue()
    processes: list[Any] = []
    stop = threading.Event()
    watchdog = threading.Thread(target=watch, args=(processes, barrier, stop), daemon=True)
    try:
        for name in names:
            process = context.Process(
                target=queue_process,
                args=(side.target, name, tasks, consumers, barrier, reports),
                name=f'{side.name}:{name}',
                daemon=True,
            )
            process.start()
            processes.append(process)
        watchdog.start()
        meet(barrier, reports, processes)
        marks = [Mark.take(every_node)]
        meet(barrier, reports, processes)
        marks.append(Mark.take(every_node))
        meet(barrier, reports, processes)
        marks.append(Mark.take(every_node))
        got = collect(reports, processes, len(names))
        for process in processes:
            process.join(30)  # each exits once its report is sent
    finally:
        stop.set()
        stop_processes(processes)
        reports.close()
        reports.join_thread()
    got.sort(key=lambda report: names.index(report['queue']))
    total = tasks * len(names)
    phases = {
        phase: phase_numbers(side, total, [report[phase] for report in got], before, after)
        for phase, before, after in (('enqueue', marks[0], marks[1]), ('consume', marks[1], marks[2]))
    }
    commands = side.commands()
    return {'side': side.name, 'tasks': total, 'phases': phases, 'commands': commands,
            'commands_per_task': sum(commands.values()) / total, 'processes': got}  # fmt: skip


def phase_numbers(side: Side, total: int, times: list[dict[str, Any]], before: Mark, after: Mark) -> dict[str, Any]:
    slowest = max(each['seconds'] for each in times)
    window = after.at - before.at
    nodes = {port: after.nodes[port] - before.nodes[port] for port in before.nodes}
    masters = sum(nodes[node.port] for node in side.masters)
    replicas = sum(nodes[node.port] for node in side.replicas)
    clients = sum(each['cpu_s'] for each in times)
    idle = sum(nodes.values()) - masters - replicas  # the other side's nodes, waiting
    machine = after.machine - before.machine
    return {
        'tasks_per_s': total / slowest,
        'slowest_s': slowest,
        'span_s': max(each['end'] for each in times) - min(each['start'] for each in times),
        'window_s': window,
        'clients_cpu_s': clients,
        'masters_cpu_s': masters,
        'replicas_cpu_s': replicas,
        'idle_nodes_cpu_s': idle,
        # The rest of the machine: this process, and other work.
        'other_cpu_s': max(0.0, machine - clients - masters - replicas - idle),
        'busy_cores': machine / window if window > 0 else 0.0,
        'other_cores': max(0.0, machine - clients - masters - replicas - idle) / window if window > 0 else 0.0,
        'client_us_per_task': clients / total * 1e6,
        'redis_us_per_task': (masters + replicas) / total * 1e6,
        'node_cpu_s': {str(node.port): nodes[node.port] for node in side.masters + side.replicas},
    }


# -- the queues -----------------------------------------------------------------------------------------------


def spread_queues(cluster: Any, masters: list[RedisServer]) -> dict[str, RedisServer]:
    """:data:`QUEUES` names, each with its master, :data:`SPREAD` on each."""
    room = {node.port: wanted for node, wanted in zip(masters, SPREAD, strict=True)}
    chosen: dict[str, RedisServer] = {}
    n = 0
    while len(chosen) < QUEUES:
        name = f'bench-{n}'
        n += 1
        owner = cluster.owner(f'{{{name}}}')
        if room[owner.port] > 0:
            room[owner.port] -= 1
            chosen[name] = owner
    order = [node.port for node in masters]
    return dict(sorted(chosen.items(), key=lambda item: (order.index(item[1].port), item[0])))


# -- the report ---------------------------------------------------------------------------------------------------

PHASES = {
    'enqueue': 'enqueue, pipelines of 250: tasks/s',
    'consume': 'dequeue + release, 1 at a time: tasks/s',
}


def median_of(runs: list[dict[str, Any]], phase: str, metric: str) -> float:
    return float(statistics.median(run['phases'][phase][metric] for run in runs))


def round_ratios(runs: dict[str, list[dict[str, Any]]], phase: str) -> list[float]:
    return [
        cluster['phases'][phase]['tasks_per_s'] / server['phases'][phase]['tasks_per_s']
        for server, cluster in zip(runs[SERVER], runs[CLUSTER], strict=True)
    ]


def per_task(runs: list[dict[str, Any]], command: str | None = None) -> float:
    """The median of the commands (or of one command) per task the masters ran."""
    return float(
        statistics.median(
            (sum(run['commands'].values()) if command is None else run['commands'].get(command, 0)) / run['tasks']
            for run in runs
        )
    )


def text_table(lines: list[list[str]]) -> str:
    """Columns padded to their widest cell, between rules (a
    reStructuredText simple table)."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    rule = '  '.join('=' * width for width in widths)

    def render(line: list[str]) -> str:
        return '  '.join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()

    return '\n'.join([rule, render(lines[0]), rule, *(render(line) for line in lines[1:]), rule])


def throughput_table(runs: dict[str, list[dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
    lines = [['phase', 'one server', 'cluster, 3 masters', 'cluster/server', 'per round']]
    summary: dict[str, Any] = {}
    for phase, label in PHASES.items():
        server, cluster = (median_of(runs[side], phase, 'tasks_per_s') for side in (SERVER, CLUSTER))
        ratios = round_ratios(runs, phase)
        ratio = statistics.median(ratios)
        spread = f'{min(ratios):.2f}-{max(ratios):.2f}' if len(ratios) > 1 else ''
        lines.append([label, f'{server:,.0f}', f'{cluster:,.0f}', f'{ratio:.2f}x', spread])
        summary[phase] = {'server_tasks_per_s': server, 'cluster_tasks_per_s': cluster,
                          'ratio': ratio, 'round_ratios': ratios}  # fmt: skip
    return text_table(lines), summary


def cpu_table(runs: dict[str, list[dict[str, Any]]]) -> str:
    lines = [['phase', 'side', 'wall s', 'busy cores', 'clients CPU s', 'masters CPU s', 'replicas CPU s',
              'other CPU s', 'client µs/task', 'Redis µs/task']]  # fmt: skip
    for phase in PHASES:
        for side in (SERVER, CLUSTER):

            def value(metric: str, fmt: str, side: str = side, phase: str = phase) -> str:
                return fmt.format(median_of(runs[side], phase, metric))

            lines.append([
                phase, side, value('slowest_s', '{:.2f}'), value('busy_cores', '{:.2f}'),
                value('clients_cpu_s', '{:.2f}'), value('masters_cpu_s', '{:.2f}'),
                value('replicas_cpu_s', '{:.2f}') if side == CLUSTER else '-', value('other_cpu_s', '{:.2f}'),
                value('client_us_per_task', '{:.0f}'), value('redis_us_per_task', '{:.0f}'),
            ])  # fmt: skip
    return text_table(lines)


def versions() -> dict[str, str | None]:
    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {'redis_py': redis.__version__, 'hiredis': version('hiredis'), 'orjson': version('orjson')}


def machine(server: RedisServer) -> dict[str, Any]:
    with redis.Redis(host=server.host, port=server.port, decode_responses=True) as admin:
        info = admin.info('server')
    model = ''
    with contextlib.suppress(OSError):
        lines = Path('/proc/cpuinfo').read_text().splitlines()
        model = next((line.split(':', 1)[1].strip() for line in lines if line.startswith('model name')), '')
    usable = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    return {
        'cpus': os.cpu_count(),
        'usable_cpus': usable,
        'load_average_at_start': os.getloadavg() if hasattr(os, 'getloadavg') else None,
        'cpu_model': model,
        'platform': platform.platform(),
        'python': platform.python_version(),
        'server': server_version(server.program),
        'server_program': server.program,
        'redis_version': info['redis_version'],
        **versions(),
    }


# -- the whole run ----------------------------------------------------------------------------------------------


def terminated(signum: int, frame: FrameType | None) -> None:
    """SIGTERM ends the run as Ctrl-C does: through the ``finally`` blocks,
    which stop all it started."""
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or '').split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='1 round of 1,000 tasks per queue')
    parser.add_argument(
        '--json', type=Path, help='where to write the results (default: bench/results/cluster-<time>.json)'
    )
    parser.add_argument('--tasks', type=int, help='tasks per queue (default 5,000; quick: 1,000)')
    parser.add_argument('--consumers', type=int, default=4, help='consumer coroutines per queue (default 4)')
    parser.add_argument('--rounds', type=int, help='rounds of each side (default 3; quick: 1)')
    options = parser.parse_args()
    tasks = options.tasks or (1_000 if options.quick else 5_000)
    rounds = options.rounds or (1 if options.quick else 3)
    consumers = options.consumers
    if min(tasks, rounds, consumers) < 1:
        parser.error('--tasks, --consumers and --rounds take 1 or more')
    signal.signal(signal.SIGTERM, terminated)

    started = datetime.datetime.now(datetime.UTC)
    clock = time.perf_counter()
    stamp = started.strftime('%Y%m%dT%H%M%SZ')
    out: Path = options.json or BENCH / 'results' / f'cluster-{stamp}{"-quick" if options.quick else ""}.json'
    out.parent.mkdir(parents=True, exist_ok=True)

    runs: dict[str, list[dict[str, Any]]] = {SERVER: [], CLUSTER: []}
    with contextlib.ExitStack() as stack:
        print(f'Starting a server, and a cluster of 3 masters and 3 replicas ({tasks:,} tasks per queue, '
              f'{consumers} consumers, {rounds} round{"s" if rounds > 1 else ""}) ...', flush=True)  # fmt: skip
        server: RedisServer = stack.enter_context(RedisServer())
        cluster = stack.enter_context(Cluster(node_timeout=NODE_TIMEOUT_MS))
        about = machine(server)
        masters = sorted(cluster.masters(), key=lambda node: node.port)
        replicas = [node for node in cluster.nodes if node not in masters]
        placed = spread_queues(cluster, masters)
        names = list(placed)
        layout = [
            {'queue': name, 'master': node.port, 'slot': int(cluster.call(node, 'CLUSTER', 'KEYSLOT', name))}
            for name, node in placed.items()
        ]
        host, port = cluster.startup_nodes[0]
        sides = [
            Side(SERVER, Target(SERVER, url=server.url), [server]),
            Side(CLUSTER, Target(CLUSTER, host=host, port=port), masters, replicas),
        ]
        every_node = [server, *cluster.nodes]
        for round_ in range(rounds):
            for side in sides:
                print(f'round {round_ + 1} of {rounds}: {side.name} ...', end=' ', flush=True)
                result = run_side(side, names, tasks, consumers, every_node)
                runs[side.name].append(result)
                enqueue, consume = (result['phases'][phase]['tasks_per_s'] for phase in PHASES)
                print(f'enqueue {enqueue:,.0f} tasks/s, dequeue + release {consume:,.0f} tasks/s', flush=True)
                now = sorted(node.port for node in cluster.masters())
                if side.name == CLUSTER and now != [node.port for node in masters]:
                    raise RuntimeError('a master of the cluster was failed over during the run: its numbers are void')

    elapsed = time.perf_counter() - clock
    command = ' '.join(['.venv/bin/python', 'bench/cluster.py', *sys.argv[1:]])
    throughput, summary = throughput_table(runs)
    cpus = cpu_table(runs)
    per_master = ', '.join(
        f':{node.port} ({sum(1 for each in placed.values() if each is node)} queues) '
        f'{statistics.median(run["phases"]["consume"]["node_cpu_s"][str(node.port)] for run in runs[CLUSTER]):.2f} s'
        for node in masters
    )
    print()
    print(f'{command}   ({started:%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s)')
    print(f'{about["cpus"]} cores ({about["usable_cpus"]} usable; {about["cpu_model"] or "model unknown"}), '
          f'{about["server"]}, Python {about["python"]}, redis-py {about["redis_py"]}, '
          f'hiredis {about["hiredis"] or "none"}')  # fmt: skip
    print(f'{QUEUES} queues x {tasks:,} tasks, {consumers} consumers per queue, one process per queue; '
          f'median of {rounds} round{"s" if rounds > 1 else ""} (server and cluster in turn)')  # fmt: skip
    print()
    print(throughput)
    print()
    print('Where the CPU went (medians; wall: the slowest process; other: the rest of the machine):')
    print(cpus)
    print(f"- the cluster masters' CPU in dequeue + release: {per_master}")
    server_calls, cluster_calls = per_task(runs[SERVER]), per_task(runs[CLUSTER])
    server_scripts, cluster_scripts = per_task(runs[SERVER], 'evalsha'), per_task(runs[CLUSTER], 'evalsha')
    print(f"- commands per task on the masters, the scripts' own calls included: server {server_calls:.1f}, "
          f'cluster {cluster_calls:.1f}; of them EVALSHA: server {server_scripts:.2f}, '
          f'cluster {cluster_scripts:.2f}')  # fmt: skip
    busiest = max(run['phases'][phase]['other_cores'] for side in runs.values() for run in side for phase in PHASES)
    if busiest >= 0.2:
        print(
            f'- other work on the machine kept up to {busiest:.1f} cores busy during a phase: the numbers are disturbed'
        )
    document = {
        'command': command,
        'date': started.isoformat(timespec='seconds'),
        'elapsed_s': elapsed,
        'quick': options.quick,
        'settings': {
            'queues': QUEUES,
            'tasks_per_queue': tasks,
            'consumers': consumers,
            'rounds': rounds,
            'pipeline': PIPELINE,
            'node_timeout_ms': NODE_TIMEOUT_MS,
        },
        'machine': about,
        'queues': layout,
        'summary': summary,
        'table': throughput,
        'cpu_table': cpus,
        'runs': runs,
    }
    out.write_text(json.dumps(document, indent=1) + '\n')
    print(f'\nResults: {out}')
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print('\ninterrupted: everything it started is stopped', file=sys.stderr)
        sys.exit(130)
