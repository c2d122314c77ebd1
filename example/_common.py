"""What the examples share: their command line, where Redis is, and a clean
stop on Ctrl-C, SIGTERM or a closed terminal. Their consumers are a :class:`torrelque.Worker`
(``producer_consumer.py``, ``wait_until_complete.py``), or a dequeue by hand
(``batch_processing.py``).

Not an example of its own: ``producer_consumer.py``, ``batch_processing.py``
and ``wait_until_complete.py`` import it from the same folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import sys
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import redis.asyncio
import redis.exceptions

from torrelque import Torrelque

#: ``main(args, redis_url, stop)``: the example's body; returns the exit code.
Main = Callable[[argparse.Namespace, str, asyncio.Event], Awaitable[int]]


def parser(
    doc: str | None, *, queue: str, consumers: int, consumers_help: str = 'consumers'
) -> argparse.ArgumentParser:
    """An argument parser described by the example's docstring, with
    ``--redis-url``, ``--queue`` and ``--consumers``."""
    summary, _, details = (doc or '').strip().partition('\n\n')
    result = argparse.ArgumentParser(
        description=summary,
        epilog=details.strip() or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    result.add_argument(
        '--redis-url',
        metavar='URL',
        help='a Redis server to use, e.g. redis://localhost:6379/0 '
        '(default: start a private redis-server for the run, and stop it after)',
    )
    result.add_argument('--queue', default=queue, help='queue name (default: %(default)s)')
    result.add_argument(
        '-c', '--consumers', type=count, default=consumers, help=f'{consumers_help} (default: %(default)s)'
    )
    return result


def worker_arguments(parser: argparse.ArgumentParser, *, backoff: float, grace: float) -> None:
    """Adds the options of a :class:`torrelque.Worker`: ``--max-attempts``,
    ``--backoff`` and ``--grace``."""
    parser.add_argument(
        '--max-attempts',
        type=count,
        default=3,
        help='attempts a task gets; a task that fails them all goes to the dead-letter set (default: %(default)s)',
    )
    parser.add_argument(
        '--backoff',
        type=seconds,
        default=backoff,
        help='most seconds before the second attempt, twice that before each next one; '
        'a random part of it is left out (default: %(default)s)',
    )
    parser.add_argument(
        '--grace',
        type=seconds,
        default=grace,
        help='seconds the running tasks get to finish at a stop; '
        'those still running then go back to the queue (default: %(default)s)',
    )


def count(text: str) -> int:
    """An argument that counts something: 1 or more."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, not {value}')
    return value


def seconds(text: str) -> float:
    """An argument of zero or more seconds."""
    value = float(text)
    if not 0 <= value < float('inf'):
        raise argparse.ArgumentTypeError(f'must be zero or more seconds, not {text}')
    return value


def positive(text: str) -> float:
    """An argument above zero."""
    value = float(text)
    if not 0 < value < float('inf'):
        raise argparse.ArgumentTypeError(f'must be above zero, not {text}')
    return value


def chance(text: str) -> float:
    """A probability, from 0 to 1."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f'must be between 0 and 1, not {text}')
    return value


@contextlib.contextmanager
def redis_server(url: str | None) -> Iterator[str]:
    """Yields ``url``, or, without one, the URL of a private ``redis-server``
    that runs (in a temporary directory) until the block ends. A missing
    ``redis-server`` ends the program with a one-line message."""
    if url:
        yield url
        return
    try:
        from torrelque.server import RedisServer, RedisServerMissing
    except ImportError as exc:  # mirakuru: the demo extra
        raise SystemExit(f"Cannot start a private redis-server ({exc}): pip install -e '.[demo]'") from None
    try:
        server = RedisServer()
    except RedisServerMissing as exc:
        raise SystemExit(f'{exc}; or pass --redis-url redis://HOST:PORT/0 to use a running server') from None
    with server:
        print(f'Started a private redis-server at {server.url}', file=sys.stderr, flush=True)
        yield server.url


def run(main: Main, args: argparse.Namespace) -> None:
    """Runs ``main`` on the chosen Redis server and exits with its code.

    SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal closed) set the
    ``stop`` event that ``main`` gets, for it to wind down: the examples
    stop their producers and workers on it, and then the private
    redis-server stops. (A worker runs with ``handle_signals=False``, as
    ``async with worker:`` runs it, so that the signals are handled here
    only.) Another Ctrl-C a moment later gives up on that and exits at once
    (code 130). Under ``nohup``, which ignores SIGHUP, a closed terminal
    leaves it running.
    """
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress reaches pipes at once
    with redis_server(args.redis_url) as url:
        try:
            code = asyncio.run(_main_until_stopped(main, args, url))
        except KeyboardInterrupt:
            print('Interrupted', file=sys.stderr)
            code = 130
    sys.exit(code)


# A repeated signal within this many seconds is the same request (some tools
# signal both a program and its process group).
_REPEAT_WINDOW = 1.0


def _stop_signals() -> list[signal.Signals]:
    stops = [signal.SIGINT, signal.SIGTERM]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # nohup: keep running
        stops.append(signal.SIGHUP)
    return stops


def _leave_terminal(fds: list[int]) -> None:
    """After a hang-up every write to the terminal fails (EIO): what would
    still be printed there goes nowhere instead, so that the stop can run
    to its end."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in fds:
            os.dup2(devnull, fd)
    finally:
        os.close(devnull)


async def _main_until_stopped(main: Main, args: argparse.Namespace, url: str) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    stopped_at = 0.0
    terminals = [fd for fd in (sys.stdout.fileno(), sys.stderr.fileno()) if os.isatty(fd)]
    stops = _stop_signals()

    def on_signal(signum: int) -> None:
        nonlocal stopped_at
        if signum == signal.SIGHUP:
            _leave_terminal(terminals)
        if not stop.is_set():
            print(f'\n{signal.Signals(signum).name}: stopping (Ctrl-C again to force)', file=sys.stderr, flush=True)
            stopped_at = loop.time()
            stop.set()
        elif signum == signal.SIGINT and loop.time() - stopped_at > _REPEAT_WINDOW:
            raise KeyboardInterrupt  # out of the event loop, between two steps of its tasks

    for signum in stops:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await main(args, url, stop)
    finally:
        for signum in stops:
            loop.remove_signal_handler(signum)


def masked(url: str) -> str:
    """The URL with its password, if any, shown as ``***``: fit to print."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is not None:
        host = parts.netloc.rpartition('@')[2]
        url = url.replace(parts.netloc, f'{parts.username or ""}:***@{host}', 1)
    return re.sub(r'([?&])password=[^&#]*', r'\1password=***', url)


@contextlib.asynccontextmanager
async def open_queue(url: str, name: str) -> AsyncIterator[tuple[redis.asyncio.Redis, Torrelque]]:
    """A new client and a queue on it, both closed after the block. A server
    that cannot be reached ends the program with a one-line message."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        try:
            await client.ping()
        except (redis.exceptions.ConnectionError, OSError) as exc:
            raise SystemExit(f'Cannot reach Redis at {masked(url)}: {exc}') from None
        async with Torrelque(client, queue=name) as queue:
            yield client, queue
    finally:
        await client.aclose()


async def sleep_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Sleeps, unless ``stop`` is set first; says whether it slept it all."""
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        return True
    return False
