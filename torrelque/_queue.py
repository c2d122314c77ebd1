"""The queue: :class:`Torrelque`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import redis.asyncio
import redis.exceptions
from redis.asyncio.client import Pipeline

from ._errors import (
    TorrelqueError,
    TorrelqueLookupError,
    TorrelqueSerialiserError,
    TorrelqueTimeoutError,
    TorrelqueValueError,
)
from ._events import PubSubHub, QueueWatch, TaskWatch, make_state
from ._scripts import STANDARD_TIMEOUT, Outcome, PipelineBatches, accepted, register_scripts
from ._types import (
    TorrelqueQueueStats,
    TorrelqueTaskSerialiser,
    TorrelqueTaskState,
    TorrelqueTaskStatus,
    json_serialiser,
)

logger = logging.getLogger('torrelque')

TaskId = str
TaskPair = tuple[TaskId, Any]

#: The counters of the ``{queue}:stats`` hash, all plain integers.
COUNTERS = (
    'enqueued',
    'dequeued',
    'requeued',
    'delayed',
    'released',
    'completed',
    'rejected',
    'swept_stale',
    'swept_delayed',
    'swept_undequeued',
    'undecodable',
)

# The most tasks one dequeue script call moves; larger max_tasks take more
# calls. Also the most enqueues into a pipeline that share one script call.
_BATCH = 250
# The most a sweep_batch_size may be: Lua's unpack() takes fewer than 8,000 values.
_MAX_SWEEP_BATCH = 5000

# Task ids: 16 characters of [0-9A-Za-z] from 16 random bytes (95 bits of
# entropy). Short ids make every key, list entry and hash field that holds
# one smaller; the enqueue script refuses an id that is taken.
_ID_ALPHABET = bytes(range(256)).translate(
    bytes.maketrans(bytes(range(256)), (b'0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz' * 5)[:256])
)


# A final status as the release script gets it.
_STATUS_ARGS = {status: b'%d' % status for status in TorrelqueTaskStatus}


def _new_task_id() -> bytes:
    return os.urandom(16).translate(_ID_ALPHABET)


def _number(name: str, value: Any, *, positive: bool) -> float:
    """``value`` as a finite number, positive or else non-negative."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TorrelqueValueError(f'{name} must be a number of seconds, not {value!r}')
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = 'positive' if positive else 'zero or positive'
        raise TorrelqueValueError(f'{name} must be a finite, {kind} number of seconds, not {value!r}')
    return float(value)


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _socket_timeout(client: redis.asyncio.Redis) -> float | None:
    """How long the client waits for a reply: its connections' setting
    (which defaults to 5 s in recent redis-py, even when not given)."""
    pool = client.connection_pool
    timeout: float | None = pool.connection_class(**pool.connection_kwargs).socket_timeout
    return timeout


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _raw(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


class Torrelque:
    """A reliable work queue on Redis.

    Delivery is **at least once**: a task dequeued and then neither
    released nor requeued within its timeout (its consumer died, hung or
    was too slow) is returned to ``pending`` by the sweep and delivered
    again, with a higher ``dequeue_count``. Consumers should be idempotent,
    or check ``dequeue_count``.

    :param client: a ``redis.asyncio.Redis`` client, made with
        ``decode_responses`` true or false.
    :param queue: the queue's name; producers and consumers of one queue use
        the same. Its keys are ``{queue}:<name>``, in one cluster slot.
    :param serialiser: how payloads and results become bytes and back
        (default: JSON by orjson).
    :raises TorrelqueError: the client is not a Redis client, or the name or
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

    #: Key names, by role. An instance holds them prefixed with the hash-tagged
    #: queue name: ``{queue}:pending`` and so on; ``task`` is the prefix of
    #: the per-task state keys ``{queue}:task:<id>``.
    keys: dict[str, str] = {  # noqa: RUF012  # instances rebind it, prefixed
        'pending': 'pending',  # list
        'dequeueing': 'dequeueing',  # list
        'undequeued': 'undequeued',  # set
        'working': 'working',  # sorted set
        'delayed': 'delayed',  # sorted set
        'tasks': 'tasks',  # hash
        'task': 'task',  # prefix of hashes
        'stats': 'stats',  # hash
        'events': 'events',  # pub/sub channel
        'wake': 'wake',  # pub/sub channel
    }

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        queue: str = 'trq',
        serialiser: TorrelqueTaskSerialiser = json_serialiser,
    ) -> None:
        if not isinstance(client, redis.asyncio.Redis):
            raise TorrelqueValueError(f'a redis.asyncio.Redis client is needed, not {type(client).__name__}')
        if not isinstance(queue, str) or not queue or '{' in queue or '}' in queue:
            raise TorrelqueValueError(f'the queue name must be a non-empty string without braces, not {queue!r}')
        if not (callable(getattr(serialiser, 'dumps', None)) and callable(getattr(serialiser, 'loads', None))):
            raise TorrelqueValueError('the serialiser needs callable dumps and loads')

        self._client = client
        self._serialiser = serialiser
        self._decodes = bool(client.connection_pool.connection_kwargs.get('decode_responses'))
        self.name = queue
        self.keys = {role: f'{{{queue}}}:{suffix}' for role, suffix in type(self).keys.items()}
        self._scripts = register_scripts(client)
        # A blocking dequeue blocks well within the client's wait for a reply
        # (the server times blocked clients out up to 100 ms late) and loops.
        socket_timeout = _socket_timeout(client)
        self._block_limit = socket_timeout / 2 if socket_timeout else None
        self._offset_us = 0
        self._offset_arg = b'0'  # the offset as scripts get it
        self._hub: PubSubHub | None = None
        self._sweep_task: asyncio.Task[None] | None = None
        self._sweep_due = 0.0
        self._sweep_woken: asyncio.Event | None = None

        # Script arguments go as bytes: redis-py sends them as they are,
        # where it would encode text and format numbers on every call.
        k = {role: name.encode() for role, name in self.keys.items()}
        self._enqueue_keys = [k['tasks'], k['pending'], k['delayed'], k['stats'], k['events'], k['wake'], k['task']]
        self._enqueue_batches = PipelineBatches(self._scripts['enqueue'], self._enqueue_keys, _BATCH)
        self._dequeue_keys = [
            k['pending'], k['dequeueing'], k['working'], k['tasks'],
            k['stats'], k['events'], k['wake'], k['task'],
        ]  # fmt: skip
        self._requeue_keys = [k['working'], k['pending'], k['delayed'], k['stats'], k['events'], k['wake'], k['task']]
        self._release_keys = [k['working'], k['tasks'], k['stats'], k['events'], k['task']]
        self._release_batches = PipelineBatches(self._scripts['release'], self._release_keys, _BATCH)
        self._sweep_keys = [
            k['pending'], k['dequeueing'], k['undequeued'], k['working'],
            k['delayed'], k['stats'], k['events'], k['task'],
        ]  # fmt: skip

    # -- time ------------------------------------------------------------------

    @property
    def clock_offset(self) -> float:
        """Seconds added to the Redis server's clock in every time this
        instance's scripts read: the one seam through which tests move time
        (a deadline passes without sleeping). Leave it at 0 in production."""
        return self._offset_us / 1_000_000

    @clock_offset.setter
    def clock_offset(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
            raise TorrelqueValueError(f'clock_offset must be a finite number of seconds, not {seconds!r}')
        self._offset_us = _micros(seconds)
        self._offset_arg = b'%d' % self._offset_us

    # -- helpers -----------------------------------------------------------------

    def _state_key(self, task_id: TaskId) -> str:
        return f'{self.keys["task"]}:{task_id}'

    def _dumps(self, obj: Any, what: str) -> bytes:
        try:
            data = self._serialiser.dumps(obj)
        except Exception as exc:
            raise TorrelqueSerialiserError(f'the serialiser cannot encode the {what}: {exc}') from exc
        if isinstance(data, str):
            data = data.encode()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TorrelqueSerialiserError(
                f'the serialiser must return bytes for the {what}, not {type(data).__name__}'
            )
        data = bytes(data)
        if self._decodes:
            # The client decodes replies as text, so what it reads back must be text.
            try:
                data.decode()
            except UnicodeDecodeError:
                raise TorrelqueSerialiserError(
                    f'the {what} serialises to bytes that are not UTF-8, which a client with '
                    'decode_responses=True cannot read back; use decode_responses=False'
                ) from None
        return data

    def _loads(self, data: bytes, task_id: TaskId, what: str) -> Any:
        try:
            return self._serialiser.loads(data)
        except Exception as exc:
            raise TorrelqueSerialiserError(f'cannot decode the {what} of task {task_id}: {exc}', task_id) from exc

    def _target(self, pipeline: Pipeline | None) -> Any:
        if pipeline is None:
            return self._client
        if not isinstance(pipeline, Pipeline):
            raise TorrelqueValueError(f'pipeline must be a client.pipeline(), not {type(pipeline).__name__}')
        return pipeline

    @staticmethod
    def _task_id_arg(task_id: Any) -> TaskId:
        if isinstance(task_id, bytes):
            task_id = task_id.decode()
        if not isinstance(task_id, str) or not task_id:
            raise TorrelqueValueError(f'a task id is a non-empty string, not {task_id!r}')
        return task_id

    # -- the transitions -------------------------------------------------------

    async def enqueue(
        self,
        task: Any,
        *,
        task_timeout: float | None = None,
        delay: float | None = None,
        pipeline: Pipeline | None = None,
    ) -> TaskId:
        """Puts a task on the queue.

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
        :return: the task's id.
        :raises TorrelqueSerialiserError: the serialiser cannot encode the task.
        :raises TorrelqueValueError: a timeout or delay out of range.
        """
        timeout = self.task_timeout if task_timeout is None else _number('task_timeout', task_timeout, positive=True)
        delay_us = 0 if delay is None else _micros(_number('delay', delay, positive=False))
        payload = self._dumps(task, 'task')
        target = self._target(pipeline)
        common = [self._offset_arg, b'' if timeout == STANDARD_TIMEOUT else timeout, b'%d' % delay_us]
        if pipeline is not None:
            task_id = _new_task_id()
            await self._enqueue_batches.add(target, common, [task_id, payload])
            return task_id.decode()
        while True:
            task_id = _new_task_id()
            (code,) = await self._scripts['enqueue'](self._enqueue_keys, [*common, task_id, payload])
            # A taken id (about one in 10**28) writes nothing; draw another.
            if code != Outcome.DUPLICATE:
                return task_id.decode()

    async def dequeue(self, timeout: float | None = None, *, max_tasks: int = 1) -> TaskPair | list[TaskPair]:
        """Takes the next task(s) off the queue for processing, waiting in
        Redis (no polling) while there is none.

        The task is then *working*: release it when done, or requeue it. If
        neither happens within its timeout, the sweep returns it to pending
        and it is delivered again.

        :param timeout: seconds to wait for a task, fractions included;
            ``None`` waits for ever.
        :param max_tasks: above 1, take up to that many tasks that are ready
            at once, and return a list (of at least one).
        :return: ``(task_id, task)``, or a list of them when ``max_tasks > 1``.
        :raises TorrelqueTimeoutError: no task came within ``timeout``.
        :raises TorrelqueValueError: a non-positive timeout, or ``max_tasks``
            below 1.
        """
        if timeout is not None:
            timeout = _number('timeout', timeout, positive=True)
        if isinstance(max_tasks, bool) or not isinstance(max_tasks, int) or max_tasks < 1:
            raise TorrelqueValueError(f'max_tasks must be an integer of at least 1, not {max_tasks!r}')

        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            pairs = await self._take(max_tasks, '')
            if not pairs:
                popped = await self._block(deadline)
                if popped is None:
                    if deadline is not None and loop.time() >= deadline:
                        raise TorrelqueTimeoutError(f'no task within {timeout} s')
                    continue
                pairs = await self._take(max_tasks, _text(popped))
            if pairs:
                return pairs if max_tasks > 1 else pairs[0]

    async def _block(self, deadline: float | None) -> bytes | str | None:
        """Waits in Redis for an id to move from pending to dequeueing."""
        if deadline is None:
            wait = 0.0  # for ever
        else:
            wait = deadline - asyncio.get_running_loop().time()
            if wait <= 0:
                return None
        if self._block_limit:
            wait = self._block_limit if wait == 0 else min(wait, self._block_limit)
        result: bytes | str | None = await self._client.blmove(
            self.keys['pending'],
            self.keys['dequeueing'],
            wait,  # type: ignore[arg-type]  # fractional seconds work since Redis 6
            'RIGHT',
            'LEFT',
        )
        return result

    async def _take(self, max_tasks: int, popped: str) -> list[TaskPair]:
        """Moves ready tasks to working and decodes them."""
        result: list[TaskPair] = []
        while len(result) < max_tasks:
            limit = min(max_tasks - len(result), _BATCH)
            args = [self._offset_arg, limit, popped]
            moved, missing = await self._scripts['dequeue'](self._dequeue_keys, args)
            for task_id in missing:
                logger.warning('Dropped id %s from pending: the queue has no payload for it', _text(task_id))
            for i in range(0, len(moved), 2):
                task_id = _text(moved[i])
                try:
                    result.append((task_id, self._loads(_raw(moved[i + 1]), task_id, 'payload')))
                except TorrelqueSerialiserError as exc:
                    await self._quarantine(task_id, exc)
            if len(moved) // 2 + len(missing) < limit or popped:
                break
        return result

    async def _quarantine(self, task_id: TaskId, exc: TorrelqueSerialiserError) -> None:
        """Rejects a task whose payload cannot be decoded, keeping it."""
        logger.error(
            'Task %s rejected: %s. Its payload is kept in the "payload" field of %s',
            task_id, exc, self._state_key(task_id),
        )  # fmt: skip
        error = {'error': 'undecodable payload', 'detail': str(exc.__cause__ or exc)}
        try:
            result = self._dumps(error, 'error')
        except TorrelqueSerialiserError:
            result = b''
        args = [self._offset_arg, task_id, result]
        await self._scripts['quarantine'](self._release_keys, args)

    async def requeue(
        self,
        task_id: TaskId,
        delay: float | None = None,
        *,
        task_timeout: float | None = None,
        pipeline: Pipeline | None = None,
    ) -> bool | None:
        """Returns a working task to the queue, to be dequeued again: at the
        tail of pending, or after ``delay`` seconds.

        :param task_id: a task that is working.
        :param delay: seconds to hold it in ``delayed`` first (back-off).
        :param task_timeout: a new timeout for the task's next attempts.
        :param pipeline: a caller's pipeline to add the requeue to.
        :return: ``True`` when requeued; ``False`` (and a warning logged,
            nothing changed) when the task is not working. ``None`` with a
            pipeline: its results hold the script's code (1 for done).
        :raises TorrelqueValueError: a delay or timeout out of range.
        """
        task_id = self._task_id_arg(task_id)
        delay_us = 0 if delay is None else _micros(_number('delay', delay, positive=False))
        timeout = '' if task_timeout is None else _number('task_timeout', task_timeout, positive=True)
        target = self._target(pipeline)
        args = [self._offset_arg, task_id, delay_us, timeout]
        code = await self._scripts['requeue'](self._requeue_keys, args, client=target)
        return None if pipeline is not None else accepted(code, 'Requeue', task_id)

    async def release(
        self,
        task_id: TaskId,
        *,
        result: Any = None,
        result_ttl: float | None = None,
        status: TorrelqueTaskStatus = TorrelqueTaskStatus.COMPLETED,
        pipeline: Pipeline | None = None,
    ) -> bool | None:
        """Takes a finished working task out of the queue.

        Without a ``result`` every trace of the task is removed at once.
        With one, its state (final status, result, times) is kept for
        ``result_ttl`` seconds, for :meth:`get_task_state` and :meth:`watch`.

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
            code per task (1 when released, 0 or -1 when refused).
        :return: ``True`` when released; ``False`` (and a warning logged,
            nothing changed) when the task is not working. ``None`` with a
            pipeline.
        :raises TorrelqueError: ``status`` is not final
            (:class:`TorrelqueValueError`).
        :raises TorrelqueSerialiserError: the serialiser cannot encode the result.
        """
        task_id = self._task_id_arg(task_id)
        try:
            final = TorrelqueTaskStatus(status)
        except ValueError:
            raise TorrelqueValueError(f'status must be a TorrelqueTaskStatus, not {status!r}') from None
        if not final.isfinal():
            raise TorrelqueValueError(f'a released task needs a final status (COMPLETED or REJECTED), not {final.name}')
        ttl = self.result_ttl if result_ttl is None else _number('result_ttl', result_ttl, positive=True)
        target = self._target(pipeline)
        if result is None:
            if pipeline is not None:
                await self._release_batches.add(target, [self._offset_arg, _STATUS_ARGS[final], b'0'], [task_id])
                return None
            args = [self._offset_arg, _STATUS_ARGS[final], b'0', task_id]
        else:
            data = self._dumps(result, 'result')
            args = [self._offset_arg, _STATUS_ARGS[final], b'1', task_id, data, b'%d' % max(1, _micros(ttl) // 1000)]
        codes = await self._scripts['release'](self._release_keys, args, client=target)
        return None if pipeline is not None else accepted(codes[0], 'Release', task_id)

    # -- the sweep -------------------------------------------------------------------

    async def sweep(self) -> tuple[int, int, int]:
        """Returns to pending the tasks that are due back: stale working
        tasks (past their timeout), delayed tasks whose time has come, and
        ids that a dequeue which died left in ``dequeueing`` (on the second
        sweep that sees them). Works in batches of :attr:`sweep_batch_size`.

        :return: how many ``(stale, delayed, undequeued)`` tasks it returned.
        :raises TorrelqueValueError: :attr:`sweep_batch_size` is out of range.
        """
        counts, _ = await self._sweep()
        return counts

    async def _sweep(self) -> tuple[tuple[int, int, int], float | None]:
        """Sweeps every batch; also says in how many seconds the next
        deadline or due time comes (``None``: nothing is waiting)."""
        size = self.sweep_batch_size
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= _MAX_SWEEP_BATCH:
            raise TorrelqueValueError(f'sweep_batch_size must be an integer from 1 to {_MAX_SWEEP_BATCH}, not {size!r}')
        stale = due = orphans = 0
        first = True
        while True:
            args = [self._offset_arg, size, 1 if first else 0]
            moved_stale, moved_due, moved_orphans, more, next_us = await self._scripts['sweep'](self._sweep_keys, args)
            stale += moved_stale
            due += moved_due
            orphans += moved_orphans
            first = False
            if not more:
                return (stale, due, orphans), (None if next_us < 0 else next_us / 1_000_000)

    def schedule_sweep(self, interval: float | None = None) -> None:
        """Runs the sweep in the background, every ``interval`` seconds and
        also at each stale deadline and due time, so that delayed and stale
        tasks come back within milliseconds of their time. Scheduling again
        replaces the running one. Needs a running event loop.

        :param interval: the most seconds between sweeps (default
            :attr:`sweep_interval`). Orphaned ``dequeueing`` ids come back
            within two intervals.
        """
        interval = self.sweep_interval if interval is None else _number('interval', interval, positive=True)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise TorrelqueError('schedule_sweep() needs a running event loop: call it from a coroutine') from None
        self.unschedule_sweep()
        self._sweep_task = loop.create_task(self._sweep_forever(interval), name=f'torrelque sweep {self.name}')

    def unschedule_sweep(self) -> None:
        """Stops the background sweep, if one runs."""
        if self._sweep_task is not None:
            self._sweep_task.cancel()
            self._sweep_task = None

    async def _sweep_forever(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        woken = self._sweep_woken = asyncio.Event()
        wake_channel = self.keys['wake'].encode()
        waker = _SweepWaker(self)
        try:
            try:
                await self._events().join(wake_channel, waker)
            except Exception as exc:
                logger.warning('The sweep runs without wake-ups (every %s s): %s', interval, exc)
            failures = 0
            while True:
                try:
                    (stale, due, orphans), next_in = await self._sweep()
                except Exception as exc:
                    failures += 1
                    wait = min(interval, 0.1 * 2**failures)
                    logger.warning('Sweep failed (%s), retrying in %.1f s', exc, wait, exc_info=True)
                else:
                    failures = 0
                    if stale or due or orphans:
                        logger.debug('Swept back %d stale, %d due, %d undequeued', stale, due, orphans)
                    wait = interval if next_in is None else min(interval, next_in)
                self._sweep_due = loop.time() + wait
                while (left := self._sweep_due - loop.time()) > 0:
                    woken.clear()
                    try:
                        async with asyncio.timeout(left):
                            await woken.wait()
                    except TimeoutError:
                        break
        finally:
            if self._hub is not None:
                self._hub.leave(wake_channel, waker)

    def _wake_sweep(self, seconds: float) -> None:
        """Brings the next scheduled sweep forward to ``seconds`` from now."""
        if self._sweep_woken is None:
            return
        due = asyncio.get_running_loop().time() + seconds
        if due < self._sweep_due:
            self._sweep_due = due
            self._sweep_woken.set()

    # -- reading state -----------------------------------------------------------------

    async def get_queue_stats(self) -> TorrelqueQueueStats:
        """How many tasks the queue holds now, in one atomic read."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hlen(self.keys['tasks'])
            pipe.llen(self.keys['pending'])
            pipe.zcard(self.keys['working'])
            pipe.zcard(self.keys['delayed'])
            tasks, pending, working, delayed = await pipe.execute()
        return TorrelqueQueueStats(tasks, pending, working, delayed)

    async def get_queue_counters(self) -> dict[str, int]:
        """The queue's monotonic counters from ``{queue}:stats`` (see
        :data:`COUNTERS`), zero for those never counted."""
        raw = await self._client.hgetall(self.keys['stats'])
        counters = dict.fromkeys(COUNTERS, 0)
        counters.update({_text(name): int(value) for name, value in raw.items()})
        return counters

    async def get_task_state(self, task_id: TaskId) -> TorrelqueTaskState:
        """The task's current state.

        :raises TorrelqueLookupError: the task is unknown, was released
            without a result, or its result expired.
        :raises TorrelqueSerialiserError: its result cannot be decoded.
        """
        task_id = self._task_id_arg(task_id)
        raw = await self._client.hgetall(self._state_key(task_id))
        if not raw:
            raise TorrelqueLookupError(f'task {task_id} is unknown')
        fields = {_text(name): value for name, value in raw.items()}
        result = fields.pop('result', None)
        return make_state(fields, None if result is None else _raw(result), self._serialiser.loads, task_id)

    # -- events ------------------------------------------------------------------------

    def _events(self) -> PubSubHub:
        if self._hub is None:
            self._hub = PubSubHub(self._client, self._publish_snapshots)
        return self._hub

    async def _publish_snapshots(self, task_ids: Sequence[str]) -> list[int]:
        found: list[int] = await self._scripts['watch']([self.keys['task']], [self._offset_arg, *task_ids])
        return found

    def watch(self, task_id: TaskId, *, timeout: float | None = None) -> TaskWatch:
        """Follows a task: an async iterator that yields its current state,
        then its state after each change of status, and stops after a final
        status (with the result), or when the task is released without a
        result. Waiting costs nothing: it listens on pub/sub, sharing one
        connection with every other watch of this instance, and needs no
        server configuration.

        :param task_id: the task to follow.
        :param timeout: seconds the whole watch may take.
        :raises TorrelqueLookupError: the task is unknown (on the first step).
        :raises TorrelqueTimeoutError: no final state within ``timeout``.
        """
        task_id = self._task_id_arg(task_id)
        if timeout is not None:
            timeout = _number('timeout', timeout, positive=True)
        channel = self._state_key(task_id).encode()
        return TaskWatch(self._events(), channel, task_id, timeout, self._serialiser.loads)

    def watch_queue(self) -> QueueWatch:
        """Every transition of every task of the queue, as
        :class:`~torrelque.TorrelqueEvent` items, from the first step of the
        iteration until it is closed (for dashboards and tailing)."""
        return QueueWatch(self._events(), self.keys['events'].encode())

    # -- closing -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stops the scheduled sweep and closes the shared pub/sub
        connection, ending any watch. The Redis client stays open: it is the
        caller's."""
        task, self._sweep_task = self._sweep_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._hub is not None:
            hub, self._hub = self._hub, None
            await hub.aclose()

    async def __aenter__(self) -> Torrelque:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _SweepWaker:
    """Listens on the queue's wake channel for earlier deadlines."""

    def __init__(self, queue: Torrelque) -> None:
        self._queue = queue

    def on_message(self, data: bytes) -> None:
        try:
            seconds = float(data)
        except ValueError:
            return
        self._queue._wake_sweep(seconds)

    def on_resubscribed(self) -> None:
        self._queue._wake_sweep(0)  # wake-ups may have been missed

    def on_closed(self) -> None:
        pass
