"""A private ``redis-server`` for tests, examples, benchmarks and the demo.

It runs on a free port of 127.0.0.1 from a temporary directory, configured
as the caller asks, and can be stopped, killed and started again on the same
port and directory (to test persistence and reconnection). Needs the
``redis-server`` program and the ``mirakuru`` package (the ``test`` and
``demo`` extras).
"""

from __future__ import annotations

import atexit
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis
import redis.exceptions
from mirakuru import TCPExecutor

INSTALL_HINT = (
    'redis-server is not installed (or not on PATH). Install it: '
    '"sudo apt-get install redis-server" on Debian/Ubuntu, "brew install redis" on macOS'
)


class RedisServerMissing(RuntimeError):
    """``redis-server`` is not on ``PATH``."""


def redis_server_path() -> str:
    """The ``redis-server`` program; raises :class:`RedisServerMissing`."""
    path = shutil.which('redis-server')
    if path is None:
        raise RedisServerMissing(INSTALL_HINT)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A ``redis-server`` process of one's own.

    :param persistence: keep data across restarts (append-only file);
        off by default, as a cache-like test server.
    :param config: more ``redis.conf`` directives, e.g.
        ``{'rename-command': 'CONFIG ""'}``.
    """

    def __init__(self, *, persistence: bool = False, config: dict[str, str] | None = None) -> None:
        self.program = redis_server_path()
        self.host = '127.0.0.1'
        self.port = free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix='torrelque-redis-')
        self.dir = Path(self._tmp.name)
        directives = {
            'bind': self.host,
            'port': str(self.port),
            'dir': str(self.dir),
            'daemonize': 'no',
            'logfile': str(self.dir / 'redis.log'),
            'save': '""',
            'appendonly': 'yes' if persistence else 'no',
            'appendfsync': 'always',
        }
        directives.update(config or {})
        conf = self.dir / 'redis.conf'
        conf.write_text(''.join(f'{name} {value}\n' for name, value in directives.items()))
        self._executor = TCPExecutor(
            [self.program, str(conf)],
            host=self.host,
            port=self.port,
            timeout=20,
            sleep=0.02,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            # Not the caller's stderr: a server that outlives a killed caller
            # must not hold its pipes open.
            stderr=subprocess.DEVNULL,
        )

    @property
    def url(self) -> str:
        """The server's URL, for ``redis.asyncio.Redis.from_url``: database 0."""
        return f'redis://{self.host}:{self.port}/0'

    def start(self) -> RedisServer:
        """Starts the server and returns once it answers commands (after
        loading its data, when it has any). It is stopped at the
        interpreter's exit if nothing stopped it before (a caller that
        failed on its way out)."""
        self._executor.start()
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

    def stop(self) -> None:
        """Shuts the server down as an operator would (SIGTERM)."""
        atexit.unregister(self.stop)
        if self._executor.running():
            self._executor.stop()

    def kill(self) -> None:
        """Kills the server at once, as a crash would (SIGKILL)."""
        if self._executor.running():
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
