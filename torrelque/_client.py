"""The clients a queue runs on, and what the queue needs to know of each.

Two kinds: redis-py's ``redis.asyncio.Redis`` (one server, or the master
that a ``redis.asyncio.sentinel.Sentinel`` finds) and
``redis.asyncio.RedisCluster``. On a cluster every key of a queue is in its
hash tag's slot, so each script runs on the one master that owns it, and
events go by sharded pub/sub on that master: classic pub/sub would reach
every node, and ``PUBSUB NUMSUB`` (which the scripts ask to skip events
nobody hears) counts one node's subscribers only.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio
import redis.asyncio.cluster
import redis.exceptions
from redis.asyncio.connection import AbstractConnection

from ._errors import TorrelqueValueError

#: What a queue accepts as its client.
Client = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster


def check(client: object) -> Client:
    """The client, if a queue can run on it; else a clear error."""
    if isinstance(client, (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)):
        return client
    kind = type(client)
    name = f'{kind.__module__}.{kind.__qualname__}'
    if kind.__module__.split('.')[0] == 'valkey':
        raise TorrelqueValueError(
            f"{name} (the valkey package) is not supported: pass redis-py's redis.asyncio.Redis "
            '(or RedisCluster), which works with Valkey servers alike'
        )
    if isinstance(client, redis.Redis) or kind.__module__.startswith('redis.cluster'):
        raise TorrelqueValueError(f'{name} is synchronous: pass its asyncio twin from redis.asyncio')
    raise TorrelqueValueError(
        f'a redis.asyncio.Redis or redis.asyncio.RedisCluster client is needed, not {kind.__name__}'
    )


def cancels() -> int:
    """How many cancellations the current task has been asked for."""
    task = asyncio.current_task()
    return 0 if task is None else task.cancelling()


def cancel_lost(since: int) -> bool:
    """Whether the current task was asked to cancel after it counted
    ``since`` and never saw the :class:`asyncio.CancelledError`: Python
    3.11's ``asyncio.wait_for``, which redis-py awaits for every write when
    a socket timeout is set (as it is by default), swallows a cancellation
    that comes as the write ends. A loop that goes back to Redis would
    then run on, deaf to it; it raises the cancellation instead."""
    return cancels() > since


def is_cluster(client: Client) -> bool:
    return isinstance(client, redis.asyncio.cluster.RedisCluster)


def settings(client: Client) -> dict[str, Any]:
    """The keyword arguments the client makes its connections with."""
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        return dict(client.connection_kwargs)
    return dict(client.connection_pool.connection_kwargs)


def socket_timeout(client: Client) -> float | None:
    """How long the client waits for a reply: its connections' setting
    (which defaults to 5 s in recent redis-py, even when not given)."""
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        timeout = client.connection_kwargs.get('socket_timeout')
        return None if timeout is None else float(timeout)
    pool = client.connection_pool
    made: float | None = pool.connection_class(**pool.connection_kwargs).socket_timeout
    return made


def _for_events(connection_class: type[AbstractConnection], kwargs: dict[str, Any]) -> AbstractConnection:
    """A connection made the client's way, but one that never decodes
    (messages carry results as the serialiser's raw bytes), speaks RESP2 and
    never times a read out (it waits for events)."""
    kwargs.update(decode_responses=False, socket_timeout=None, health_check_interval=0, protocol=2)
    kwargs['socket_connect_timeout'] = kwargs.get('socket_connect_timeout') or 10
    # redis-py 8 refuses its maintenance notifications on RESP2 without
    # hiredis; a subscriber has no use for them anyway.
    for name in ('maint_notifications_config', 'maint_notifications_pool_handler', 'himport_registry'):
        kwargs.pop(name, None)
    return connection_class(**kwargs)


async def event_connection(client: Client, key: str, refresh: bool) -> AbstractConnection:
    """A new connection for the events of the queue that owns ``key``: to
    the client's server, or on a cluster to the master that serves the
    key's slot, as the client's map of the cluster says (read anew when
    ``refresh``: the last connection failed, or the slot moved)."""
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        try:
            if refresh:
                await client.nodes_manager.initialize()
            else:
                await client.initialize()
        except redis.exceptions.RedisClusterException as exc:
            # No node answered with the map (redis-py's error for it is no
            # RedisError): a loss like any other, to try again.
            raise redis.exceptions.ConnectionError(f'cannot read the map of the cluster: {exc}') from exc
        node = client.get_node_from_key(key)
        if node is None:
            raise redis.exceptions.ConnectionError(f'no node of the cluster serves {key!r} now')
        return _for_events(node.connection_class, dict(node.connection_kwargs))
    # (A Sentinel's pool makes connections that find the master as they connect.)
    pool = client.connection_pool
    return _for_events(pool.connection_class, dict(pool.connection_kwargs))
