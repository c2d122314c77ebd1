"""enqueue: what it writes, its bulk form, and the inputs it refuses."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable

import pytest
import redis.asyncio
from helpers import raw, score, server_now, state_hash, text

from torrelque import (
    Torrelque,
    TorrelqueSerialiserError,
    TorrelqueTaskSerialiser,
    TorrelqueTaskStatus,
    TorrelqueValueError,
)
from torrelque._codec import MAX_SECONDS
from torrelque.server import RedisServer


async def test_enqueue_writes_the_documented_keys(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    before = await server_now(client)
    task_id = await queue.enqueue({'n': 1}, task_timeout=12.5)

    assert isinstance(task_id, str)
    state = await raw(client, queue)
    assert state.pending == [task_id]
    assert state.tasks == {task_id}
    assert state.stats == {'enqueued': 1}
    assert text(await client.hget(queue.keys['tasks'], task_id)) == '{"n":1}'
    fields = await state_hash(client, queue, task_id)
    assert fields['status'] == '0'
    assert float(fields['timeout']) == 12.5
    # Times are integer microseconds since the epoch, by the server's clock.
    assert before <= int(fields['enqueued']) / 1e6 <= before + 5


async def test_fields_at_their_default_are_not_stored(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    task_id = await queue.enqueue('x')
    assert sorted(await state_hash(client, queue, task_id)) == ['enqueued', 'status']
    task = await queue.get_task_state(task_id)
    assert (task.timeout, task.dequeue_count, task.requeue_count) == (300, 0, 0)
    # Dequeued with the standard timeout all the same.
    now = await server_now(client)
    await queue.dequeue(timeout=1)
    assert now + 299 <= await score(client, queue.keys['working'], task_id) <= now + 302


async def test_enqueue_returns_unique_ids(queue: Torrelque) -> None:
    ids = [await queue.enqueue(i) for i in range(50)]
    assert len(set(ids)) == 50


async def test_default_timeout_is_the_class_attribute(queue: Torrelque) -> None:
    task_id = await queue.enqueue('x')
    assert (await queue.get_task_state(task_id)).timeout == 300
    queue.task_timeout = 7
    assert (await queue.get_task_state(await queue.enqueue('y'))).timeout == 7


async def test_delayed_enqueue_goes_to_the_delayed_set(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    now = await server_now(client)
    task_id = await queue.enqueue('later', delay=60)
    state = await raw(client, queue)
    assert state.delayed == [task_id] and state.pending == []
    due = await score(client, queue.keys['delayed'], task_id)
    assert now + 59 <= due <= now + 62
    assert (await queue.get_task_state(task_id)).status is TorrelqueTaskStatus.DELAYED
    assert state.stats == {'enqueued': 1, 'delayed': 1}


async def test_zero_delay_means_pending(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    task_id = await queue.enqueue('now', delay=0)
    assert (await raw(client, queue)).pending == [task_id]


async def test_pipeline_enqueue_is_executed_by_the_caller(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    async with client.pipeline(transaction=True) as pipe:
        ids = [await queue.enqueue(i, pipeline=pipe) for i in range(100)]
        assert (await raw(client, queue)).pending == []  # nothing before execute()
        results = await pipe.execute()
    assert results == [[1] * 100]  # consecutive enqueues share one script call
    assert (await raw(client, queue)).pending == ids
    assert [await queue.dequeue(timeout=1) for _ in range(3)] == [(ids[0], 0), (ids[1], 1), (ids[2], 2)]


async def test_pipeline_without_transaction_works_too(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    async with client.pipeline(transaction=False) as pipe:
        ids = [await queue.enqueue(i, pipeline=pipe) for i in range(10)]
        await pipe.execute()
    assert (await raw(client, queue)).pending == ids


@pytest.mark.parametrize(
    ('kwargs', 'message'),
    [
        ({'delay': -1}, 'delay'),
        ({'delay': math.nan}, 'delay'),
        ({'delay': math.inf}, 'delay'),
        ({'delay': '5'}, 'delay'),
        ({'task_timeout': 0}, 'task_timeout'),
        ({'task_timeout': -3}, 'task_timeout'),
        ({'task_timeout': True}, 'task_timeout'),
        # Beyond 100 years a time would overflow what Redis stores exactly.
        ({'task_timeout': MAX_SECONDS * 1.01}, '100 years'),
        ({'delay': MAX_SECONDS + 1}, '100 years'),
        ({'delay': 1e300}, '100 years'),
        ({'pipeline': object()}, 'pipeline'),
    ],
)
async def test_bad_arguments_write_nothing(
    client: redis.asyncio.Redis, queue: Torrelque, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(TorrelqueValueError, match=message):
        await queue.enqueue('x', **kwargs)  # type: ignore[arg-type]
    assert await client.keys(f'{{{queue.name}}}*') == []


async def test_the_longest_times_are_stored_exactly(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    now = await server_now(client)
    task_id = await queue.enqueue('far', delay=MAX_SECONDS, task_timeout=MAX_SECONDS)
    due = await client.zscore(queue.keys['delayed'], task_id)
    assert due == int(due) and now + MAX_SECONDS - 1 < due / 1e6 < now + MAX_SECONDS + 2
    queue.clock_offset = MAX_SECONDS
    await queue.sweep()
    task_id, _ = await queue.dequeue(timeout=1)
    assert await client.zscore(queue.keys['working'], task_id) > due
    assert await queue.release(task_id, result='kept', result_ttl=MAX_SECONDS) is True


async def test_unserialisable_payload_is_refused_before_writing(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    with pytest.raises(TorrelqueSerialiserError, match='cannot encode the task') as info:
        await queue.enqueue({'when': object()})
    assert isinstance(info.value.__cause__, TypeError)
    assert await client.keys(f'{{{queue.name}}}*') == []


async def test_default_serialiser_round_trips_json_values(queue: Torrelque) -> None:
    payloads = [None, 0, -1.5, 'ünïcode ✓', [1, 'a', None], {'a': {'b': [True, False]}}, 2**70, {1: 'int key'}]
    for payload in payloads:
        await queue.enqueue(payload)
    got = [(await queue.dequeue(timeout=1))[1] for _ in payloads]
    expected = [*payloads[:-1], {'1': 'int key'}]  # JSON object keys are strings
    assert got == expected


async def test_custom_serialiser(make_queue: Callable[..., Torrelque], decode_responses: bool) -> None:
    if decode_responses:
        pytest.skip('pickle output is binary: it needs decode_responses=False')
    queue = make_queue(serialiser=TorrelqueTaskSerialiser(pickle.dumps, pickle.loads))
    payload = {'set': {1, 2}, 'bytes': b'\x00\xff', 'tuple': (1, 2)}
    task_id = await queue.enqueue(payload)
    assert await queue.dequeue(timeout=1) == (task_id, payload)


async def test_binary_payload_with_a_decoding_client_is_refused(
    make_client: Callable[..., redis.asyncio.Redis], queue_name: str
) -> None:
    client = make_client(decode_responses=True)
    queue = Torrelque(client, queue=queue_name, serialiser=TorrelqueTaskSerialiser(pickle.dumps, pickle.loads))
    with pytest.raises(TorrelqueSerialiserError, match='decode_responses=False'):
        await queue.enqueue(b'\xff')
    assert await client.keys(f'{{{queue_name}}}*') == []


async def test_serialiser_that_returns_text_is_accepted(make_queue: Callable[..., Torrelque]) -> None:
    queue = make_queue(serialiser=TorrelqueTaskSerialiser(str, lambda data: data.decode()))
    task_id = await queue.enqueue(42)
    assert await queue.dequeue(timeout=1) == (task_id, '42')


async def test_serialiser_that_returns_a_wrong_type_is_refused(
    client: redis.asyncio.Redis, make_queue: Callable[..., Torrelque]
) -> None:
    queue = make_queue(serialiser=TorrelqueTaskSerialiser(lambda obj: 42, lambda data: data))
    with pytest.raises(TorrelqueSerialiserError, match='must return bytes'):
        await queue.enqueue('x')
    assert await client.keys(f'{{{queue.name}}}*') == []


@pytest.mark.parametrize(
    'payload',
    [math.nan, {'a': [1.0, math.inf]}, [-math.inf], {'deep': ({'x': math.nan},)}, [2**70, math.nan]],
    ids=['nan', 'inf in a list', 'minus inf', 'nested', 'with an integer orjson refuses'],
)
async def test_the_default_serialiser_refuses_non_finite_floats(
    client: redis.asyncio.Redis, queue: Torrelque, payload: object
) -> None:
    """JSON has no NaN nor infinity; writing them as null would change the task."""
    with pytest.raises(TorrelqueSerialiserError, match=r'(?i)nan|inf|json'):
        await queue.enqueue(payload)
    assert await client.keys(f'{{{queue.name}}}*') == []
    assert await queue.enqueue({'fine': None, 'also': [None, 1.5]})


async def test_a_payload_larger_than_the_server_takes_is_refused_before_it_is_sent(
    make_server: Callable[..., RedisServer], make_client: Callable[..., redis.asyncio.Redis]
) -> None:
    """A server configured for values of at most 1 MB drops the connection of
    a larger one; with max_value_bytes set to match, the queue says so first."""
    server = make_server(config={'proto-max-bulk-len': '1mb'})
    queue = Torrelque(make_client(server.url), queue='big')
    queue.max_value_bytes = 1024 * 1024
    with pytest.raises(TorrelqueValueError, match=r'serialises to 2,000,002 bytes, more than the 1,048,576'):
        await queue.enqueue('x' * 2_000_000)
    assert (await queue.get_queue_stats()).tasks == 0
    task_id = await queue.enqueue('small')
    got, _ = await queue.dequeue(timeout=1)
    with pytest.raises(TorrelqueValueError, match='result serialises'):
        await queue.release(got, result='y' * 2_000_000)
    assert await queue.release(got, result='small') is True
    assert Torrelque.max_value_bytes == 512 * 1024 * 1024  # the server's default
    assert got == task_id
