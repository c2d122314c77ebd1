"""Runs the scripts of ``example/`` as programs, as a person would: in a
process of their own, read from their output, stopped with a signal."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

EXAMPLES = Path(__file__).resolve().parent.parent / 'example'
URL_LINE = re.compile(r'running at (http://\S+?)/? ')
PRIVATE_REDIS_LINE = re.compile(r'private redis-server at redis://([\d.]+):(\d+)/')


class Program:
    """An example script running in a subprocess; its output is collected
    as it comes."""

    def __init__(self, script: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.script = script
        self.process = subprocess.Popen(
            [sys.executable, '-u', str(EXAMPLES / script), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self._lines: list[str] = []
        self._errors: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self._lines), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self._errors), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._changed:
                into.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return ''.join(self._lines)

    @property
    def errors(self) -> str:
        with self._changed:
            return ''.join(self._errors)

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = 30, *, stderr: bool = False) -> re.Match[str]:
        """Waits for a line of output (or of stderr) that matches; fails
        with everything it printed if none comes in time or it exits."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                lines = self._errors if stderr else self._lines
                for line in lines[seen:]:
                    if match := regex.search(line):
                        return match
                seen = len(lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not any(r.is_alive() for r in self._readers)):
                    break
                self._changed.wait(min(left, 0.5))
        raise AssertionError(
            f'{self.script} printed no line matching {regex.pattern!r} '
            f'(exit code {self.process.poll()}).\n--- stdout\n{self.output}--- stderr\n{self.errors}'
        )

    def wait(self, timeout: float = 60) -> int:
        """Waits for the program to exit; returns its exit code."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f'{self.script} did not exit within {timeout} s.\n--- stdout\n{self.output}--- stderr\n{self.errors}'
            ) from None
        for reader in self._readers:
            reader.join(10)
        return code

    def stop(self, signum: int = signal.SIGINT, timeout: float = 60) -> int:
        """Sends a signal (Ctrl-C by default) and waits for the exit."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.wait(timeout)

    def __enter__(self) -> Program:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@contextlib.contextmanager
def demo(*args: str) -> Iterator[tuple[Program, str]]:
    """The demo app on a free port: the program and its base URL. On the
    way out it gets Ctrl-C and must stop cleanly."""
    with Program('wait_until_complete.py', '--port', '0', *args) as program:
        url = program.wait_for(URL_LINE).group(1)
        yield program, url
        assert program.stop() == 0, program.errors
        assert 'Traceback' not in program.errors, program.errors
        assert 'Stopped' in program.output


def port_is_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, port)) == 0
