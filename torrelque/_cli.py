"""The ``torrelque`` command: a queue's counts and counters, a task's
state, transitions as they happen, and a sweep, from a shell.

Every command goes through the public :class:`~torrelque.Torrelque` API.
What an operator can run into (an unreachable server, a wrong password, an
unknown task, a bad queue name, a watch that times out) is one line on
stderr and exit status 1; a wrong command line is click's usage error, with
status 2. Ctrl-C ends ``tail`` with status 0 and any other command with 130.
``watch`` ends with a status of its own (``WATCH_STATUS``) for a task that
did not complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import importlib
import json
import logging
import os
import sys
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import click
import redis.asyncio
import redis.exceptions

from ._errors import TorrelqueError, TorrelqueLagError, TorrelqueLookupError
from ._queue import Torrelque
from ._types import TorrelqueDeadTask, TorrelqueTaskSerialiser, TorrelqueTaskState, TorrelqueTaskStatus, json_serialiser
from ._version import __version__

DEFAULT_URL = 'redis://localhost:6379/0'
URL_ENVVAR = 'TORRELQUE_REDIS_URL'
CLUSTER_ENVVAR = 'TORRELQUE_REDIS_CLUSTER'
# Where the group's --cluster is kept for the commands (Context.meta).
_CLUSTER = 'torrelque.cluster'

#: The exit status of ``watch`` for a task that ends in each status other
#: than COMPLETED (which, like a release without a result, is 0), so that a
#: script can tell them apart from success and from errors (1).
WATCH_STATUS = {TorrelqueTaskStatus.REJECTED: 3, TorrelqueTaskStatus.CANCELLED: 4}

F = TypeVar('F', bound=Callable[..., Any])


class Undecodable:
    """A stored result that is not JSON: the queue's producers use another
    serialiser. Shown by size rather than failing the command."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __str__(self) -> str:
        return f'<{len(self.data)} bytes, not JSON>'


def _lenient_loads(data: bytes) -> Any:
    try:
        return json_serialiser.loads(data)
    except Exception:
        return Undecodable(data)


# The command only reads results; it never writes a payload.
_READER = TorrelqueTaskSerialiser(json_serialiser.dumps, _lenient_loads)


class Failure(click.ClickException):
    """An error shown as one line on stderr, exit status 1."""

    def __init__(self, message: str) -> None:
        super().__init__(' '.join(message.split()))  # one line, whatever the cause says

    def show(self, file: Any = None) -> None:
        click.echo(f'torrelque: {self.format_message()}', file=file or sys.stderr)


# -- formatting -----------------------------------------------------------------


def _time(seconds: float | None) -> str:
    """UTC, to the millisecond, as ISO 8601."""
    if seconds is None:
        return '-'
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec='milliseconds').replace('+00:00', 'Z')


def _now() -> float:
    return datetime.datetime.now(datetime.UTC).timestamp()


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, Undecodable) else value


def _result_text(value: Any) -> str:
    if isinstance(value, Undecodable):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, default=_jsonable))


def _emit_table(rows: list[tuple[str, Any]], indent: str = '') -> None:
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f'{indent}{name:<{width}}  {value}')


def _state_dict(task_id: str, state: TorrelqueTaskState) -> dict[str, Any]:
    fields = state._asdict()
    fields['status'] = state.status.name
    fields['result'] = _jsonable(state.result)
    fields['progress'] = state.progress
    return {'task_id': task_id, **fields}


def _seconds_text(seconds: float) -> str:
    return f'{seconds:g} s'


# -- running a command ---------------------------------------------------------


def _masked(url: str) -> str:
    """The URL with its password hidden, fit for an error message."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition('@')[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f'{parts.username or ""}:***@{host}'))


@contextlib.asynccontextmanager
async def _open(
    url: str, name: str, serialiser: TorrelqueTaskSerialiser = _READER, cluster: bool = False
) -> AsyncIterator[Torrelque]:
    """A queue on a client of ``url`` (a cluster's node, with ``cluster``),
    once the server has answered."""
    kind = redis.asyncio.RedisCluster if cluster else redis.asyncio.Redis
    try:
        client = kind.from_url(url)
    except ValueError as exc:
        raise Failure(f'bad Redis URL {_masked(url)}: {exc}') from None
    try:
        try:
            # Before anything else: a pub/sub listener would retry for ever
            # against a server that is not there.
            await client.ping()
        except TypeError as exc:  # an option in the URL's query that the client does not know
            raise Failure(f'bad Redis URL {_masked(url)}: {exc}') from None
        except (redis.exceptions.RedisError, OSError) as exc:
            raise Failure(f'cannot reach Redis at {_masked(url)}: {exc}') from None
        try:
            queue = Torrelque(client, queue=name, serialiser=serialiser)
        except TorrelqueError as exc:
            raise Failure(str(exc)) from None
        async with queue:
            yield queue
    finally:
        await client.aclose()


def _run(
    ctx: click.Context,
    name: str,
    url: str | None,
    action: Callable[[Torrelque], Awaitable[None]],
    *,
    interrupted: int = 130,
    serialiser: TorrelqueTaskSerialiser = _READER,
) -> None:
    """Runs ``action`` on the named queue; turns what can go wrong into one
    line, and Ctrl-C into the exit status ``interrupted``."""
    url = url or ctx.obj or DEFAULT_URL
    cluster = bool(ctx.meta.get(_CLUSTER))

    async def main() -> None:
        async with _open(url, name, serialiser, cluster) as queue:
            try:
                await action(queue)
            except BrokenPipeError:
                raise
            except TorrelqueLookupError as exc:
                raise Failure(
                    f'{exc} in queue {name} (never enqueued, released without a result, or its result expired)'
                ) from None
            except TorrelqueError as exc:
                raise Failure(str(exc)) from None
            except (redis.exceptions.RedisError, OSError) as exc:
                raise Failure(f'Redis at {_masked(url)}: {exc}') from None

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(interrupted)
    except BrokenPipeError:
        # The reader went away (`torrelque tail Q | head`): nothing more to
        # say, and nothing to flush at exit either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)


def _options(command: F) -> F:
    """The options every command takes."""
    command = click.option('--json', 'as_json', is_flag=True, help='Print JSON (one object per line).')(command)
    command = click.option(
        '--url',
        metavar='URL',
        default=None,
        help=f'Redis URL (overrides the one given before the command and ${URL_ENVVAR}).',
    )(command)
    return command


# -- the commands --------------------------------------------------------------


@click.group(context_settings={'help_option_names': ['-h', '--help']})
@click.option(
    '--url',
    metavar='URL',
    envvar=URL_ENVVAR,
    default=DEFAULT_URL,
    show_default=True,
    help=(
        f'Redis URL: redis://[[user]:password@]host[:port][/db], rediss:// for TLS, or unix://path. '
        f'Also read from ${URL_ENVVAR}.'
    ),
)
@click.option(
    '--cluster',
    is_flag=True,
    envvar=CLUSTER_ENVVAR,
    help=f'The URL is a node of a Redis Cluster: follow the cluster to the queue. Also ${CLUSTER_ENVVAR}=1.',
)
@click.version_option(__version__, prog_name='torrelque')
@click.pass_context
def cli(ctx: click.Context, url: str, cluster: bool) -> None:
    """Look into torrelque queues on a Redis server.

    QUEUE is a queue's name, as given to Torrelque(queue=...): its keys are
    {QUEUE}:pending and so on.
    """
    ctx.obj = url
    ctx.meta[_CLUSTER] = cluster


@cli.command()
@click.argument('queue')
@_options
@click.pass_context
def stats(ctx: click.Context, queue: str, url: str | None, as_json: bool) -> None:
    """How many tasks QUEUE holds now, and its counters since it began.

    When none of the queue's keys exists (a mistyped name, another
    database), a line on stderr says so; --json has "exists": false."""

    async def show(q: Torrelque) -> None:
        counts = await q.get_queue_stats()
        counters = await q.get_queue_counters()
        exists = await _has_keys(q)
        if as_json:
            _emit_json({'queue': queue, 'exists': exists, 'counts': counts._asdict(), 'counters': counters})
            return
        click.echo(f'queue {queue}')
        _emit_table(list(counts._asdict().items()), indent='  ')
        click.echo('counters')
        _emit_table(list(counters.items()), indent='  ')
        if not exists:
            click.echo(
                f'torrelque: queue {queue} has no keys on this server: nothing was ever enqueued to it '
                f'(is the name, or the database, right?)',
                err=True,
            )

    _run(ctx, queue, url, show)


async def _has_keys(q: Torrelque) -> bool:
    """Whether any key of the queue exists (its counters do from its first
    enqueue on; the names of channels and prefixes among ``keys`` are never
    keys)."""
    return bool(await q._client.exists(*q.keys.values()))


@cli.command()
@click.argument('queue')
@click.argument('task_id', metavar='ID')
@_options
@click.pass_context
def task(ctx: click.Context, queue: str, task_id: str, url: str | None, as_json: bool) -> None:
    """The state of task ID of QUEUE."""

    async def show(q: Torrelque) -> None:
        state = await q.get_task_state(task_id)
        if as_json:
            _emit_json(_state_dict(task_id, state))
            return
        _emit_table(
            [
                ('task', task_id),
                ('status', state.status.name),
                ('timeout', _seconds_text(state.timeout)),
                ('dequeues', state.dequeue_count),
                ('requeues', state.requeue_count),
                ('enqueued', _time(state.enqueue_time)),
                ('last dequeue', _time(state.last_dequeue_time)),
                ('last requeue', _time(state.last_requeue_time)),
                ('released', _time(state.release_time)),
                ('progress', '-' if state.progress is None else _result_text(state.progress)),
                ('result', '-' if state.result is None else _result_text(state.result)),
            ]
        )

    _run(ctx, queue, url, show)


@cli.command()
@click.argument('queue')
@click.argument('task_id', metavar='ID')
@click.option(
    '--timeout',
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar='SECONDS',
    help='Give up (exit status 1) when the task is not final by then.',
)
@_options
@click.pass_context
def watch(ctx: click.Context, queue: str, task_id: str, timeout: float | None, url: str | None, as_json: bool) -> None:
    """Follow task ID of QUEUE until it is released.

    Prints its state now, then each change of status, until a final one
    (with the result) or its release without a result. Each line has the
    time the change was seen (UTC). Exits with status 0 when the task
    completed or was released without a result, 3 when it was REJECTED
    and 4 when it was CANCELLED."""
    last: TorrelqueTaskState | None = None

    async def follow(q: Torrelque) -> None:
        nonlocal last
        async for state in q.watch(task_id, timeout=timeout):
            last = state
            if as_json:
                _emit_json({'time': _now(), **_state_dict(task_id, state)})
                continue
            line = f'{_time(_now())}  {state.status.name:<9}  dequeues {state.dequeue_count}'
            line += f'  requeues {state.requeue_count}'
            if state.status.isfinal():
                line += f'  result {_result_text(state.result)}'
            click.echo(line)
        if last is None or not last.status.isfinal():
            # The watch ends without a final state when the task is
            # released without a result: nothing of it is kept.
            if as_json:
                _emit_json({'time': _now(), 'task_id': task_id, 'status': None, 'removed': True})
            else:
                click.echo(f'{_time(_now())}  {"REMOVED":<9}  released without a result')

    _run(ctx, queue, url, follow)
    if last is not None and last.status in WATCH_STATUS:
        sys.exit(WATCH_STATUS[last.status])


@cli.command()
@click.argument('queue')
@_options
@click.pass_context
def tail(ctx: click.Context, queue: str, url: str | None, as_json: bool) -> None:
    """Print every transition of QUEUE as it happens.

    Runs until Ctrl-C. Each line: the server time of the transition (UTC),
    the task id, the event, and the task's status after it. When the output
    is read more slowly than transitions come, the ones it could not hold
    are dropped, a line on stderr says how many, and it goes on."""

    async def follow(q: Torrelque) -> None:
        while True:
            try:
                async for event in q.watch_queue():
                    status = None if event.status is None else event.status.name
                    if as_json:
                        _emit_json(
                            {'time': event.time, 'task_id': event.task_id, 'event': event.event, 'status': status}
                        )
                    else:
                        click.echo(f'{_time(event.time)}  {event.task_id}  {event.event:<11}  {status or "-"}')
                return
            except TorrelqueLagError as exc:
                click.echo(f'torrelque: {exc.missed} transition(s) missed: the output was read too slowly', err=True)

    _run(ctx, queue, url, follow, interrupted=0)


@cli.command()
@click.argument('queue')
@click.argument('task_id', metavar='ID')
@_options
@click.pass_context
def cancel(ctx: click.Context, queue: str, task_id: str, url: str | None, as_json: bool) -> None:
    """Cancel task ID of QUEUE.

    A pending or delayed task ends CANCELLED at once; a working one is
    aborted (its worker stops the handler). Exit status 1 when the task is
    unknown or has ended already."""

    async def run(q: Torrelque) -> None:
        state = await q.get_task_state(task_id)
        done = await q.cancel(task_id)
        if as_json:
            _emit_json({'task_id': task_id, 'cancelled': done, 'was': state.status.name})
        if not done:
            raise Failure(f'task {task_id} was not cancelled: it is {state.status.name} already')
        if not as_json:
            what = 'aborting it in its worker' if state.status is TorrelqueTaskStatus.WORKING else 'cancelled'
            click.echo(f'{task_id}: {what}')

    _run(ctx, queue, url, run)


@cli.command()
@click.argument('queue')
@_options
@click.pass_context
def sweep(ctx: click.Context, queue: str, url: str | None, as_json: bool) -> None:
    """Return QUEUE's stale and due tasks to pending now.

    Returns stale working tasks (past their timeout) and delayed tasks whose
    time has come. Prints how many of each."""

    async def run(q: Torrelque) -> None:
        stale, delayed, _ = await q.sweep()
        counts = {'stale': stale, 'delayed': delayed}
        if as_json:
            _emit_json(counts)
        else:
            _emit_table(list(counts.items()))

    _run(ctx, queue, url, run)


def _handler(target: str) -> Callable[..., Any]:
    """The function named ``module:function`` (the current directory is
    searched first, as for ``python -m``)."""
    module_name, _, attribute = target.partition(':')
    if not module_name or not attribute:
        raise click.BadParameter(f'name the handler as module:function, not {target!r}', param_hint='HANDLER')
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split('.'):
            found = getattr(found, part)
    except Exception as exc:
        raise Failure(f'cannot load the handler {target}: {type(exc).__name__}: {exc}') from None
    if not callable(found):
        raise Failure(f'the handler {target} is not callable')
    return found  # type: ignore[no-any-return]


@cli.command()
@click.argument('handler')
@click.option('--queue', 'queue_name', default='trq', show_default=True, help='The queue to take tasks from.')
@click.option('--concurrency', '-c', default=1, show_default=True, type=click.IntRange(min=1), help='Tasks at once.')
@click.option(
    '--max-attempts',
    default=3,
    show_default=True,
    type=click.IntRange(min=1),
    help='Attempts of a task whose enqueue set none, before the dead-letter set.',
)
@click.option('--time-limit', type=click.FloatRange(min=0, min_open=True), help='Most seconds a handler may run.')
@click.option(
    '--grace',
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help='Seconds running tasks get to finish at a stop.',
)
@click.option(
    '--beat-interval',
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help='Seconds between beats in the registry of workers (see the workers command).',
)
@click.option('--burst', is_flag=True, help='Stop once nothing is ready and nothing runs.')
@click.option('--no-sweep', is_flag=True, help='Do not run the scheduled sweep (another process does).')
@click.option('--url', metavar='URL', default=None, help=f'Redis URL (overrides ${URL_ENVVAR}).')
@click.pass_context
def worker(
    ctx: click.Context,
    handler: str,
    queue_name: str,
    concurrency: int,
    max_attempts: int,
    time_limit: float | None,
    grace: float,
    beat_interval: float,
    burst: bool,
    no_sweep: bool,
    url: str | None,
) -> None:
    """Run HANDLER (module:function) on the tasks of a queue.

    The function takes (task, ctx) and may be a coroutine function; what it
    returns is the task's result. A task whose handler raises is tried
    again with an exponential back-off, up to its attempts, then goes to
    the queue's dead-letter set (see the dead command). SIGINT or SIGTERM
    stops taking tasks and lets the running ones finish (for --grace
    seconds; the rest go back to the queue), then exits 0; a second one
    stops at once, with status 130.
    """
    function = _handler(handler)
    logging.getLogger('torrelque.worker').setLevel(logging.INFO)
    forced = False

    async def run(q: Torrelque) -> None:
        nonlocal forced
        from ._worker import Worker

        work = Worker(
            q, function, concurrency=concurrency, max_attempts=max_attempts, time_limit=time_limit,
            grace=grace, burst=burst, sweep=not no_sweep, beat_interval=beat_interval,
        )  # fmt: skip
        await work.run(handle_signals=True)
        forced = work._now

    _run(ctx, queue_name, url, run, serialiser=json_serialiser)
    if forced:
        sys.exit(130)


@cli.command()
@click.argument('queue')
@_options
@click.pass_context
def workers(ctx: click.Context, queue: str, url: str | None, as_json: bool) -> None:
    """List the live workers of QUEUE, from its registry of workers.

    A worker beats every few seconds; one that stops beating (killed, or
    cut off from Redis) drops out of the list within three beats."""

    async def run(q: Torrelque) -> None:
        alive = await q.list_workers()
        if as_json:
            for info in alive:
                _emit_json(info._asdict())
            return
        if not alive:
            click.echo(f'no live worker on queue {queue}')
            return
        now = await _server_now(q)
        rows = [('WORKER', 'STARTED', 'SLOTS', 'RUNNING', 'DONE', 'FAILED', 'LAST BEAT')]
        for info in alive:
            rows.append((
                info.worker_id, _time(info.started), str(info.concurrency), str(info.in_flight),
                str(info.processed), str(info.failed), f'{max(0.0, now - info.last_beat):.1f} s ago',
            ))  # fmt: skip
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            click.echo('  '.join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())

    _run(ctx, queue, url, run)


async def _server_now(q: Torrelque) -> float:
    seconds, micros = await q._client.time()
    return int(seconds) + int(micros) / 1_000_000 + q.clock_offset


@cli.command()
@click.argument('queue')
@click.argument('limit', required=False, type=click.IntRange(min=1))
@click.option('--off', is_flag=True, help='Remove the working limit.')
@click.option('--rate', type=click.IntRange(min=1), metavar='N', help='Set the rate limit: N dequeues per --per.')
@click.option(
    '--per',
    type=click.FloatRange(0.001, 86400),
    default=1.0,
    show_default=True,
    metavar='SECONDS',
    help='The window of --rate.',
)
@click.option('--no-rate', is_flag=True, help='Remove the rate limit.')
@_options
@click.pass_context
def limit(
    ctx: click.Context,
    queue: str,
    limit: int | None,
    off: bool,
    rate: int | None,
    per: float,
    no_rate: bool,
    url: str | None,
    as_json: bool,
) -> None:
    """Show or set QUEUE's limits, across all its consumers and workers:
    the working limit (the most tasks working at once) and the rate limit
    (the most dequeues per window of server time).

    With LIMIT, sets the working limit; with --off, removes it. With --rate
    N (and --per SECONDS, 1 by default), sets the rate limit; with
    --no-rate, removes it. Then shows both."""
    if off and limit is not None:
        raise click.UsageError('give a LIMIT or --off, not both')
    if no_rate and rate is not None:
        raise click.UsageError('give --rate or --no-rate, not both')
    if rate is None and ctx.get_parameter_source('per') is click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError('--per is the window of --rate: give --rate N too')

    async def run(q: Torrelque) -> None:
        if off or limit is not None:
            await q.set_working_limit(limit)
        if no_rate or rate is not None:
            await q.set_rate_limit(rate, per=per)
        working, rated = await q.get_working_limit(), await q.get_rate_limit()
        if as_json:
            rate_limit = None if rated is None else {'limit': rated[0], 'per': rated[1]}
            _emit_json({'queue': queue, 'working_limit': working, 'rate_limit': rate_limit})
        else:
            click.echo(f'working limit of {queue}: {"none" if working is None else working}')
            shown = 'none' if rated is None else f'{rated[0]} per {_seconds_text(rated[1])}'
            click.echo(f'rate limit of {queue}: {shown}')

    _run(ctx, queue, url, run)


def _dead_dict(dead: TorrelqueDeadTask) -> dict[str, Any]:
    return {
        'task_id': dead.task_id, 'time': dead.time, 'dequeue_count': dead.dequeue_count,
        'error': dead.error, 'task': _jsonable(dead.task),
    }  # fmt: skip


@cli.group()
def dead() -> None:
    """The dead-letter set of a queue: tasks that failed for good."""


@dead.command('list')
@click.argument('queue')
@click.option('--count', default=100, show_default=True, type=click.IntRange(min=1), help='The most to list.')
@_options
@click.pass_context
def dead_list(ctx: click.Context, queue: str, count: int, url: str | None, as_json: bool) -> None:
    """List QUEUE's dead tasks, the longest buried first."""

    async def run(q: Torrelque) -> None:
        for task in await q.list_dead(count=count):
            if as_json:
                _emit_json(_dead_dict(task))
            else:
                error = task.error
                click.echo(f'{_time(task.time)}  {task.task_id}  {error.get("type", "-")}: {error.get("message", "")}')

    _run(ctx, queue, url, run)


@dead.command('show')
@click.argument('queue')
@click.argument('task_id')
@_options
@click.pass_context
def dead_show(ctx: click.Context, queue: str, task_id: str, url: str | None, as_json: bool) -> None:
    """Show a dead task of QUEUE: its payload, its error and traceback."""

    async def run(q: Torrelque) -> None:
        task = await q.get_dead(task_id)
        if as_json:
            _emit_json(_dead_dict(task))
            return
        _emit_table([
            ('task', task.task_id), ('buried', _time(task.time)), ('dequeues', task.dequeue_count),
            ('attempts', task.error.get('attempts', '-')), ('error', f"{task.error.get('type', '-')}: "
                                                                    f"{task.error.get('message', '')}"),
            ('payload', _result_text(task.task)),
        ])  # fmt: skip
        if task.error.get('traceback'):
            click.echo(str(task.error['traceback']).rstrip('\n'))

    _run(ctx, queue, url, run)


@dead.command('requeue')
@click.argument('queue')
@click.argument('task_ids', metavar='ID...', nargs=-1)
@click.option('--all', 'every', is_flag=True, help='Every dead task of the queue.')
@_options
@click.pass_context
def dead_requeue(ctx: click.Context, queue: str, task_ids: tuple[str, ...], every: bool, url: str | None,
                 as_json: bool) -> None:  # fmt: skip
    """Put dead tasks of QUEUE back in the queue, to be tried again."""
    if not task_ids and not every:
        raise click.UsageError('name the tasks to requeue, or give --all')

    async def run(q: Torrelque) -> None:
        names = list(task_ids)
        if every:
            while batch := [task.task_id for task in await q.list_dead(count=1000) if task.task_id not in names]:
                names.extend(batch)
                for name in batch:
                    await q.requeue_dead(name)
            done = len(names)
        else:
            done = sum([await q.requeue_dead(name) for name in names])
        _emit_json({'requeued': done}) if as_json else click.echo(f'requeued  {done}')

    _run(ctx, queue, url, run)


@dead.command('purge')
@click.argument('queue')
@click.argument('task_ids', metavar='ID...', nargs=-1)
@click.option('--older-than', type=click.FloatRange(min=0), metavar='SECONDS', help='Those buried longer ago.')
@click.option('--all', 'every', is_flag=True, help='Every dead task of the queue.')
@_options
@click.pass_context
def dead_purge(ctx: click.Context, queue: str, task_ids: tuple[str, ...], older_than: float | None, every: bool,
               url: str | None, as_json: bool) -> None:  # fmt: skip
    """Delete dead tasks of QUEUE for good."""
    if not task_ids and older_than is None and not every:
        raise click.UsageError('name the tasks to purge, or give --older-than or --all')

    async def run(q: Torrelque) -> None:
        done = await q.purge_dead(*task_ids, older_than=older_than)
        _emit_json({'purged': done}) if as_json else click.echo(f'purged  {done}')

    _run(ctx, queue, url, run)


@cli.command(context_settings={'ignore_unknown_options': True}, add_help_option=False)
@click.argument('args', nargs=-1, type=click.UNPROCESSED)
def demo(args: tuple[str, ...]) -> None:
    """Run the Tornado demo (needs the demo extra); ARGS are its own:
    torrelque demo --help lists them."""
    from .demo import main as run_demo

    # The demo logs as it likes, the library's lines included: not through
    # the command's own handler (which would print them twice).
    logger = logging.getLogger('torrelque')
    logger.handlers.clear()
    logger.setLevel(logging.NOTSET)
    run_demo(args, prog='torrelque demo')


def main() -> None:
    """The console script."""
    # The library's warnings (a lost event connection, say) as plain lines.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter('torrelque: %(levelname)s: %(message)s'))
    logger = logging.getLogger('torrelque')
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    cli(prog_name='torrelque')
