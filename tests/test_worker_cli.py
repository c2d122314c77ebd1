"""``torrelque worker`` and ``torrelque dead``: a worker as its own process,
stopped by signals or killed, and the dead-letter set from a shell."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from helpers import wait_until

from torrelque import Torrelque, TorrelqueLookupError, TorrelqueTaskStatus

SCRIPT = Path(sys.executable).parent / 'torrelque'

HANDLERS = textwrap.dedent(
    """
    import asyncio

    async def double(task, ctx):
        return task * 2

    async def slow(task, ctx):
        await asyncio.sleep(task)
        return 'slept'

    def broken(task, ctx):
        raise KeyError(task)
    """
)


@pytest.fixture
def handlers(tmp_path: Path) -> Path:
    (tmp_path / 'handlers.py').write_text(HANDLERS)
    return tmp_path


@pytest.fixture
async def processes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Processes a test starts; any still running at its end is killed."""
    started: list[asyncio.subprocess.Process] = []
    yield started
    for process in started:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def worker(
    processes: list[asyncio.subprocess.Process], cwd: Path, redis_url: str, *args: str
) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        SCRIPT, 'worker', *args, '--url', redis_url,
        cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    processes.append(process)
    return process


async def finished(process: asyncio.subprocess.Process, timeout: float = 20) -> tuple[int, str]:
    _, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, err.decode()


async def final(queue: Torrelque, task_id: str) -> TorrelqueTaskStatus:
    async def done() -> bool:
        try:
            return (await queue.get_task_state(task_id)).status.isfinal()
        except TorrelqueLookupError:
            return False

    await wait_until(done, timeout=20)
    return (await queue.get_task_state(task_id)).status


async def test_a_burst_worker_does_the_tasks_and_exits_0(
    handlers: Path, redis_url: str, processes: list[asyncio.subprocess.Process], make_queue: Callable[..., Torrelque]
) -> None:
    queue = make_queue()
    ids = [await queue.enqueue(n) for n in range(5)]
    process = await worker(
        processes, handlers, redis_url, 'handlers:double', '--queue', queue.name, '--burst', '-c', '2'
    )
    status, err = await finished(process)
    assert status == 0, err
    assert [(await queue.get_task_state(task_id)).result for task_id in ids] == [0, 2, 4, 6, 8]
    assert 'stopped: 5 done, 0 failed' in err


async def test_failures_go_to_the_dead_letter_set_and_the_dead_command_shows_them(
    handlers: Path,
    redis_url: str,
    processes: list[asyncio.subprocess.Process],
    make_queue: Callable[..., Torrelque],
) -> None:
    queue = make_queue()
    task_id = await queue.enqueue('missing')
    process = await worker(
        processes, handlers, redis_url, 'handlers:broken', '--queue', queue.name, '--burst', '--max-attempts', '1'
    )
    status, err = await finished(process)
    assert status == 0, err
    assert 'goes to the dead-letter set' in err

    async def dead(*args: str) -> tuple[int, str, str]:
        command = await asyncio.create_subprocess_exec(
            SCRIPT, '--url', redis_url, 'dead', *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        processes.append(command)
        out, err = await asyncio.wait_for(command.communicate(), 20)
        return command.returncode or 0, out.decode(), err.decode()

    status, out, _ = await dead('list', queue.name)
    assert status == 0 and task_id in out and "KeyError: 'missing'" in out
    status, out, _ = await dead('show', queue.name, task_id)
    assert status == 0 and 'Traceback' in out and '"missing"' in out
    status, out, _ = await dead('list', queue.name, '--json')
    assert json.loads(out)['error']['type'] == 'KeyError'
    status, out, err = await dead('purge', queue.name)
    assert status == 2 and '--all' in err  # purging everything is asked for explicitly
    status, out, _ = await dead('requeue', queue.name, task_id)
    assert (status, out.split()) == (0, ['requeued', '1'])
    assert (await queue.get_task_state(task_id)).status is TorrelqueTaskStatus.PENDING
    await queue.bury((await queue.dequeue(timeout=1))[0], 'again')
    status, out, _ = await dead('purge', queue.name, '--all', '--json')
    assert (status, json.loads(out)) == (0, {'purged': 1})


async def test_sigterm_finishes_the_running_task_and_exits_0(
    handlers: Path, redis_url: str, processes: list[asyncio.subprocess.Process], make_queue: Callable[..., Torrelque]
) -> None:
    queue = make_queue()
    running = await queue.enqueue(1.0)  # the handler sleeps this long
    waiting = await queue.enqueue(0)
    process = await worker(processes, handlers, redis_url, 'handlers:slow', '--queue', queue.name)

    async def taken() -> bool:
        return (await queue.get_task_state(running)).status is TorrelqueTaskStatus.WORKING

    await wait_until(taken, timeout=20)
    process.send_signal(signal.SIGTERM)
    status, err = await finished(process)
    assert status == 0, err
    assert (await queue.get_task_state(running)).result == 'slept'
    state = await queue.get_task_state(waiting)
    assert (state.status, state.dequeue_count) == (TorrelqueTaskStatus.PENDING, 0)


async def test_a_second_signal_stops_at_once(
    handlers: Path, redis_url: str, processes: list[asyncio.subprocess.Process], make_queue: Callable[..., Torrelque]
) -> None:
    queue = make_queue()
    task_id = await queue.enqueue(60.0)
    process = await worker(processes, handlers, redis_url, 'handlers:slow', '--queue', queue.name)

    async def taken() -> bool:
        return (await queue.get_task_state(task_id)).status is TorrelqueTaskStatus.WORKING

    await wait_until(taken, timeout=20)
    process.send_signal(signal.SIGINT)
    await asyncio.sleep(0.3)
    process.send_signal(signal.SIGINT)
    status, _ = await finished(process, timeout=5)
    assert status == 130


async def test_a_worker_killed_mid_task_has_its_task_done_by_another(
    handlers: Path, redis_url: str, processes: list[asyncio.subprocess.Process], make_queue: Callable[..., Torrelque]
) -> None:
    queue = make_queue()
    task_id = await queue.enqueue(3.0, task_timeout=1)
    first = await worker(processes, handlers, redis_url, 'handlers:slow', '--queue', queue.name)

    async def taken() -> bool:
        return (await queue.get_task_state(task_id)).status is TorrelqueTaskStatus.WORKING

    await wait_until(taken, timeout=20)
    first.kill()
    await first.wait()
    await worker(processes, handlers, redis_url, 'handlers:slow', '--queue', queue.name)
    assert await final(queue, task_id) is TorrelqueTaskStatus.COMPLETED
    state = await queue.get_task_state(task_id)
    assert (state.result, state.dequeue_count) == ('slept', 2)


async def test_a_handler_that_cannot_be_loaded_is_one_line_and_status_1(
    handlers: Path,
    redis_url: str,
    processes: list[asyncio.subprocess.Process],
) -> None:
    for target, fragment in [('handlers:nothing', 'cannot load'), ('nomodule:f', 'cannot load')]:
        status, err = await finished(await worker(processes, handlers, redis_url, target))
        assert (status, err.count('\n')) == (1, 1) and fragment in err
    status, err = await finished(await worker(processes, handlers, redis_url, 'no-colon'))
    assert status == 2 and 'module:function' in err


async def test_a_killed_worker_drops_out_of_the_registry(
    processes: list[asyncio.subprocess.Process], handlers: Path, redis_url: str, queue: Torrelque
) -> None:
    process = await worker(processes, handlers, redis_url, 'handlers:slow', '--queue', queue.name,
                           '--concurrency', '3', '--beat-interval', '0.2')  # fmt: skip

    async def listed() -> bool:
        return len(await queue.list_workers()) == 1

    await wait_until(listed, timeout=20)
    (info,) = await queue.list_workers()
    assert (info.pid, info.concurrency, info.in_flight) == (process.pid, 3, 0)
    shown = await asyncio.create_subprocess_exec(
        SCRIPT, 'workers', queue.name, '--url', redis_url, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await shown.communicate()
    assert shown.returncode == 0
    assert info.worker_id in out.decode()
    process.kill()
    await process.wait()

    async def gone() -> bool:
        return not await queue.list_workers()

    await wait_until(gone, timeout=5)  # three missed beats: 0.6 s


async def test_limit_sets_shows_and_removes_the_working_limit(redis_url: str, queue: Torrelque) -> None:
    async def limit(*args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            SCRIPT, 'limit', queue.name, *args, '--url', redis_url, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await process.communicate()
        assert process.returncode == 0
        return out.decode().strip()

    none = f'rate limit of {queue.name}: none'
    assert await limit() == f'working limit of {queue.name}: none\n{none}'
    assert await limit('4') == f'working limit of {queue.name}: 4\n{none}'
    assert await queue.get_working_limit() == 4
    assert await limit('--off') == f'working limit of {queue.name}: none\n{none}'
    assert await queue.get_working_limit() is None


async def test_limit_sets_shows_and_removes_the_rate_limit(redis_url: str, queue: Torrelque) -> None:
    def limit(*args: str) -> subprocess.CompletedProcess[str]:
        command = [SCRIPT, 'limit', queue.name, *args, '--url', redis_url]
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)

    shown = limit('--rate', '50', '--per', '0.5')
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[-1] == f'rate limit of {queue.name}: 50 per 0.5 s'
    assert await queue.get_rate_limit() == (50, 0.5)
    as_json = json.loads(limit('--json').stdout)
    assert as_json == {'queue': queue.name, 'working_limit': None, 'rate_limit': {'limit': 50, 'per': 0.5}}
    assert limit('--rate', '7').stdout.splitlines()[-1] == f'rate limit of {queue.name}: 7 per 1 s'
    assert limit('--no-rate').stdout.splitlines()[-1] == f'rate limit of {queue.name}: none'
    assert await queue.get_rate_limit() is None
    # Wrong uses change nothing and say why.
    for args, message in [
        (('--rate', '0'), "Invalid value for '--rate'"),
        (('--rate', '5', '--per', '0'), "Invalid value for '--per'"),
        (('--per', '5'), '--per is the window of --rate'),
        (('--rate', '5', '--no-rate'), 'give --rate or --no-rate, not both'),
    ]:
        refused = limit(*args)
        assert refused.returncode == 2 and message in refused.stderr, (args, refused.stderr)
    assert await queue.get_rate_limit() is None
