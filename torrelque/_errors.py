"""Exceptions raised by torrelque.

All derive from one base, so ``except TorrelqueError`` catches them all::

    TorrelqueError
     +-- TorrelqueTimeoutError
     +-- TorrelqueLookupError
     +-- TorrelqueValueError        (also a ValueError)
     +-- TorrelqueSerialiserError
     +-- TorrelqueLagError
     +-- TorrelqueOutOfMemoryError  (also redis-py's OutOfMemoryError)
     +-- TorrelqueDuplicateError
"""

from __future__ import annotations

import redis.exceptions


class TorrelqueError(Exception):
    """Base of every error torrelque raises."""


class TorrelqueTimeoutError(TorrelqueError):
    """Nothing came in time: :meth:`~torrelque.Torrelque.dequeue` found no
    task, or :meth:`~torrelque.Torrelque.watch` saw no final state, within
    the given timeout."""


class TorrelqueLookupError(TorrelqueError):
    """The task is unknown: never enqueued, released without a result, or
    its result has expired."""


class TorrelqueValueError(TorrelqueError, ValueError):
    """An argument is of the wrong type or out of range. Raised before
    anything is written to Redis."""


class TorrelqueSerialiserError(TorrelqueError):
    """The serialiser failed: a task or result could not be encoded (raised
    before anything is written), or data stored in Redis could not be
    decoded. The serialiser's own exception is the ``__cause__``."""

    def __init__(self, message: str, task_id: str | None = None) -> None:
        super().__init__(message)
        #: Id of the task whose data could not be decoded, if any.
        self.task_id = task_id


class TorrelqueLagError(TorrelqueError):
    """A :meth:`~torrelque.Torrelque.watch_queue` iteration fell behind: its
    reader took transitions more slowly than they came, so it held as many
    as it may and dropped the rest. Raised after the held ones; the
    iteration has ended, and a new one starts from the present."""

    def __init__(self, missed: int) -> None:
        super().__init__(f'the queue watch fell behind and dropped {missed} transition(s); watch again')
        #: How many transitions were dropped.
        self.missed = missed


class TorrelqueOutOfMemoryError(TorrelqueError, redis.exceptions.OutOfMemoryError):
    """The Redis server is out of memory (``maxmemory`` reached under a
    policy that evicts nothing, such as ``noeviction``) and refused a call
    that would grow it, such as an enqueue; nothing was written. Calls that
    free or keep memory (dequeue, release, requeue, touch, sweep, reads)
    go on, so consumers drain a full queue. It is also redis-py's
    ``OutOfMemoryError``, which code written before it catches."""


class TorrelqueDuplicateError(TorrelqueError):
    """An enqueue with a caller-given ``task_id`` found the id taken: a task
    of that id is pending, delayed or working, its state is kept (a result
    that has not expired, a dead task), or its ``unique_for`` hold lasts.
    Nothing was written: the call made no task. (A retry of a call that made
    the task, after a lost reply, does not raise this.)"""

    def __init__(self, task_id: str) -> None:
        super().__init__(f'task {task_id} exists already (or its id is held by unique_for): no task was made')
        #: The id that is taken.
        self.task_id = task_id
