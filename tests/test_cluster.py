"""Queues on a real Redis Cluster of the tests' own (3 masters, 3
replicas; tests/cluster.py): queues spread over the masters, events by
sharded pub/sub on the master of each queue's slot, watches to a final
state, a master killed under load and its replica promoted, and a slot
migrated while tasks flow.

(The queue's behaviour suite also runs on a cluster: ``TORRELQUE_TEST_CLUSTER=1``,
see tests/conftest.py and .ci/run.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio
import redis.exceptions
from cluster import Cluster, wait_for

from torrelque import TaskContext, Torrelque, TorrelqueTaskStatus, Worker
from torrelque.server import RedisServer, find_server, server_version

pytestmark = pytest.mark.timeout(180)

# What a call may meet while a slot changes hands: the node is gone, the
# slot is in between, or the cluster is re-electing.
IN_BETWEEN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ClusterError,
              redis.exceptions.ResponseError, OSError)  # fmt: skip

logger = logging.getLogger(__name__)


def sharded_pubsub() -> bool:
    version = server_version(find_server()[0])
    number = version.split()[1]
    return int(number.split('.')[0]) >= 7


@pytest.fixture(scope='module')
def cluster() -> Iterator[Cluster]:
    with Cluster() as cluster:
        yield cluster


async def open_client(cluster: Cluster, **kwargs: Any) -> redis.asyncio.RedisCluster:
    host, port = cluster.startup_nodes[0]
    client = redis.asyncio.RedisCluster(host=host, port=port, **kwargs)
    await client.initialize()
    return client


@pytest.fixture
async def client(cluster: Cluster) -> AsyncIterator[redis.asyncio.RedisCluster]:
    client = await open_client(cluster)
    yield client
    await client.aclose()


def names_on_every_master(cluster: Cluster, count: int) -> list[str]:
    """``count`` queue names whose slots are spread over all the masters."""
    masters = {node.port: [] for node in cluster.masters()}  # type: dict[int, list[str]]
    n = 0
    while sum(len(names) for names in masters.values()) < count:
        name = f'spread-{n}'
        n += 1
        owned = masters[cluster.owner(f'{{{name}}}').port]
        if len(owned) < -(-count // len(masters)):
            owned.append(name)
    return [name for names in masters.values() for name in names][:count]


async def test_the_client_is_accepted_and_a_task_goes_through(client: redis.asyncio.RedisCluster) -> None:
    async with Torrelque(client, queue='through') as queue:
        queue.schedule_sweep()  # moves the delayed task when it is due
        await asyncio.sleep(0.2)
        task_id = await queue.enqueue({'n': 1}, delay=0.2)
        assert (await queue.get_task_state(task_id)).status is TorrelqueTaskStatus.DELAYED
        taken, payload = await queue.dequeue(timeout=5)
        assert (taken, payload) == (task_id, {'n': 1})
        await queue.release(taken, result='done')
        state = await queue.get_task_state(task_id)
        assert (state.status, state.result) == (TorrelqueTaskStatus.COMPLETED, 'done')


async def test_a_cluster_pipeline_enqueues_in_joined_script_calls(
    cluster: Cluster, client: redis.asyncio.RedisCluster
) -> None:
    async with Torrelque(client, queue='bulk') as queue:
        async with client.pipeline(transaction=False) as pipeline:
            ids = [await queue.enqueue(n, pipeline=pipeline) for n in range(600)]
            results = await pipeline.execute()
        assert len(results) == 3  # 250 tasks per script call
        assert (await queue.get_queue_stats()).pending == 600
        assert sorted(ids) == sorted({*ids})


async def test_eight_queues_spread_over_the_masters_each_run_to_the_end(
    cluster: Cluster, client: redis.asyncio.RedisCluster
) -> None:
    names = names_on_every_master(cluster, 8)
    owners = {cluster.owner(f'{{{name}}}').port for name in names}
    assert len(owners) == 3
    done: dict[str, list[int]] = {name: [] for name in names}

    def handler(name: str) -> Any:
        async def handle(task: int, ctx: TaskContext) -> int:
            done[name].append(task)
            return task * 2

        return handle

    queues = [Torrelque(client, queue=name) for name in names]
    try:
        for queue in queues:
            for n in range(50):
                await queue.enqueue(n)
        workers = [Worker(queue, handler(queue.name), concurrency=4) for queue in queues]
        async with contextlib.AsyncExitStack() as stack:
            for worker in workers:
                await stack.enter_async_context(worker)

            async def drained() -> bool:
                counters = [await queue.get_queue_counters() for queue in queues]
                return all(c['completed'] == 50 for c in counters)

            deadline = time.monotonic() + 60
            while not await drained():
                assert time.monotonic() < deadline, done
                await asyncio.sleep(0.1)
        assert all(sorted(tasks) == list(range(50)) for tasks in done.values())
        # Each queue's keys are on its own master alone.
        for name in names:
            owner = cluster.owner(f'{{{name}}}')
            assert cluster.call(owner, 'EXISTS', f'{{{name}}}:stats') == 1
    finally:
        for queue in queues:
            await queue.aclose()


NEEDS_EVENTS = pytest.mark.skipif(not sharded_pubsub(), reason='events on a cluster need sharded pub/sub (Redis 7)')


@NEEDS_EVENTS
async def test_a_watch_follows_a_task_to_its_end_by_sharded_pub_sub(
    cluster: Cluster, client: redis.asyncio.RedisCluster
) -> None:
    async with Torrelque(client, queue='watched') as queue, Torrelque(client, queue='watched') as consumer:
        task_id = await queue.enqueue('x')
        states: list[TorrelqueTaskStatus] = []
        events: list[str] = []
        started = asyncio.Event()

        async def follow() -> None:
            async for state in queue.watch(task_id, timeout=20):
                states.append(state.status)
                started.set()

        async def tail() -> None:
            async for event in queue.watch_queue():
                events.append(event.event)
                if event.event == 'released':
                    return

        following = [asyncio.create_task(follow()), asyncio.create_task(tail())]
        owner = cluster.owner(f'{{{queue.name}}}')
        channel = f'{queue.keys["task"]}:{task_id}'
        # Subscribed on the master of the queue's slot, sharded.
        subscribed = lambda: cluster.call(owner, 'PUBSUB', 'SHARDNUMSUB', channel)[1] == 1  # noqa: E731
        await asyncio.to_thread(wait_for, subscribed, 10, 'the subscription')
        assert cluster.call(owner, 'PUBSUB', 'NUMSUB', channel)[1] == 0
        await asyncio.wait_for(started.wait(), 10)  # the watch has read the state it starts from
        taken, _ = await consumer.dequeue(timeout=5)
        await consumer.release(taken, result=1)
        await asyncio.wait_for(asyncio.gather(*following), 10)
    assert states == [TorrelqueTaskStatus.PENDING, TorrelqueTaskStatus.WORKING, TorrelqueTaskStatus.COMPLETED]
    assert events == ['dequeued', 'released']


async def test_the_command_line_follows_the_cluster_to_the_queue(
    cluster: Cluster, client: redis.asyncio.RedisCluster
) -> None:
    name = next(n for n in names_on_every_master(cluster, 8) if cluster.owner(f'{{{n}}}') is not cluster.nodes[0])
    async with Torrelque(client, queue=name) as queue:
        task_id = await queue.enqueue('x')
    host, port = cluster.startup_nodes[0]  # not the master of the queue's slot
    url = f'redis://{host}:{port}/0'

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, '-m', 'torrelque', *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)

    stats = await asyncio.to_thread(run, '--cluster', '--url', url, 'stats', name, '--json')
    assert stats.returncode == 0, stats.stderr
    shown = json.loads(stats.stdout)
    assert shown['exists'] is True and shown['counts']['pending'] == 1
    task = await asyncio.to_thread(run, '--cluster', '--url', url, 'task', name, task_id, '--json')
    assert json.loads(task.stdout)['status'] == 'PENDING', task.stderr
    # Without --cluster, the node it reaches answers for its own keys only.
    alone = await asyncio.to_thread(run, '--url', url, 'task', name, task_id)
    assert alone.returncode != 0


# -- faults: each test on a cluster of its own ----------------------------------------------


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    with Cluster() as cluster:
        yield cluster


class Producer:
    """Enqueues as fast as it can until stopped, noting what each call
    acknowledged; a call that fails is counted, not retried."""

    def __init__(self, queue: Torrelque, wait_for_replica: bool = False) -> None:
        self.queue = queue
        self.wait_for_replica = wait_for_replica
        self.acknowledged: list[str] = []
        self.failed = 0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                task_id = await self.queue.enqueue(n)
                if self.wait_for_replica:
                    await self._wait()
            except IN_BETWEEN:
                self.failed += 1
                await asyncio.sleep(0.05)
                continue
            self.acknowledged.append(task_id)

    async def _wait(self) -> None:
        # WAIT counts the writes of its own connection: the enqueue and the
        # WAIT go on one, that of the queue's master.
        client = self.queue._client
        assert isinstance(client, redis.asyncio.RedisCluster)
        node = client.get_node_from_key(self.queue.keys['tasks'])
        acked = await node.execute_command('WAIT', 1, 1000)
        if int(acked) < 1:
            raise redis.exceptions.TimeoutError('no replica acknowledged the write')

    def stop(self) -> None:
        self._stop.set()


async def lost(queue: Torrelque, acknowledged: list[str]) -> list[str]:
    """The acknowledged tasks that the queue no longer has."""
    missing = []
    for task_id in acknowledged:
        for _ in range(50):
            try:
                exists = await queue._client.hexists(queue.keys['tasks'], task_id)
                break
            except IN_BETWEEN:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError('the queue does not answer after the failover')
        if not exists:
            missing.append(task_id)
    return missing


async def until_it_works(call: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except IN_BETWEEN:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def follow(watcher: Torrelque, task_id: str) -> tuple[list[TorrelqueTaskStatus], asyncio.Task[None]]:
    """The statuses a watch of the task sees (a list that grows as they
    come), and the task that watches."""
    states: list[TorrelqueTaskStatus] = []

    async def run() -> None:
        async for state in watcher.watch(task_id, timeout=60):
            states.append(state.status)

    return states, asyncio.create_task(run())


@NEEDS_EVENTS
@pytest.mark.parametrize('wait_for_replica', [False, True], ids=['async', 'WAIT'])
async def test_a_master_killed_under_load_fails_over_and_the_queue_goes_on(
    own_cluster: Cluster, wait_for_replica: bool, record_property: Any
) -> None:
    cluster = own_cluster
    client = await open_client(cluster)
    try:
        async with Torrelque(client, queue='failover') as queue, Torrelque(client, queue='failover') as watcher:
            master = cluster.owner('{failover}')
            replica = cluster.replica_of(master)
            watched = await queue.enqueue('watched')
            states, following = follow(watcher, watched)
            producer = Producer(queue, wait_for_replica)
            producing = asyncio.create_task(producer.run())
            await asyncio.sleep(1.0)
            master.kill()
            killed_after = len(producer.acknowledged)
            # The replica takes over once the others mark the master failed.
            started = time.monotonic()
            # (In a thread: the producer goes on meanwhile.)
            await asyncio.to_thread(wait_for, lambda: cluster.role(replica) == 'master', 30, 'the replica taking over')
            await asyncio.to_thread(
                wait_for, lambda: cluster.info(replica)['cluster_state'] == 'ok', 30, 'the cluster healing'
            )
            took = time.monotonic() - started
            await asyncio.sleep(1.0)
            producer.stop()
            await producing
            missing = await lost(queue, producer.acknowledged)
            record_property('acknowledged', len(producer.acknowledged))
            record_property('lost', len(missing))
            logger.warning(
                'Failover (%s) in %.1f s: %d tasks acknowledged (%d before the kill), %d lost, %d calls failed',
                'WAIT 1' if wait_for_replica else 'async replication', took, len(producer.acknowledged),
                killed_after, len(missing), producer.failed,
            )  # fmt: skip
            if wait_for_replica:
                assert missing == []
            # The queue works on the new master: the watched task is taken
            # and released, and its watch, begun before, sees the end.
            while True:
                taken, _ = await until_it_works(lambda: queue.dequeue(timeout=1))
                if taken == watched:
                    break
                await until_it_works(lambda t=taken: queue.release(t))
            await until_it_works(lambda: queue.release(taken, result='after'))
            await asyncio.wait_for(following, 30)
            assert states[-1] is TorrelqueTaskStatus.COMPLETED
            assert producer.acknowledged[-1] != watched
            new_id = await until_it_works(lambda: queue.enqueue('new'))
            assert (await queue.get_task_state(new_id)).status is TorrelqueTaskStatus.PENDING
    finally:
        await client.aclose()


@NEEDS_EVENTS
async def test_a_slot_migrated_while_tasks_flow_loses_nothing(own_cluster: Cluster) -> None:
    cluster = own_cluster
    client = await open_client(cluster)
    try:
        async with Torrelque(client, queue='moving') as queue, Torrelque(client, queue='moving') as watcher:
            source = cluster.owner('{moving}')
            target = next(node for node in cluster.masters() if node is not source)
            slot = cluster.call(source, 'CLUSTER', 'KEYSLOT', '{moving}')
            first = await queue.enqueue('first')
            states, following = follow(watcher, first)
            await asyncio.sleep(0.2)
            producer = Producer(queue)
            producing = asyncio.create_task(producer.run())
            await asyncio.sleep(0.5)
            await asyncio.to_thread(migrate, cluster, slot, source, target)
            assert cluster.owner('{moving}') is target
            await asyncio.sleep(0.5)
            producer.stop()
            await producing
            assert await lost(queue, producer.acknowledged) == []
            # Every task is there once, and the watch begun on the old
            # master sees the end on the new one.
            ids = [first, *producer.acknowledged]
            assert (await until_it_works(queue.get_queue_stats)).pending == len(ids)
            taken_ids = []
            while len(taken_ids) < len(ids):
                taken = await until_it_works(lambda: queue.dequeue(timeout=1, max_tasks=100))
                for task_id, _ in taken:
                    taken_ids.append(task_id)
                    await until_it_works(lambda t=task_id: queue.release(t, result=1))
            assert sorted(taken_ids) == sorted(ids)
            await asyncio.wait_for(following, 30)
            assert states[-1] is TorrelqueTaskStatus.COMPLETED
    finally:
        await client.aclose()


def migrate(cluster: Cluster, slot: int, source: RedisServer, target: RedisServer) -> None:
    """Moves a slot as an operator's resharding does, keys included."""
    source_id, target_id = cluster.node_id(source), cluster.node_id(target)
    cluster.call(target, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', source_id)
    cluster.call(source, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', target_id)
    while keys := cluster.call(source, 'CLUSTER', 'GETKEYSINSLOT', slot, 100):
        cluster.call(source, 'MIGRATE', target.host, target.port, '', 0, 5000, 'KEYS', *keys)
    for node in (target, source, *cluster.masters()):
        cluster.call(node, 'CLUSTER', 'SETSLOT', slot, 'NODE', target_id)
