"""Argument checks, ids and leases, and the payload codec: everything done to
a call's input before anything is sent, so that it fails with a clear error
and writes nothing. Nothing here talks to Redis."""

from __future__ import annotations

import itertools
import math
import os
import re
from typing import Any

import orjson

from ._errors import TorrelqueSerialiserError, TorrelqueValueError
from ._types import TorrelqueTaskSerialiser, TorrelqueTaskStatus, json_serialiser

#: The longest duration any argument may be (100 years, in seconds). Times
#: are integer microseconds in Redis, where Lua and sorted-set scores hold
#: integers exactly up to 2**53 (about 285 years after 1970); this bound
#: keeps every deadline, due time and expiry well inside that.
MAX_SECONDS = 100 * 365.25 * 86400

# Ids and leases: characters of [0-9A-Za-z], one per random byte.
_ALPHABET = bytes(range(256)).translate(
    bytes.maketrans(bytes(range(256)), (b'0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz' * 5)[:256])
)


def new_task_id() -> bytes:
    """16 characters from 16 random bytes (95 bits): short ids make every key,
    list entry and hash field that holds one smaller, and an id is never
    drawn twice, so a taken id means a retried enqueue."""
    return os.urandom(16).translate(_ALPHABET)


def _reseed() -> None:
    global _token_prefix, _token_count
    _token_prefix = os.urandom(10).translate(_ALPHABET)
    _token_count = itertools.count()


_token_prefix = b''
_token_count = itertools.count()
_reseed()
# A forked child must not draw its parent's tokens.
os.register_at_fork(after_in_child=_reseed)


def new_token() -> bytes:
    """A call's token (a dequeue's is its lease): 10 random characters of
    this process (59 bits, drawn again in a forked child) and a count in
    hexadecimal, unique to the call without a system call per token."""
    return b'%s%05x' % (_token_prefix, next(_token_count))


def seconds(name: str, value: Any, *, positive: bool) -> float:
    """``value`` as a number of seconds: finite, at most :data:`MAX_SECONDS`,
    and positive, or else zero or positive."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TorrelqueValueError(f'{name} must be a number of seconds, not {value!r}')
    if not math.isfinite(value) or value < 0 or (positive and value == 0) or value > MAX_SECONDS:
        kind = 'positive' if positive else 'zero or positive'
        raise TorrelqueValueError(
            f'{name} must be a finite, {kind} number of seconds of at most {MAX_SECONDS:.0f} (100 years), not {value!r}'
        )
    return float(value)


def offset(value: Any) -> float:
    """A clock offset: finite seconds, either way, within :data:`MAX_SECONDS`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TorrelqueValueError(f'clock_offset must be a finite number of seconds, not {value!r}')
    if abs(value) > MAX_SECONDS:
        raise TorrelqueValueError(f'clock_offset must be within {MAX_SECONDS:.0f} s (100 years), not {value!r}')
    return float(value)


def micros(value: float) -> int:
    return round(value * 1_000_000)


def count(name: str, value: Any, *, low: int = 1, high: int | None = None) -> int:
    """``value`` as an integer from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        span = f'of at least {low}' if high is None else f'from {low} to {high}'
        raise TorrelqueValueError(f'{name} must be an integer {span}, not {value!r}')
    return value


def task_id(value: Any) -> str:
    """A task id as given to a method: text (bytes are decoded)."""
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str) or not value:
        raise TorrelqueValueError(f'a task id is a non-empty string, not {value!r}')
    return value


#: What a caller-given task id may hold: no spaces (replies and the sweep
#: join ids with them) and nothing that is not plain, printable ASCII.
_CALLER_ID = re.compile(r'[A-Za-z0-9_.:@/+=#~-]{1,200}')


def caller_task_id(value: Any) -> bytes:
    """A task id given to an enqueue: 1 to 200 characters of letters,
    digits and ``_ . : @ / + = # ~ -``."""
    if not isinstance(value, str) or not _CALLER_ID.fullmatch(value):
        raise TorrelqueValueError(
            'a task_id is 1 to 200 characters of letters, digits and _ . : @ / + = # ~ - '
            f'(it is part of key names), not {value!r}'
        )
    return value.encode()


def lease(value: Any) -> bytes:
    """A lease token as given to a method (text or bytes)."""
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes) or not value or not value.isalnum():
        raise TorrelqueValueError(f'a lease is the non-empty token a dequeue gave, not {value!r}')
    return value


def final_status(value: Any) -> TorrelqueTaskStatus:
    """A release's status: COMPLETED or REJECTED."""
    if value is TorrelqueTaskStatus.COMPLETED:
        return value
    try:
        status = TorrelqueTaskStatus(value)
    except ValueError:
        raise TorrelqueValueError(f'status must be a TorrelqueTaskStatus, not {value!r}') from None
    if not status.isfinal() or status is TorrelqueTaskStatus.CANCELLED:
        raise TorrelqueValueError(f'a released task needs a final status (COMPLETED or REJECTED), not {status.name}')
    return status


#: The largest progress report, as JSON (it rides along in every event of its task).
MAX_PROGRESS_BYTES = 64 * 1024


def progress_json(value: Any) -> bytes:
    """A progress report as the JSON stored in a task's state and copied
    into its events."""
    try:
        # orjson alone, as events are parsed: integers beyond 64 bits would
        # come back as floats, so they are refused.
        data = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
        if b'null' in data:
            json_serialiser.dumps(value)  # refuses NaN and infinities, which orjson writes as null
    except (TypeError, ValueError) as exc:
        raise TorrelqueSerialiserError(f'progress must be a JSON value: {exc}') from exc
    if len(data) > MAX_PROGRESS_BYTES:
        raise TorrelqueValueError(f'progress is {len(data):,} bytes of JSON, more than {MAX_PROGRESS_BYTES:,}')
    return data


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def raw(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


class Codec:
    """Turns payloads and results into the bytes stored in Redis and back,
    with the serialiser's errors as :class:`TorrelqueSerialiserError`.

    :param serialiser: the queue's serialiser.
    :param text_replies: the client decodes replies as text
        (``decode_responses=True``), so what it stores must be UTF-8.
    """

    def __init__(self, serialiser: TorrelqueTaskSerialiser, *, text_replies: bool) -> None:
        if not (callable(getattr(serialiser, 'dumps', None)) and callable(getattr(serialiser, 'loads', None))):
            raise TorrelqueValueError('the serialiser needs callable dumps and loads')
        self.serialiser = serialiser
        self._text_replies = text_replies

    def dumps(self, obj: Any, what: str, max_bytes: int) -> bytes:
        """``obj`` serialised, of at most ``max_bytes``."""
        try:
            data = self.serialiser.dumps(obj)
        except Exception as exc:
            raise TorrelqueSerialiserError(f'the serialiser cannot encode the {what}: {exc}') from exc
        if isinstance(data, str):
            data = data.encode()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TorrelqueSerialiserError(
                f'the serialiser must return bytes for the {what}, not {type(data).__name__}'
            )
        data = bytes(data)
        if len(data) > max_bytes:
            raise TorrelqueValueError(
                f'the {what} serialises to {len(data):,} bytes, more than the {max_bytes:,} a Redis server '
                'takes in one value (its proto-max-bulk-len; see Torrelque.max_value_bytes)'
            )
        if self._text_replies:
            try:
                data.decode()
            except UnicodeDecodeError:
                raise TorrelqueSerialiserError(
                    f'the {what} serialises to bytes that are not UTF-8, which a client with '
                    'decode_responses=True cannot read back; use decode_responses=False'
                ) from None
        return data

    def loads(self, data: bytes, task_id: str, what: str) -> Any:
        try:
            return self.serialiser.loads(data)
        except Exception as exc:
            raise TorrelqueSerialiserError(f'cannot decode the {what} of task {task_id}: {exc}', task_id) from exc
