"""Statuses, states, counters and the serialiser: the values the API returns."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson


class TorrelqueTaskStatus(enum.IntEnum):
    """Where a task is in its lifecycle. The value is what Redis stores."""

    #: Waiting in the ``pending`` list for a consumer.
    PENDING = 0
    #: Dequeued by a consumer, which must release or requeue it before its
    #: timeout; otherwise the sweep returns it to ``pending``.
    WORKING = 1
    #: Waiting in the ``delayed`` set until its due time.
    DELAYED = 2
    #: Released as done.
    COMPLETED = 3
    #: Released as failed (for good, after the consumer gave up on it).
    REJECTED = 4
    #: Cancelled (:meth:`~torrelque.Torrelque.cancel`) before it was done.
    CANCELLED = 5

    def isfinal(self) -> bool:
        """Whether the task is out of the queue (released) in this status."""
        return self >= TorrelqueTaskStatus.COMPLETED


class TorrelqueTaskId(str):
    """The id of a dequeued task, as :meth:`~torrelque.Torrelque.dequeue`
    returns it: a plain ``str`` (equal to, and hashed as, the id) that also
    carries the attempt's lease, so that :meth:`~torrelque.Torrelque.release`,
    :meth:`~torrelque.Torrelque.requeue` and :meth:`~torrelque.Torrelque.touch`
    given this object act on this attempt only."""

    #: The lease token of the attempt: pass it as ``lease=`` to hand the
    #: attempt to another process or instance.
    lease: str
    #: How many times the task has been dequeued, this attempt included.
    dequeue_count: int
    #: The task's timeout: seconds this attempt has before it is stale.
    timeout: float
    #: The most attempts the task's enqueue allowed, or ``None``.
    max_attempts: int | None

    def __new__(
        cls, task_id: str, lease: str, dequeue_count: int, timeout: float = 300.0, max_attempts: int | None = None
    ) -> TorrelqueTaskId:
        self = super().__new__(cls, task_id)
        self.lease = lease
        self.dequeue_count = dequeue_count
        self.timeout = timeout
        self.max_attempts = max_attempts
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.lease, self.dequeue_count, self.timeout, self.max_attempts))


class TorrelqueDeadTask(NamedTuple):
    """A task of the dead-letter set, as :meth:`~torrelque.Torrelque.list_dead`
    and :meth:`~torrelque.Torrelque.get_dead` return it."""

    #: Id of the task.
    task_id: str
    #: Server time (Unix seconds) it was buried.
    time: float
    #: Why: ``type``, ``message``, ``traceback`` (text) and ``attempts``.
    error: dict[str, Any]
    #: How many times it was dequeued.
    dequeue_count: int
    #: Its payload, decoded.
    task: Any


class TorrelqueWorkerInfo(NamedTuple):
    """A worker of the queue's registry (``{queue}:workers``), as
    :meth:`~torrelque.Torrelque.list_workers` returns it."""

    #: The worker's id: ``<host>:<pid>:<token>``.
    worker_id: str
    #: The host it runs on.
    host: str
    #: Its process id.
    pid: int
    #: Server time (Unix seconds) it started.
    started: float
    #: How many tasks it runs at once.
    concurrency: int
    #: How many tasks it ran at its last beat.
    in_flight: int
    #: Tasks it completed.
    processed: int
    #: Attempts that failed in it.
    failed: int
    #: Server time of its last beat.
    last_beat: float
    #: Server time after which it counts as gone, unless it beats again.
    expires: float


class TorrelqueQueueStats(NamedTuple):
    """How many tasks a queue holds now."""

    #: Tasks in the queue, whatever their status (released ones excluded).
    tasks: int
    #: Tasks waiting for a consumer.
    pending: int
    #: Tasks dequeued and not yet released or requeued.
    working: int
    #: Tasks waiting for their due time.
    delayed: int


class _TaskStateFields(NamedTuple):
    """One task's state, as stored in its ``{queue}:task:<id>`` hash."""

    #: The task's status.
    status: TorrelqueTaskStatus
    #: Seconds a consumer has, from dequeue, before the task counts as stale.
    timeout: float
    #: The decoded result of a task released with one, else ``None``.
    result: Any
    #: Times the task was dequeued (above 1: it was retried or went stale).
    dequeue_count: int
    #: Times the task was requeued by a consumer.
    requeue_count: int
    #: Server time (Unix seconds) of the enqueue.
    enqueue_time: float
    #: Server time of the last dequeue, or ``None``.
    last_dequeue_time: float | None
    #: Server time of the last requeue, or ``None``.
    last_requeue_time: float | None
    #: Server time of the release, or ``None``.
    release_time: float | None


class TorrelqueTaskState(_TaskStateFields):
    """One task's state, as stored in its ``{queue}:task:<id>`` hash.

    A tuple of the nine fields of 0.9 (so code that unpacks it keeps
    working), with :attr:`progress` beside them as an attribute.
    """

    #: The last progress its consumer reported (``ctx.progress()`` of the
    #: :class:`~torrelque.Worker`, or :meth:`~torrelque.Torrelque.set_progress`),
    #: decoded from JSON, or ``None``.
    progress: Any = None

    def __new__(cls, *args: Any, progress: Any = None, **kwargs: Any) -> TorrelqueTaskState:
        self = super().__new__(cls, *args, **kwargs)
        self.progress = progress
        return self

    def _replace(self, **changes: Any) -> TorrelqueTaskState:
        progress = changes.pop('progress', self.progress)
        return TorrelqueTaskState(*super()._replace(**changes), progress=progress)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_state, (tuple(self), self.progress))


def _rebuild_state(fields: tuple[Any, ...], progress: Any) -> TorrelqueTaskState:
    return TorrelqueTaskState(*fields, progress=progress)


class TorrelqueEvent(NamedTuple):
    """One transition of a task, as :meth:`~torrelque.Torrelque.watch_queue`
    yields it."""

    #: Id of the task.
    task_id: str
    #: What happened: ``enqueued``, ``dequeued``, ``requeued``, ``released``
    #: (kept with a result), ``removed`` (released without one), ``stale``
    #: or ``due`` (returned to pending by the sweep), ``returned`` (given
    #: back by a dequeue that was cancelled or failed before its caller got
    #: the task), ``quarantined`` (its payload could not be decoded),
    #: ``progress`` (its consumer reported progress), ``dead`` or
    #: ``revived`` (into or out of the dead-letter set), ``cancelling``
    #: (its worker is told to abort it), ``cancelled``, or ``replaced``
    #: (an enqueue with ``replace=True`` updated it).
    event: str
    #: The task's status after the transition, if known.
    status: TorrelqueTaskStatus | None
    #: Server time (Unix seconds) of the transition.
    time: float


class TorrelqueTaskSerialiser(NamedTuple):
    """How task payloads and results are turned into bytes and back."""

    #: Object to ``bytes`` (``str`` is accepted and stored as UTF-8).
    dumps: Callable[[Any], bytes]
    #: ``bytes`` back to the object.
    loads: Callable[[bytes], Any]


def _json_dumps(obj: Any) -> bytes:
    try:
        data = orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        # orjson refuses some things the standard json accepts (integers
        # beyond 64 bits); those still encode, only more slowly, and the
        # standard json refuses NaN and infinities itself.
        return json.dumps(obj, allow_nan=False).encode()
    # orjson writes NaN and infinities as null, which would change the
    # value: where a null is written, make sure it was a None.
    if b'null' in data:
        _refuse_non_finite(obj)
    return data


def _refuse_non_finite(obj: Any) -> None:
    """Raises ValueError for a NaN or infinite float anywhere in ``obj``."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError(f'{item!r} is not JSON (orjson would write it as null)')
        elif isinstance(item, dict):
            stack.extend(item.values())
            stack.extend(key for key in item if isinstance(key, float))
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            stack.extend(vars(item).values() if hasattr(item, '__dict__') else dataclasses.astuple(item))


def _json_loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        # NaN and Infinity, which the standard json writes.
        return json.loads(data)


#: The default serialiser: JSON, encoded by orjson.
json_serialiser = TorrelqueTaskSerialiser(_json_dumps, _json_loads)
