"""A Redis Cluster of the tests' own: masters and replicas of the test
server program on loopback ports, joined, given their slots and checked
healthy by the tests themselves (no ``redis-cli --cluster``), and stopped
afterwards."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from typing import Any

import redis

from torrelque.server import RedisServer

SLOTS = 16384
# A node listens on its port and on port + 10000 (the cluster bus): both
# must be free, and the bus port below 65536.
_PORTS = range(20000, 55000)


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(('127.0.0.1', port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A port that is free, with its bus port free too."""
    for _ in range(1000):
        port = random.choice(_PORTS)
        if _free(port) and _free(port + 10000):
            return port
    raise RuntimeError('no free pair of ports for a cluster node')


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if result := condition():
                return result
        except (redis.exceptions.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f'{what} did not happen within {timeout:g} s')
        time.sleep(0.05)


class Cluster:
    """``masters`` masters, each with ``replicas`` replicas. A node that
    stops answering for ``node_timeout`` ms is failed over to its replica."""

    def __init__(self, masters: int = 3, replicas: int = 1, node_timeout: int = 1000, **config: str) -> None:
        self.nodes: list[RedisServer] = []
        self._masters = masters
        self._replicas = replicas
        self._config = {
            'cluster-enabled': 'yes',
            'cluster-config-file': 'nodes.conf',
            'cluster-node-timeout': str(node_timeout),
            # A replica takes over whatever its offset: the tests measure
            # what a failover loses rather than forbid it.
            'cluster-replica-validity-factor': '0',
            # The rest of the cluster goes on while one slot range is down.
            'cluster-require-full-coverage': 'no',
            **config,
        }

    # -- the nodes ---------------------------------------------------------

    def client(self, node: RedisServer) -> redis.Redis:
        return redis.Redis(host=node.host, port=node.port, socket_timeout=5)

    def call(self, node: RedisServer, *command: Any) -> Any:
        with self.client(node) as client:
            return client.execute_command(*command)

    def start(self) -> Cluster:
        try:
            for _ in range(self._masters * (1 + self._replicas)):
                node = RedisServer(config=self._config, port=cluster_port())
                self.nodes.append(node)
                node.start()
            self._join()
        except BaseException:
            self.close()
            raise
        return self

    def _join(self) -> None:
        first = self.nodes[0]
        for node in self.nodes[1:]:
            self.call(node, 'CLUSTER', 'MEET', first.host, first.port)
        masters = self.nodes[: self._masters]
        share = SLOTS // len(masters)
        for index, node in enumerate(masters):
            low = index * share
            high = SLOTS - 1 if index == len(masters) - 1 else low + share - 1
            # ADDSLOTS (not ADDSLOTSRANGE, which Redis 6.2 lacks), in batches.
            for start in range(low, high + 1, 1000):
                self.call(node, 'CLUSTER', 'ADDSLOTS', *range(start, min(start + 1000, high + 1)))
        ids = {node.port: self.call(node, 'CLUSTER', 'MYID').decode() for node in self.nodes}
        # Every node must know every other before a replica can name its master.
        wait_for(lambda: all(self._known(node) == len(self.nodes) for node in self.nodes), 20, 'the nodes meeting')
        for index, node in enumerate(self.nodes[self._masters :]):
            master = masters[index % len(masters)]
            self.call(node, 'CLUSTER', 'REPLICATE', ids[master.port])
        self.wait_healthy()

    def _known(self, node: RedisServer) -> int:
        return len(self.call(node, 'CLUSTER', 'NODES').decode().strip().splitlines())

    def info(self, node: RedisServer) -> dict[str, str]:
        text = self.call(node, 'CLUSTER', 'INFO').decode()
        return dict(line.split(':', 1) for line in text.split() if ':' in line)

    def wait_healthy(self, timeout: float = 30) -> None:
        """Until every running node sees the cluster whole, and every
        replica's link to its master is up."""

        def healthy() -> bool:
            for node in self.running():
                if self.info(node).get('cluster_state') != 'ok':
                    return False
                with self.client(node) as client:
                    replication = client.info('replication')
                if replication['role'] == 'slave' and replication.get('master_link_status') != 'up':
                    return False
            return True

        wait_for(healthy, timeout, 'the cluster becoming healthy')

    def running(self) -> list[RedisServer]:
        return [node for node in self.nodes if node._executor is not None and node._executor.running()]

    def role(self, node: RedisServer) -> str:
        with self.client(node) as client:
            role: str = client.info('replication')['role']
        return role

    def masters(self) -> list[RedisServer]:
        return [node for node in self.running() if self.role(node) == 'master']

    def owner(self, key: str) -> RedisServer:
        """The master that serves ``key``'s slot, as a running node sees it."""
        node = self.running()[0]
        slot = self.call(node, 'CLUSTER', 'KEYSLOT', key)
        for low, high, master, *_ in self.call(node, 'CLUSTER', 'SLOTS'):
            if low <= slot <= high:
                return next(each for each in self.nodes if each.port == int(master[1]))
        raise AssertionError(f'no master serves slot {slot}')

    def node_id(self, node: RedisServer) -> str:
        return str(self.call(node, 'CLUSTER', 'MYID').decode())

    def replica_of(self, master: RedisServer) -> RedisServer:
        master_id = self.node_id(master)
        for node in self.running():
            for line in self.call(node, 'CLUSTER', 'NODES').decode().splitlines():
                fields = line.split()
                if 'myself' in fields[2] and 'slave' in fields[2] and fields[3] == master_id:
                    return node
        raise AssertionError(f'no replica of {master.port}')

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(node.host, node.port) for node in self.nodes]

    def close(self) -> None:
        for node in self.nodes:
            try:
                node.kill()
            finally:
                node.close()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
