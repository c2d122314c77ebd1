"""The demo: start tasks from a web page and watch them run, live.

Run it (it starts a private redis-server for its lifetime; or pass
--redis-url), then open http://127.0.0.1:8888:

    python example/wait_until_complete.py

A Tornado app enqueues the tasks you start on the page, and a
torrelque.Worker in the same process works on up to --consumers of them at
once: its handler sleeps for the task's duration, reporting its progress a
few times a second, and then fails with the task's chance of failure. The
worker releases a success with the handler's result, tries a failed attempt
again after an exponential back-off, and after the last attempt buries the
task in the queue's dead-letter set, rejected with the error as its result.
A task cancelled from the page leaves the queue if it waits; if it is
working, the worker hears of it at once and stops its handler.
The page has one stream of server-sent events for everything it shows (a
browser opens at most six connections to a server, for all its tabs): the
states of its tasks, fed by ``Torrelque.watch()``, and the queue as a whole
(pending, working, delayed, counters, transitions), fed by
``Torrelque.watch_queue()``. While that stream is down, or Redis does not
answer, its cards say that their state is unknown. Ctrl-C (or SIGTERM, or
closing the terminal) stops it: the tasks still running after --grace
seconds go back to the queue, for the next run.

HTTP API (JSON; errors are ``{"error": "..."}`` with status 400, 404, 405, 409 or 415):

- ``POST /tasks`` with ``{"duration": 0-60 s, "failure_chance": 0-1,
  "label": "optional text"}``: enqueues a task; 201 ``{"id": ..., "events": ...}``.
- ``GET /tasks/<id>``: the task's state now.
- ``DELETE /tasks/<id>``: cancels the task (``Torrelque.cancel()``): 202
  ``{"id": ..., "cancelled": true}``; a waiting task ends ``CANCELLED`` at
  once, a working one as soon as its worker has stopped its handler. 409
  if it has ended already, 404 if the queue does not know it.
- ``GET /tasks/<id>/events``: ``text/event-stream`` of one task, for a
  script (``curl -N``); a ``state`` event (the task's state as JSON) now
  and after each change of status or progress, ending after a final one
  (``COMPLETED``, ``REJECTED`` or ``CANCELLED``).
- ``GET /events``: the page's ``text/event-stream``. First a ``hello``
  event: ``{"stream": "<stream id>", "redis": {"url": ..., "server": ...,
  "command": ...}}`` (which Redis, without its password, and the
  ``torrelque`` command that follows the queue); then ``queue`` events
  (counts and counters), ``transition`` events (every change of every
  task), ``redis`` events (``{"reachable": false, "error": ...}`` when Redis
  stops answering, ``{"reachable": true}`` when it is back), and for each
  task added to the stream its ``state`` events (as above), or one
  ``unknown`` event (``{"id": ...}``) if the queue does not know it.
- ``POST /events/<stream id>`` with ``{"follow": ["<task id>", ...]}`` (at
  most 1000): adds the tasks to that stream; a task added again sends its
  state now. 204; 404 once the stream has ended.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import random
import re
import secrets
import shlex
import sys
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import _common
import redis.asyncio
import redis.exceptions
import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.web

from torrelque import (
    Reject,
    TaskContext,
    Torrelque,
    TorrelqueError,
    TorrelqueLookupError,
    TorrelqueTaskState,
    TorrelqueTimeoutError,
    Worker,
)

logger = logging.getLogger('demo')

HERE = Path(__file__).resolve().parent / 'demo'
#: The longest task the page may start, in seconds.
MAX_DURATION = 60
MAX_LABEL = 80
#: The most task ids that one request may add to a page's stream.
MAX_FOLLOW = 1000
#: Seconds a task's process may be gone before the sweep brings the task
#: back. The worker extends the lease of each task it runs, so this bounds
#: how long a task waits after a crash, not how long its work may take.
TASK_TIMEOUT = 10
#: Seconds between two progress reports of a working task.
PROGRESS_EVERY = 0.25
#: What a task id may look like; anything else is a 404 without asking Redis.
TASK_ID = re.compile(r'[0-9A-Za-z_-]{1,64}')
# The most often the queue panel is refreshed, however busy the queue.
PANEL_MIN_INTERVAL = 0.1
# A refresh at least this often, even when no transition tells of a change.
PANEL_MAX_INTERVAL = 2.0


class ApiError(tornado.web.HTTPError):
    """An error the client made, answered as ``{"error": message}``."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(status_code)
        self.message = message


def state_json(task_id: str, state: TorrelqueTaskState) -> dict[str, Any]:
    return {
        'id': task_id,
        'status': state.status.name,
        'final': state.status.isfinal(),
        'dequeue_count': state.dequeue_count,
        'requeue_count': state.requeue_count,
        'timeout': state.timeout,
        'enqueue_time': state.enqueue_time,
        'last_dequeue_time': state.last_dequeue_time,
        'last_requeue_time': state.last_requeue_time,
        'release_time': state.release_time,
        'progress': state.progress,
        'result': state.result,
    }


def encode(data: Any) -> str:
    # One line of JSON; anything a foreign task stored that JSON cannot say becomes text.
    return json.dumps(data, default=str, separators=(',', ':'))


# -- the consumers -------------------------------------------------------------------------------


class SimulatedFailure(Exception):
    """The demo's tasks fail by chance: the worker tries them again."""


async def do_task(task: Any, ctx: TaskContext) -> dict[str, Any]:
    """The worker's handler: what it returns is the task's result; what it
    raises fails the attempt."""
    try:
        duration = min(max(float(task['duration']), 0), MAX_DURATION)
        chance = min(max(float(task['failure_chance']), 0), 1)
    except (TypeError, KeyError, ValueError):
        # Someone else's task on this queue: not ours to retry.
        raise Reject(f'not a demo task: {task!r:.200}') from None
    try:
        # The work: a sleep, in steps, each reported as a fraction done (the
        # first one also clears what an earlier attempt reported).
        steps = max(1, math.ceil(duration / PROGRESS_EVERY))
        await ctx.progress(0)
        for step in range(1, steps + 1):
            await asyncio.sleep(duration / steps)
            await ctx.progress(round(step / steps, 3))
    except asyncio.CancelledError:
        # Cancelled from the page (the worker ends the task CANCELLED), or
        # the demo stops with the task in hand (the worker gives it back).
        logger.info('Task %s: attempt %d stopped', ctx.task_id, ctx.attempt)
        raise
    if random.random() < chance:
        raise SimulatedFailure(f'Simulated failure ({chance * 100:.0f} in 100 chance) on attempt {ctx.attempt}')
    logger.info('Task %s completed on attempt %d', ctx.task_id, ctx.attempt)
    return {'message': f'Done in {duration:g} s on attempt {ctx.attempt}', 'attempts': ctx.attempt}


# -- what the page follows ------------------------------------------------------------------------

#: A named event of a stream and its data.
Message = tuple[str, Any]
#: What a page's stream sends, in order; ``None`` ends it.
Inbox = asyncio.Queue[Message | None]


class QueueMonitor:
    """Follows the whole queue once for every page: each transition from
    ``watch_queue()``, a snapshot of counts and counters whenever
    transitions happened (at most ten a second) or every two seconds, and
    whether Redis answers those reads."""

    def __init__(self, queue: Torrelque, consumers: int) -> None:
        self.queue = queue
        self.consumers = consumers
        self.latest: dict[str, Any] | None = None
        self.reachable: dict[str, Any] = {'reachable': True}
        self._inboxes: set[Inbox] = set()
        self._changed = asyncio.Event()
        self._closed = False

    async def run(self) -> None:
        await asyncio.gather(self._follow(), self._refresh())

    async def _follow(self) -> None:
        while not self._closed:
            watch = self.queue.watch_queue()
            try:
                async for event in watch:
                    if event.event == 'progress':
                        continue  # the task cards show it; the log keeps to changes of place
                    transition = {
                        'id': event.task_id,
                        'event': event.event,
                        'status': None if event.status is None else event.status.name,
                        'time': event.time,
                    }
                    self._broadcast('transition', transition)
                    self._changed.set()
            except Exception as exc:
                logger.warning('Queue events stopped (%s); following again', exc)
                await asyncio.sleep(1)
            finally:
                await watch.aclose()

    async def _refresh(self) -> None:
        loop = asyncio.get_running_loop()
        # Ends on close() as well as on cancellation: Python 3.11 can lose a
        # cancellation that comes as redis-py writes a command.
        while not self._closed:
            self._changed.clear()
            try:
                stats = await self.queue.get_queue_stats()
                counters = await self.queue.get_queue_counters()
            except Exception as exc:
                self._set_reachable(False, str(exc))
            else:
                self._set_reachable(True)
                snapshot = {**stats._asdict(), 'counters': counters, 'consumers': self.consumers}
                if snapshot != self.latest:
                    self.latest = snapshot
                    self._broadcast('queue', snapshot)
            ready = loop.time() + PANEL_MIN_INTERVAL
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PANEL_MAX_INTERVAL):
                    await self._changed.wait()
            await asyncio.sleep(max(0, ready - loop.time()))

    def _set_reachable(self, reachable: bool, error: str | None = None) -> None:
        if reachable == self.reachable['reachable']:
            return
        if reachable:
            logger.info('Redis answers again')
            self.reachable = {'reachable': True}
        else:
            logger.warning('Cannot read the queue: %s', error)
            self.reachable = {'reachable': False, 'error': error}
        self._broadcast('redis', self.reachable)

    def _broadcast(self, name: str, data: Any) -> None:
        for inbox in self._inboxes:
            with contextlib.suppress(asyncio.QueueFull):  # a page that does not read misses some
                inbox.put_nowait((name, data))

    def subscribe(self) -> Inbox:
        """A new inbox of the queue's events: first what is known now
        (whether Redis answers, the latest snapshot), then what comes,
        until :meth:`close` or :meth:`unsubscribe`."""
        inbox: Inbox = asyncio.Queue(maxsize=1000)
        if not self.reachable['reachable']:
            inbox.put_nowait(('redis', self.reachable))
        if self.latest is not None:
            inbox.put_nowait(('queue', self.latest))
        self._inboxes.add(inbox)
        return inbox

    def unsubscribe(self, inbox: Inbox) -> None:
        self._inboxes.discard(inbox)

    def close(self) -> None:
        """Ends every inbox: what is still in it is dropped, and ``None`` put
        in; and the monitor's loops."""
        self._closed = True
        self._changed.set()
        for inbox in self._inboxes:
            while not inbox.empty():
                inbox.get_nowait()
            inbox.put_nowait(None)


class PageStream:
    """What one page listens to, on one connection: the queue's events, and
    the states of the tasks that the page adds by id. (A browser opens at
    most six connections to one server, for all its tabs: a stream per task
    would soon leave none to start tasks with.)"""

    def __init__(self, queue: Torrelque, monitor: QueueMonitor, about: dict[str, str]) -> None:
        self.id = secrets.token_urlsafe(16)
        self.queue = queue
        self.about = about
        self._monitor = monitor
        self._inbox = monitor.subscribe()
        self._watches: dict[str, asyncio.Task[None]] = {}

    def follow(self, task_id: str) -> None:
        """Sends the task's state now, and again after each change, until a
        final one. A page asks again when it is back after Redis was away:
        the watch it had starts over."""
        if (earlier := self._watches.get(task_id)) is not None:
            earlier.cancel()
        self._watches[task_id] = asyncio.create_task(self._watch(task_id))

    async def _watch(self, task_id: str) -> None:
        while True:
            watch = self.queue.watch(task_id)
            try:
                async for state in watch:
                    # Waits when the page reads slowly: a state is never dropped.
                    await self._inbox.put(('state', state_json(task_id, state)))
                return
            except TorrelqueLookupError:
                await self._inbox.put(('unknown', {'id': task_id}))
                return
            except TorrelqueError as exc:  # the queue is closing
                logger.info('Stopped following task %s: %s', task_id, exc)
                return
            except redis.exceptions.RedisError as exc:
                # The first read of its state failed (Redis is not back, or
                # not quite): a new watch starts again from the state then.
                logger.warning('Cannot read task %s (%s); trying again', task_id, exc)
                await asyncio.sleep(1)
            finally:
                await watch.aclose()  # unsubscribes, however it ended

    async def events(self) -> AsyncGenerator[Message]:
        """The stream's events, until the monitor closes."""
        yield 'hello', {'stream': self.id, 'redis': self.about}
        while (item := await self._inbox.get()) is not None:
            yield item

    def close(self) -> None:
        self._monitor.unsubscribe(self._inbox)
        for watch in self._watches.values():
            watch.cancel()


async def about_redis(client: redis.asyncio.Redis, url: str, queue: str) -> dict[str, str]:
    """What the page says of the Redis it uses: its URL (without the
    password), its server and version, and the command that follows the
    queue from a shell."""
    try:
        info = await client.info('server')
    except redis.exceptions.ResponseError:  # a user without the right to INFO
        server = 'version unknown'
    else:
        name = str(info.get('server_name') or 'redis')  # Valkey says "valkey"
        server = f'{name.capitalize()} {info.get(f"{name}_version") or info.get("redis_version")}'
    shown = _common.masked(url)
    command = f'torrelque --url {shlex.quote(shown)} tail {shlex.quote(queue)}'
    return {'url': shown, 'server': server, 'command': command}


# -- the web app -----------------------------------------------------------------------------------


class JsonHandler(tornado.web.RequestHandler):
    """Answers errors as JSON: ``{"error": "..."}``."""

    @property
    def queue(self) -> Torrelque:
        queue: Torrelque = self.settings['queue']
        return queue

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get('exc_info', (None, None, None))[1]
        message = exc.message if isinstance(exc, ApiError) else self._reason
        self.finish({'error': message})

    def task_id_arg(self, task_id: str) -> str:
        if not TASK_ID.fullmatch(task_id):
            raise ApiError(404, 'no such task: a task id is 1 to 64 letters, digits, "-" or "_"')
        return task_id

    def json_body(self) -> Any:
        """The request's body as JSON (``None`` if it is not JSON); raises
        :class:`ApiError` (415) for another content type."""
        content_type = self.request.headers.get('Content-Type', '').partition(';')[0].strip().lower()
        if content_type != 'application/json':
            raise ApiError(415, 'send JSON, with Content-Type: application/json')
        try:
            return json.loads(self.request.body)
        except ValueError:
            return None


class NotFound(JsonHandler):
    def prepare(self) -> None:
        raise ApiError(404, f'no such page: {self.request.path}')


class EventStream(JsonHandler):
    """Sends server-sent events while the client listens. A client that
    goes away cancels the sending, which closes what feeds it (a watch
    unsubscribes), so nothing is left behind."""

    _pump: asyncio.Task[None] | None = None
    _gone = False

    async def stream(self, events: AsyncGenerator[Message]) -> None:
        self.set_header('Content-Type', 'text/event-stream; charset=utf-8')
        self.set_header('Cache-Control', 'no-cache')
        self.set_header('X-Accel-Buffering', 'no')
        if self._gone:
            await events.aclose()
            return
        self._pump = asyncio.create_task(self._send(events))
        await asyncio.wait([self._pump])
        if not self._pump.cancelled() and (exc := self._pump.exception()) is not None:
            logger.error('Event stream %s failed', self.request.path, exc_info=exc)

    async def _send(self, events: AsyncGenerator[Message]) -> None:
        async with contextlib.aclosing(events):
            with contextlib.suppress(tornado.iostream.StreamClosedError):
                self.write(': events follow\n\n')  # a comment: the headers go out now
                await self.flush()
                # A browser that loses the stream tries again after a second.
                retry = 'retry: 1000\n'
                async for name, data in events:
                    self.write(f'{retry}event: {name}\ndata: {encode(data)}\n\n')
                    await self.flush()
                    retry = ''

    def on_connection_close(self) -> None:
        self._gone = True
        if self._pump is not None:
            self._pump.cancel()


class Index(tornado.web.RequestHandler):
    def set_default_headers(self) -> None:
        # Only this app's own files run on the page: no inline script, no other host.
        self.set_header(
            'Content-Security-Policy',
            "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        )

    def get(self) -> None:
        args = self.settings['args']
        self.render(
            'index.html',
            queue=args.queue,
            consumers=args.consumers,
            max_attempts=args.max_attempts,
            backoff=args.backoff,
            max_duration=MAX_DURATION,
            redis=self.settings['about'],
        )


def _number(data: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ApiError(400, f'{name} must be a number, not {encode(value)}')
    if not low <= value <= high:
        raise ApiError(400, f'{name} must be between {low:g} and {high:g}, not {value:g}')
    return float(value)


def parse_task(data: Any) -> dict[str, Any]:
    """A task from a request's JSON; raises :class:`ApiError` (400)."""
    if not isinstance(data, dict):
        raise ApiError(400, 'the body must be a JSON object such as {"duration": 2, "failure_chance": 0.2}')
    unknown = sorted(set(data) - {'duration', 'failure_chance', 'label'})
    if unknown:
        raise ApiError(400, f'unknown fields: {", ".join(unknown)} (known: duration, failure_chance, label)')
    label = data.get('label', '')
    if not isinstance(label, str) or len(label) > MAX_LABEL:
        raise ApiError(400, f'label must be text of at most {MAX_LABEL} characters')
    return {
        'duration': _number(data, 'duration', 2, 0, MAX_DURATION),
        'failure_chance': _number(data, 'failure_chance', 0, 0, 1),
        'label': label,
    }


class Tasks(JsonHandler):
    async def post(self) -> None:
        task = parse_task(self.json_body())
        task_id = await self.queue.enqueue(task, task_timeout=TASK_TIMEOUT)
        self.set_status(201)
        self.set_header('Location', f'/tasks/{task_id}')
        self.finish({'id': task_id, 'state': f'/tasks/{task_id}', 'events': f'/tasks/{task_id}/events'})


class Task(JsonHandler):
    async def get(self, task_id: str) -> None:
        task_id = self.task_id_arg(task_id)
        try:
            state = await self.queue.get_task_state(task_id)
        except TorrelqueLookupError:
            raise ApiError(404, f'no such task: {task_id} (unknown, or its result has expired)') from None
        self.finish(state_json(task_id, state))

    async def delete(self, task_id: str) -> None:
        task_id = self.task_id_arg(task_id)
        if not await self.queue.cancel(task_id):
            # Unknown, or ended: which one is the caller's next question.
            try:
                state = await self.queue.get_task_state(task_id)
            except TorrelqueLookupError:
                raise ApiError(404, f'no such task: {task_id} (unknown, or its result has expired)') from None
            raise ApiError(409, f'task {task_id} has ended already: {state.status.name}')
        # Accepted: a working task ends once its worker has stopped it.
        self.set_status(202)
        self.finish({'id': task_id, 'cancelled': True})


class TaskEvents(EventStream):
    async def get(self, task_id: str) -> None:
        task_id = self.task_id_arg(task_id)
        watch = self.queue.watch(task_id, timeout=self.settings['args'].watch_timeout)
        try:
            first = await anext(watch)
        except TorrelqueLookupError:
            raise ApiError(404, f'no such task: {task_id} (unknown, or its result has expired)') from None
        except TorrelqueError as exc:  # the queue is closing
            raise ApiError(503, str(exc)) from None
        try:
            await self.stream(self._states(task_id, first, watch))
        finally:
            await watch.aclose()  # unsubscribes, however the stream ended

    @staticmethod
    async def _states(task_id: str, first: TorrelqueTaskState, watch: Any) -> AsyncGenerator[Message]:
        try:
            yield 'state', state_json(task_id, first)
            async for state in watch:
                yield 'state', state_json(task_id, state)
        except TorrelqueTimeoutError:
            # The stream ends; a client may watch again.
            yield 'timeout', {'id': task_id, 'error': 'no final state yet; watch again'}
        except TorrelqueError as exc:  # the queue is closing, or a result cannot be decoded
            yield 'error', {'id': task_id, 'error': str(exc)}


class PageEvents(EventStream):
    async def get(self) -> None:
        page = PageStream(self.queue, self.settings['monitor'], self.settings['about'])
        pages: dict[str, PageStream] = self.settings['pages']
        pages[page.id] = page
        try:
            await self.stream(page.events())
        finally:
            del pages[page.id]
            page.close()


class Follow(JsonHandler):
    def post(self, stream_id: str) -> None:
        ids = self.json_body()
        ids = ids.get('follow') if isinstance(ids, dict) else None
        if not isinstance(ids, list) or len(ids) > MAX_FOLLOW:
            raise ApiError(400, f'the body must be {{"follow": [task ids]}}, at most {MAX_FOLLOW} of them')
        for task_id in ids:
            if not isinstance(task_id, str) or not TASK_ID.fullmatch(task_id):
                raise ApiError(400, f'not a task id: {encode(task_id):.80}')
        page = self.settings['pages'].get(stream_id)
        if page is None:
            raise ApiError(404, 'no such stream: it has ended (GET /events opens a new one)')
        for task_id in ids:
            page.follow(task_id)
        self.set_status(204)


def make_app(
    queue: Torrelque, monitor: QueueMonitor, about: dict[str, str], args: argparse.Namespace
) -> tornado.web.Application:
    return tornado.web.Application(
        [
            (r'/', Index),
            (r'/tasks', Tasks),
            (r'/tasks/([^/]*)', Task),
            (r'/tasks/([^/]*)/events', TaskEvents),
            (r'/events', PageEvents),
            (r'/events/([^/]*)', Follow),
        ],
        template_path=str(HERE),
        static_path=str(HERE),
        default_handler_class=NotFound,
        queue=queue,
        monitor=monitor,
        about=about,
        pages={},
        args=args,
    )


# -- running it ------------------------------------------------------------------------------------


async def main(args: argparse.Namespace, url: str, stop: asyncio.Event) -> int:
    try:
        sockets = tornado.netutil.bind_sockets(args.port, args.host)
    except OSError as exc:
        print(f'Cannot listen on {args.host}:{args.port}: {exc}; pass another --port', file=sys.stderr)
        return 1
    async with _common.open_queue(url, args.queue) as (client, queue):
        worker = Worker(
            queue,
            do_task,
            concurrency=args.consumers,
            max_attempts=args.max_attempts,
            backoff=args.backoff,
            grace=args.grace,
        )
        about = await about_redis(client, url, args.queue)
        monitor = QueueMonitor(queue, args.consumers)
        monitoring = asyncio.create_task(monitor.run())
        server = tornado.httpserver.HTTPServer(make_app(queue, monitor, about, args))
        server.add_sockets(sockets)
        host, port = sockets[0].getsockname()[:2]
        host = f'[{host}]' if ':' in host else host
        # `async with` runs the worker (and the sweep) in the background;
        # leaving the block stops it: no more tasks are taken, and those in
        # hand get the grace period to finish, then go back to the queue.
        async with worker:
            print(f'Demo running at http://{host}:{port}/ (Ctrl-C to stop)')
            print(f'On {about["server"]} at {about["url"]}; follow the queue with: {about["command"]}')
            await stop.wait()
            server.stop()  # no new connections
            monitor.close()
            monitoring.cancel()
        # Closing the connections ends their streams, and so their watches.
        await server.close_all_connections()
        with contextlib.suppress(asyncio.CancelledError):
            await monitoring
    print('Stopped')
    return 0


def arguments() -> argparse.Namespace:
    parser = _common.parser(
        __doc__.partition('\n\nHTTP API')[0], queue='demo', consumers=2, consumers_help='tasks the worker runs at once'
    )
    parser.add_argument('--host', default='127.0.0.1', help='address to listen on (default: %(default)s)')
    parser.add_argument(
        '--port', type=int, default=8888, help='port to listen on; 0 picks a free one (default: %(default)s)'
    )
    _common.worker_arguments(parser, backoff=1.0, grace=0)
    parser.add_argument(
        '--watch-timeout',
        type=_common.positive,
        default=600,
        help='seconds a stream of one task (GET /tasks/<id>/events) may last (default: %(default)s)',
    )
    args = parser.parse_args()
    if not 0 <= args.port <= 65535:
        parser.error('--port must be between 0 and 65535')
    return args


if __name__ == '__main__':
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    logging.getLogger('tornado.access').setLevel(logging.WARNING)
    _common.run(main, arguments())
