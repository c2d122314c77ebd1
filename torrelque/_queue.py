"""The queue: :class:`Torrelque`, the public facade over the scripts, the
events and the sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline

from . import _client, _codec
from ._errors import (
    TorrelqueDuplicateError,
    TorrelqueError,
    TorrelqueLookupError,
    TorrelqueSerialiserError,
    TorrelqueTimeoutError,
    TorrelqueValueError,
)
from ._events import PubSubHub, QueueWatch, TaskWatch, make_state
from ._scripts import BATCH, RETRY_WINDOW, STANDARD_TIMEOUT, Outcome, Scripts, Taken, accepted
from ._sweeper import Sweeper
from ._types import (
    TorrelqueDeadTask,
    TorrelqueQueueStats,
    TorrelqueTaskId,
    TorrelqueTaskSerialiser,
    TorrelqueTaskState,
    TorrelqueTaskStatus,
    TorrelqueWorkerInfo,
    json_serialiser,
)

logger = logging.getLogger('torrelque')

TaskId = str
TaskPair = tuple[TorrelqueTaskId, Any]

#: The counters of the ``{queue}:stats`` hash, all plain integers.
COUNTERS = (
    'enqueued',
    'dequeued',
    'returned',
    'requeued',
    'delayed',
    'released',
    'completed',
    'rejected',
    'dead',
    'revived',
    'cancelled',
    'aborted',
    'replaced',
    'swept_stale',
    'swept_delayed',
    'undecodable',
)

# The most sweep_batch_size may be: Lua's unpack() takes fewer than 8,000 values.
_MAX_SWEEP_BATCH = 5000
# The longest a blocking wait for the wake-up marker lasts before the
# dequeue looks at pending again (which finds a task whose marker was lost
# with a reply).
_MAX_BLOCK = 30.0

# A final status as the release script gets it.
_STATUS_ARGS = {status: b'%d' % status for status in TorrelqueTaskStatus}


def _timeout_arg(timeout: float) -> bytes | float:
    return b'' if timeout == STANDARD_TIMEOUT else timeout


class _LeaseBook:
    """The leases of the tasks this instance dequeued and has not released
    or requeued, for calls that name a task by a plain id (not the
    :class:`~torrelque.TorrelqueTaskId` that :meth:`Torrelque.dequeue`
    returned). An entry goes at the release or requeue, or when its attempt
    has been stale for as long as its timeout, so that the book holds no more
    than the tasks in flight."""

    def __init__(self) -> None:
        # id -> (lease, timeout, loop time after which the entry may go)
        self._entries: dict[str, tuple[bytes, float, float]] = {}
        self._prune_at = 64

    def add(self, taken: Sequence[Taken], lease: bytes, now: float) -> None:
        for task_id, _, _, timeout, _ in taken:
            self._entries[task_id] = (lease, timeout, now + 2 * timeout)
        if len(self._entries) >= self._prune_at:
            self._entries = {key: entry for key, entry in self._entries.items() if entry[2] > now}
            self._prune_at = max(64, 2 * len(self._entries))

    def add_calls(self, delivered: Sequence[tuple[Sequence[Taken], bytes]], now: float) -> None:
        """Adds what several dequeue calls delivered, each under its lease."""
        for taken, lease in delivered:
            self.add(taken, lease, now)

    def get(self, task_id: str) -> bytes | None:
        entry = self._entries.get(task_id)
        return None if entry is None else entry[0]

    def extend(self, task_id: str, lease: bytes, timeout: float | None, now: float) -> None:
        entry = self._entries.get(task_id)
        if entry is not None and entry[0] == lease:
            timeout = entry[1] if timeout is None else timeout
            self._entries[task_id] = (lease, entry[1], now + 2 * timeout)

    def drop(self, task_id: str, lease: bytes) -> None:
        entry = self._entries.get(task_id)
        if entry is not None and entry[0] == lease:
            del self._entries[task_id]


class Torrelque:
    """A reliable work queue on Redis.

    Delivery is **at least once**: a task dequeued and then neither
    released nor requeued within its timeout (its consumer died, hung or
    was too slow) is returned to ``pending`` by the sweep and delivered
    again, with a higher ``dequeue_count``. Consumers should be idempotent,
    or check ``dequeue_count``.

    Each dequeue opens a new *attempt* of the task, with its own *lease*:
    :meth:`release`, :meth:`requeue` and :meth:`touch` act only on the
    attempt they name, so a consumer that was too slow cannot end the next
    consumer's attempt. They name it by the :class:`~torrelque.TorrelqueTaskId`
    that :meth:`dequeue` returned, by ``lease=`` (to hand an attempt to
    another process), or else by the lease this instance holds for the id.
    A call that names no attempt in any of these ways acts on whichever
    attempt is current, as Torrelque 0.9 did.

    :param client: a ``redis.asyncio.Redis`` client (of a server, or of the
        master a ``redis.asyncio.sentinel.Sentinel`` finds) or a
        ``redis.asyncio.RedisCluster``, made with ``decode_responses``
        true or false. (The ``valkey`` package's client is refused:
        redis-py's works with Valkey servers.)
    :param queue: the queue's name; producers and consumers of one queue use
        the same. Its keys are ``{queue}:<name>``, in one cluster slot.
    :param serialiser: how payloads and results become bytes and back
        (default: JSON by orjson).
    :raises TorrelqueError: the client is not one of those, or the name or
        serialiser is unusable (:class:`TorrelqueValueError`).
    """

    #: Default seconds a consumer has, from dequeue, before the task is stale.
    task_timeout: float = 300
    #: Default seconds between scheduled sweeps (it also wakes at due times).
    sweep_interval: float = 30
    #: Default seconds a released task's state and result are kept.
    result_ttl: float = 3600
    #: The most tasks one sweep script call moves (1 to 5,000), so that no
    #: call holds the server for long, whatever the backlog.
    sweep_batch_size: int = 250
    #: The most bytes a serialised task or result may take: a Redis server
    #: takes values up to its ``proto-max-bulk-len`` (512 MB by default) and
    #: drops the connection on a larger one. Set it lower for a server
    #: configured lower; a larger value raises before anything is sent.
    max_value_bytes: int = 512 * 1024 * 1024

    #: Key names, by role. An instance holds them prefixed with the hash-tagged
    #: queue name: ``{queue}:pending`` and so on; ``task``, ``lease`` and
    #: ``gone`` are the prefixes of the per-task state keys
    #: ``{queue}:task:<id>``, of the lease records ``{queue}:lease:<token>``
    #: and of the tombstones ``{queue}:gone:<id>``. ``dequeueing`` and
    #: ``undequeued`` are named for code written for Torrelque 0.9; no
    #: version of this package writes them.
    keys: dict[str, str] = {  # noqa: RUF012  # instances rebind it, prefixed
        'pending': 'pending',  # list
        'dequeueing': 'dequeueing',  # list, unused
        'undequeued': 'undequeued',  # set, unused
        'working': 'working',  # sorted set
        'delayed': 'delayed',  # sorted set
        'tasks': 'tasks',  # hash
        'task': 'task',  # prefix of hashes
        'lease': 'lease',  # prefix of strings
        'gone': 'gone',  # prefix of strings
        'unique': 'unique',  # prefix of strings
        'dead': 'dead',  # sorted set
        'ready': 'ready',  # list
        'stats': 'stats',  # hash
        'config': 'config',  # hash
        'rate': 'rate',  # prefix of strings
        'workers': 'workers',  # hash
        'events': 'events',  # pub/sub channel
        'wake': 'wake',  # pub/sub channel
        'abort': 'abort',  # pub/sub channel
    }

    def __init__(
        self,
        client: redis.asyncio.Redis | redis.asyncio.RedisCluster,
        *,
        queue: str = 'trq',
        serialiser: TorrelqueTaskSerialiser = json_serialiser,
    ) -> None:
        client = _client.check(client)
        if not isinstance(queue, str) or not queue or '{' in queue or '}' in queue:
            raise TorrelqueValueError(f'the queue name must be a non-empty string without braces, not {queue!r}')
        settings = _client.settings(client)
        self._codec = _codec.Codec(serialiser, text_replies=bool(settings.get('decode_responses')))
        self._client = client
        self.name = queue
        self.keys = {role: f'{{{queue}}}:{suffix}' for role, suffix in type(self).keys.items()}
        # Pub/sub spans all the databases of a server: beyond database 0,
        # the queue's channels end in '@<db>', so queues of one name in two
        # databases do not hear each other.
        db = int(settings.get('db') or 0)
        self._channel_suffix = f'@{db}' if db else ''
        for role in ('events', 'wake', 'abort'):
            self.keys[role] += self._channel_suffix
        self._sharded = _client.is_cluster(client)
        self._scripts = Scripts(client, self.keys, self._events_refused, sharded=self._sharded)
        # A blocking wait ends well within the client's wait for a reply
        # (the server times blocked clients out up to 100 ms late) and loops.
        socket_timeout = _client.socket_timeout(client)
        self._block_limit = min(socket_timeout / 2, _MAX_BLOCK) if socket_timeout else _MAX_BLOCK
        self._offset = 0.0
        self._hub: PubSubHub | None = None
        self._sweeper = Sweeper(self._sweep, self._events, self.keys['wake'].encode(), queue)
        self._leases = _LeaseBook()
        self._givebacks: set[asyncio.Task[None]] = set()
        self._warned_events = False

    # -- time ------------------------------------------------------------------

    @property
    def clock_offset(self) -> float:
        """Seconds added to the Redis server's clock in every time this
        instance's scripts read: the one seam through which tests move time
        (a deadline passes without sleeping). Leave it at 0 in production."""
        return self._offset

    @clock_offset.setter
    def clock_offset(self, seconds: float) -> None:
        self._offset = _codec.offset(seconds)
        self._scripts.offset = b'%d' % _codec.micros(self._offset)

    # -- helpers -----------------------------------------------------------------

    async def _server_time(self) -> float:
        """The clock of the server that holds the queue (on a cluster, the
        master of its slot), shifted by :attr:`clock_offset`."""
        if isinstance(self._client, redis.asyncio.RedisCluster):
            await self._client.initialize()  # knows the cluster's map from then on
            node = self._client.get_node_from_key(self.keys['workers'])
            seconds, micros = await self._client.time(target_nodes=node)
        else:
            seconds, micros = await self._client.time()
        return int(seconds) + int(micros) / 1_000_000 + self._offset

    def _state_key(self, task_id: TaskId) -> str:
        return f'{self.keys["task"]}:{task_id}'

    def _target(self, pipeline: Pipeline | ClusterPipeline | None) -> Pipeline | ClusterPipeline | None:
        if pipeline is not None and not isinstance(pipeline, (Pipeline, ClusterPipeline)):
            raise TorrelqueValueError(f'pipeline must be a client.pipeline(), not {type(pipeline).__name__}')
        return pipeline

    def _attempt(self, task_id: Any, lease: Any) -> tuple[str, bytes]:
        """The task id and the lease of the attempt a call names: ``lease=``,
        else the id's own, else this instance's, else ``b''`` (whichever
        attempt is current)."""
        if lease is None and isinstance(task_id, TorrelqueTaskId):
            return task_id, task_id.lease.encode()
        name = _codec.task_id(task_id)
        if lease is not None:
            return name, _codec.lease(lease)
        return name, self._leases.get(name) or b''

    def _events_refused(self, detail: object = None) -> None:
        if self._warned_events:
            return
        self._warned_events = True
        logger.warning(
            'The Redis server refuses this client the channels of queue %r%s: tasks move as usual, but events, '
            'watch(), watch_queue() and the sweep\'s wake-ups cannot work for this user. Grant it the channels '
            '(e.g. ACL SETUSER <user> resetchannels &{%s}:*).',
            self.name, f' ({detail})' if detail else '', self.name,
        )  # fmt: skip

    # -- the transitions -------------------------------------------------------

    async def enqueue(
        self,
        task: Any,
        *,
        task_timeout: float | None = None,
        delay: float | None = None,
        pipeline: Pipeline | ClusterPipeline | None = None,
        max_attempts: int | None = None,
        task_id: str | None = None,
        unique_for: float | None = None,
        replace: bool = False,
    ) -> TaskId:
        """Puts a task on the queue.

        A call that redis-py retries after its reply was lost makes one task,
        not two: the id is drawn before the call (or given), and a second
        run of the same call is recognised.

        :param task: the payload; anything the serialiser encodes.
        :param task_timeout: seconds a consumer has, from dequeue, before the
            task is stale and the sweep returns it (default
            :attr:`task_timeout`).
        :param delay: seconds to hold the task in ``delayed`` first. A
            scheduled sweep makes it pending within milliseconds of its due
            time.
        :param pipeline: a caller's ``client.pipeline(transaction=True)``
            to add the enqueue to; the caller executes it. Consecutive
            enqueues into one pipeline with the same timeout and delay
            share one script call (of up to 250 tasks), whose entry in the
            pipeline's results is a list of one code per task (1 when
            enqueued).
        :param max_attempts: the most times a :class:`~torrelque.Worker`
            tries this task (and the sweep lets it go stale) before it goes
            to the dead-letter set; else the worker's own setting.
        :param task_id: the task's id, chosen by the caller (an order
            number, say) instead of drawn at random: while a task of that id
            is pending, delayed or working, or its state is kept (a result
            that has not expired, a dead task), no second one is made, and
            :class:`~torrelque.TorrelqueDuplicateError` says so. In a
            pipeline, its entry of the results holds ``-4`` instead of
            ``1`` for a taken id.
        :param unique_for: with ``task_id``, seconds for which the id stays
            taken after its task has ended (released, with a result or not,
            buried or cancelled), so that a producer that sends it again
            within that time makes nothing.
        :param replace: with ``task_id``, a task of that id that is still
            pending or delayed is updated instead of refused: it gets this
            payload and, when ``delay`` is given, the due time now +
            ``delay`` (``0``: pending now, at the tail), keeping its other
            settings (debounce). A working or ended task is not touched:
            :class:`~torrelque.TorrelqueDuplicateError`. Not in a pipeline.
        :return: the task's id.
        :raises TorrelqueDuplicateError: ``task_id`` is taken.
        :raises TorrelqueSerialiserError: the serialiser cannot encode the task.
        :raises TorrelqueValueError: a timeout, delay or id out of range.
        """
        timeout = self.task_timeout
        if task_timeout is not None:
            timeout = _codec.seconds('task_timeout', task_timeout, positive=True)
        delay_us = None if delay is None else _codec.micros(_codec.seconds('delay', delay, positive=False))
        most = b'' if max_attempts is None else b'%d' % _codec.count('max_attempts', max_attempts)
        unique_ms = None
        if task_id is not None:
            name = _codec.caller_task_id(task_id)
            unique_ms = b''
            if unique_for is not None:
                unique_ms = b'%d' % max(
                    1, _codec.micros(_codec.seconds('unique_for', unique_for, positive=True)) // 1000
                )
        elif unique_for is not None or replace:
            raise TorrelqueValueError('unique_for and replace need a task_id: a drawn id is never sent twice')
        else:
            name = _codec.new_task_id()
        if replace and pipeline is not None:
            raise TorrelqueValueError('replace is not for a pipeline: call enqueue() alone')
        payload = self._codec.dumps(task, 'task', self.max_value_bytes)
        target = self._target(pipeline)
        code = await self._scripts.enqueue(
            _timeout_arg(timeout), delay_us, most, name, payload, target, unique_ms=unique_ms, replace=bool(replace)
        )
        if code == Outcome.DUPLICATE:
            raise TorrelqueDuplicateError(name.decode())
        return name.decode()

    async def dequeue(self, timeout: float | None = None, *, max_tasks: int = 1) -> TaskPair | list[TaskPair]:
        """Takes the next task(s) off the queue for processing, waiting in
        Redis (no polling) while there is none.

        Each task taken is *working* under a new attempt: release it when
        done, or requeue it. If neither happens within its timeout, the
        sweep returns it to pending and it is delivered again. A dequeue
        either returns its tasks or gives them back: when it is cancelled,
        or fails, after Redis has moved them, they return to the head of
        pending at once; when redis-py retries it after a lost reply, the
        retry returns the same tasks.

        :param timeout: seconds to wait for a task, fractions included;
            ``None`` waits for ever.
        :param max_tasks: above 1, take up to that many tasks that are ready
            at once, and return a list (of at least one).
        :return: ``(task_id, task)``, or a list of them when ``max_tasks > 1``.
            The id is a :class:`~torrelque.TorrelqueTaskId`: a ``str`` that
            also carries the attempt's lease.
        :raises TorrelqueTimeoutError: no task came within ``timeout``.
        :raises TorrelqueValueError: a non-positive timeout, or ``max_tasks``
            below 1.
        """
        if timeout is not None:
            timeout = _codec.seconds('timeout', timeout, positive=True)
        max_tasks = _codec.count('max_tasks', max_tasks)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        woken = False
        since = _client.cancels()
        while True:
            pairs, rate_wait = await self._take(max_tasks, woken)
            if pairs:
                return pairs if max_tasks > 1 else pairs[0]
            if _client.cancel_lost(since):
                raise asyncio.CancelledError
            if rate_wait:
                # The rate limit allows no dequeue now: sleep until it does
                # (an enqueue would not help), then take.
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise TorrelqueTimeoutError(f'no task within {timeout} s (the rate limit allowed none)')
                try:
                    await asyncio.sleep(rate_wait if remaining is None else min(rate_wait, remaining))
                except BaseException:
                    if woken:
                        self._give_back(b'')  # the marker this call took is for the next consumer
                    raise
                continue
            woken = await self._wait_ready(deadline)
            if _client.cancel_lost(since):
                if woken:
                    self._give_back(b'')  # the marker this call took is for the next consumer
                raise asyncio.CancelledError
            if not woken and deadline is not None and loop.time() >= deadline:
                raise TorrelqueTimeoutError(f'no task within {timeout} s')

    async def _wait_ready(self, deadline: float | None) -> bool:
        """Waits in Redis for the wake-up marker; whether it came."""
        wait = self._block_limit
        if deadline is not None:
            wait = min(wait, deadline - asyncio.get_running_loop().time())
            if wait <= 0:
                return False
        try:
            popped = await self._client.blpop([self.keys['ready']], wait)
        except BaseException:
            # Redis may have popped the marker for this call: set it again.
            self._give_back(b'')
            raise
        return popped is not None

    async def _take(self, max_tasks: int, woken: bool) -> tuple[list[TaskPair], float]:
        """Takes ready tasks, decodes them and quarantines those that cannot
        be decoded. Whatever escapes gives every task taken back. ``woken``:
        this follows a wait that took the wake-up marker. Also returns the
        seconds the rate limit says to wait, when it allowed nothing."""
        pairs: list[TaskPair] = []
        leases: list[bytes] = []
        delivered: list[tuple[list[Taken], bytes]] = []
        rate_wait = 0.0
        try:
            while len(pairs) < max_tasks:
                limit = min(max_tasks - len(pairs), BATCH)
                lease = _codec.new_token()
                leases.append(lease)
                taken, missing, rate_wait = await self._scripts.dequeue(limit, lease, woken)
                delivered.append((await self._decode(taken, missing, lease, pairs), lease))
                if len(taken) + len(missing) < limit:
                    break
        except BaseException:
            for lease in leases:
                self._give_back(lease)
            raise
        self._leases.add_calls(delivered, asyncio.get_running_loop().time())
        return pairs, rate_wait

    async def _decode(self, taken: list[Taken], missing: list[str], lease: bytes, pairs: list[TaskPair]) -> list[Taken]:
        """Adds the tasks of a dequeue call to ``pairs``, quarantining those
        that cannot be decoded; returns the tasks delivered."""
        for task_id in missing:
            logger.warning('Dropped id %s from pending: the queue has no payload for it', task_id)
        lease_text = lease.decode()
        decoded = []
        for task in taken:
            task_id, data, dequeue_count, timeout, max_attempts = task
            try:
                payload = self._codec.loads(data, task_id, 'payload')
            except TorrelqueSerialiserError as exc:
                await self._quarantine(task_id, lease, exc)
                continue
            decoded.append(task)
            pairs.append((TorrelqueTaskId(task_id, lease_text, dequeue_count, timeout, max_attempts), payload))
        return decoded

    async def _release_and_take(
        self, task_ids: Sequence[TaskId], result: Any, max_tasks: int, result_ttl: float | None = None
    ) -> tuple[list[bool], list[TaskPair]]:
        """Releases tasks as completed (one with ``result``, or several
        without) and takes up to ``max_tasks`` ready tasks, in one call: the
        worker's way to free slots and fill them again. Each task taken has a
        lease of its own (so that one can be given back alone); taking waits
        for nothing. The tasks taken go back to pending when this fails or
        is cancelled."""
        attempts = [self._attempt(task_id, None) for task_id in task_ids]
        kept = None
        if result is not None:
            ttl = self.result_ttl if result_ttl is None else result_ttl
            ttl_ms = max(1, _codec.micros(ttl) // 1000)
            kept = (self._codec.dumps(result, 'result', self.max_value_bytes), ttl_ms)
        leases = [_codec.new_token() for _ in range(max_tasks)]
        pairs: list[TaskPair] = []
        delivered = []
        try:
            codes, replies = await self._scripts.release_take(
                attempts, _STATUS_ARGS[TorrelqueTaskStatus.COMPLETED], kept, leases
            )
            for name, attempt in attempts:
                self._leases.drop(name, attempt)
            for (taken, missing), lease in zip(replies, leases, strict=False):
                delivered.append((await self._decode(taken, missing, lease, pairs), lease))
        except BaseException:
            for lease in leases:
                self._give_back(lease)
            raise
        self._leases.add_calls(delivered, asyncio.get_running_loop().time())
        released = [accepted(code, 'Release', name) for code, (name, _) in zip(codes, attempts, strict=True)]
        return released, pairs

    def _outlive(self, task: asyncio.Future[Any]) -> None:
        """Has :meth:`aclose` wait (a few seconds at most) for a call that
        a caller no longer waits for."""
        self._givebacks.add(task)  # type: ignore[arg-type]
        task.add_done_callback(self._givebacks.discard)

    def _give_back(self, lease: bytes) -> None:
        """Gives a dequeue call's tasks back to pending, in the background
        (the caller is being cancelled, or has failed)."""
        task = asyncio.get_running_loop().create_task(self._give_back_now(lease))
        self._givebacks.add(task)
        task.add_done_callback(self._givebacks.discard)

    async def _give_back_now(self, lease: bytes) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + RETRY_WINDOW / 2  # the lease record outlives the tries
        delay = 0.05
        while True:
            try:
                back = await self._scripts.giveback(lease)
            except asyncio.CancelledError:
                # A shutdown cancels every task: try once more, briefly, so
                # that a Ctrl-C does not leave the tasks working until stale.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1):
                        await self._scripts.giveback(lease)
                raise
            except Exception as exc:
                if loop.time() + delay > give_up:
                    logger.error('Cannot give back dequeued tasks (%s): the sweep returns them when stale', exc)
                    return
                await asyncio.sleep(delay)
                delay = min(2 * delay, 2.0)
            else:
                if back:
                    logger.info('Gave %d task(s) back to the head of pending', back)
                return

    async def _quarantine(self, task_id: TaskId, lease: bytes, exc: TorrelqueSerialiserError) -> None:
        """Rejects a task whose payload cannot be decoded, keeping it. When
        that fails, the task stays working (the sweep brings it back, and it
        is rejected then), and the other tasks of the call are still
        delivered."""
        logger.error(
            'Task %s rejected: %s. Its payload is kept in the "payload" field of %s',
            task_id, exc, self._state_key(task_id),
        )  # fmt: skip
        error = {'error': 'undecodable payload', 'detail': str(exc.__cause__ or exc)}
        try:
            result = self._codec.dumps(error, 'error', self.max_value_bytes)
        except TorrelqueSerialiserError:
            result = b''
        try:
            await self._scripts.quarantine(task_id, lease, result)
        except Exception as failure:
            logger.error('Cannot reject task %s (%s): it comes back when stale', task_id, failure)

    async def requeue(
        self,
        task_id: TaskId,
        delay: float | None = None,
        *,
        task_timeout: float | None = None,
        pipeline: Pipeline | ClusterPipeline | None = None,
        lease: str | None = None,
    ) -> bool | None:
        """Ends an attempt and returns its working task to the queue, to be
        dequeued again: at the tail of pending, or after ``delay`` seconds.

        :param task_id: a task that is working.
        :param delay: seconds to hold it in ``delayed`` first (back-off).
        :param task_timeout: a new timeout for the task's next attempts.
        :param pipeline: a caller's pipeline to add the requeue to.
        :param lease: the attempt's lease, when ``task_id`` does not carry it.
        :return: ``True`` when requeued (a retry of a requeue this attempt
            did included); ``False`` (and a warning logged, nothing changed)
            when the task is not working, or another attempt owns it.
            ``None`` with a pipeline: its results hold the script's code (1
            for done).
        :raises TorrelqueValueError: a delay, timeout or lease out of range.
        """
        name, attempt = self._attempt(task_id, lease)
        delay_us = 0 if delay is None else _codec.micros(_codec.seconds('delay', delay, positive=False))
        timeout = b'' if task_timeout is None else _codec.seconds('task_timeout', task_timeout, positive=True)
        code = await self._scripts.requeue(name, attempt, delay_us, timeout, self._target(pipeline))
        self._leases.drop(name, attempt)
        return None if code is None else accepted(code, 'Requeue', name)

    async def release(
        self,
        task_id: TaskId,
        *,
        result: Any = None,
        result_ttl: float | None = None,
        status: TorrelqueTaskStatus = TorrelqueTaskStatus.COMPLETED,
        pipeline: Pipeline | ClusterPipeline | None = None,
        lease: str | None = None,
    ) -> bool | None:
        """Ends an attempt and takes its finished task out of the queue.

        Without a ``result`` the task is removed at once (a tombstone key
        stays for a minute, by which a retried call is recognised; the task
        reads as unknown). With one, its state (final
        status, result, times) is kept for ``result_ttl`` seconds, for
        :meth:`get_task_state` and :meth:`watch`.

        :param task_id: a task that is working.
        :param result: what the task produced; anything the serialiser encodes.
        :param result_ttl: seconds to keep the state and result (default
            :attr:`result_ttl`).
        :param status: ``COMPLETED``, or ``REJECTED`` for a task that failed
            for good.
        :param pipeline: a caller's pipeline to add the release to; the
            caller executes it. Consecutive releases without a result and
            with the same status share one script call (of up to 250
            tasks), whose entry in the pipeline's results is a list of one
            code per task (1 when released, 0, -1 or -3 when refused).
        :param lease: the attempt's lease, when ``task_id`` does not carry it.
        :return: ``True`` when released (a retry of a release this attempt
            did included); ``False`` (and a warning logged, nothing changed)
            when the task is not working, or another attempt owns it.
            ``None`` with a pipeline.
        :raises TorrelqueError: ``status`` is not final
            (:class:`TorrelqueValueError`).
        :raises TorrelqueSerialiserError: the serialiser cannot encode the result.
        """
        name, attempt = self._attempt(task_id, lease)
        final = _codec.final_status(status)
        ttl = self.result_ttl if result_ttl is None else _codec.seconds('result_ttl', result_ttl, positive=True)
        kept = None
        if result is not None:
            kept = (self._codec.dumps(result, 'result', self.max_value_bytes), max(1, _codec.micros(ttl) // 1000))
        code = await self._scripts.release(name, attempt, _STATUS_ARGS[final], kept, self._target(pipeline))
        self._leases.drop(name, attempt)
        return None if code is None else accepted(code, 'Release', name)

    async def touch(
        self,
        task_id: TaskId,
        task_timeout: float | None = None,
        *,
        pipeline: Pipeline | ClusterPipeline | None = None,
        lease: str | None = None,
    ) -> bool | None:
        """Extends an attempt's lease: its task's stale deadline becomes now
        (server time) plus ``task_timeout``, or plus the task's own timeout.
        A consumer that works longer than the timeout touches the task
        before each deadline, so that the sweep does not hand it to another.

        :param task_id: a task that is working.
        :param task_timeout: seconds from now, for this attempt only.
        :param pipeline: a caller's pipeline to add the touch to.
        :param lease: the attempt's lease, when ``task_id`` does not carry it.
        :return: ``True`` when extended; ``False`` (and a warning logged,
            nothing changed) when the task is not working, or another
            attempt owns it. ``None`` with a pipeline.
        :raises TorrelqueValueError: a timeout or lease out of range.
        """
        name, attempt = self._attempt(task_id, lease)
        timeout = None if task_timeout is None else _codec.seconds('task_timeout', task_timeout, positive=True)
        code = await self._scripts.touch(name, attempt, b'' if timeout is None else timeout, self._target(pipeline))
        if code is None:
            return None
        if code == 1:
            self._leases.extend(name, attempt, timeout, asyncio.get_running_loop().time())
        return accepted(code, 'Touch', name)

    async def set_progress(self, task_id: TaskId, progress: Any, *, lease: str | None = None) -> bool:
        """Reports how far an attempt has got: ``progress`` (any JSON value,
        e.g. a fraction, or a dict) is stored in its task's state, where
        :meth:`get_task_state` reads it, and published, so that
        :meth:`watch` yields the state again and :meth:`watch_queue` sees a
        ``progress`` event. It does not extend the lease (:meth:`touch` does).

        :param task_id: a task that is working.
        :param progress: a JSON value of at most 64 KiB.
        :param lease: the attempt's lease, when ``task_id`` does not carry it.
        :return: ``True`` when stored; ``False`` (and a warning logged,
            nothing changed) when the task is not working, or another
            attempt owns it.
        :raises TorrelqueSerialiserError: ``progress`` is not JSON.
        :raises TorrelqueValueError: it is larger than 64 KiB.
        """
        name, attempt = self._attempt(task_id, lease)
        code = await self._scripts.progress(name, attempt, _codec.progress_json(progress))
        return accepted(code, 'Progress report', name)

    # -- the dead-letter set ------------------------------------------------------------

    async def bury(self, task_id: TaskId, error: Any = None, *, lease: str | None = None) -> bool:
        """Ends an attempt by rejecting its task for good into the queue's
        dead-letter set (``{queue}:dead``): it leaves the queue, and its state
        keeps its payload and the error, with no expiry, until it is
        requeued (:meth:`requeue_dead`) or purged (:meth:`purge_dead`).
        Watchers see it end as ``REJECTED``, with the error as its result.
        The :class:`~torrelque.Worker` buries a task whose attempts are spent.

        :param task_id: a task that is working.
        :param error: why: a dict (``type``, ``message``, ``traceback``,
            ``attempts``...), or a text.
        :param lease: the attempt's lease, when ``task_id`` does not carry it.
        :return: ``True`` when buried; ``False`` (and a warning logged,
            nothing changed) when the task is not working, or another
            attempt owns it.
        """
        name, attempt = self._attempt(task_id, lease)
        details = dict(error) if isinstance(error, dict) else {'type': 'Rejected', 'message': str(error or '')}
        try:
            result = self._codec.dumps(details, 'error', self.max_value_bytes)
        except (TorrelqueSerialiserError, TorrelqueValueError):
            result = b''  # a serialiser that takes no dict: the error is in the state's `error` field
        code = await self._scripts.bury(name, attempt, orjson.dumps(details, default=str), result)
        self._leases.drop(name, attempt)
        return accepted(code, 'Bury', name)

    async def list_dead(self, *, start: int = 0, count: int = 100) -> list[TorrelqueDeadTask]:
        """Tasks of the dead-letter set, the longest buried first.

        :param start: how many to skip.
        :param count: the most to return.
        """
        start = _codec.count('start', start, low=0)
        count = _codec.count('count', count)
        buried: list[tuple[bytes | str, float]] = await self._client.zrange(  # type: ignore[assignment]
            self.keys['dead'], start, start + count - 1, withscores=True
        )
        async with self._client.pipeline(transaction=False) as pipe:
            for task_id, _ in buried:
                pipe.hmget(self._state_key(_codec.text(task_id)), 'error', 'dequeues', 'payload')
            states = await pipe.execute()
        return [
            self._dead_task(_codec.text(task_id), score, state)
            for (task_id, score), state in zip(buried, states, strict=True)
            if state[0] is not None
        ]

    async def get_dead(self, task_id: TaskId) -> TorrelqueDeadTask:
        """One task of the dead-letter set.

        :raises TorrelqueLookupError: the task is not in the dead-letter set.
        """
        task_id = _codec.task_id(task_id)
        score = await self._client.zscore(self.keys['dead'], task_id)
        state = await self._client.hmget(self._state_key(task_id), 'error', 'dequeues', 'payload')
        if score is None or state[0] is None:
            raise TorrelqueLookupError(f'task {task_id} is not in the dead-letter set')
        return self._dead_task(task_id, score, state)

    def _dead_task(self, task_id: str, score: float, state: list[Any]) -> TorrelqueDeadTask:
        error, dequeues, payload = state
        task: Any = None
        if payload is not None:
            try:
                task = self._codec.loads(_codec.raw(payload), task_id, 'payload')
            except TorrelqueSerialiserError:
                task = _codec.raw(payload)  # kept as stored, for a person to look at
        return TorrelqueDeadTask(task_id, score / 1_000_000, orjson.loads(error), int(dequeues or 0), task)

    async def requeue_dead(self, task_id: TaskId, *, delay: float | None = None) -> bool:
        """Returns a task of the dead-letter set to the queue, to be tried
        again from the start (its dequeue count starts over): at the tail of
        pending, or after ``delay`` seconds.

        :return: ``True`` when requeued; ``False`` (and a warning logged)
            when the task is not in the dead-letter set.
        """
        task_id = _codec.task_id(task_id)
        delay_us = 0 if delay is None else _codec.micros(_codec.seconds('delay', delay, positive=False))
        return accepted(await self._scripts.revive(task_id, delay_us), 'Requeue from the dead-letter set', task_id)

    async def purge_dead(self, *task_ids: TaskId, older_than: float | None = None) -> int:
        """Deletes tasks of the dead-letter set for good: those named, or else
        all of them, or those buried more than ``older_than`` seconds ago.

        :return: how many were deleted.
        """
        if task_ids:
            names = [_codec.task_id(task_id) for task_id in task_ids]
            return sum([await self._scripts.purge(names[i : i + BATCH], 0, 0) for i in range(0, len(names), BATCH)])
        now_us = _codec.micros(await self._server_time())
        before_us = (
            now_us + 1
            if older_than is None
            else now_us - _codec.micros(_codec.seconds('older_than', older_than, positive=False))
        )
        purged = 0
        while done := await self._scripts.purge([], before_us, BATCH):
            purged += done
        return purged

    # -- the sweep -------------------------------------------------------------------

    async def sweep(self) -> tuple[int, int, int]:
        """Returns to pending the tasks that are due back: stale working
        tasks (past their timeout; their attempt loses its lease) and
        delayed tasks whose time has come. Works in batches of
        :attr:`sweep_batch_size`.

        :return: how many ``(stale, delayed, undequeued)`` tasks it returned;
            the last is always 0 (a dequeue leaves no id between two
            places), kept for the shape of Torrelque 0.9's result.
        :raises TorrelqueValueError: :attr:`sweep_batch_size` is out of range.
        """
        counts, _ = await self._sweep()
        return counts

    async def _sweep(self) -> tuple[tuple[int, int, int], float | None]:
        """Sweeps every batch; also says in how many seconds the next
        deadline or due time comes (``None``: nothing is waiting)."""
        size = _codec.count('sweep_batch_size', self.sweep_batch_size, high=_MAX_SWEEP_BATCH)
        stale = due = 0
        while True:
            moved_stale, moved_due, more, next_us = await self._scripts.sweep(size)
            stale += moved_stale
            due += moved_due
            if not more:
                return (stale, due, 0), (None if next_us < 0 else next_us / 1_000_000)

    def schedule_sweep(self, interval: float | None = None) -> None:
        """Runs the sweep in the background, every ``interval`` seconds and
        also at each stale deadline and due time, so that delayed and stale
        tasks come back within milliseconds of their time. Scheduling again
        replaces the running one. Needs a running event loop.

        :param interval: the most seconds between sweeps (default
            :attr:`sweep_interval`).
        """
        interval = self.sweep_interval if interval is None else _codec.seconds('interval', interval, positive=True)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise TorrelqueError('schedule_sweep() needs a running event loop: call it from a coroutine') from None
        self._sweeper.start(interval)

    def unschedule_sweep(self) -> None:
        """Stops the background sweep, if one runs."""
        self._sweeper.stop()

    # -- reading state -----------------------------------------------------------------

    async def set_working_limit(self, limit: int | None) -> None:
        """Sets the queue-wide working limit: at most ``limit`` tasks working
        at once, across every consumer and worker of the queue (``None``
        removes it). Each dequeue takes no more than the room left, in its
        script; consumers that find none wait, without polling, until a
        task leaves ``working``. Stale tasks count until the sweep returns
        them. It is stored in ``{queue}:config``, so it holds for every
        instance and survives restarts.

        :raises TorrelqueValueError: a limit below 1.
        """
        value = b'' if limit is None else b'%d' % _codec.count('limit', limit)
        await self._scripts.limit(b'working_limit', value)

    async def get_working_limit(self) -> int | None:
        """The queue-wide working limit, or ``None``."""
        value = await self._client.hget(self.keys['config'], 'working_limit')
        return None if value is None else int(value)

    async def set_rate_limit(self, limit: int | None, per: float = 1.0) -> None:
        """Sets the queue-wide rate limit: at most ``limit`` dequeues in each
        window of ``per`` seconds (windows aligned on the server's clock),
        across every consumer and worker of the queue; ``None`` removes it.
        The dequeue script counts and enforces it; a consumer that finds the
        window used up sleeps until the next one (no polling in between).
        Stored in ``{queue}:config``, with the counts in
        ``{queue}:rate:<window>``.

        :raises TorrelqueValueError: a limit below 1, or a window out of
            range (1 ms to a day).
        """
        if limit is None:
            await self._scripts.limit(b'rate_limit', b'')
            return
        count = _codec.count('limit', limit)
        period = _codec.seconds('per', per, positive=True)
        if not 0.001 <= period <= 86400:
            raise TorrelqueValueError(f'per must be from 0.001 to 86400 seconds, not {per!r}')
        await self._scripts.limit(b'rate_limit', b'%d' % count, b'%d' % _codec.micros(period))

    async def get_rate_limit(self) -> tuple[int, float] | None:
        """The queue-wide rate limit as ``(limit, per)``, or ``None``."""
        limit, period = await self._client.hmget(self.keys['config'], ['rate_limit', 'rate_period'])
        if limit is None or period is None:
            return None
        return int(limit), int(period) / 1_000_000

    async def cancel(self, task_id: TaskId) -> bool:
        """Cancels a task: a pending or delayed one leaves the queue at once
        (finding it in ``pending`` takes a scan of the list); a working one
        is aborted: the :class:`~torrelque.Worker` running it hears of it at
        once (on the queue's abort channel, ``{queue}:abort``), cancels its
        handler and ends it, never to be tried again; should its worker be
        gone, the sweep ends it at its deadline. Either way the task ends as
        ``CANCELLED``, which its watchers see, and its state is kept for
        :attr:`result_ttl`. (A consumer of its own may still release an
        aborted task before it ends.)

        :return: ``True`` when cancelled, or when its abort was asked;
            ``False`` (and a warning logged) when it is unknown or has ended.
        """
        name = str(_codec.task_id(task_id))
        code = await self._scripts.cancel(name, max(1, _codec.micros(self.result_ttl) // 1000), b'')
        if code == Outcome.ABORTING:
            return True
        return accepted(code, 'Cancel', name)

    async def _end_aborted(self, task_id: TorrelqueTaskId) -> bool:
        """Ends an aborted attempt as cancelled (its handler was cancelled)."""
        name, attempt = self._attempt(task_id, None)
        code = await self._scripts.cancel(name, max(1, _codec.micros(self.result_ttl) // 1000), attempt)
        self._leases.drop(name, attempt)
        return accepted(code, 'Cancel', name)

    # -- the registry of workers -----------------------------------------------------

    async def list_workers(self) -> list[TorrelqueWorkerInfo]:
        """The workers of the queue that are alive: those whose last beat in
        ``{queue}:workers`` has not expired, the longest running first."""
        entries = await self._client.hgetall(self.keys['workers'])
        now = await self._server_time()
        alive = []
        for worker_id, entry in entries.items():
            try:
                info = orjson.loads(_codec.raw(entry).partition(b' ')[2])
                worker = TorrelqueWorkerInfo(
                    _codec.text(worker_id), str(info['host']), int(info['pid']), info['started'] / 1_000_000,
                    int(info['concurrency']), int(info['in_flight']), int(info['processed']), int(info['failed']),
                    info['beat'] / 1_000_000, info['expires'] / 1_000_000,
                )  # fmt: skip
            except (ValueError, KeyError, TypeError):
                logger.warning("Entry %r of %s is not a worker's", worker_id, self.keys['workers'])
                continue
            if worker.expires > now:
                alive.append(worker)
        return sorted(alive, key=lambda worker: worker.started)

    async def _beat(self, worker_id: str, info: dict[str, Any], ttl: float) -> None:
        """Writes a worker's entry in the registry, alive for ``ttl`` seconds."""
        await self._scripts.beat(worker_id, orjson.dumps(info), _codec.micros(ttl))

    async def _leave(self, worker_id: str) -> None:
        await self._client.hdel(self.keys['workers'], worker_id)

    async def get_queue_stats(self) -> TorrelqueQueueStats:
        """How many tasks the queue holds now, in one atomic read (which a
        server that is out of memory still answers)."""
        return TorrelqueQueueStats(*await self._scripts.stats())

    async def get_queue_counters(self) -> dict[str, int]:
        """The queue's monotonic counters from ``{queue}:stats`` (see
        :data:`COUNTERS`), zero for those never counted."""
        raw = await self._client.hgetall(self.keys['stats'])
        counters = dict.fromkeys(COUNTERS, 0)
        counters.update({_codec.text(name): int(value) for name, value in raw.items()})
        return counters

    async def get_task_state(self, task_id: TaskId) -> TorrelqueTaskState:
        """The task's current state.

        :raises TorrelqueLookupError: the task is unknown, was released
            without a result, or its result expired.
        :raises TorrelqueSerialiserError: its result cannot be decoded.
        """
        task_id = str(_codec.task_id(task_id))
        raw = await self._client.hgetall(self._state_key(task_id))
        fields = {_codec.text(name): value for name, value in raw.items()}
        if not fields:
            raise TorrelqueLookupError(f'task {task_id} is unknown')
        result = fields.pop('result', None)
        if 'progress' in fields:
            fields['progress'] = orjson.loads(fields['progress'])
        loads = self._codec.serialiser.loads
        return make_state(fields, None if result is None else _codec.raw(result), loads, task_id)

    # -- events ------------------------------------------------------------------------

    def _events(self) -> PubSubHub:
        if self._hub is None:
            self._hub = PubSubHub(
                functools.partial(_client.event_connection, self._client, self.keys['events']),
                self._scripts.snapshot,
                self._events_refused,
                sharded=self._sharded,
            )
        return self._hub

    def watch(self, task_id: TaskId, *, timeout: float | None = None) -> TaskWatch:
        """Follows a task: an async iterator that yields its current state,
        then its state after each change of status or progress, and stops
        after a final status (with the result), or when the task is released without a
        result. Waiting costs nothing: it listens on pub/sub, sharing one
        connection with every other watch of this instance, and needs no
        server configuration.

        :param task_id: the task to follow.
        :param timeout: seconds the whole watch may take.
        :raises TorrelqueLookupError: the task is unknown (on the first step).
        :raises TorrelqueTimeoutError: no final state within ``timeout``.
        :raises TorrelqueError: the server refuses this client the task's
            channel (an ACL user without channel permissions).
        """
        task_id = str(_codec.task_id(task_id))
        if timeout is not None:
            timeout = _codec.seconds('timeout', timeout, positive=True)
        channel = (self._state_key(task_id) + self._channel_suffix).encode()
        return TaskWatch(self._events(), channel, task_id, timeout, self._codec.serialiser.loads)

    def watch_queue(self, *, backlog: int = 10_000) -> QueueWatch:
        """Every transition of every task of the queue, as
        :class:`~torrelque.TorrelqueEvent` items, from the first step of the
        iteration until it is closed (for dashboards and tailing).

        :param backlog: the most transitions held for a reader that is
            slower than they come; beyond them the watch drops the rest and,
            after the held ones, raises :class:`~torrelque.TorrelqueLagError`.
        :raises TorrelqueValueError: a backlog below 1.
        :raises TorrelqueError: the server refuses this client the queue's
            events channel (an ACL user without channel permissions).
        """
        limit = _codec.count('backlog', backlog)
        return QueueWatch(self._events(), self.keys['events'].encode(), limit)

    # -- closing -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stops the scheduled sweep, finishes giving back the tasks of
        cancelled dequeues (and the calls a stopped worker left to end),
        for a few seconds at most, and closes the shared
        pub/sub connection, ending any watch. The Redis client stays open:
        it is the caller's."""
        await self._sweeper.aclose()
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 6
        while self._givebacks and loop.time() < give_up:
            await asyncio.wait(list(self._givebacks), timeout=give_up - loop.time())
        if self._givebacks:
            # Still failing: their tasks stay working until the sweep finds
            # them stale. Nothing is left running past the close.
            left = list(self._givebacks)
            logger.warning('Closing with %d give-back(s) unfinished: the sweep returns their tasks', len(left))
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)
        if self._hub is not None:
            hub, self._hub = self._hub, None
            await hub.aclose()

    async def __aenter__(self) -> Torrelque:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
