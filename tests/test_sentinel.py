"""A queue whose client Redis Sentinel finds keeps working across a
``SENTINEL FAILOVER``: its tasks, dequeues and releases, watches and workers.

The module runs a deployment of its own (none of conftest's servers): a
master and a replica (two :class:`~torrelque.server.RedisServer`) and three
sentinels of the same program, all on free ports of 127.0.0.1, all stopped
at the end of the module whatever happened. The tests share it: each of the
last three fails the master over once, so none of them assumes which server
is the master; each asks the sentinels.

What a user of a Sentinel deployment sees at a ``SENTINEL FAILOVER`` (as
found while writing these tests, on Redis 7.0; they pass on Valkey 9.1 too):

- The sentinels name the new master within a second or two, but the old one
  stays a writable master for about ten seconds more (Sentinel waits before
  it demotes it), and the connections that redis-py's pool has open to it
  keep talking to it. Writes made in that window are acknowledged by the old
  master and lost when it resynchronises from the new one. (With
  ``min-replicas-to-write 1`` and ``min-replicas-max-lag 1`` on the servers,
  the old master refuses them instead, with ``NOREPLICAS``, once its replica
  has been silent for that second.) These tests therefore write only once
  the deployment has settled: every sentinel names the new master, and the
  old one replicates from it.
- When it demotes the old master, Sentinel kills its clients' connections,
  the event connection's too. An idle connection is noticed by the pool and
  made anew, to the master the sentinels name: the next call just works. A
  call under way (a dequeue waiting in ``BLPOP``) raises redis-py's
  ``ConnectionError`` ("Connection closed by server."): the connections of a
  ``master_for`` client are made without retries unless ``retry=`` is given
  to it (and redis-py 8.1 sends such a retry to the old address again,
  redis-py issue 3874). A :class:`~torrelque.Worker` logs "Cannot take
  tasks" and takes again a second later; the event connection reconnects,
  to the new master, and each task watch reads its task's state again there.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.exceptions

from torrelque import TaskContext, Torrelque, TorrelqueTaskId, TorrelqueTaskStatus, Worker
from torrelque.server import RedisServer, RedisServerMissing, free_port

pytestmark = pytest.mark.timeout(120)

S = TorrelqueTaskStatus
T = TypeVar('T')

SERVICE = 'mymaster'
HOST = '127.0.0.1'
#: Seconds a start, a failover or a watch across one may take (a failover
#: takes about ten, most of it Sentinel's wait before it demotes the old master).
PATIENCE = 30.0
#: The client's wait for a reply, and the sentinels' clients'.
SOCKET_TIMEOUT = 5.0
#: Both servers': a replica (the first one, or the demoted master) syncs at
#: once, not after the default five seconds that let others join a sync.
SERVER_CONFIG = {'repl-diskless-sync-delay': '0'}


# -- the deployment ---------------------------------------------------------------


class SentinelProcess:
    """A sentinel (the server program run with ``--sentinel``) watching
    ``master_port``, in a temporary directory of its own."""

    def __init__(self, program: str, master_port: int, quorum: int) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix='torrelque-sentinel-')
        self.dir = Path(self._tmp.name)
        self.port = free_port()
        self.log = self.dir / 'sentinel.log'
        conf = self.dir / 'sentinel.conf'  # the sentinel rewrites it: its own copy
        conf.write_text(
            f'port {self.port}\n'
            f'bind {HOST}\n'
            f'dir {self.dir}\n'
            f'logfile {self.log}\n'
            f'sentinel monitor {SERVICE} {HOST} {master_port} {quorum}\n'
            f'sentinel down-after-milliseconds {SERVICE} 1000\n'
            f'sentinel failover-timeout {SERVICE} 5000\n'
        )
        # A file, not the test run's pipes: nothing is left holding them.
        self._output = (self.dir / 'output.log').open('ab')
        self.process = subprocess.Popen(
            [program, str(conf), '--sentinel'],
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )

    def said(self) -> str:
        """The end of what it printed and logged, for a failure's message."""
        lines: list[str] = []
        for path in (self.dir / 'output.log', self.log):
            with contextlib.suppress(OSError):
                lines += path.read_text(errors='replace').splitlines()[-15:]
        return '\n'.join(lines)

    def kill(self) -> None:
        try:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)
        finally:
            self._output.close()
            self._tmp.cleanup()


@dataclass
class Deployment:
    """The servers (by port) and the sentinels that watch them."""

    servers: dict[int, RedisServer]
    sentinels: list[SentinelProcess]

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [(HOST, sentinel.port) for sentinel in self.sentinels]

    def describe(self) -> str:
        return '\n'.join(f'sentinel {sentinel.port}:\n{sentinel.said()}' for sentinel in self.sentinels)


def _settle_sync(what: str, check: Callable[[], bool], said: Callable[[], str] = str) -> None:
    """Waits until ``check()`` is true (a server that does not answer yet
    counts as false); fails after :data:`PATIENCE`, with what ``said()``
    tells (the sentinels' logs)."""
    deadline = time.monotonic() + PATIENCE
    while True:
        with contextlib.suppress(redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            if check():
                return
        if time.monotonic() > deadline:
            pytest.fail(f'{what}: not within {PATIENCE:g} s\n{said()}', pytrace=False)
        time.sleep(0.05)


def _sync_client(port: int) -> redis.Redis:
    return redis.Redis(host=HOST, port=port, socket_timeout=SOCKET_TIMEOUT, decode_responses=True)


def _replication(port: int) -> dict[str, Any]:
    with _sync_client(port) as client:
        return client.info('replication')  # type: ignore[no-any-return]


def _sentinel_ready(port: int, replica_port: int, others: int) -> bool:
    """The sentinel answers, knows the replica and the other sentinels."""
    with _sync_client(port) as client:
        client.ping()
        replicas = client.sentinel_slaves(SERVICE)
        sentinels = client.sentinel_sentinels(SERVICE)
    return any(r['port'] == replica_port for r in replicas) and len(sentinels) == others


@pytest.fixture(scope='module')
def deployment() -> Iterator[Deployment]:
    servers: list[RedisServer] = []
    sentinels: list[SentinelProcess] = []
    try:
        try:
            master = RedisServer(config=SERVER_CONFIG)
        except RedisServerMissing as exc:
            pytest.fail(str(exc), pytrace=False)
        servers.append(master)
        master.start()
        replica = RedisServer(config={**SERVER_CONFIG, 'replicaof': f'{HOST} {master.port}'})
        servers.append(replica)
        replica.start()
        _settle_sync(
            'the replica links to its master', lambda: _replication(replica.port).get('master_link_status') == 'up'
        )
        for _ in range(3):
            sentinels.append(SentinelProcess(master.program, master.port, quorum=2))
        found = Deployment({server.port: server for server in servers}, sentinels)
        for sentinel in sentinels:
            _settle_sync(
                f'sentinel {sentinel.port} knows the replica and the other sentinels',
                functools.partial(_sentinel_ready, sentinel.port, replica.port, len(sentinels) - 1),
                found.describe,
            )
        yield found
    finally:
        # The sentinels first: none is to fail over while the servers stop.
        for sentinel in sentinels:
            with contextlib.suppress(Exception):
                sentinel.kill()
        for server in servers:
            with contextlib.suppress(Exception):
                server.kill()
            server.close()


# -- clients ----------------------------------------------------------------------------


@pytest.fixture
async def sentinel(deployment: Deployment) -> AsyncIterator[redis.asyncio.sentinel.Sentinel]:
    """The user's view of the deployment: redis-py's Sentinel."""
    found = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        deployment.sentinel_addresses, socket_timeout=SOCKET_TIMEOUT
    )
    yield found
    # (Sentinel.aclose() is newer than redis-py 5.0.1: close its clients.)
    for client in found.sentinels:
        await client.aclose()


@pytest.fixture
async def sentinel_client(sentinel: redis.asyncio.sentinel.Sentinel) -> AsyncIterator[redis.asyncio.Redis]:
    """A client of whichever server the sentinels name the master."""
    client = sentinel.master_for(SERVICE, redis_class=redis.asyncio.Redis)
    yield client
    await client.aclose()


@pytest.fixture
async def sentinel_queue(sentinel_client: redis.asyncio.Redis) -> AsyncIterator[Torrelque]:
    async with Torrelque(sentinel_client, queue=f'sentinel-{uuid.uuid4().hex[:12]}') as queue:
        yield queue


@contextlib.asynccontextmanager
async def direct(port: int) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client of one server or sentinel, past Sentinel's choice."""
    client = redis.asyncio.Redis(host=HOST, port=port, socket_timeout=SOCKET_TIMEOUT, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


async def eventually(what: str, check: Callable[[], Awaitable[bool]], timeout: float = PATIENCE) -> None:
    """Waits until ``await check()`` is true, a server that does not answer
    (yet) counting as false; fails after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        with contextlib.suppress(redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            if await check():
                return
        assert loop.time() < deadline, f'{what}: not within {timeout:g} s'
        await asyncio.sleep(0.05)


async def named_master(sentinel_port: int) -> tuple[str, int]:
    """Where a sentinel says the master is (``SENTINEL GET-MASTER-ADDR-BY-NAME``)."""
    async with direct(sentinel_port) as sentinel:
        found = await sentinel.sentinel_get_master_addr_by_name(SERVICE)
    assert isinstance(found, tuple), found
    host, port = found
    return str(host), int(port)


async def master_port(deployment: Deployment) -> int:
    """Where the first sentinel says the master is."""
    host, port = await named_master(deployment.sentinels[0].port)
    assert host == HOST
    return port


async def replicated(port: int) -> None:
    """Returns once the replica has everything the master at ``port`` has
    written, so that a failover loses none of it. ``WAIT`` counts the writes
    of its own connection: a write of its own first, which the replica gets
    after every write before it."""
    async with direct(port) as master:
        await master.set('sentinel-test:replicated', uuid.uuid4().hex)
        assert await master.wait(1, 5000) == 1


async def fail_over(deployment: Deployment) -> tuple[int, int]:
    """Fails the master over (``SENTINEL FAILOVER``, sent to one sentinel)
    and returns once the deployment has settled: every sentinel names the
    new master, and the old one replicates from it. Returns (old port, new
    port). The caller has made sure (:func:`replicated`) that the replica
    has what it needs."""
    first = deployment.sentinels[0].port
    old = await master_port(deployment)
    (other,) = set(deployment.servers) - {old}

    async with direct(first) as sentinel:

        async def started() -> bool:
            try:
                return bool(await sentinel.execute_command('SENTINEL', 'FAILOVER', SERVICE))  # type: ignore[no-untyped-call]
            except redis.exceptions.ResponseError as exc:
                # NOGOODSLAVE: the sentinel has not seen the replica (the
                # master demoted by the failover before) fit to promote yet.
                if str(exc).startswith('NOGOODSLAVE'):
                    return False
                raise

        await eventually(f'the sentinel starts a failover to {other}', started)

    async def all_name(port: int) -> bool:
        return all([await named_master(each.port) == (HOST, port) for each in deployment.sentinels])

    async def demoted() -> bool:
        info = await _replication_of(old)
        return (info['role'], info.get('master_port'), info.get('master_link_status')) == ('slave', other, 'up')

    await eventually(f'every sentinel names {other} the master', lambda: all_name(other))
    await eventually(f'the old master {old} replicates from {other}', demoted)
    return old, other


async def _replication_of(port: int) -> dict[str, Any]:
    async with direct(port) as server:
        return await server.info('replication')


async def after_switch(call: Callable[[], Awaitable[T]], seconds: float = 10.0) -> T:
    """The first call after a failover, tried again for a few seconds if
    the switch still shows: a ``ConnectionError`` (a connection that the
    demotion killed, or ``READONLY`` from a server that has become a
    replica, which redis-py's Sentinel connection turns into one, "The
    previous master is now a slave", and drops the connection). In these
    tests' runs the first call has gone through at once (see the module's
    description); only idempotent calls are tried again here, since a write
    whose reply was lost may have been done.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        try:
            return await call()
        except (redis.exceptions.ConnectionError, redis.exceptions.ReadOnlyError):
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def take(queue: Torrelque) -> tuple[TorrelqueTaskId, Any]:
    """One task, which should be ready."""
    got = await queue.dequeue(timeout=5)
    assert isinstance(got, tuple)
    return got


async def holds(port: int, key: str) -> bool:
    async with direct(port) as server:
        return bool(await server.exists(key))


# -- the tests --------------------------------------------------------------------------


async def test_a_queue_works_on_the_master_sentinel_finds(
    deployment: Deployment, sentinel: redis.asyncio.sentinel.Sentinel, sentinel_queue: Torrelque
) -> None:
    queue = sentinel_queue
    host, port = await sentinel.discover_master(SERVICE)
    assert (host, port) == (HOST, await master_port(deployment))
    task_id = await queue.enqueue({'job': 1})
    got_id, task = await take(queue)
    assert (got_id, task) == (task_id, {'job': 1})
    assert await queue.release(got_id, result='done') is True
    state = await queue.get_task_state(task_id)
    assert (state.status, state.result, state.dequeue_count) == (S.COMPLETED, 'done', 1)
    # On the server the sentinels name, as a plain client of it reads.
    assert await holds(port, f'{queue.keys["task"]}:{task_id}')


async def test_tasks_enqueued_before_a_failover_are_on_the_new_master(
    deployment: Deployment, sentinel: redis.asyncio.sentinel.Sentinel, sentinel_queue: Torrelque
) -> None:
    queue = sentinel_queue
    before = [await queue.enqueue({'before': n}) for n in range(10)]
    # One is dequeued before the failover and released after it.
    working_id, _ = await take(queue)
    assert working_id == before[0]
    await replicated(await master_port(deployment))

    old, new = await fail_over(deployment)

    # The master moved, as every sentinel says, and the old one is its replica.
    assert new != old
    for each in deployment.sentinels:
        assert await named_master(each.port) == (HOST, new)
    assert await sentinel.discover_master(SERVICE) == (HOST, new)
    assert (await _replication_of(old))['role'] == 'slave'
    stats = await after_switch(queue.get_queue_stats)
    assert (stats.tasks, stats.pending, stats.working, stats.delayed) == (10, 9, 1, 0)
    # From here on, no retries: the client works on the new master.
    assert await queue.release(working_id, result='released after') is True
    for n, task_id in enumerate(before[1:], start=1):
        got_id, task = await take(queue)
        assert (got_id, task) == (task_id, {'before': n})
        assert await queue.release(got_id, result=n) is True
    after = await queue.enqueue({'after': 0})
    got_id, task = await take(queue)
    assert (got_id, task) == (after, {'after': 0})
    assert await queue.release(got_id, result='after') is True

    for task_id in [*before, after]:
        assert (await queue.get_task_state(task_id)).status == S.COMPLETED
        assert await holds(new, f'{queue.keys["task"]}:{task_id}')
    assert await queue.get_queue_stats() == (0, 0, 0, 0)
    counters = await queue.get_queue_counters()
    assert (counters['enqueued'], counters['dequeued'], counters['completed']) == (11, 11, 11)


async def test_watches_started_before_a_failover_see_what_happens_after_it(
    deployment: Deployment, sentinel_queue: Torrelque
) -> None:
    queue = sentinel_queue
    task_id = await queue.enqueue('watched')
    watch = queue.watch(task_id, timeout=PATIENCE)
    events = queue.watch_queue()
    try:
        first = await anext(watch)  # subscribed, and the current state read
        assert first.status == S.PENDING
        # The queue watch subscribes on its first step: an event before the
        # failover shows it listening.
        listening = asyncio.ensure_future(anext(events))
        while not listening.done():
            await queue.enqueue('probe')
            await asyncio.wait([listening], timeout=0.2)
        assert listening.result().event == 'enqueued'
        await replicated(await master_port(deployment))

        _, new = await fail_over(deployment)

        # Dequeued and released on the new master, after the failover.
        await after_switch(queue.get_queue_stats)
        got_id, task = await take(queue)
        assert (got_id, task) == (task_id, 'watched')
        assert await queue.release(got_id, result='seen') is True

        async def rest() -> list[Any]:
            return [state async for state in watch]

        # The watch's own timeout bounds it; this one only reports a hang
        # as such, should the watch not keep to it.
        states = await asyncio.wait_for(rest(), PATIENCE + 5)
        assert states, 'the watch ended without the final state'
        assert (states[-1].status, states[-1].result) == (S.COMPLETED, 'seen')
        assert [state.status for state in states] in ([S.COMPLETED], [S.WORKING, S.COMPLETED])

        # The queue watch follows too: once its connection has subscribed
        # again, on the new master, what is published there reaches it.
        async def subscribed_on_the_new_master() -> bool:
            async with direct(new) as server:
                counts = dict(await server.pubsub_numsub(queue.keys['events']))
            return bool(counts.get(queue.keys['events']))

        await eventually('the queue watch subscribes on the new master', subscribed_on_the_new_master)
        after = await queue.enqueue('after')
        async with asyncio.timeout(PATIENCE):
            async for event in events:
                if event.task_id == after:
                    assert (event.event, event.status) == ('enqueued', S.PENDING)
                    break
    finally:
        await events.aclose()
        await watch.aclose()


async def test_a_worker_finishes_every_task_across_a_failover(
    deployment: Deployment, sentinel_queue: Torrelque
) -> None:
    queue = sentinel_queue
    before = ['held', *(f'before-{n}' for n in range(4))]
    after = [f'after-{n}' for n in range(6)]
    calls: Counter[str] = Counter()
    held = asyncio.Event()  # the held task runs
    gate = asyncio.Event()  # lets it finish, after the failover
    all_handled = asyncio.Event()

    async def handle(task: dict[str, str], ctx: TaskContext) -> str:
        calls[task['name']] += 1
        if task['name'] == 'held':
            held.set()
            await gate.wait()
        if set(calls) == {*before, *after}:
            all_handled.set()
        return task['name']

    for name in before:
        await queue.enqueue({'name': name})
    old = await master_port(deployment)
    worker = Worker(queue, handle, concurrency=2)
    async with worker:
        # Across the failover, one slot runs the held task (working on the
        # old master, its lease held) and the other waits for tasks,
        # blocked in BLPOP on the old master, the other four done.
        await asyncio.wait_for(held.wait(), PATIENCE)

        async def four_done_and_one_waiting() -> bool:
            if (await queue.get_queue_counters())['completed'] < 4:
                return False
            async with direct(old) as server:
                return any('b' in client['flags'] for client in await server.client_list())

        await eventually('the other four done and a slot waiting', four_done_and_one_waiting)
        await replicated(old)

        await fail_over(deployment)

        gate.set()
        await after_switch(queue.get_queue_stats)
        for name in after:
            await queue.enqueue({'name': name})
        await asyncio.wait_for(all_handled.wait(), PATIENCE)

        async def all_released() -> bool:
            return (await queue.get_queue_counters())['completed'] >= len(before) + len(after)

        await eventually('every task released', all_released)
    total = len(before) + len(after)
    assert calls == Counter(dict.fromkeys([*before, *after], 1))
    assert (worker.processed, worker.failed) == (total, 0)
    counters = await queue.get_queue_counters()
    assert (counters['enqueued'], counters['dequeued'], counters['completed']) == (total, total, total)
    assert await queue.get_queue_stats() == (0, 0, 0, 0)
