"""Leases: each dequeue opens an attempt; release, requeue and touch act on
the attempt they name, and a consumer that was too slow cannot end the next
consumer's attempt."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import redis.asyncio
from helpers import raw, score, server_now, state_hash

import torrelque._scripts
from torrelque import Torrelque, TorrelqueTaskId, TorrelqueValueError
from torrelque import TorrelqueTaskStatus as S


async def stale_then_redelivered(first: Torrelque, second: Torrelque) -> tuple[TorrelqueTaskId, TorrelqueTaskId]:
    """A task that ``first`` dequeued, that went stale, and that ``second``
    dequeued again: both attempts' ids."""
    await first.enqueue('slow work', task_timeout=10)
    late, _ = await first.dequeue(timeout=1)
    first.clock_offset = second.clock_offset = 11
    assert await first.sweep() == (1, 0, 0)
    current, _ = await second.dequeue(timeout=1)
    assert current == late and current.lease != late.lease
    return late, current


@pytest.mark.parametrize('instances', ['two instances', 'one instance'])
async def test_a_late_release_does_not_end_the_next_attempt(
    client: redis.asyncio.Redis,
    make_queue: Callable[..., Torrelque],
    caplog: pytest.LogCaptureFixture,
    instances: str,
) -> None:
    first = make_queue()
    second = make_queue() if instances == 'two instances' else first
    late, current = await stale_then_redelivered(first, second)
    before = await raw(client, first), await state_hash(client, first, current)

    with caplog.at_level(logging.WARNING, logger='torrelque'):
        assert await first.release(late, result='from the slow one') is False
    assert 'no longer owns it' in caplog.text and late in caplog.text
    assert (await raw(client, first), await state_hash(client, first, current)) == before

    assert await second.release(current, result='from the current one') is True
    state = await second.get_task_state(current)
    assert (state.status, state.result, state.dequeue_count) == (S.COMPLETED, 'from the current one', 2)


@pytest.mark.parametrize('operation', ['requeue', 'touch'])
async def test_a_late_requeue_or_touch_changes_nothing(
    client: redis.asyncio.Redis, make_queue: Callable[..., Torrelque], operation: str
) -> None:
    first, second = make_queue(), make_queue()
    late, current = await stale_then_redelivered(first, second)
    deadline = await score(client, first.keys['working'], current)
    before = await raw(client, first), await state_hash(client, first, current)

    assert await getattr(first, operation)(late) is False
    assert (await raw(client, first), await state_hash(client, first, current)) == before
    assert await score(client, first.keys['working'], current) == deadline
    assert await second.release(current) is True


async def test_a_swept_attempt_is_refused_before_anyone_dequeues_it_again(
    client: redis.asyncio.Redis, queue: Torrelque
) -> None:
    await queue.enqueue('slow', task_timeout=10)
    late, _ = await queue.dequeue(timeout=1)
    queue.clock_offset = 11
    await queue.sweep()
    for operation in (queue.release, queue.requeue, queue.touch):
        assert await operation(late) is False
    assert (await raw(client, queue)).pending == [late]


async def test_the_lease_hands_an_attempt_to_another_process(
    client: redis.asyncio.Redis, make_queue: Callable[..., Torrelque]
) -> None:
    consumer, elsewhere = make_queue(), make_queue()
    await consumer.enqueue('handed over')
    task_id, _ = await consumer.dequeue(timeout=1)
    plain, lease = str(task_id), task_id.lease
    assert type(plain) is str and (await state_hash(client, consumer, plain))['lease'] == lease

    assert await elsewhere.touch(plain, 60, lease=lease) is True
    assert await elsewhere.requeue(plain, lease='WrongLease12') is False
    assert await elsewhere.release(plain, result='done there', lease=lease.encode()) is True
    assert (await elsewhere.get_task_state(plain)).result == 'done there'


@pytest.mark.parametrize('lease', ['', 'has space', 'ünïcode', 7, b'semi;colon'])
async def test_a_malformed_lease_is_refused_before_anything_is_sent(queue: Torrelque, lease: object) -> None:
    await queue.enqueue('x')
    task_id, _ = await queue.dequeue(timeout=1)
    for operation in (queue.release, queue.requeue, queue.touch):
        with pytest.raises(TorrelqueValueError, match='lease'):
            await operation(task_id, lease=lease)
    assert await queue.release(task_id) is True


async def test_an_instance_remembers_the_attempts_it_opened(
    client: redis.asyncio.Redis, make_queue: Callable[..., Torrelque]
) -> None:
    """A plain id (no lease with it) from the instance that dequeued the
    task still names that attempt; from any other instance, it names
    whichever attempt is current, as 0.9 did."""
    first, second, bystander = make_queue(), make_queue(), make_queue()
    late, current = await stale_then_redelivered(first, second)
    assert await first.release(str(late)) is False
    assert await bystander.touch(str(current), 60) is True
    assert await second.release(str(current)) is True
    assert first._leases.get(late) is None and second._leases.get(current) is None


async def test_the_lease_book_holds_only_tasks_in_flight(queue: Torrelque) -> None:
    for n in range(6):
        await queue.enqueue(n, task_timeout=1)
    ids = [task_id for task_id, _ in await queue.dequeue(timeout=1, max_tasks=6)]
    await queue.release(ids[0])
    await queue.requeue(ids[1])
    await queue.release(ids[2], result='kept')
    assert [task_id for task_id in ids if queue._leases.get(task_id)] == ids[3:]
    # Long stale: the next dequeues drop their entries.
    for n in range(70):
        await queue.enqueue(n, task_timeout=300)
    book = queue._leases
    book._entries = {key: (lease, timeout, 0.0) for key, (lease, timeout, _) in book._entries.items()}
    await queue.dequeue(timeout=1, max_tasks=70)
    assert not any(book.get(task_id) for task_id in ids[3:])


async def test_touch_moves_the_deadline_from_the_server_clock(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    await queue.enqueue('long', task_timeout=5)
    task_id, _ = await queue.dequeue(timeout=1)
    queue.clock_offset = 4
    assert await queue.touch(task_id) is True  # the task's own timeout, from now
    now = await server_now(client) + 4
    assert now + 4.5 < await score(client, queue.keys['working'], task_id) <= now + 5.1
    assert await queue.touch(task_id, task_timeout=100) is True
    assert now + 99 < await score(client, queue.keys['working'], task_id) <= now + 100.1
    # The timeout was for this attempt only.
    assert (await queue.get_task_state(task_id)).timeout == 5
    queue.clock_offset = 50
    assert await queue.sweep() == (0, 0, 0)
    assert await queue.release(task_id) is True


async def test_touch_into_a_pipeline(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    for n in range(2):
        await queue.enqueue(n, task_timeout=5)
    (a, _), (b, _) = await queue.dequeue(timeout=1, max_tasks=2)
    async with client.pipeline(transaction=True) as pipe:
        assert await queue.touch(a, 60, pipeline=pipe) is None
        assert await queue.touch(b, pipeline=pipe) is None
        assert await queue.touch('unknown', pipeline=pipe) is None
        assert await pipe.execute() == [1, 1, 0]
    assert await score(client, queue.keys['working'], a) > await server_now(client) + 50


async def test_a_shorter_touch_wakes_the_scheduled_sweep(client: redis.asyncio.Redis, queue: Torrelque) -> None:
    await queue.enqueue('x', task_timeout=300)
    task_id, _ = await queue.dequeue(timeout=1)
    queue.schedule_sweep(60)
    assert await queue.touch(task_id, task_timeout=0.2) is True
    again, _ = await queue.dequeue(timeout=3)
    assert again == task_id and again.dequeue_count == 2


def same_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every release and requeue call gets the same token: what redis-py's
    retry does, when it sends a call again whose reply was lost."""
    monkeypatch.setattr(torrelque._scripts, 'new_token', lambda: b'SameCallToken')


@pytest.mark.parametrize('kept', [False, True], ids=['removed', 'kept'])
async def test_a_release_sent_again_is_done_not_refused(
    client: redis.asyncio.Redis, queue: Torrelque, monkeypatch: pytest.MonkeyPatch, kept: bool
) -> None:
    await queue.enqueue('x')
    task_id, _ = await queue.dequeue(timeout=1)
    same_call(monkeypatch)
    result = 'r' if kept else None
    assert await queue.release(task_id, result=result) is True
    before = await raw(client, queue), await state_hash(client, queue, task_id)
    assert await queue.release(task_id, result=result) is True
    assert (await raw(client, queue), await state_hash(client, queue, task_id)) == before
    assert before[0].stats['released'] == 1
    monkeypatch.undo()
    assert await queue.release(task_id, result=result) is False  # another call: released already


async def test_a_requeue_sent_again_is_done_not_refused(
    client: redis.asyncio.Redis, queue: Torrelque, monkeypatch: pytest.MonkeyPatch
) -> None:
    await queue.enqueue('x')
    task_id, _ = await queue.dequeue(timeout=1)
    same_call(monkeypatch)
    assert await queue.requeue(task_id, delay=30) is True
    before = await raw(client, queue), await state_hash(client, queue, task_id)
    assert await queue.requeue(task_id, delay=30) is True
    assert (await raw(client, queue), await state_hash(client, queue, task_id)) == before
    assert before[0].stats['requeued'] == 1
    monkeypatch.undo()
    assert await queue.requeue(task_id) is False


async def test_the_dequeued_id_is_a_str_that_carries_its_attempt(queue: Torrelque) -> None:
    import json
    import pickle

    task_id = await queue.enqueue('x')
    got, _ = await queue.dequeue(timeout=1)
    assert isinstance(got, TorrelqueTaskId) and isinstance(got, str)
    assert (got == task_id, hash(got) == hash(task_id), got.dequeue_count) == (True, True, 1)
    assert json.loads(json.dumps({'id': got})) == {'id': task_id}
    copy = pickle.loads(pickle.dumps(got))
    assert (copy, copy.lease, copy.dequeue_count) == (got, got.lease, 1)
    assert await queue.release(copy) is True
