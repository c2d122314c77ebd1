"""Argument checks, ids, tokens and the payload codec, without Redis."""

from __future__ import annotations

import math
import os

import pytest

from torrelque import (
    TorrelqueSerialiserError,
    TorrelqueTaskSerialiser,
    TorrelqueTaskStatus,
    TorrelqueValueError,
    _codec,
)


@pytest.mark.parametrize('value', [0.001, 1, 2.5, _codec.MAX_SECONDS])
def test_seconds_in_range_are_floats(value: float) -> None:
    assert _codec.seconds('delay', value, positive=True) == float(value)


@pytest.mark.parametrize('value', [0, -1, math.nan, math.inf, -math.inf, _codec.MAX_SECONDS * 1.0001, True, '1', None])
def test_seconds_out_of_range_are_refused_with_the_name(value: object) -> None:
    with pytest.raises(TorrelqueValueError, match='task_timeout'):
        _codec.seconds('task_timeout', value, positive=True)


def test_zero_seconds_where_zero_is_allowed() -> None:
    assert _codec.seconds('delay', 0, positive=False) == 0.0
    with pytest.raises(TorrelqueValueError, match='zero or positive'):
        _codec.seconds('delay', -0.5, positive=False)


@pytest.mark.parametrize('value', [-_codec.MAX_SECONDS, -3, 0, 7.5, _codec.MAX_SECONDS])
def test_clock_offsets_within_the_bound(value: float) -> None:
    assert _codec.offset(value) == value


@pytest.mark.parametrize('value', [math.nan, math.inf, _codec.MAX_SECONDS + 1, False, 'x'])
def test_clock_offsets_out_of_range(value: object) -> None:
    with pytest.raises(TorrelqueValueError, match='clock_offset'):
        _codec.offset(value)


def test_counts() -> None:
    assert _codec.count('max_tasks', 5) == 5
    assert _codec.count('size', 5000, high=5000) == 5000
    for bad in (0, -1, 1.5, True, '3'):
        with pytest.raises(TorrelqueValueError, match='max_tasks'):
            _codec.count('max_tasks', bad)
    with pytest.raises(TorrelqueValueError, match='from 1 to 5000'):
        _codec.count('size', 5001, high=5000)


def test_task_ids_and_leases() -> None:
    assert _codec.task_id(b'abc') == 'abc'
    assert _codec.lease('Tok3n') == _codec.lease(b'Tok3n') == b'Tok3n'
    for bad in ('', None, 7):
        with pytest.raises(TorrelqueValueError, match='task id'):
            _codec.task_id(bad)
    for bad in ('', 'a b', 'a:b', 'é', 3):
        with pytest.raises(TorrelqueValueError, match='lease'):
            _codec.lease(bad)


def test_final_statuses() -> None:
    assert _codec.final_status(3) is TorrelqueTaskStatus.COMPLETED
    for bad in (TorrelqueTaskStatus.WORKING, 9, 'done'):
        with pytest.raises(TorrelqueValueError, match='status'):
            _codec.final_status(bad)


def test_ids_and_tokens_are_unique_and_alphanumeric() -> None:
    ids = {_codec.new_task_id() for _ in range(10_000)}
    tokens = {_codec.new_token() for _ in range(10_000)}
    assert len(ids) == len(tokens) == 10_000
    assert all(len(i) == 16 and i.isalnum() for i in ids)
    assert all(t.isalnum() and _codec.lease(t) == t for t in tokens)


def test_a_forked_process_draws_other_tokens() -> None:
    """A forked child must not repeat its parent's lease tokens: the lease
    record of a call is named after its token."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(writer, _codec.new_token())
        os._exit(0)
    os.close(writer)
    child = os.read(reader, 64)
    os.close(reader)
    os.waitpid(pid, 0)
    parent = _codec.new_token()
    assert child[:10] != parent[:10]


def test_the_codec_reports_what_it_cannot_encode_or_decode() -> None:
    codec = _codec.Codec(TorrelqueTaskSerialiser(lambda obj: obj, bytes), text_replies=True)
    assert codec.dumps('text is encoded', 'task', 100) == b'text is encoded'
    with pytest.raises(TorrelqueSerialiserError, match='not int'):
        codec.dumps(5, 'task', 100)
    with pytest.raises(TorrelqueSerialiserError, match='not UTF-8'):
        codec.dumps(b'\xff', 'result', 100)
    with pytest.raises(TorrelqueValueError, match='serialises to 101 bytes, more than the 100'):
        codec.dumps('x' * 101, 'task', 100)
    with pytest.raises(TorrelqueSerialiserError, match='task t1') as caught:
        codec.loads('not bytes', 't1', 'payload')  # type: ignore[arg-type]
    assert caught.value.task_id == 't1'
    with pytest.raises(TorrelqueValueError, match='dumps and loads'):
        _codec.Codec(object(), text_replies=False)  # type: ignore[arg-type]
