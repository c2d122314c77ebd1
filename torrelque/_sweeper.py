"""The scheduled sweep: a background task that sweeps a queue every interval,
and sooner when a transition announces an earlier deadline or due time on
the queue's wake channel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable

from ._client import cancel_lost, cancels
from ._events import PubSubHub

logger = logging.getLogger('torrelque')

#: Sweeps the queue: ``((stale, due, undequeued), seconds to the next
#: deadline or due time, or None)``.
SweepFn = Callable[[], Awaitable[tuple[tuple[int, int, int], float | None]]]


class Sweeper:
    """Runs one queue's sweep in the background.

    It sweeps at once, then sleeps until the earliest of: the interval, the
    next deadline or due time the sweep reported, and any earlier one that
    a wake-up message announces (a wake-up that comes while a sweep runs
    counts too). It listens for wake-ups on the shared event connection,
    joined in the background: when that is slow or refused, the sweep runs
    on its interval meanwhile.
    """

    def __init__(self, sweep: SweepFn, hub: Callable[[], PubSubHub], wake_channel: bytes, name: str) -> None:
        self._sweep = sweep
        self._hub = hub
        self._wake_channel = wake_channel
        self._name = name
        self._task: asyncio.Task[None] | None = None
        # Loop time of the earliest wake-up asked for since the last sweep began.
        self._asked = math.inf
        self._woken: asyncio.Event | None = None
        self._joined: PubSubHub | None = None
        self._refused = False  # the server refused the wake channel (and it was said)

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self, interval: float) -> None:
        """(Re)starts the sweep; needs a running event loop."""
        loop = asyncio.get_running_loop()
        self.stop()
        self._task = loop.create_task(self._run(interval), name=f'torrelque sweep {self._name}')

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        self._woken = asyncio.Event()
        joining = loop.create_task(self._listen(interval))
        failures = 0
        since = cancels()
        try:
            while True:
                self._asked = math.inf
                try:
                    (stale, due, _), next_in = await self._sweep()
                    if cancel_lost(since):
                        raise asyncio.CancelledError
                except Exception as exc:
                    failures += 1
                    wait = min(interval, 0.1 * 2**failures)
                    logger.warning('Sweep failed (%s), retrying in %.1f s', exc, wait, exc_info=True)
                else:
                    failures = 0
                    if stale or due:
                        logger.debug('Swept back %d stale and %d due tasks', stale, due)
                    wait = interval if next_in is None else min(interval, next_in)
                due_at = loop.time() + wait
                while (left := min(due_at, self._asked) - loop.time()) > 0:
                    self._woken.clear()
                    try:
                        async with asyncio.timeout(left):
                            await self._woken.wait()
                    except TimeoutError:
                        break
        finally:
            joining.cancel()
            if self._joined is not None:
                self._joined.leave(self._wake_channel, self)
                self._joined = None

    async def _listen(self, interval: float) -> None:
        self._joined = self._hub()
        try:
            await self._joined.join(self._wake_channel, self)
        except Exception as exc:
            if not self._refused:
                logger.warning('The sweep of %s runs without wake-ups (every %s s): %s', self._name, interval, exc)

    def wake(self, seconds: float) -> None:
        """Brings the next sweep forward to ``seconds`` from now."""
        if self._woken is None:
            return
        at = asyncio.get_running_loop().time() + seconds
        if at < self._asked:
            self._asked = at
            self._woken.set()

    # Listener of the wake channel.
    def on_message(self, data: bytes) -> None:
        try:
            seconds = float(data)
        except ValueError:
            return
        self.wake(seconds)

    def on_resubscribed(self) -> None:
        self.wake(0)  # wake-ups may have been missed

    def on_closed(self) -> None:
        pass

    def on_refused(self, error: Exception) -> None:
        self._refused = True
        logger.warning('The sweep of %s runs without wake-ups (on its interval): %s', self._name, error)
