"""dequeue: order, waiting in Redis, batches, bad inputs, bad stored data."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
import redis.asyncio
import redis.exceptions
from helpers import raw, score, server_now, state_hash

from torrelque import (
    Torrelque,
    TorrelqueTaskSerialiser,
    TorrelqueTaskStatus,
    TorrelqueTimeoutError,
    TorrelqueValueError,
    json_serialiser,
)
from torrelque.server import RedisServer


async def test_tasks_come_out_in_fifo_order(queue: Torrelque) -> None:
    ids = [await queue.enqueue(i) for i in range(10)]
    assert [await queue.dequeue(timeout=1) for _ in ids] == list(zip(ids, range(10), strict=True))


async def test_dequeue_moves_the_task_to_working(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    task_id = await queue.enqueue('job', task_timeout=40)
    now = await server_now(client)
    assert await queue.dequeue(timeout=1) == (task_id, 'job')

    state = await raw(client, queue)
    assert (state.pending, state.dequeueing, state.working) == ([], [], [task_id])
    deadline = await score(client, queue.keys['working'], task_id)
    assert now + 39 <= deadline <= now + 42
    task = await queue.get_task_state(task_id)
    assert task.status is TorrelqueTaskStatus.WORKING
    assert task.dequeue_count == 1
    assert task.last_dequeue_time is not None and task.last_dequeue_time >= task.enqueue_time
    assert state.stats == {'enqueued': 1, 'dequeued': 1}


async def test_timeout_raises_when_nothing_comes(queue: Torrelque) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TorrelqueTimeoutError):
        await queue.dequeue(timeout=0.25)
    assert 0.2 <= loop.time() - start < 2


async def test_waiting_dequeue_gets_a_task_enqueued_later(make_queue: Callable[..., Torrelque]) -> None:
    consumer, producer = make_queue(), make_queue()
    waiting = asyncio.create_task(consumer.dequeue())  # no timeout: waits for ever
    await asyncio.sleep(0.2)
    assert not waiting.done()
    task_id = await producer.enqueue('wake up')
    assert await asyncio.wait_for(waiting, 5) == (task_id, 'wake up')


async def test_waiting_dequeue_with_fractional_timeout(make_queue: Callable[..., Torrelque]) -> None:
    consumer, producer = make_queue(), make_queue()
    waiting = asyncio.create_task(consumer.dequeue(timeout=2.5))
    await asyncio.sleep(0.1)
    task_id = await producer.enqueue(1)
    assert await waiting == (task_id, 1)


async def test_max_tasks_returns_a_list_of_what_is_ready(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    ids = [await queue.enqueue(i) for i in range(5)]
    first = await queue.dequeue(timeout=1, max_tasks=3)
    assert first == [(ids[0], 0), (ids[1], 1), (ids[2], 2)]
    rest = await queue.dequeue(timeout=1, max_tasks=10)
    assert rest == [(ids[3], 3), (ids[4], 4)]
    assert sorted((await raw(client, queue)).working) == sorted(ids)


async def test_max_tasks_waits_for_one_then_takes_what_is_ready(make_queue: Callable[..., Torrelque]) -> None:
    consumer, producer = make_queue(), make_queue()
    waiting = asyncio.create_task(consumer.dequeue(timeout=5, max_tasks=10))
    await asyncio.sleep(0.1)
    task_id = await producer.enqueue('only one')
    assert await waiting == [(task_id, 'only one')]


async def test_max_tasks_beyond_one_script_call(queue: Torrelque, client: redis.asyncio.Redis) -> None:
    async with client.pipeline() as pipe:
        ids = [await queue.enqueue(i, pipeline=pipe) for i in range(2500)]
        await pipe.execute()
    got = await queue.dequeue(timeout=1, max_tasks=2400)
    assert [task_id for task_id, _ in got] == ids[:2400]


async def test_max_tasks_one_returns_a_pair(queue: Torrelque) -> None:
    task_id = await queue.enqueue('x')
    assert await queue.dequeue(timeout=1, max_tasks=1) == (task_id, 'x')


@pytest.mark.parametrize(
    ('kwargs', 'message'),
    [
        ({'timeout': 0}, 'timeout'),
        ({'timeout': -1}, 'timeout'),
        ({'timeout': 'soon'}, 'timeout'),
        ({'max_tasks': 0}, 'max_tasks'),
        ({'max_tasks': -2}, 'max_tasks'),
        ({'max_tasks': 2.5}, 'max_tasks'),
    ],
)
async def test_bad_arguments_are_refused(
    client: redis.asyncio.Redis, queue: Torrelque, kwargs: dict[str, object], message: str
) -> None:
    task_id = await queue.enqueue('kept')
    with pytest.raises(TorrelqueValueError, match=message):
        await queue.dequeue(**kwargs)  # type: ignore[arg-type]
    assert (await raw(client, queue)).pending == [task_id]


async def test_undecodable_payload_is_rejected_and_kept(
    client: redis.asyncio.Redis, make_queue: Callable[..., Torrelque], caplog: pytest.LogCaptureFixture
) -> None:
    producer = make_queue()
    consumer = make_queue(serialiser=TorrelqueTaskSerialiser(json_serialiser.dumps, lambda data: 1 / 0))
    bad = await producer.enqueue({'this': 'cannot be read by the consumer'})

    with caplog.at_level(logging.ERROR, logger='torrelque'), pytest.raises(TorrelqueTimeoutError):
        await consumer.dequeue(timeout=0.2)
    assert bad in caplog.text

    state = await raw(client, producer)
    assert bad not in state.pending + state.working + state.dequeueing
    assert state.tasks == set()
    fields = await state_hash(client, producer, bad)
    assert fields['payload'] == '{"this":"cannot be read by the consumer"}'
    assert await client.ttl(f'{producer.keys["task"]}:{bad}') == -1  # kept until an operator acts
    task = await producer.get_task_state(bad)
    assert task.status is TorrelqueTaskStatus.REJECTED
    assert task.result['error'] == 'undecodable payload'
    assert 'division by zero' in task.result['detail']
    assert state.stats['undecodable'] == 1


async def test_undecodable_payload_does_not_hide_the_good_ones(
    make_queue: Callable[..., Torrelque],
) -> None:
    producer = make_queue()
    consumer = make_queue(
        serialiser=TorrelqueTaskSerialiser(json_serialiser.dumps, lambda data: json_serialiser.loads(data) // 1)
    )
    await producer.enqueue('not a number')
    good = await producer.enqueue(7)
    assert await consumer.dequeue(timeout=1, max_tasks=5) == [(good, 7)]
    await producer.enqueue('not a number')
    good = await producer.enqueue(8)
    assert await consumer.dequeue(timeout=1) == (good, 8)


async def test_a_failed_quarantine_does_not_strand_the_other_tasks(
    client: redis.asyncio.Redis,
    make_queue: Callable[..., Torrelque],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis fails while one undecodable task of a batch is being rejected:
    the others are delivered, and the bad one stays working (the sweep
    brings it back when stale, and it is rejected then)."""
    producer = make_queue()
    consumer = make_queue(
        serialiser=TorrelqueTaskSerialiser(json_serialiser.dumps, lambda data: json_serialiser.loads(data) // 1)
    )
    first = await producer.enqueue(1)
    bad = await producer.enqueue('not a number', task_timeout=10)
    last = await producer.enqueue(3)

    async def fails(*args: object) -> int:
        raise redis.exceptions.ConnectionError('Connection reset by peer')

    monkeypatch.setattr(consumer._scripts, 'quarantine', fails)
    assert await consumer.dequeue(timeout=1, max_tasks=3) == [(first, 1), (last, 3)]
    assert f'Cannot reject task {bad}' in caplog.text
    assert sorted((await raw(client, consumer)).working) == sorted([first, bad, last])
    monkeypatch.undo()
    consumer.clock_offset = 11
    await consumer.sweep()
    with pytest.raises(TorrelqueTimeoutError):
        await consumer.dequeue(timeout=0.1)
    assert (await producer.get_task_state(bad)).status == TorrelqueTaskStatus.REJECTED


async def test_id_without_payload_is_dropped_with_a_warning(
    client: redis.asyncio.Redis, queue: Torrelque, caplog: pytest.LogCaptureFixture
) -> None:
    await client.lpush(queue.keys['pending'], 'ghost')
    task_id = await queue.enqueue('real')
    with caplog.at_level(logging.WARNING, logger='torrelque'):
        assert await queue.dequeue(timeout=1) == (task_id, 'real')
    assert 'ghost' in caplog.text
    assert (await raw(client, queue)).pending == []


async def test_cancelled_waiting_dequeue_loses_nothing(
    client: redis.asyncio.Redis, make_queue: Callable[..., Torrelque]
) -> None:
    consumer, producer = make_queue(), make_queue()
    waiting = asyncio.create_task(consumer.dequeue())
    await asyncio.sleep(0.1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    task_id = await producer.enqueue('after the cancel')
    # Either still pending, or caught by the dying blocking pop: then the sweep returns it.
    await producer.sweep()
    await producer.sweep()
    assert await producer.dequeue(timeout=1) == (task_id, 'after the cancel')


async def test_a_dequeue_cancelled_at_any_moment_ends(
    make_client: Callable[..., redis.asyncio.Redis], queue_name: str
) -> None:
    """Wherever the cancellation lands (connecting, writing a command,
    blocked), the dequeue ends within one wait: Python 3.11's
    ``asyncio.wait_for``, which redis-py awaits for each write when a
    socket timeout is set, swallows a cancellation that comes as the write
    ends."""
    steps = 0
    for attempt in range(48):
        client = make_client(socket_timeout=2)  # the block interval: 1 s
        consumer = Torrelque(client, queue=queue_name)
        waiting = asyncio.create_task(consumer.dequeue())
        for _ in range(steps):
            await asyncio.sleep(0)
        steps = (steps + 1) % 12
        waiting.cancel()
        done, _ = await asyncio.wait([waiting], timeout=3)
        assert done, f'attempt {attempt}: the cancelled dequeue still runs'
        assert waiting.cancelled()


async def test_client_with_a_socket_timeout_still_waits(
    make_client: Callable[..., redis.asyncio.Redis], queue_name: str
) -> None:
    client = make_client(socket_timeout=0.3)
    consumer = Torrelque(client, queue=queue_name)
    waiting = asyncio.create_task(consumer.dequeue(timeout=2))
    await asyncio.sleep(0.8)  # past the socket timeout
    task_id = await Torrelque(client, queue=queue_name).enqueue('late')
    assert await waiting == (task_id, 'late')


async def test_undecodable_payload_is_kept_even_when_the_error_cannot_be_encoded(
    client: redis.asyncio.Redis, make_queue: Callable[..., Torrelque]
) -> None:
    def bytes_only(obj: object) -> bytes:
        if not isinstance(obj, bytes):
            raise TypeError('bytes only')
        return obj

    def refuse(data: bytes) -> object:
        raise ValueError('unreadable')

    queue = make_queue(serialiser=TorrelqueTaskSerialiser(bytes_only, refuse))
    task_id = await queue.enqueue(b'opaque')
    with pytest.raises(TorrelqueTimeoutError):
        await queue.dequeue(timeout=0.1)
    task = await queue.get_task_state(task_id)
    assert (task.status, task.result) == (TorrelqueTaskStatus.REJECTED, None)
    assert (await state_hash(client, queue, task_id))['payload'] == 'opaque'


async def test_a_waiting_dequeue_is_one_blocking_command(
    make_server: Callable[..., RedisServer], make_client: Callable[..., redis.asyncio.Redis]
) -> None:
    """No polling: a waiting dequeue sits in one blocking command (for up to
    half the client's read timeout, 5 s by default in recent redis-py)."""
    server = make_server()
    admin = make_client(server.url)
    queue = Torrelque(make_client(server.url), queue='patient')
    await admin.config_resetstat()
    waiting = asyncio.create_task(queue.dequeue())
    try:
        await asyncio.sleep(2)
        # Redis counts a blocking command in its statistics when it starts,
        # Valkey only once it returns: ask who is blocked, in what.
        assert (await admin.info('clients'))['blocked_clients'] == 1
        (blocked,) = [c for c in await admin.client_list() if 'b' in c['flags']]
        assert blocked['cmd'] == 'blpop'
        before = await admin.info('commandstats')
        assert before.get('cmdstat_blpop', {'calls': 0})['calls'] <= 1
        assert not waiting.done()
        task_id = await queue.enqueue('at last')
        assert await asyncio.wait_for(waiting, 5) == (task_id, 'at last')
        after = await admin.info('commandstats')
        assert after['cmdstat_blpop']['calls'] == 1
    finally:
        waiting.cancel()
        await queue.aclose()
