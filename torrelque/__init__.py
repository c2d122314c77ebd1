"""Reliable, introspectable asyncio work queues on Redis.

A drop-in for the API of the ``Torrelque`` package: the same class, methods,
arguments, return values, statuses and exceptions.
"""

from ._errors import (
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
    TorrelqueEvent,
    TorrelqueQueueStats,
    TorrelqueTaskId,
    TorrelqueTaskSerialiser,
    TorrelqueTaskState,
    TorrelqueTaskStatus,
    json_serialiser,
)
from ._version import __version__

__all__ = (
    'COUNTERS',
    'Torrelque',
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
    '__version__',
    'json_serialiser',
)
