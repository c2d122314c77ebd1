"""The public surface matches the Torrelque API that code is written against."""

from __future__ import annotations

import inspect
from importlib.resources import files

import pytest
import redis.asyncio

import torrelque
from torrelque import (
    Torrelque,
    TorrelqueError,
    TorrelqueLookupError,
    TorrelqueQueueStats,
    TorrelqueSerialiserError,
    TorrelqueTaskSerialiser,
    TorrelqueTaskState,
    TorrelqueTaskStatus,
    TorrelqueTimeoutError,
    TorrelqueValueError,
)
from torrelque._scripts import SCRIPT_NAMES


def test_public_names_are_exported() -> None:
    for name in (
        'Torrelque',
        'TorrelqueQueueStats',
        'TorrelqueTaskStatus',
        'TorrelqueTaskState',
        'TorrelqueError',
        'TorrelqueTimeoutError',
        'TorrelqueLookupError',
        'TorrelqueTaskSerialiser',
    ):
        assert name in torrelque.__all__
        assert getattr(torrelque, name) is not None
    assert isinstance(torrelque.__version__, str)


def test_status_values_and_finality() -> None:
    assert [(s.name, s.value) for s in TorrelqueTaskStatus] == [
        ('PENDING', 0),
        ('WORKING', 1),
        ('DELAYED', 2),
        ('COMPLETED', 3),
        ('REJECTED', 4),
        ('CANCELLED', 5),  # added: 0.9 has the first five
    ]
    assert [s for s in TorrelqueTaskStatus if s.isfinal()] == [
        TorrelqueTaskStatus.COMPLETED,
        TorrelqueTaskStatus.REJECTED,
        TorrelqueTaskStatus.CANCELLED,
    ]


def test_named_tuples_have_the_compatible_fields() -> None:
    assert TorrelqueQueueStats._fields == ('tasks', 'pending', 'working', 'delayed')
    assert TorrelqueTaskState._fields == (
        'status',
        'timeout',
        'result',
        'dequeue_count',
        'requeue_count',
        'enqueue_time',
        'last_dequeue_time',
        'last_requeue_time',
        'release_time',
    )
    assert TorrelqueTaskSerialiser._fields == ('dumps', 'loads')


def test_exception_hierarchy() -> None:
    for cls in (TorrelqueTimeoutError, TorrelqueLookupError, TorrelqueValueError, TorrelqueSerialiserError):
        assert issubclass(cls, TorrelqueError)
    assert issubclass(TorrelqueValueError, ValueError)


def test_defaults_and_signatures() -> None:
    """0.9's parameters, in 0.9's order; additions are keyword-only and come last."""
    assert (Torrelque.task_timeout, Torrelque.sweep_interval, Torrelque.result_ttl) == (300, 30, 3600)
    added = {
        'enqueue': ['max_attempts', 'task_id', 'unique_for', 'replace'],
        'requeue': ['lease'],
        'release': ['lease'],
    }
    params = {
        'enqueue': ['self', 'task', 'task_timeout', 'delay', 'pipeline'],
        'dequeue': ['self', 'timeout', 'max_tasks'],
        'requeue': ['self', 'task_id', 'delay', 'task_timeout', 'pipeline'],
        'release': ['self', 'task_id', 'result', 'result_ttl', 'status', 'pipeline'],
        'watch': ['self', 'task_id', 'timeout'],
        'schedule_sweep': ['self', 'interval'],
    }
    for method, names in params.items():
        signature = inspect.signature(getattr(Torrelque, method)).parameters
        assert list(signature) == names + added.get(method, [])
        assert all(signature[name].kind is inspect.Parameter.KEYWORD_ONLY for name in added.get(method, []))
    release = inspect.signature(Torrelque.release).parameters
    assert release['status'].default is TorrelqueTaskStatus.COMPLETED


def test_keys_are_hash_tagged_per_queue(client: redis.asyncio.Redis) -> None:
    queue = Torrelque(client, queue='orders')
    roles = ('pending', 'dequeueing', 'undequeued', 'working', 'delayed', 'tasks', 'task', 'lease', 'gone', 'ready')
    for role in (*roles, 'stats', 'events', 'wake'):
        assert queue.keys[role] == f'{{orders}}:{role}'
    assert Torrelque(client).keys['pending'] == '{trq}:pending'
    # The class keeps the bare names; only instances are prefixed.
    assert Torrelque.keys['pending'] == 'pending'


def test_every_lua_file_is_registered(client: redis.asyncio.Redis) -> None:
    on_disk = {p.name[:-4] for p in (files('torrelque') / 'lua').iterdir() if p.name.endswith('.lua')}
    assert on_disk - {'_lib'} == set(SCRIPT_NAMES)
    scripts = Torrelque(client)._scripts._scripts
    assert set(scripts) == set(SCRIPT_NAMES)
    for name, script in scripts.items():
        assert (files('torrelque') / 'lua' / f'{name}.lua').read_text() in script.script


@pytest.mark.parametrize('bad', [None, object(), 'redis://localhost', redis])
def test_a_client_that_is_not_redis_is_refused(bad: object) -> None:
    with pytest.raises(TorrelqueError, match=r'redis\.asyncio\.Redis'):
        Torrelque(bad)  # type: ignore[arg-type]


def test_valkeys_client_and_synchronous_clients_are_refused_saying_what_to_use() -> None:
    import valkey
    import valkey.asyncio

    with pytest.raises(TorrelqueValueError, match=r"valkey package\) is not supported: pass redis-py's redis\.asyncio"):
        Torrelque(valkey.asyncio.Valkey())  # type: ignore[arg-type]
    for synchronous in (redis.Redis(), valkey.Valkey()):
        with pytest.raises(TorrelqueValueError, match=r'redis\.asyncio'):
            Torrelque(synchronous)  # type: ignore[arg-type]
    with pytest.raises(TorrelqueValueError, match='is synchronous'):
        Torrelque(redis.Redis())  # type: ignore[arg-type]


@pytest.mark.parametrize('name', ['', 'a{b', 'a}b', 7])
def test_a_bad_queue_name_is_refused(client: redis.asyncio.Redis, name: object) -> None:
    with pytest.raises(TorrelqueValueError, match='queue name'):
        Torrelque(client, queue=name)  # type: ignore[arg-type]


def test_a_serialiser_without_dumps_and_loads_is_refused(client: redis.asyncio.Redis) -> None:
    with pytest.raises(TorrelqueValueError, match='dumps and loads'):
        Torrelque(client, serialiser=object())  # type: ignore[arg-type]
