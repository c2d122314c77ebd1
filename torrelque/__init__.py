"""Reliable, introspectable asyncio work queues on Redis.

A drop-in for the API of the ``Torrelque`` package: the same class, methods,
arguments, return values, statuses and exceptions.
"""

from ._errors import (
    TorrelqueDuplicateError,
    TorrelqueError,
    TorrelqueLagError,
    TorrelqueLookupError,
    TorrelqueOutOfMemoryError,
    TorrelqueSerialiserError,
    TorrelqueTimeoutError,
    TorrelqueValueError,
)
from ._queue import COUNTERS, Torrelque
from ._types import (
    TorrelqueDeadTask,
    TorrelqueEvent,
    TorrelqueQueueStats,
    TorrelqueTaskId,
    TorrelqueTaskSerialiser,
    TorrelqueTaskState,
    TorrelqueTaskStatus,
    TorrelqueWorkerInfo,
    json_serialiser,
)
from ._version import __version__
from ._worker import Reject, Retry, TaskContext, Worker

__all__ = (
    'COUNTERS',
    'Reject',
    'Retry',
    'TaskContext',
    'Torrelque',
    'TorrelqueDeadTask',
    'TorrelqueDuplicateError',
    'TorrelqueError',
    'TorrelqueEvent',
    'TorrelqueLagError',
    'TorrelqueLookupError',
    'TorrelqueOutOfMemoryError',
    'TorrelqueQueueStats',
    'TorrelqueSerialiserError',
    'TorrelqueTaskId',
    'TorrelqueTaskSerialiser',
    'TorrelqueTaskState',
    'TorrelqueTaskStatus',
    'TorrelqueTimeoutError',
    'TorrelqueValueError',
    'TorrelqueWorkerInfo',
    'Worker',
    '__version__',
    'json_serialiser',
)
