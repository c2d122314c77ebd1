"""Lost replies, client retries and cancellation: a call whose reply never
arrives, that redis-py sends again, or whose caller is cancelled, neither
duplicates nor hides a task. Each test runs its client through a TCP proxy
that drops or holds the server's replies."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio
import redis.exceptions
from helpers import raw, state_hash, wait_until
from proxy import Proxy
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff, NoBackoff

from torrelque import Torrelque


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[Proxy]:
    server = urllib.parse.urlsplit(redis_url)
    async with Proxy(server.hostname or '127.0.0.1', server.port or 6379) as proxy:
        yield proxy


@pytest.fixture
def through(
    proxy: Proxy, make_client: Callable[..., redis.asyncio.Redis], make_queue: Callable[..., Torrelque]
) -> Callable[..., Torrelque]:
    """A queue (this test's) whose client goes through the proxy, retrying
    a failed call as redis-py does by default, or not at all."""

    def make(*, retry: bool, **kwargs: object) -> Torrelque:
        if retry:
            # redis-py 5 retries only the errors named in retry_on_error.
            kwargs.update(retry=Retry(ConstantBackoff(0.01), 3), retry_on_error=[redis.exceptions.ConnectionError])
        else:
            kwargs.update(retry=Retry(NoBackoff(), 0))
        return make_queue(on=make_client(proxy.url, **kwargs))

    return make


async def test_a_retried_enqueue_makes_one_task(
    client: redis.asyncio.Redis, proxy: Proxy, through: Callable[..., Torrelque]
) -> None:
    queue = through(retry=True)
    first = await queue.enqueue('warm-up')
    proxy.drop_replies(1)
    second = await queue.enqueue('once')
    assert proxy.dropped == 1
    state = await raw(client, queue)
    assert (state.pending, state.stats['enqueued']) == ([first, second], 2)


async def test_an_enqueue_whose_reply_is_lost_raises_and_made_its_task(
    client: redis.asyncio.Redis, proxy: Proxy, through: Callable[..., Torrelque]
) -> None:
    """Without retries the caller hears of the failure; the task is there
    (the script ran), which is why enqueuing again would make two."""
    queue = through(retry=False)
    await queue.enqueue('warm-up')
    proxy.drop_replies(1)
    with pytest.raises(redis.exceptions.ConnectionError):
        await queue.enqueue('made anyway')
    assert len((await raw(client, queue)).pending) == 2


async def warm_dequeue(queue: Torrelque) -> None:
    """Loads the dequeue script and opens the connection before a fault."""
    with pytest.raises(Exception, match='no task'):
        await queue.dequeue(timeout=0.01)


@pytest.mark.parametrize('max_tasks', [1, 3])
async def test_a_retried_dequeue_returns_the_same_tasks(
    client: redis.asyncio.Redis, proxy: Proxy, through: Callable[..., Torrelque], max_tasks: int
) -> None:
    queue = through(retry=True)
    await warm_dequeue(queue)
    ids = [await queue.enqueue(n) for n in range(4)]
    proxy.drop_replies(1)
    got = await queue.dequeue(timeout=1, max_tasks=max_tasks)
    pairs = got if isinstance(got, list) else [got]
    assert proxy.dropped == 1
    assert [task_id for task_id, _ in pairs] == ids[:max_tasks]
    state = await raw(client, queue)
    assert (state.pending, sorted(state.working)) == (ids[max_tasks:], sorted(ids[:max_tasks]))
    assert state.stats['dequeued'] == max_tasks
    for task_id, _ in pairs:
        assert task_id.dequeue_count == 1
        assert await queue.release(task_id) is True


async def wait_for_pending(client: redis.asyncio.Redis, queue: Torrelque, ids: list[str]) -> None:
    async def back() -> bool:
        return (await raw(client, queue)).pending == ids

    await wait_until(back, timeout=3)


async def test_a_dequeue_whose_reply_is_lost_gives_its_tasks_back(
    client: redis.asyncio.Redis, proxy: Proxy, through: Callable[..., Torrelque], make_queue: Callable[..., Torrelque]
) -> None:
    queue, other = through(retry=False), make_queue()
    await warm_dequeue(queue)
    ids = [await queue.enqueue(n) for n in range(3)]
    proxy.drop_replies(1)
    with pytest.raises(redis.exceptions.ConnectionError):
        await queue.dequeue(timeout=1, max_tasks=2)
    # Back at the head, in their order, as if never dequeued: at once, not after their timeout.
    await wait_for_pending(client, queue, ids)
    assert 'dequeues' not in await state_hash(client, queue, ids[0])
    assert (await raw(client, queue)).stats['returned'] == 2
    task_id, _ = await other.dequeue(timeout=1)
    assert (task_id, task_id.dequeue_count) == (ids[0], 1)


async def test_a_dequeue_cancelled_in_its_script_call_gives_its_task_back(
    client: redis.asyncio.Redis, proxy: Proxy, through: Callable[..., Torrelque], make_queue: Callable[..., Torrelque]
) -> None:
    queue, other = through(retry=True), make_queue()
    await warm_dequeue(queue)
    task_id = await queue.enqueue('taken, then given back')
    async with proxy.holding():
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await queue.dequeue()
        # The script ran: the task is working, its reply held on the way.
        assert (await raw(client, queue)).working == [task_id]
    await wait_for_pending(client, queue, [task_id])
    again, _ = await other.dequeue(timeout=1)
    assert (again, again.dequeue_count) == (task_id, 1)


@pytest.mark.parametrize('decode_responses', [False], ids=['bytes'])  # 8 s; the client's kind plays no part
async def test_aclose_stops_a_give_back_that_cannot_finish(
    client: redis.asyncio.Redis, proxy: Proxy, through: Callable[..., Torrelque], make_queue: Callable[..., Torrelque]
) -> None:
    """A give-back whose replies never come holds ``aclose`` up for its
    bound (6 s, then one last short try), not for ever, and nothing of the
    queue keeps running after it; the task is not lost."""
    queue = through(retry=False, socket_timeout=30)
    await warm_dequeue(queue)
    task_id = await queue.enqueue('given back late', task_timeout=1)
    loop = asyncio.get_running_loop()
    async with proxy.holding():
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await queue.dequeue()
        started = loop.time()
        await queue.aclose()
        assert loop.time() - started < 8.5
        left = [task.get_coro().__qualname__ for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        assert 'Torrelque._give_back_now' not in left
    # Working still, or given back had a script reached Redis before the
    # cut; the sweep returns it from working once its deadline passes.
    await asyncio.sleep(1)
    await make_queue().sweep()
    await wait_for_pending(client, queue, [task_id])


async def test_a_dequeue_cancelled_while_it_waits_leaves_the_wake_up_to_another(
    client: redis.asyncio.Redis, proxy: Proxy, through: Callable[..., Torrelque], make_queue: Callable[..., Torrelque]
) -> None:
    """The first consumer in line is cancelled just as Redis hands it the
    wake-up (its reply still on the way): the next consumer wakes, at once."""
    cancelled, other = through(retry=True), make_queue()
    await warm_dequeue(cancelled)
    first = asyncio.create_task(cancelled.dequeue())
    await asyncio.sleep(0.2)
    second = asyncio.create_task(other.dequeue(timeout=10))
    await asyncio.sleep(0.2)
    loop = asyncio.get_running_loop()
    async with proxy.holding():
        task_id = await other.enqueue('for whoever is awake')
        await asyncio.sleep(0.2)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        held_until = loop.time()
    assert await asyncio.wait_for(second, 2) == (task_id, 'for whoever is awake')
    assert loop.time() - held_until < 1  # not the other's next wait, nor a sweep


async def test_a_lost_wake_up_delays_a_task_by_one_wait_at_most(
    client: redis.asyncio.Redis, proxy: Proxy, through: Callable[..., Torrelque], make_queue: Callable[..., Torrelque]
) -> None:
    """redis-py's retry of a blocking wait whose reply was lost is invisible
    to the queue; the task stays pending, and the consumer finds it when
    that wait ends (half the client's socket timeout)."""
    queue = through(retry=True, socket_timeout=2)
    await warm_dequeue(queue)
    waiting = asyncio.create_task(queue.dequeue(timeout=10))
    await asyncio.sleep(0.2)
    proxy.drop_replies(1)
    task_id = await make_queue().enqueue('never hidden')
    await asyncio.sleep(0.2)
    assert proxy.dropped == 1 and (await raw(client, queue)).pending == [task_id]
    assert await asyncio.wait_for(waiting, 2) == (task_id, 'never hidden')


@pytest.mark.parametrize('operation', ['release', 'release with result', 'requeue', 'requeue with delay'])
async def test_a_retried_release_or_requeue_is_done(
    client: redis.asyncio.Redis, proxy: Proxy, through: Callable[..., Torrelque], operation: str
) -> None:
    queue = through(retry=True)
    await queue.enqueue('warm-up')
    await queue.enqueue('job')
    warm, _ = await queue.dequeue(timeout=1)
    task_id, _ = await queue.dequeue(timeout=1)
    call = {
        'release': lambda t: queue.release(t),
        'release with result': lambda t: queue.release(t, result='done'),
        'requeue': lambda t: queue.requeue(t),
        'requeue with delay': lambda t: queue.requeue(t, delay=30),
    }[operation]
    assert await call(warm) is True
    proxy.drop_replies(1)
    assert await call(task_id) is True
    assert proxy.dropped == 1
    stats = (await raw(client, queue)).stats
    counted = 'released' if operation.startswith('release') else 'requeued'
    assert stats[counted] == 2
