"""The ``torrelque`` console script, run as a process against a real server."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio
import trustme

from torrelque import COUNTERS, Torrelque, TorrelqueOutOfMemoryError, TorrelqueTaskSerialiser, TorrelqueTaskStatus
from torrelque.server import RedisServer, free_port

# The console script that `pip install` puts beside the interpreter.
SCRIPT = Path(sys.executable).parent / 'torrelque'


@dataclass
class Finished:
    status: int
    out: str
    err: str


def environment(url: str | None = None) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name != 'TORRELQUE_REDIS_URL'}
    if url is not None:
        env['TORRELQUE_REDIS_URL'] = url
    return env


# Every command a test starts, killed at the test's end if still running
# (a test that failed or timed out before it stopped its command).
STARTED: list[asyncio.subprocess.Process] = []


@pytest.fixture(autouse=True)
async def stop_started_commands() -> AsyncIterator[None]:
    yield
    while STARTED:
        process = STARTED.pop()
        if process.returncode is None:
            process.kill()
            await process.wait()


def default_sigint() -> None:
    """In the child, before the command runs: SIGINT as in a terminal, even
    when these tests run with it ignored (under nohup, or with ``&`` from a
    script), for the tests that stop a command with it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def spawn(*command: str | Path, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env or environment(),
        preexec_fn=default_sigint,
    )
    STARTED.append(process)
    return process


async def start(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    if not SCRIPT.exists():
        pytest.fail(f'{SCRIPT} is missing: install the package (pip install -e .)', pytrace=False)
    return await spawn(SCRIPT, *args, env=env)


async def finish(process: asyncio.subprocess.Process, timeout: float = 20) -> Finished:
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return Finished(process.returncode, out.decode(), err.decode())


async def run(*args: str, env: dict[str, str] | None = None) -> Finished:
    return await finish(await start(*args, env=env))


async def next_line(process: asyncio.subprocess.Process, timeout: float = 10) -> str:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout)
    assert line, 'the command ended early'
    return line.decode().rstrip('\n')


def assert_one_line_error(result: Finished, *fragments: str) -> None:
    assert result.status == 1
    assert result.out == ''
    assert result.err.endswith('\n') and result.err.count('\n') == 1, result.err
    assert result.err.startswith('torrelque: ')
    assert 'Traceback' not in result.err
    for fragment in fragments:
        assert fragment in result.err


def table(text: str) -> dict[str, str]:
    """``name  value`` lines as a dict (two spaces or more between)."""
    rows = {}
    for line in text.splitlines():
        name, _, value = line.strip().partition('  ')
        rows[name] = value.strip()
    return rows


@pytest.fixture
async def queue(make_client: Callable[..., redis.asyncio.Redis], queue_name: str) -> AsyncIterator[Torrelque]:
    """The producer's and consumer's side of the queue the commands read."""
    async with Torrelque(make_client(), queue=queue_name) as queue:
        yield queue


@pytest.fixture
def url(redis_url: str) -> str:
    return redis_url


async def wait_for_subscriber(client: redis.asyncio.Redis, channel: str) -> None:
    for _ in range(500):
        ((_, count),) = await client.pubsub_numsub(channel)
        if int(count):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f'nobody subscribed to {channel}')


# -- the script, connections and errors ------------------------------------------


async def test_console_script_reports_an_unreachable_server_in_one_line() -> None:
    result = await run('--url', f'redis://127.0.0.1:{free_port()}/0', 'stats', 'q')
    assert_one_line_error(result, 'cannot reach Redis at redis://127.0.0.1:')


async def test_python_m_torrelque_is_the_same_command(url: str, queue_name: str) -> None:
    process = await spawn(sys.executable, '-m', 'torrelque', '--url', url, 'sweep', queue_name)
    result = await finish(process)
    assert (result.status, table(result.out)) == (0, {'stale': '0', 'delayed': '0'})


async def test_version_and_help() -> None:
    from torrelque import __version__

    assert (await run('--version')).out == f'torrelque, version {__version__}\n'
    help_text = (await run('--help')).out
    for command in ('stats', 'task', 'watch', 'tail', 'sweep'):
        assert f'  {command}  ' in help_text


async def test_url_comes_from_the_environment(url: str, queue: Torrelque) -> None:
    await queue.enqueue('x')
    result = await run('stats', queue.name, '--json', env=environment(url))
    assert json.loads(result.out)['counts']['pending'] == 1


async def test_command_url_overrides_the_group_and_the_environment(url: str, queue: Torrelque) -> None:
    await queue.enqueue('x')
    nowhere = f'redis://127.0.0.1:{free_port()}/0'
    result = await run('--url', nowhere, 'stats', queue.name, '--json', '--url', url, env=environment(nowhere))
    assert json.loads(result.out)['counts']['pending'] == 1


async def test_bad_url_is_one_line(url: str) -> None:
    assert_one_line_error(await run('--url', 'http://localhost', 'stats', 'q'), 'bad Redis URL http://localhost')
    assert_one_line_error(await run('--url', f'{url}?no_such_option=1', 'stats', 'q'), 'bad Redis URL')


async def test_bad_queue_name_is_one_line(url: str) -> None:
    assert_one_line_error(await run('--url', url, 'stats', 'a{b}'), 'queue name')


async def test_user_and_password_in_the_url(make_server: Callable[..., RedisServer]) -> None:
    server = make_server(config={'user': 'operator on >s3cret ~* &* +@all', 'requirepass': 'other'})
    authorised = f'redis://operator:s3cret@{server.host}:{server.port}/0'
    result = await run('--url', authorised, 'stats', 'q', '--json')
    assert result.status == 0 and json.loads(result.out)['counts']['tasks'] == 0

    wrong = await run('--url', f'redis://operator:wrong@{server.host}:{server.port}/0', 'stats', 'q')
    assert_one_line_error(wrong, f'redis://operator:***@{server.host}:{server.port}/0')
    assert 'wrong' not in wrong.err
    assert_one_line_error(await run('--url', server.url, 'stats', 'q'), 'cannot reach Redis')


async def test_rediss_url_with_tls(make_server: Callable[..., RedisServer], tmp_path: Path) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert('127.0.0.1')
    ca, chain, key = tmp_path / 'ca.pem', tmp_path / 'chain.pem', tmp_path / 'key.pem'
    authority.cert_pem.write_to_path(str(ca))
    for blob in certificate.cert_chain_pems:
        blob.write_to_path(str(chain), append=True)
    certificate.private_key_pem.write_to_path(str(key))
    tls_port = free_port()
    try:
        make_server(
            config={
                'tls-port': str(tls_port),
                'tls-cert-file': str(chain),
                'tls-key-file': str(key),
                'tls-ca-cert-file': str(ca),
                'tls-auth-clients': 'no',
            }
        )
    except RuntimeError as exc:
        # The servers of the PyPI wheels are built without TLS: Redis 6.2
        # knows no tls-* directive, Valkey has no TLS connection type.
        if "'tls-port" in str(exc) or 'Failed finding TLS support' in str(exc):
            pytest.skip(f'the server was built without TLS: {str(exc).partition(";")[0]}')
        raise
    secure = f'rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}'
    result = await run('--url', secure, 'stats', 'q', '--json')
    assert (result.status, result.err) == (0, '')
    assert json.loads(result.out)['counts']['tasks'] == 0

    # An untrusted certificate: refused, in one line (how redis-py words
    # the cause differs between its versions).
    untrusted = await run('--url', f'rediss://127.0.0.1:{tls_port}/0', 'stats', 'q')
    assert_one_line_error(untrusted, 'cannot reach Redis', f'127.0.0.1:{tls_port}')


# -- stats, task, sweep ------------------------------------------------------------------


async def test_stats_prints_counts_and_counters(url: str, queue: Torrelque) -> None:
    for i in range(3):
        await queue.enqueue(i)
    await queue.enqueue('later', delay=60)
    done, _ = await queue.dequeue(timeout=1)
    await queue.release(done, result='ok')
    await queue.dequeue(timeout=1)

    result = await run('--url', url, 'stats', queue.name)
    assert (result.status, result.err) == (0, '')
    lines = result.out.splitlines()
    assert lines[0] == f'queue {queue.name}'
    assert lines[5] == 'counters'
    assert table('\n'.join(lines[1:5])) == {'tasks': '3', 'pending': '1', 'working': '1', 'delayed': '1'}
    counters = table('\n'.join(lines[6:]))
    assert list(counters) == list(COUNTERS)
    assert counters | {'enqueued': '4', 'dequeued': '2', 'released': '1', 'completed': '1', 'delayed': '1'} == counters
    assert counters['rejected'] == '0'


async def test_stats_json(url: str, queue: Torrelque) -> None:
    await queue.enqueue('x')
    await queue.enqueue('y', delay=60)
    result = await run('--url', url, 'stats', queue.name, '--json')
    assert (result.status, result.err) == (0, '')
    assert json.loads(result.out) == {
        'queue': queue.name,
        'exists': True,
        'counts': {'tasks': 2, 'pending': 1, 'working': 0, 'delayed': 1},
        'counters': {**dict.fromkeys(COUNTERS, 0), 'enqueued': 2, 'delayed': 1},
    }


async def test_stats_of_a_queue_with_no_keys_says_so(url: str, queue: Torrelque) -> None:
    """A mistyped name is not taken for an empty queue."""
    await queue.enqueue('x')
    typo = f'{queue.name}x'
    result = await run('--url', url, 'stats', typo)
    assert result.status == 0
    assert result.out.splitlines()[0] == f'queue {typo}'
    assert result.err == (
        f'torrelque: queue {typo} has no keys on this server: nothing was ever enqueued to it '
        '(is the name, or the database, right?)\n'
    )
    as_json = await run('--url', url, 'stats', typo, '--json')
    assert (as_json.status, as_json.err) == (0, '')
    assert json.loads(as_json.out) == {
        'queue': typo,
        'exists': False,
        'counts': {'tasks': 0, 'pending': 0, 'working': 0, 'delayed': 0},
        'counters': dict.fromkeys(COUNTERS, 0),
    }

    # Emptied, a queue that was used still has its counters: no such line.
    task_id, _ = await queue.dequeue(timeout=1)
    await queue.release(task_id)
    emptied = await run('--url', url, 'stats', queue.name)
    assert (emptied.status, emptied.err) == (0, '')
    assert table('\n'.join(emptied.out.splitlines()[1:5])) == {
        'tasks': '0',
        'pending': '0',
        'working': '0',
        'delayed': '0',
    }


async def test_task_prints_the_state(url: str, queue: Torrelque) -> None:
    task_id = await queue.enqueue({'to': 'ada'}, task_timeout=90)
    await queue.dequeue(timeout=1)
    await queue.requeue(task_id)
    await queue.dequeue(timeout=1)
    await queue.release(task_id, result={'sent': True, 'to': 'ada'})
    state = await queue.get_task_state(task_id)

    result = await run('--url', url, 'task', queue.name, task_id)
    assert (result.status, result.err) == (0, '')
    rows = table(result.out)
    assert rows == {
        'task': task_id,
        'status': 'COMPLETED',
        'timeout': '90 s',
        'dequeues': '2',
        'requeues': '1',
        'enqueued': rows['enqueued'],
        'last dequeue': rows['last dequeue'],
        'last requeue': rows['last requeue'],
        'released': rows['released'],
        'progress': '-',
        'result': '{"sent": true, "to": "ada"}',
    }
    assert state.release_time is not None
    assert rows['released'].endswith('Z') and rows['released'] >= rows['last requeue'] >= rows['enqueued']

    as_json = json.loads((await run('--url', url, 'task', queue.name, task_id, '--json')).out)
    assert as_json == {'task_id': task_id, **state._asdict(), 'status': 'COMPLETED', 'progress': None}


async def test_task_of_a_pending_task_has_no_times_yet(url: str, queue: Torrelque) -> None:
    task_id = await queue.enqueue('x')
    rows = table((await run('--url', url, 'task', queue.name, task_id)).out)
    assert (rows['status'], rows['timeout'], rows['result']) == ('PENDING', '300 s', '-')
    assert (rows['last dequeue'], rows['last requeue'], rows['released']) == ('-', '-', '-')


async def test_task_with_a_result_that_is_not_json(
    url: str, make_client: Callable[..., redis.asyncio.Redis], queue_name: str
) -> None:
    async with Torrelque(
        make_client(), queue=queue_name, serialiser=TorrelqueTaskSerialiser(pickle.dumps, pickle.loads)
    ) as queue:
        task_id = await queue.enqueue('x')
        await queue.dequeue(timeout=1)
        await queue.release(task_id, result=b'\x00\xff', status=TorrelqueTaskStatus.REJECTED)
    result = await run('--url', url, 'task', queue_name, task_id)
    rows = table(result.out)
    assert rows['status'] == 'REJECTED'
    assert rows['result'].startswith('<') and rows['result'].endswith(' bytes, not JSON>')


async def test_unknown_task_is_one_line(url: str, queue_name: str) -> None:
    assert_one_line_error(await run('--url', url, 'task', queue_name, 'nope'), 'task nope is unknown', queue_name)


async def test_sweep_prints_the_counts(url: str, queue: Torrelque) -> None:
    slow = await queue.enqueue('slow', task_timeout=0.05)
    soon = await queue.enqueue('soon', delay=0.05)
    await queue.dequeue(timeout=1)
    await asyncio.sleep(0.1)

    first = await run('--url', url, 'sweep', queue.name)
    assert (first.status, first.err) == (0, '')
    assert table(first.out) == {'stale': '1', 'delayed': '1'}
    second = await run('--url', url, 'sweep', queue.name, '--json')
    assert json.loads(second.out) == {'stale': 0, 'delayed': 0}
    assert [task_id for task_id, _ in await queue.dequeue(timeout=1, max_tasks=2)] == [slow, soon]


# -- watch and tail ---------------------------------------------------------------


async def test_watch_prints_each_transition_until_final(url: str, queue: Torrelque) -> None:
    task_id = await queue.enqueue('job')
    process = await start('--url', url, 'watch', queue.name, task_id)
    first = await next_line(process)
    assert first.split()[1:] == ['PENDING', 'dequeues', '0', 'requeues', '0']

    await queue.dequeue(timeout=1)
    assert (await next_line(process)).split()[1:3] == ['WORKING', 'dequeues']
    await queue.requeue(task_id, delay=30)
    assert (await next_line(process)).split()[1:] == ['DELAYED', 'dequeues', '1', 'requeues', '1']
    queue.clock_offset = 31
    await queue.sweep()
    assert (await next_line(process)).split()[1] == 'PENDING'
    await queue.dequeue(timeout=1)
    await queue.release(task_id, result={'n': 2})

    result = await finish(process)
    assert (result.status, result.err) == (0, '')
    lines = result.out.splitlines()
    assert [line.split()[1:] for line in lines] == [
        ['WORKING', 'dequeues', '2', 'requeues', '1'],
        ['COMPLETED', 'dequeues', '2', 'requeues', '1', 'result', '{"n":', '2}'],
    ]
    assert all(line[:4].isdigit() and line.split()[0].endswith('Z') for line in [first, *lines])


async def test_watch_json_and_release_without_result(url: str, queue: Torrelque) -> None:
    task_id = await queue.enqueue('job')
    process = await start('--url', url, 'watch', queue.name, task_id, '--json')
    assert json.loads(await next_line(process))['status'] == 'PENDING'
    await queue.dequeue(timeout=1)
    await queue.release(task_id)  # no result: nothing of the task is kept

    result = await finish(process)
    assert result.status == 0
    working, removed = (json.loads(line) for line in result.out.splitlines())
    assert (working['task_id'], working['status'], working['dequeue_count']) == (task_id, 'WORKING', 1)
    assert (removed['status'], removed['removed']) == (None, True)
    assert removed['time'] >= working['time'] > 1.7e9


async def test_watch_of_a_final_task_prints_it_and_ends(url: str, queue: Torrelque) -> None:
    task_id = await queue.enqueue('job')
    await queue.dequeue(timeout=1)
    await queue.release(task_id, result='yes')
    result = await run('--url', url, 'watch', queue.name, task_id)
    assert (result.status, result.err) == (0, '')
    assert result.out.split()[1:] == ['COMPLETED', 'dequeues', '1', 'requeues', '0', 'result', '"yes"']


async def test_watch_exits_3_for_a_rejected_task(url: str, queue: Torrelque) -> None:
    """A script can tell a task that failed from one that completed, and
    from an error of the command (1)."""
    task_id = await queue.enqueue('job')
    process = await start('--url', url, 'watch', queue.name, task_id)
    assert (await next_line(process)).split()[1] == 'PENDING'
    await queue.dequeue(timeout=1)
    await queue.release(task_id, result='no', status=TorrelqueTaskStatus.REJECTED)
    result = await finish(process)
    assert (result.status, result.err) == (3, '')
    assert result.out.splitlines()[-1].split()[1:] == ['REJECTED', 'dequeues', '1', 'requeues', '0', 'result', '"no"']

    # Watched after the end: the same status.
    again = await run('--url', url, 'watch', queue.name, task_id, '--json')
    assert again.status == 3
    assert json.loads(again.out)['status'] == 'REJECTED'


async def test_watch_exits_4_for_a_cancelled_task(url: str, queue: Torrelque) -> None:
    task_id = await queue.enqueue('job')
    process = await start('--url', url, 'watch', queue.name, task_id)
    assert (await next_line(process)).split()[1] == 'PENDING'
    assert await queue.cancel(task_id)
    result = await finish(process)
    assert (result.status, result.err) == (4, '')
    assert result.out.split()[1] == 'CANCELLED'


async def test_watch_timeout_and_unknown_task_are_one_line(url: str, queue: Torrelque) -> None:
    task_id = await queue.enqueue('never done')
    result = await run('--url', url, 'watch', queue.name, task_id, '--timeout', '0.3')
    assert result.status == 1
    assert result.out.split()[1] == 'PENDING'
    assert result.err == f'torrelque: no final state of task {task_id} within 0.3 s\n'

    assert_one_line_error(await run('--url', url, 'watch', queue.name, 'nope'), 'task nope is unknown')


async def test_interrupted_watch_exits_quietly(url: str, queue: Torrelque) -> None:
    task_id = await queue.enqueue('job')
    process = await start('--url', url, 'watch', queue.name, task_id)
    await next_line(process)
    process.send_signal(signal.SIGINT)
    result = await finish(process)
    assert (result.status, result.out, result.err) == (130, '', '')


async def test_tail_prints_every_transition_until_ctrl_c(
    url: str, make_client: Callable[..., redis.asyncio.Redis], queue: Torrelque
) -> None:
    process = await start('--url', url, 'tail', queue.name)
    await wait_for_subscriber(make_client(), queue.keys['events'])

    first = await queue.enqueue('a', task_timeout=1)
    second = await queue.enqueue('b')
    await queue.dequeue(timeout=1)
    await queue.release(first, result='ok')
    await queue.dequeue(timeout=1)
    await queue.release(second)
    lines = [(await next_line(process)).split() for _ in range(6)]

    process.send_signal(signal.SIGINT)
    result = await finish(process)
    assert (result.status, result.out, result.err) == (0, '', '')
    assert [line[1:] for line in lines] == [
        [first, 'enqueued', 'PENDING'],
        [second, 'enqueued', 'PENDING'],
        [first, 'dequeued', 'WORKING'],
        [first, 'released', 'COMPLETED'],
        [second, 'dequeued', 'WORKING'],
        [second, 'removed', 'COMPLETED'],
    ]
    times = [line[0] for line in lines]
    assert times == sorted(times) and all(time.endswith('Z') for time in times)


async def test_tail_json(url: str, make_client: Callable[..., redis.asyncio.Redis], queue: Torrelque) -> None:
    process = await start('--url', url, 'tail', queue.name, '--json')
    await wait_for_subscriber(make_client(), queue.keys['events'])
    task_id = await queue.enqueue('a', delay=5)
    event = json.loads(await next_line(process))
    process.send_signal(signal.SIGINT)
    assert (await finish(process)).status == 0
    assert event == {'time': event['time'], 'task_id': task_id, 'event': 'enqueued', 'status': 'DELAYED'}
    assert isinstance(event['time'], float)


async def test_stats_of_a_full_server(
    make_server: Callable[..., RedisServer], make_client: Callable[..., redis.asyncio.Redis]
) -> None:
    """An operator reads a queue whose server is out of memory."""
    server = make_server(config={'maxmemory': '3mb', 'maxmemory-policy': 'noeviction'})
    queue = Torrelque(make_client(server.url), queue='full')
    enqueued = 0
    with pytest.raises(TorrelqueOutOfMemoryError):
        while True:
            await queue.enqueue('x' * 500)
            enqueued += 1
    result = await run('--url', server.url, 'stats', 'full', '--json')
    assert result.status == 0, result.err
    assert json.loads(result.out)['counts']['pending'] == enqueued


async def test_cancel_ends_a_waiting_task_and_refuses_an_ended_one(url: str, queue: Torrelque) -> None:
    task_id = await queue.enqueue('later', delay=60)
    first = await run('--url', url, 'cancel', queue.name, task_id)
    assert (first.status, first.out.strip(), first.err) == (0, f'{task_id}: cancelled', '')
    assert (await queue.get_task_state(task_id)).status is TorrelqueTaskStatus.CANCELLED
    again = await run('--url', url, 'cancel', queue.name, task_id)
    assert again.status == 1
    assert 'CANCELLED already' in again.err
    unknown = await run('--url', url, 'cancel', queue.name, 'no-such-task')
    assert unknown.status == 1
    assert 'unknown' in unknown.err
