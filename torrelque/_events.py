"""Events: the shared pub/sub connection, task watches and queue watches.

Every transition script publishes a JSON message on the task's channel
(named like its state key, ``{queue}:task:<id>``) and on the queue's
``{queue}:events`` channel; see ``lua/_lib.lua`` for the format. Nothing
here needs server configuration: no keyspace notifications, no ``CONFIG``.

All listeners of one :class:`~torrelque.Torrelque` share one pub/sub
connection (a :class:`PubSubHub`), which subscribes a channel while anyone
listens to it and unsubscribes it when the last listener leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import orjson
import redis.exceptions
from redis.asyncio.connection import AbstractConnection

from ._errors import (
    TorrelqueError,
    TorrelqueLagError,
    TorrelqueLookupError,
    TorrelqueSerialiserError,
    TorrelqueTimeoutError,
)
from ._scripts import STANDARD_TIMEOUT
from ._types import TorrelqueEvent, TorrelqueTaskState, TorrelqueTaskStatus

logger = logging.getLogger('torrelque')

# The most channels per SUBSCRIBE and ids per snapshot script call.
_BATCH = 250
_RECONNECT_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
# Seconds of quiet before the connection is checked with a PING, and for the answer.
_PING_INTERVAL = 30.0
_PONG_TIMEOUT = 10.0
# Seconds the connection stays open after the last listener has gone.
_IDLE_LINGER = 1.0
# Errors of the event connection that trying again cannot mend.
_PERMANENT = (redis.exceptions.AuthenticationError, redis.exceptions.NoPermissionError)
# Replies of a cluster node that does not serve the queue's slot (now).
_ELSEWHERE = (
    redis.exceptions.MovedError,
    redis.exceptions.AskError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)


class Listener(Protocol):
    def on_message(self, data: bytes) -> None:
        """A message arrived on the channel."""

    def on_resubscribed(self) -> None:
        """The connection was lost and subscribed again: messages may have
        been missed in between."""

    def on_closed(self) -> None:
        """The hub was closed."""

    def on_refused(self, error: TorrelqueError) -> None:
        """The server refused to subscribe the channel (no permission): the
        listener has been removed and will get nothing more."""


SnapshotFn = Callable[[Sequence[str]], Awaitable[list[int]]]


#: Makes a new connection for the hub; ``True`` after a failure (or a
#: moved slot), when where to connect should be looked up anew.
ConnectFn = Callable[[bool], Awaitable[AbstractConnection]]


class PubSubHub:
    """One pub/sub connection shared by all listeners of a queue.

    A reader task connects, subscribes every channel that has listeners and
    reads; after a lost connection it does the same again, waiting longer
    after each failure until a read succeeds, and listeners learn that they
    may have missed messages. A writer task sends the subscription changes
    that listeners ask for meanwhile, in order. An error that trying again
    cannot mend (a wrong password, no permission) ends every listener with
    it. When the last listener has gone (left, or been collected), the hub
    disconnects and stops its tasks after a moment; the next listener
    starts them again, so an instance nobody closes holds nothing idle.

    On a cluster (``sharded``) it subscribes with SSUBSCRIBE on the master
    that owns the queue's slot. When the slot moves (a failover, a
    resharding) the server ends those subscriptions, or the connection
    fails: the hub then connects to the slot's master anew and subscribes
    again, as after any lost connection.
    """

    def __init__(
        self,
        connect: ConnectFn,
        snapshot: SnapshotFn,
        on_refused: Callable[[Exception], None],
        *,
        sharded: bool = False,
    ) -> None:
        self._connect = connect
        self._connection: AbstractConnection | None = None
        prefix = 'S' if sharded else ''
        self._subscribe_command, self._unsubscribe_command = f'{prefix}SUBSCRIBE', f'{prefix}UNSUBSCRIBE'
        self._subscribed = self._subscribe_command.lower().encode()
        self._unsubscribed = self._unsubscribe_command.lower().encode()
        self._message = b'smessage' if sharded else b'message'
        # Set when the server ended a subscription that listeners still want.
        self._moved = False
        self._snapshot_fn = snapshot
        self._on_refused = on_refused
        # Listeners by channel, held weakly: one that nobody holds any more
        # is collected, and its reference's callback makes it leave.
        self._listeners: dict[bytes, dict[int, weakref.ref[Listener]]] = {}
        # Futures of sent SUBSCRIBEs, in order, per channel: the server
        # confirms each with one "subscribe" message.
        self._acks: dict[bytes, deque[asyncio.Future[None]]] = {}
        # Subscription changes not sent yet, in the order they were asked for.
        self._ops: deque[tuple[bool, bytes]] = deque()
        # Commands sent on this connection whose replies have not all come,
        # in order: (kind, channels not yet confirmed). An error reply is the
        # answer to the first of them.
        self._sent: deque[tuple[bytes, deque[bytes]]] = deque()
        self._ops_ready = asyncio.Event()
        self._connected = asyncio.Event()
        self._pong: asyncio.Future[None] | None = None
        self._snapshots: list[tuple[str, asyncio.Future[bool]]] = []
        self._snapshot_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._idle: asyncio.TimerHandle | None = None
        self._closed = False

    # -- listeners ---------------------------------------------------------

    def listeners(self, channel: bytes) -> list[Listener]:
        """The live listeners of a channel."""
        found = (ref() for ref in self._listeners.get(channel, {}).values())
        return [listener for listener in found if listener is not None]

    def _add(self, channel: bytes, listener: Listener) -> bool:
        """Adds a listener; whether it is the channel's first."""
        members = self._listeners.setdefault(channel, {})
        first = not members
        members[id(listener)] = weakref.ref(listener, functools.partial(self._collected, channel, id(listener)))
        return first

    def _collected(self, channel: bytes, key: int, ref: weakref.ref[Listener]) -> None:
        # Called by the garbage collector, wherever it runs: never raise.
        with contextlib.suppress(Exception):
            if self._listeners.get(channel, {}).get(key) is ref:
                self._remove(channel, key)

    def _remove(self, channel: bytes, key: int) -> None:
        members = self._listeners.get(channel)
        if members is None or members.pop(key, None) is None:
            return
        if not members:
            del self._listeners[channel]
            if not self._closed:
                self._request(False, channel)
                self._idle_soon()

    # -- subscriptions -----------------------------------------------------

    async def join(self, channel: bytes, listener: Listener) -> None:
        """Adds a listener to a channel and returns once the server has
        confirmed the subscription: every message published from then on
        reaches the listener. A caller that fails or is cancelled here
        must still :meth:`leave`.

        :raises TorrelqueError: the queue is closed, or the server refused
            the subscription (as it may refuse any later one).
        """
        if self._closed:
            raise TorrelqueError('the queue is closed')
        self._start()
        confirmed: asyncio.Future[None] | None
        if self._add(channel, listener):
            confirmed = asyncio.get_running_loop().create_future()
            self._acks.setdefault(channel, deque()).append(confirmed)
            self._request(True, channel)
        else:
            pending = self._acks.get(channel)
            confirmed = pending[-1] if pending else None
        if confirmed is not None:
            await asyncio.shield(confirmed)

    def leave(self, channel: bytes, listener: Listener) -> None:
        """Removes a listener; the last one to leave unsubscribes. Safe to
        call from anywhere, and more than once."""
        self._remove(channel, id(listener))

    def _request(self, subscribe: bool, channel: bytes) -> None:
        self._ops.append((subscribe, channel))
        self._ops_ready.set()

    def _start(self) -> None:
        """Starts the reader and the writer, on a new connection, unless they run."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._sent.clear()
        self._connected.clear()
        self._tasks = [loop.create_task(self._read()), loop.create_task(self._write())]

    def _idle_soon(self) -> None:
        """Stops the hub after a moment if nobody listens then."""
        if self._listeners or self._closed or self._idle is not None or not self._tasks:
            return
        with contextlib.suppress(RuntimeError):  # no running loop (a collection after it closed)
            self._idle = asyncio.get_running_loop().call_later(_IDLE_LINGER, self._stop_if_idle)

    def _stop_if_idle(self) -> None:
        self._idle = None
        if self._listeners or self._acks or self._snapshots or self._closed:
            return
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        connection, self._connection = self._connection, None
        self._ops.clear()
        self._sent.clear()
        self._connected.clear()
        if connection is not None:
            asyncio.get_running_loop().create_task(connection.disconnect(nowait=True))

    async def _write(self) -> None:
        """Sends subscription changes in order, runs of the same kind as one
        command, and a PING when idle, to find a connection that died
        silently."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with asyncio.timeout(_PING_INTERVAL):
                    await self._ops_ready.wait()
            except TimeoutError:
                await self._ping(loop)
                continue
            self._ops_ready.clear()
            await self._connected.wait()
            while self._ops:
                subscribe = self._ops[0][0]
                channels: list[bytes] = []
                while self._ops and self._ops[0][0] == subscribe:
                    channels.append(self._ops.popleft()[1])
                try:
                    await self._send(self._subscribe_command if subscribe else self._unsubscribe_command, channels)
                except (redis.exceptions.RedisError, OSError):
                    # The reader reconnects and subscribes what is wanted then.
                    await self._drop_connection()
                    break

    async def _send(self, command: str, channels: Sequence[bytes]) -> None:
        """Sends ``command`` for ``channels``, in commands of a bounded size."""
        assert self._connection is not None
        for start in range(0, len(channels), _BATCH):
            batch = channels[start : start + _BATCH]
            self._sent.append((command.lower().encode(), deque(batch)))
            await self._connection.send_command(command, *batch)

    async def _ping(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._connected.is_set() or self._connection is None:
            return
        self._pong = loop.create_future()
        try:
            self._sent.append((b'pong', deque()))
            await self._connection.send_command('PING')
            async with asyncio.timeout(_PONG_TIMEOUT):
                await self._pong
        except (redis.exceptions.RedisError, OSError, TimeoutError):
            logger.warning('Event connection does not answer; reconnecting')
            await self._drop_connection()
        finally:
            self._pong = None

    async def _drop_connection(self) -> None:
        self._connected.clear()
        self._sent.clear()
        if self._connection is not None:
            await self._connection.disconnect(nowait=True)

    # -- reading -----------------------------------------------------------

    async def _read(self) -> None:
        failures = 0
        while True:
            try:
                self._moved = False
                self._connection = connection = await self._connect(failures > 0)
                await connection.connect()  # type: ignore[no-untyped-call]
                await self._subscribe_all()
                self._connected.set()
                response = await self._next_response(connection)
                # The connection works: from here on, a loss is a first one.
                if failures:
                    logger.info('Event connection restored')
                failures = 0
                while True:
                    try:
                        self._dispatch(response)
                    except Exception:  # a listener's fault must not stop every other
                        logger.exception('Event listener failed on %r', response)
                    if self._moved:
                        raise redis.exceptions.ConnectionError("the server ended the queue's subscriptions")
                    response = await self._next_response(connection)
            except _PERMANENT as exc:
                await self._drop_connection()
                self._end_everyone(exc)
                return
            except (redis.exceptions.RedisError, OSError) as exc:
                await self._drop_connection()
                delay = _RECONNECT_DELAYS[min(failures, len(_RECONNECT_DELAYS) - 1)]
                failures += 1
                logger.warning('Event connection lost (%s); reconnecting in %.2f s', exc, delay)
                await asyncio.sleep(delay)

    async def _next_response(self, connection: AbstractConnection) -> Any:
        """The next message, an error reply answered on the way."""
        while True:
            try:
                return await connection.read_response()
            except _ELSEWHERE as exc:
                # A cluster node that no longer serves the slot: connect anew.
                raise redis.exceptions.ConnectionError(f'the slot is elsewhere ({exc})') from exc
            except redis.exceptions.ResponseError as exc:
                self._refuse(exc)

    def _end_everyone(self, exc: Exception) -> None:
        """An error that trying again cannot mend: every waiter and every
        listener gets it, and the hub stops (the next join tries again)."""
        logger.error('Event connection refused (%s): watches end with this error', exc)
        self._on_refused(exc)
        error = TorrelqueError(f'the Redis server refused the event connection: {exc}')
        error.__cause__ = exc
        channels = set(self._acks) | set(self._listeners)
        for channel in channels:
            for future in self._acks.pop(channel, ()):
                if not future.done():
                    future.set_exception(error)
                    future.exception()
            listeners = self.listeners(channel)
            self._listeners.pop(channel, None)
            for listener in listeners:
                listener.on_refused(error)
        self._ops.clear()
        self._tasks = [task for task in self._tasks if task is not asyncio.current_task()]
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        self._connection = None

    async def _subscribe_all(self) -> None:
        """Subscribes every channel that has listeners, on a new connection.
        Changes asked for before are void: this is what they wanted."""
        self._ops.clear()
        for channel, pending in self._acks.items():
            # Only one confirmation will come for all who wait on the channel.
            if len(pending) > 1:
                first = pending[0]
                for later in list(pending)[1:]:
                    first.add_done_callback(functools.partial(_copy_outcome, target=later))
                self._acks[channel] = deque([first])
        for channel in [channel for channel in self._acks if channel not in self._listeners]:
            for future in self._acks.pop(channel):
                if not future.done():
                    future.set_result(None)
        await self._send(self._subscribe_command, list(self._listeners))

    def _asked(self, kind: bytes, channel: bytes) -> bool:
        """Whether this reply answers the first command sent."""
        return bool(self._sent) and self._sent[0][0] == kind and channel in self._sent[0][1]

    def _confirm(self, kind: bytes, channel: bytes | None) -> None:
        """Notes a reply to the first command sent."""
        if self._sent and self._sent[0][0] == kind:
            waiting = self._sent[0][1]
            if waiting and waiting[0] == channel:
                waiting.popleft()
            if not waiting:
                self._sent.popleft()

    def _refuse(self, exc: redis.exceptions.ResponseError) -> None:
        """The server answered the first command sent with an error: when it
        subscribed channels, none was subscribed, and their listeners learn
        why (the server says no to each try, so none is made again)."""
        if not self._sent:
            logger.warning('Event connection got an unexpected error: %s', exc)
            return
        kind, channels = self._sent.popleft()
        if kind != self._subscribed:
            logger.warning('Event connection: %s refused: %s', kind.decode().upper(), exc)
            return
        self._on_refused(exc)
        for channel in channels:
            error = TorrelqueError(f'the Redis server refused to subscribe to {channel.decode()!r}: {exc}')
            error.__cause__ = exc
            for future in self._acks.pop(channel, ()):
                if not future.done():
                    future.set_exception(error)
                    future.exception()  # its waiters may have gone; they are told below anyway
            listeners = self.listeners(channel)
            self._listeners.pop(channel, None)
            for listener in listeners:
                listener.on_refused(error)
        self._idle_soon()

    def _dispatch(self, response: Any) -> None:
        if not isinstance(response, list):
            # PING's answer on a connection that has no subscription left.
            if response == b'PONG':
                self._confirm(b'pong', None)
                if self._pong is not None and not self._pong.done():
                    self._pong.set_result(None)
            return
        kind, channel = response[0], response[1]
        if kind == self._unsubscribed and channel in self._listeners and not self._asked(kind, channel):
            # Not asked for: the slot has moved away from this node.
            self._moved = True
        if kind in (self._subscribed, self._unsubscribed, b'pong'):
            self._confirm(kind, channel)
        if kind == self._message:
            for listener in self.listeners(channel):
                listener.on_message(response[2])
        elif kind == self._subscribed:
            pending = self._acks.get(channel)
            if pending:
                future = pending.popleft()
                if not future.done():
                    future.set_result(None)
                if not pending:
                    del self._acks[channel]
            elif channel in self._listeners:
                # Subscribed again after a reconnect: messages may be lost.
                for listener in self.listeners(channel):
                    listener.on_resubscribed()
            else:
                self._request(False, channel)  # nobody listens any more
        elif kind == b'pong' and self._pong is not None and not self._pong.done():
            self._pong.set_result(None)

    # -- snapshots ---------------------------------------------------------

    async def snapshot(self, task_id: str) -> bool:
        """Has the task's current state published on its channel; returns
        whether the task is known. Concurrent requests share script calls."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._snapshots.append((task_id, future))
        if self._snapshot_task is None:
            self._snapshot_task = asyncio.get_running_loop().create_task(self._take_snapshots())
        return await asyncio.shield(future)

    async def _take_snapshots(self) -> None:
        try:
            await asyncio.sleep(0)  # let concurrent requests join this batch
            while self._snapshots:
                batch, self._snapshots = self._snapshots[:_BATCH], self._snapshots[_BATCH:]
                try:
                    found = await self._snapshot_fn([task_id for task_id, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                            future.exception()  # retrieved: its waiter may have gone
                    continue
                for (_, future), known in zip(batch, found, strict=True):
                    if not future.done():
                        future.set_result(bool(known))
        finally:
            self._snapshot_task = None

    # -- closing -----------------------------------------------------------

    async def aclose(self) -> None:
        """Ends every listener and closes the connection."""
        if self._closed:
            return
        self._closed = True
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        tasks = [*self._tasks, *([self._snapshot_task] if self._snapshot_task else [])]
        self._tasks = []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        closed = TorrelqueError('the queue is closed')
        futures: list[asyncio.Future[Any]] = [future for pending in self._acks.values() for future in pending]
        futures += [future for _, future in self._snapshots]
        for future in futures:
            if not future.done():
                future.set_exception(closed)
                future.exception()  # retrieved: nobody may be waiting any more
        for channel in list(self._listeners):
            for listener in self.listeners(channel):
                listener.on_closed()
        self._listeners.clear()
        self._acks.clear()
        if self._connection is not None:
            await self._connection.disconnect(nowait=True)
            self._connection = None


def _copy_outcome(source: asyncio.Future[None], target: asyncio.Future[None]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif source.exception() is not None:
        target.set_exception(source.exception())  # type: ignore[arg-type]
    else:
        target.set_result(None)


def _parse(data: bytes) -> tuple[dict[str, Any], bytes | None]:
    """Splits a message into its JSON fields and the raw result after it."""
    head, newline, result = data.partition(b'\n')
    fields = orjson.loads(head)
    return fields, (result if newline else None)


def _seconds(micros: Any) -> float:
    return int(micros) / 1_000_000


def _optional_time(micros: Any) -> float | None:
    return _seconds(micros) if micros else None


def make_state(
    fields: dict[str, Any], result: bytes | None, loads: Callable[[bytes], Any], task_id: str
) -> TorrelqueTaskState:
    """A task state from its hash fields or an event's (text or numbers;
    ``progress`` decoded already)."""
    decoded = None
    if result is not None:
        try:
            decoded = loads(result)
        except Exception as exc:
            raise TorrelqueSerialiserError(f'cannot decode the result of task {task_id}', task_id) from exc
    return TorrelqueTaskState(
        status=TorrelqueTaskStatus(int(fields['status'])),
        timeout=float(fields.get('timeout', STANDARD_TIMEOUT)),
        result=decoded,
        dequeue_count=int(fields.get('dequeues', 0)),
        requeue_count=int(fields.get('requeues', 0)),
        enqueue_time=_seconds(fields.get('enqueued', 0)),
        last_dequeue_time=_optional_time(fields.get('dequeued')),
        last_requeue_time=_optional_time(fields.get('requeued')),
        release_time=_optional_time(fields.get('released')),
        progress=fields.get('progress'),
    )


class _Inbox:
    """Messages of one listener, awaited by one consumer; up to ``limit``
    of them are held, and those beyond are counted as ``missed``."""

    def __init__(self, limit: int | None = None) -> None:
        self.messages: deque[bytes] = deque()
        self.closed = False
        #: Why no more messages come, when the hub did not just close.
        self.error: TorrelqueError | None = None
        self.missed = 0
        self._limit = limit
        self._waiter: asyncio.Future[None] | None = None

    def put(self, data: bytes) -> None:
        # Once one is missed, the rest are too: held messages stay a run
        # without a gap, and the gap comes after them.
        if self.missed or (self._limit is not None and len(self.messages) >= self._limit):
            self.missed += 1
            return
        self.messages.append(data)
        self._wake()

    def close(self, error: TorrelqueError | None = None) -> None:
        self.closed = True
        self.error = self.error or error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, timeout: float | None) -> None:
        """Waits for a message or the close; raises TimeoutError."""
        if self.messages or self.closed:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._waiter
        finally:
            self._waiter = None


class _Subscription:
    """A listener of one channel with an inbox: what both watches share.
    Leaving early (``aclose()``, even from another task, or the iterator
    dropped and collected) unsubscribes and ends the iteration."""

    def __init__(self, hub: PubSubHub, channel: bytes, limit: int | None = None) -> None:
        self._hub = hub
        self._channel = channel
        self._inbox = _Inbox(limit)
        self._started = False
        self._finished = False

    async def aclose(self) -> None:
        """Stops watching (unsubscribes); an iteration waiting meanwhile ends."""
        self._finish()
        self._inbox.close()

    def _finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._hub.leave(self._channel, self)

    def _end_of_messages(self) -> BaseException:
        """What an iteration that has no message left raises: the hub's
        error, its end when the iteration was closed, or the queue's."""
        if self._inbox.error is not None:
            return self._inbox.error
        if self._finished:
            return StopAsyncIteration()
        return TorrelqueError('the queue was closed while watching')

    # Listener
    def on_message(self, data: bytes) -> None:
        self._inbox.put(data)

    def on_resubscribed(self) -> None:
        pass

    def on_closed(self) -> None:
        self._inbox.close()

    def on_refused(self, error: TorrelqueError) -> None:
        self._finished = True  # the hub has let it go already
        self._inbox.close(error)


class TaskWatch(_Subscription):
    """The async iterator that :meth:`~torrelque.Torrelque.watch` returns.

    It subscribes to the task's channel, then has the current state
    published on that same channel, so that the state and later transitions
    arrive in one ordered stream. It yields the current state, then the
    state after each change of status or progress, and stops after a final status, or
    when the task is released without a result. After a lost connection it
    reads the state again, as often as it takes, so that it still ends with
    the final state (or its timeout). Leaving the loop early (``break``,
    cancellation, ``aclose()``, garbage collection) unsubscribes.
    """

    def __init__(
        self,
        hub: PubSubHub,
        channel: bytes,
        task_id: str,
        timeout: float | None,
        loads: Callable[[bytes], Any],
    ) -> None:
        super().__init__(hub, channel)
        self._task_id = task_id
        self._timeout = timeout
        self._loads = loads
        self._deadline: float | None = None
        self._last: tuple[TorrelqueTaskStatus, Any] | None = None  # status and progress yielded last
        self._resync_task: asyncio.Task[None] | None = None

    def __aiter__(self) -> TaskWatch:
        return self

    async def __anext__(self) -> TorrelqueTaskState:
        if self._finished and not self._inbox.messages:
            raise StopAsyncIteration
        try:
            if not self._started:
                self._started = True
                loop = asyncio.get_running_loop()
                if self._timeout is not None:
                    self._deadline = loop.time() + self._timeout
                await self._bounded(self._start())
            while True:
                while self._inbox.messages:
                    state = self._next_state(self._inbox.messages.popleft())
                    if state is not None:
                        return state
                    if self._finished:
                        raise StopAsyncIteration
                if self._finished or self._inbox.closed:
                    raise self._end_of_messages()
                await self._bounded(self._inbox.wait(self._remaining()))
        except BaseException:
            self._finish()
            raise

    def _remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return self._deadline - asyncio.get_running_loop().time()

    async def _bounded(self, awaitable: Awaitable[Any]) -> None:
        remaining = self._remaining()
        if remaining is not None and remaining <= 0:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise TorrelqueTimeoutError(f'no final state of task {self._task_id} within {self._timeout} s')
        try:
            async with asyncio.timeout(remaining):
                await awaitable
        except TimeoutError as exc:
            raise TorrelqueTimeoutError(f'no final state of task {self._task_id} within {self._timeout} s') from exc

    async def _start(self) -> None:
        await self._hub.join(self._channel, self)
        if not await self._hub.snapshot(self._task_id):
            raise TorrelqueLookupError(f'task {self._task_id} is unknown')

    def _next_state(self, data: bytes) -> TorrelqueTaskState | None:
        """The state a message brings, if it is news; marks the end."""
        fields, result = _parse(data)
        if fields['event'] in ('removed', 'missing'):
            self._finish()
            return None
        status = TorrelqueTaskStatus(int(fields['status']))
        news = (status, fields.get('progress'))
        if news == self._last:
            return None
        self._last = news
        state = make_state(fields, result, self._loads, self._task_id)
        if status.isfinal():
            self._finish()
        return state

    def on_resubscribed(self) -> None:
        # Transitions may have been missed: the current state says where it is.
        if self._resync_task is None or self._resync_task.done():
            self._resync_task = asyncio.get_running_loop().create_task(self._resync())

    async def _resync(self) -> None:
        """Reads the state again until it works or the watch has ended."""
        delay = _RECONNECT_DELAYS[0]
        while not self._finished:
            try:
                await self._hub.snapshot(self._task_id)
                return
            except Exception as exc:
                logger.warning('Cannot re-read task %s after reconnecting (%s); trying again', self._task_id, exc)
                await asyncio.sleep(delay)
                delay = min(2 * delay, _RECONNECT_DELAYS[-1])


class QueueWatch(_Subscription):
    """The async iterator that :meth:`~torrelque.Torrelque.watch_queue`
    returns: every transition of every task of the queue, from the moment
    it has subscribed (on the first ``__anext__``), until it is closed.
    Transitions while the connection is lost and restored are missed. It
    holds at most ``limit`` transitions that nobody has read; once it has
    had to drop some, it raises :class:`~torrelque.TorrelqueLagError` after
    the ones it held, and ends."""

    def __init__(self, hub: PubSubHub, channel: bytes, limit: int) -> None:
        super().__init__(hub, channel, limit)

    def __aiter__(self) -> QueueWatch:
        return self

    async def __anext__(self) -> TorrelqueEvent:
        try:
            if not self._started:
                self._started = True
                await self._hub.join(self._channel, self)
            if not self._inbox.messages and not self._inbox.missed and not self._finished:
                await self._inbox.wait(None)
            if not self._inbox.messages:
                if self._inbox.missed:
                    missed, self._inbox.missed = self._inbox.missed, 0
                    self._inbox.closed = True
                    raise TorrelqueLagError(missed)
                raise self._end_of_messages()
            fields, _ = _parse(self._inbox.messages.popleft())
        except BaseException:
            self._finish()
            raise
        status = fields.get('status')
        return TorrelqueEvent(
            task_id=fields['id'],
            event=fields['event'],
            status=None if status is None else TorrelqueTaskStatus(int(status)),
            time=_seconds(fields['time']),
        )
