"""The demo app's HTTP API, run as a program on a test server: starting
tasks, following them (status and progress) over server-sent events, one
task at a time or many on a page's one stream, its worker's retries and dead
letters, errors, which Redis it says it uses, a Redis that goes away and
comes back, a stop (Ctrl-C, SIGTERM, a closed terminal) that gives the
running tasks back and stops its private redis-server, and streams that
leave nothing behind when the browser goes away."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio
from example_programs import EXAMPLES, PRIVATE_REDIS_LINE, URL_LINE, Program, demo, port_is_open
from httpx_sse import ServerSentEvent, connect_sse

from torrelque import Torrelque
from torrelque.server import RedisServer

# Short retries, so that a failing task is rejected in well under a second.
MAX_ATTEMPTS = 2


@dataclass
class Demo:
    program: Program
    url: str
    queue: str
    redis: redis.Redis
    redis_url: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def start(self, **task: Any) -> str:
        with self.client() as client:
            response = client.post('/tasks', json=task)
        assert response.status_code == 201, response.text
        task_id: str = response.json()['id']
        return task_id

    def follow(self, task_id: str) -> list[dict[str, Any]]:
        """Every state the task's event stream sends, until it ends."""
        with self.client() as client, connect_sse(client, 'GET', f'/tasks/{task_id}/events') as source:
            assert source.response.headers['content-type'].startswith('text/event-stream')
            assert source.response.headers['cache-control'] == 'no-cache'
            return [event.json() for event in source.iter_sse() if event.event == 'state']

    async def enqueue(self, task: Any, **options: Any) -> str:
        """Enqueues a task past the app, as another producer would."""
        client = redis.asyncio.Redis.from_url(self.redis_url)
        try:
            async with Torrelque(client, queue=self.queue) as queue:
                return await queue.enqueue(task, **options)
        finally:
            await client.aclose()

    def cancel(self, task_id: str) -> httpx.Response:
        with self.client() as client:
            return client.delete(f'/tasks/{task_id}')

    def status(self, task_id: str) -> str:
        with self.client() as client:
            status: str = client.get(f'/tasks/{task_id}').json()['status']
        return status

    def dead(self, task_id: str) -> bool:
        """Whether the task is in the queue's dead-letter set."""
        return self.redis.zscore(f'{{{self.queue}}}:dead', task_id) is not None

    def subscribers(self, task_id: str) -> int:
        [(_, count)] = self.redis.pubsub_numsub(f'{{{self.queue}}}:task:{task_id}')
        return int(count)

    @contextlib.contextmanager
    def page_stream(self) -> Iterator[PageStream]:
        """The stream a page opens, past its ``hello``."""
        with self.client() as client, connect_sse(client, 'GET', '/events') as source:
            assert source.response.headers['content-type'].startswith('text/event-stream')
            events = source.iter_sse()
            hello = next(events)
            assert hello.event == 'hello'
            yield PageStream(self, hello.json(), events)


@dataclass
class PageStream:
    app: Demo
    hello: dict[str, Any]
    events: Iterator[ServerSentEvent]

    def follow(self, *task_ids: str) -> httpx.Response:
        with self.app.client() as client:
            return client.post(f'/events/{self.hello["stream"]}', json={'follow': list(task_ids)})

    def until(self, done: Callable[[ServerSentEvent], bool]) -> list[ServerSentEvent]:
        """The events up to the first that is ``done``."""
        seen = []
        for event in self.events:
            seen.append(event)
            if done(event):
                return seen
        raise AssertionError(f'the stream ended after {seen}')


def wait_until(condition: Callable[[], bool], timeout: float = 15, what: str = 'the condition') -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f'{what} did not come true within {timeout} s')
        time.sleep(0.02)


@pytest.fixture(scope='module')
def app(redis_url: str) -> Iterator[Demo]:
    queue = f'demo-{uuid.uuid4().hex[:12]}'
    args = ['--redis-url', redis_url, '--queue', queue, '--max-attempts', str(MAX_ATTEMPTS), '--backoff', '0.05']
    client = redis.Redis.from_url(redis_url)
    try:
        with demo(*args) as (program, url):
            yield Demo(program, url, queue, client, redis_url)
    finally:
        client.close()


def test_page_and_its_files_are_served(app: Demo) -> None:
    with app.client() as client:
        page = client.get('/')
        assert page.status_code == 200
        assert page.headers['content-type'].startswith('text/html')
        assert "default-src 'self'" in page.headers['content-security-policy']
        assert 'Start a task' in page.text
        for name in ('app.js', 'style.css'):
            assert client.get(f'/static/{name}').status_code == 200


def test_task_completes_and_its_stream_ends(app: Demo) -> None:
    task_id = app.start(duration=0.2, failure_chance=0, label='quick')
    states = app.follow(task_id)
    assert states[-1]['status'] == 'COMPLETED' and states[-1]['final'] is True
    assert [state['final'] for state in states[:-1]] == [False] * (len(states) - 1)
    assert {state['id'] for state in states} == {task_id}
    assert states[-1]['dequeue_count'] == 1
    assert states[-1]['result'] == {'message': 'Done in 0.2 s on attempt 1', 'attempts': 1}
    # A finished task's stream gives its final state at once, and ends.
    assert [state['status'] for state in app.follow(task_id)] == ['COMPLETED']
    with app.client() as client:
        assert client.get(f'/tasks/{task_id}').json()['status'] == 'COMPLETED'


def test_a_working_task_reports_its_progress(app: Demo) -> None:
    task_id = app.start(duration=1.5, failure_chance=0)
    states = app.follow(task_id)
    working = [state['progress'] for state in states if state['status'] == 'WORKING']
    # A few reports a second, each a fraction done, growing to the whole.
    numbers = [progress for progress in working if progress is not None]
    assert len(numbers) >= 3, working
    assert numbers == sorted(numbers) and 0 <= numbers[0] < 1 and numbers[-1] == 1
    assert states[-1]['status'] == 'COMPLETED' and states[-1]['progress'] == 1
    with app.client() as client:
        assert client.get(f'/tasks/{task_id}').json()['progress'] == 1


def test_failing_task_is_retried_with_back_off_then_buried(app: Demo) -> None:
    # Each attempt takes long enough for the stream to open during the first.
    task_id = app.start(duration=0.5, failure_chance=1)
    states = app.follow(task_id)
    statuses = [state['status'] for state in states]
    assert statuses[-1] == 'REJECTED'
    assert 'DELAYED' in statuses  # the back-off between the attempts
    final = states[-1]
    assert final['dequeue_count'] == MAX_ATTEMPTS
    assert final['requeue_count'] == MAX_ATTEMPTS - 1
    # The worker's error, as the dead-letter set keeps it.
    error = final['result']
    assert error['type'] == 'SimulatedFailure'
    assert error['message'] == f'Simulated failure (100 in 100 chance) on attempt {MAX_ATTEMPTS}'
    assert error['attempts'] == MAX_ATTEMPTS
    assert 'SimulatedFailure' in error['traceback']
    assert app.dead(task_id)


def test_a_task_that_is_not_the_demos_is_rejected_at_once(app: Demo) -> None:
    # Someone else's task on the demo's queue: the handler rejects it, unretried.
    foreign = asyncio.run(app.enqueue([1, 2]))
    wait_until(lambda: app.dead(foreign), what='the foreign task is in the dead-letter set')
    with app.client() as client:
        state = client.get(f'/tasks/{foreign}').json()
    assert state['status'] == 'REJECTED' and state['dequeue_count'] == 1
    assert state['result']['type'] == 'Reject'
    assert state['result']['message'].startswith('not a demo task: [1, 2]')


def test_a_waiting_task_is_cancelled_at_once(app: Demo) -> None:
    task = {'duration': 0, 'failure_chance': 0, 'label': 'later'}
    task_id = asyncio.run(app.enqueue(task, delay=60))
    response = app.cancel(task_id)
    assert response.status_code == 202, response.text
    assert response.json() == {'id': task_id, 'cancelled': True}
    states = app.follow(task_id)
    assert [state['status'] for state in states] == ['CANCELLED']
    assert states[0]['final'] is True and states[0]['dequeue_count'] == 0
    assert app.redis.zscore(f'{{{app.queue}}}:delayed', task_id) is None


def test_a_working_task_is_stopped_by_its_worker_and_never_retried(app: Demo) -> None:
    task_id = app.start(duration=30, failure_chance=0)
    wait_until(lambda: app.status(task_id) == 'WORKING', what='the task is working')
    asked = time.monotonic()
    assert app.cancel(task_id).status_code == 202
    states = app.follow(task_id)
    assert time.monotonic() - asked < 5  # not the task's 30 s
    assert states[-1]['status'] == 'CANCELLED' and states[-1]['dequeue_count'] == 1
    time.sleep(0.3)
    assert app.status(task_id) == 'CANCELLED'  # no second attempt
    assert not app.dead(task_id)


def test_cancelling_an_ended_task_is_409_and_an_unknown_one_404(app: Demo) -> None:
    task_id = app.start(duration=0, failure_chance=0)
    assert app.follow(task_id)[-1]['status'] == 'COMPLETED'
    ended = app.cancel(task_id)
    assert ended.status_code == 409
    assert ended.json()['error'] == f'task {task_id} has ended already: COMPLETED'
    assert app.status(task_id) == 'COMPLETED'
    for unknown in ('AAAAAAAAAAAAAAAA', 'not%20an%20id'):
        response = app.cancel(unknown)
        assert response.status_code == 404
        assert response.json()['error'].startswith('no such task')


@pytest.mark.parametrize(
    'path',
    [
        '/tasks/AAAAAAAAAAAAAAAA',
        '/tasks/AAAAAAAAAAAAAAAA/events',
        '/tasks/not%20an%20id/events',
        '/tasks/%7Bdemo%7D:task:x/events',
        '/tasks/' + 'x' * 65,
        '/tasks//events',
        '/no/such/page',
    ],
)
def test_unknown_or_malformed_ids_are_404(app: Demo, path: str) -> None:
    with app.client() as client:
        response = client.get(path)
    assert response.status_code == 404
    assert response.headers['content-type'].startswith('application/json')
    assert response.json()['error'].startswith('no such')


@pytest.mark.parametrize(
    ('body', 'message'),
    [
        ('{"duration": -1}', 'duration must be between 0 and 60, not -1'),
        ('{"duration": 61}', 'duration must be between 0 and 60, not 61'),
        ('{"duration": "2"}', 'duration must be a number'),
        ('{"duration": true}', 'duration must be a number'),
        ('{"duration": NaN}', 'duration must be a number'),
        ('{"failure_chance": 1.5}', 'failure_chance must be between 0 and 1, not 1.5'),
        ('{"failure_chance": -0.1}', 'failure_chance must be between 0 and 1'),
        ('{"label": 5}', 'label must be text'),
        ('{"label": "' + 'x' * 81 + '"}', 'label must be text of at most 80 characters'),
        ('{"colour": "red"}', 'unknown fields: colour'),
        ('[1, 2]', 'the body must be a JSON object'),
        ('not json', 'the body must be a JSON object'),
        ('', 'the body must be a JSON object'),
    ],
)
def test_bad_input_is_400(app: Demo, body: str, message: str) -> None:
    with app.client() as client:
        response = client.post('/tasks', content=body, headers={'Content-Type': 'application/json'})
    assert response.status_code == 400
    assert message in response.json()['error']


def test_a_body_that_is_not_json_is_415(app: Demo) -> None:
    with app.client() as client:
        response = client.post('/tasks', data={'duration': '1'})
    assert response.status_code == 415
    assert 'application/json' in response.json()['error']


def test_closing_a_stream_early_ends_its_watch(app: Demo) -> None:
    task_id = app.start(duration=5, failure_chance=0)
    with app.client() as client, connect_sse(client, 'GET', f'/tasks/{task_id}/events') as source:
        events = source.iter_sse()  # held: a dropped iterator closes the response
        first = next(events)
        assert first.event == 'state' and first.json()['final'] is False
        assert app.subscribers(task_id) == 1
    # The browser went away mid-task: the app unsubscribes at once.
    wait_until(lambda: app.subscribers(task_id) == 0, what='the task channel has no subscriber')


def test_the_page_stream_reports_counts_and_transitions(app: Demo) -> None:
    with app.page_stream() as stream:
        first = next(stream.events)
        assert first.event == 'queue'
        snapshot = first.json()
        assert {'pending', 'working', 'delayed', 'tasks', 'counters', 'consumers'} <= set(snapshot)
        assert snapshot['counters']['enqueued'] >= 0
        task_id = app.start(duration=0.1, failure_chance=0)
        seen: dict[str, Any] = {}
        for event in stream.events:
            data = json.loads(event.data)
            if event.event == 'transition' and data['id'] == task_id:
                seen[data['event']] = data['status']
            if event.event == 'queue' and seen.get('released') == 'COMPLETED':
                break  # a snapshot taken after the release
        assert seen['enqueued'] == 'PENDING'
        assert seen['dequeued'] == 'WORKING'
    with app.client() as client:
        assert client.get(f'/tasks/{task_id}').json()['status'] == 'COMPLETED'


def test_the_page_stream_sends_the_states_of_the_tasks_added_to_it(app: Demo) -> None:
    with app.page_stream() as stream:
        quick = app.start(duration=0.5, failure_chance=0)
        failing = app.start(duration=0.5, failure_chance=1)
        assert stream.follow(quick, failing, 'NoSuchTask123456').status_code == 204
        states: dict[str, list[dict[str, Any]]] = {quick: [], failing: []}
        unknown = []

        def all_told(event: ServerSentEvent) -> bool:
            if event.event == 'state':
                states[event.json()['id']].append(event.json())
            elif event.event == 'unknown':
                unknown.append(event.json()['id'])
            return unknown != [] and all(told and told[-1]['final'] for told in states.values())

        stream.until(all_told)
        assert unknown == ['NoSuchTask123456']
        assert states[quick][-1]['status'] == 'COMPLETED' and states[quick][-1]['progress'] == 1
        assert [state['final'] for state in states[quick][:-1]] == [False] * (len(states[quick]) - 1)
        assert states[failing][-1]['status'] == 'REJECTED'
        assert 'DELAYED' in [state['status'] for state in states[failing]]
        # A task added again sends its state now (here its final one, at once).
        assert stream.follow(quick).status_code == 204
        [*_, again] = stream.until(lambda event: event.event == 'state')
        assert again.json() == states[quick][-1]


def test_a_page_stream_that_ends_leaves_no_watch(app: Demo) -> None:
    task_id = app.start(duration=5, failure_chance=0)
    with app.page_stream() as stream:
        assert stream.follow(task_id).status_code == 204
        stream.until(lambda event: event.event == 'state')
        assert app.subscribers(task_id) == 1
        ended = stream.hello['stream']
    # The page went away mid-task: the app unsubscribes at once, and the stream is gone.
    wait_until(lambda: app.subscribers(task_id) == 0, what='the task channel has no subscriber')
    with app.client() as client:
        response = client.post(f'/events/{ended}', json={'follow': [task_id]})
    assert response.status_code == 404
    assert response.json()['error'].startswith('no such stream')


@pytest.mark.parametrize(
    ('body', 'status', 'message'),
    [
        ('{"follow": "abc"}', 400, 'the body must be {"follow": [task ids]}'),
        ('{"tasks": ["abc"]}', 400, 'the body must be {"follow": [task ids]}'),
        ('{"follow": ["' + '","'.join(['x'] * 1001) + '"]}', 400, 'at most 1000 of them'),
        ('{"follow": ["not an id"]}', 400, 'not a task id: "not an id"'),
        ('{"follow": [5]}', 400, 'not a task id: 5'),
        ('not json', 400, 'the body must be'),
    ],
)
def test_adding_tasks_to_a_stream_checks_what_it_gets(app: Demo, body: str, status: int, message: str) -> None:
    with app.page_stream() as stream, app.client() as client:
        response = client.post(
            f'/events/{stream.hello["stream"]}', content=body, headers={'Content-Type': 'application/json'}
        )
        assert response.status_code == status
        assert message in response.json()['error']
        assert client.post(f'/events/{stream.hello["stream"]}', data={'follow': 'x'}).status_code == 415
        assert client.post('/events/NoSuchStream', json={'follow': []}).status_code == 404


def test_the_page_says_which_redis_it_uses_and_the_command_that_follows_its_queue(app: Demo) -> None:
    version = app.redis.info('server')['redis_version']
    command = f'torrelque --url {app.redis_url} tail {app.queue}'
    with app.client() as client:
        page = client.get('/').text
    assert f'<code id="redis-url">{app.redis_url}</code>' in page
    assert f'<span id="redis-server">Redis {version}</span>' in page
    assert f'<code id="cli-command" class="command">{command}</code>' in page
    with app.page_stream() as stream:
        assert stream.hello['redis'] == {'url': app.redis_url, 'server': f'Redis {version}', 'command': command}
    assert f'follow the queue with: {command}' in app.program.output


def test_the_page_shows_no_password(make_server: Callable[..., RedisServer]) -> None:
    server = make_server(config={'requirepass': 'hush-hush'})
    url = f'redis://:hush-hush@{server.host}:{server.port}/0'
    shown = f'redis://:***@{server.host}:{server.port}/0'
    with demo('--redis-url', url) as (program, base), httpx.Client(base_url=base, timeout=30) as client:
        page = html.unescape(client.get('/').text)
        assert f'<code id="redis-url">{shown}</code>' in page
        assert f"torrelque --url '{shown}' tail demo" in page
        assert 'hush-hush' not in page
        # It works on that server, all the same.
        task_id = client.post('/tasks', json={'duration': 0}).json()['id']
        wait_until(lambda: client.get(f'/tasks/{task_id}').json()['status'] == 'COMPLETED', what='done')
    assert 'hush-hush' not in program.output + program.errors


def test_the_page_stream_says_when_redis_is_gone_and_back(make_server: Callable[..., RedisServer]) -> None:
    server = make_server(persistence=True)  # the task is still there after the restart
    with Program('wait_until_complete.py', '--port', '0', '--redis-url', server.url) as program:
        app = Demo(program, program.wait_for(URL_LINE).group(1), 'demo', redis.Redis.from_url(server.url), server.url)
        try:
            task_id = app.start(duration=30, failure_chance=0)
        finally:
            app.redis.close()
        with app.page_stream() as stream:
            assert stream.follow(task_id).status_code == 204
            stream.until(lambda event: event.event == 'state' and event.json()['status'] == 'WORKING')
            server.stop()
            [*_, gone] = stream.until(lambda event: event.event == 'redis')
            assert gone.json()['reachable'] is False and gone.json()['error']
            server.start()
            [*_, back] = stream.until(lambda event: event.event == 'redis')
            assert back.json() == {'reachable': True}
            # What a page does then: it asks for the states anew.
            assert stream.follow(task_id).status_code == 204
            [*_, state] = stream.until(lambda event: event.event == 'state')
            assert state.json()['id'] == task_id and state.json()['status'] in ('PENDING', 'WORKING', 'DELAYED')
        assert program.stop() == 0, program.errors
    assert 'Redis answers again' in program.errors


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGHUP], ids=['SIGTERM', 'SIGHUP'])
def test_own_redis_server_and_a_stop_signal_with_a_task_in_hand(signum: signal.Signals) -> None:
    with Program('wait_until_complete.py', '--port', '0') as program, stopped_at_the_end(program.process) as servers:
        url = program.wait_for(r'running at (http://\S+?)/? ').group(1)
        host, port = PRIVATE_REDIS_LINE.search(program.errors).groups()  # type: ignore[union-attr]
        servers += children(program.process.pid)
        assert servers, 'no redis-server process under the demo'
        with httpx.Client(base_url=url, timeout=30) as client:
            task_id = client.post('/tasks', json={'duration': 30}).json()['id']
            wait_until(lambda: client.get(f'/tasks/{task_id}').json()['status'] == 'WORKING', what='working')
        started = time.monotonic()
        assert program.stop(signum) == 0, program.errors
        # No grace by default: the task in hand is interrupted, not waited for.
        assert time.monotonic() - started < 10
        assert not port_is_open(host, int(port)), 'the private redis-server outlived the demo'
        assert not [pid for pid in servers if is_running(pid)], 'the private redis-server outlived the demo'
    assert 'Traceback' not in program.errors, program.errors
    assert f'{signum.name}: stopping' in program.errors
    assert f'Task {task_id}: attempt 1 stopped' in program.errors
    assert 'Stopped' in program.output


@contextlib.contextmanager
def stopped_at_the_end(process: subprocess.Popen[Any]) -> Iterator[list[int]]:
    """Kills the process, if it still runs at the end, and then its
    children (its redis-server) and the processes whose ids the block put
    in the list: a test that fails leaves nothing running."""
    servers: list[int] = []
    try:
        yield servers
    finally:
        if process.poll() is None:
            servers += children(process.pid)
            process.kill()
            process.wait()
        for pid in servers:
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux: from /proc)."""
    found = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(')')[2].split()  # after "pid (command)"
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def is_running(pid: int) -> bool:
    """Whether the process is there, and not a zombie that nobody reaped."""
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rpartition(')')[2].split()[0]
    except OSError:
        return False
    return state != 'Z'


def read_until(fd: int, pattern: re.Pattern[str], seen: str, timeout: float = 30) -> str:
    """What comes from ``fd`` (added to ``seen``) until ``pattern`` matches it."""
    deadline = time.monotonic() + timeout
    while not pattern.search(seen):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f'no {pattern.pattern!r} within {timeout} s in:\n{seen}')
        try:
            seen += os.read(fd, 4096).decode(errors='replace')
        except OSError:  # EIO: the other side is closed
            raise AssertionError(f'no {pattern.pattern!r} before the end of:\n{seen}') from None
    return seen


def test_closing_its_terminal_stops_it_and_its_redis_server() -> None:
    # The demo in a terminal of its own (a pseudo-terminal, its controlling
    # one): closing the terminal's other side hangs it up, as closing a
    # terminal window does, and the kernel sends SIGHUP. Writing there fails
    # from then on.
    terminal, side = pty.openpty()
    command = ['setsid', '--ctty', sys.executable, '-u', str(EXAMPLES / 'wait_until_complete.py'), '--port', '0']
    process = subprocess.Popen(command, stdin=side, stdout=side, stderr=side)
    os.close(side)
    with stopped_at_the_end(process) as servers:
        try:
            seen = read_until(terminal, URL_LINE, '')
            host, port = PRIVATE_REDIS_LINE.search(seen).groups()  # type: ignore[union-attr]
            servers += children(process.pid)
            assert servers, 'no redis-server process under the demo'
            with httpx.Client(base_url=URL_LINE.search(seen).group(1), timeout=30) as client:  # type: ignore[union-attr]
                task_id = client.post('/tasks', json={'duration': 30}).json()['id']
                wait_until(lambda: client.get(f'/tasks/{task_id}').json()['status'] == 'WORKING', what='working')
        finally:
            os.close(terminal)
        assert process.wait(30) == 0
        assert not port_is_open(host, int(port)), 'the private redis-server outlived the demo'
        assert not [pid for pid in servers if is_running(pid)], 'the private redis-server outlived the demo'


def test_under_nohup_a_closed_terminal_leaves_it_running(redis_url: str) -> None:
    # nohup has SIGHUP ignored: the demo keeps it so.
    args = ['--port', '0', '--redis-url', redis_url, '--queue', f'demo-{uuid.uuid4().hex[:12]}']
    command = ['nohup', sys.executable, '-u', str(EXAMPLES / 'wait_until_complete.py'), *args]
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            while not (running := URL_LINE.search(process.stdout.readline())):
                assert process.poll() is None, 'the demo exited'
            process.send_signal(signal.SIGHUP)
            with httpx.Client(base_url=running.group(1), timeout=30) as client:
                task_id = client.post('/tasks', json={'duration': 0}).json()['id']
                wait_until(lambda: client.get(f'/tasks/{task_id}').json()['status'] == 'COMPLETED', what='done')
            assert process.poll() is None
            process.send_signal(signal.SIGINT)
            assert process.wait(30) == 0
        finally:
            if process.poll() is None:
                process.kill()
        assert 'Stopped' in process.stdout.read()


@pytest.mark.parametrize('grace', [None, '6'])
def test_a_stop_gives_the_running_tasks_back_after_the_grace_period(redis_url: str, grace: str | None) -> None:
    queue = f'demo-{uuid.uuid4().hex[:12]}'
    args = ['--redis-url', redis_url, '--queue', queue, *(['--grace', grace] if grace else [])]
    with Program('wait_until_complete.py', '--port', '0', *args) as program:
        url = program.wait_for(r'running at (http://\S+?)/? ').group(1)
        with httpx.Client(base_url=url, timeout=30) as client:
            quick = client.post('/tasks', json={'duration': 3}).json()['id']
            slow = client.post('/tasks', json={'duration': 30}).json()['id']
            for task_id in (quick, slow):
                wait_until(lambda t=task_id: client.get(f'/tasks/{t}').json()['status'] == 'WORKING', what='working')
        assert program.stop(signal.SIGINT) == 0, program.errors
    assert 'Traceback' not in program.errors, program.errors
    client = redis.Redis.from_url(redis_url)
    try:
        pending = [task_id.decode() for task_id in client.lrange(f'{{{queue}}}:pending', 0, -1)]
        assert client.zcard(f'{{{queue}}}:working') == 0
        states = {
            task_id: {
                key.decode(): value.decode() for key, value in client.hgetall(f'{{{queue}}}:task:{task_id}').items()
            }
            for task_id in (quick, slow)
        }
    finally:
        client.close()
    # The slow one never finishes within the grace period: it is back in
    # pending, as if never taken, for the next run.
    assert slow in pending and states[slow]['status'] == '0' and 'dequeues' not in states[slow]
    if grace:
        # The quick one had time to finish.
        assert quick not in pending and states[quick]['status'] == '3'
    else:
        assert quick in pending and states[quick]['status'] == '0'


def test_a_port_in_use_is_one_clear_line(redis_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        with Program('wait_until_complete.py', '--port', str(port), '--redis-url', redis_url) as program:
            assert program.wait(60) == 1
    [line] = program.errors.strip().splitlines()
    assert line.startswith(f'Cannot listen on 127.0.0.1:{port}: ')
    assert line.endswith('; pass another --port')


def test_stopping_with_streams_open_ends_them(redis_url: str) -> None:
    args = ['--redis-url', redis_url, '--queue', f'demo-{uuid.uuid4().hex[:12]}']
    with Program('wait_until_complete.py', '--port', '0', *args) as program:
        url = program.wait_for(r'running at (http://\S+?)/? ').group(1)
        with httpx.Client(base_url=url, timeout=30) as client:
            task_id = client.post('/tasks', json={'duration': 30}).json()['id']
            with (
                connect_sse(client, 'GET', f'/tasks/{task_id}/events') as task_source,
                connect_sse(client, 'GET', '/events') as page_source,
            ):
                task_events, page_events = task_source.iter_sse(), page_source.iter_sse()
                assert next(task_events).event == 'state'
                hello = next(page_events)
                assert hello.event == 'hello'
                follow = client.post(f'/events/{hello.json()["stream"]}', json={'follow': [task_id]})
                assert follow.status_code == 204
                assert any(next(page_events).event == 'state' for _ in range(20))
                program.process.send_signal(signal.SIGINT)
                # Both streams end (the server closes them), and the demo exits.
                for events in (task_events, page_events):
                    with contextlib.suppress(httpx.HTTPError):
                        for _ in events:
                            pass
        assert program.wait(30) == 0, program.errors
    assert 'Traceback' not in program.errors, program.errors
    assert 'ERROR' not in program.errors, program.errors
