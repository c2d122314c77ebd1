"""The worker: the consumer loop that users otherwise write by hand. It takes
tasks for its free slots, runs a handler on each, releases it with the
handler's result, retries failures with back-off, buries what keeps failing
in the dead-letter set, extends each running task's lease, and stops
gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import os
import random
import signal
import socket
import threading
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from . import _codec
from ._errors import TorrelqueTimeoutError, TorrelqueValueError
from ._queue import Torrelque
from ._types import TorrelqueTaskId

logger = logging.getLogger('torrelque.worker')


class Retry(Exception):  # a request, not an error
    """Raised by a handler to have its task tried again: after ``delay``
    seconds, or else after the worker's back-off. It counts as an attempt."""

    def __init__(self, delay: float | None = None) -> None:
        super().__init__(f'retry requested (delay {delay} s)' if delay is not None else 'retry requested')
        self.delay = None if delay is None else _codec.seconds('delay', delay, positive=False)


class Reject(Exception):  # a request, not an error
    """Raised by a handler to fail its task at once and for good: it goes to
    the dead-letter set with ``reason``, however many attempts are left."""

    def __init__(self, reason: str = '') -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class TaskContext:
    """What a handler knows about the task it runs, and what it can do."""

    #: The task's id (it carries the attempt's lease).
    task_id: TorrelqueTaskId
    #: This attempt's number: 1 for the first.
    attempt: int
    #: The most attempts the task gets.
    max_attempts: int
    #: The queue the task came from.
    queue: Torrelque

    @property
    def dequeue_count(self) -> int:
        """How many times the task has been dequeued, this attempt included."""
        return self.task_id.dequeue_count

    async def progress(self, value: Any) -> bool:
        """Reports how far the handler has got (any JSON value): stored in the
        task's state and seen by its watchers; ``False`` when the attempt
        lost its lease."""
        return await self.queue.set_progress(self.task_id, value)

    async def touch(self, task_timeout: float | None = None) -> bool:
        """Extends this attempt's lease now (the worker also does, on its
        own, while the handler runs); ``False`` when it is lost."""
        return bool(await self.queue.touch(self.task_id, task_timeout))


class Worker:
    """Runs ``handler(task, ctx)`` on the tasks of ``queue``, ``concurrency``
    at a time.

    The handler is a coroutine function, or a plain function (run in a
    thread). What it returns is the task's result: the task is released as
    completed with it (a ``None`` releases it without a result). When it
    raises, the task is tried again after an exponential back-off with
    jitter, until its attempts are spent (``max_attempts`` of the task's
    enqueue, else of the worker); then it is rejected into the queue's
    dead-letter set with the error. :class:`Retry` asks for another
    attempt, :class:`Reject` fails the task at once. While a handler runs,
    the worker extends its task's lease (``touch``) well before each
    deadline, so a long task is never handed to another consumer while its
    worker lives; a handler that outlives ``time_limit`` is cancelled, and
    that counts as a failed attempt.

    ``await worker.run()`` works until :meth:`stop` (or, in the main thread,
    SIGINT or SIGTERM): it then takes no more tasks, lets the running ones
    finish for up to ``grace`` seconds, and gives back the rest to the head
    of pending at once. A second signal stops at once (the sweep brings the
    tasks back after their timeout). ``async with worker:`` runs it in the
    background, and stops it on the way out.

    :param queue: the queue to take tasks from.
    :param handler: ``async def handler(task, ctx)``, or a plain function.
    :param concurrency: how many tasks run at once (1 or more).
    :param max_attempts: the most attempts of a task whose enqueue set none.
    :param backoff: seconds before the second attempt; each next one waits
        ``backoff_factor`` times longer, up to ``backoff_cap``.
    :param jitter: the share of each back-off drawn at random (0 to 1), so
        that failures of many tasks at once do not retry at once.
    :param time_limit: the most seconds a handler may run, or ``None``.
    :param heartbeat: seconds between lease extensions; by default a third
        of each task's timeout.
    :param sweep: run the queue's scheduled sweep while working (unless it
        runs already).
    :param burst: stop once the queue has nothing ready and nothing runs.
    :param grace: seconds running handlers get to finish at a stop.
    :param result_ttl: seconds the results are kept; by default the
        queue's :attr:`~torrelque.Torrelque.result_ttl`.
    :param beat_interval: seconds between the worker's beats in the queue's
        registry of workers (:meth:`~torrelque.Torrelque.list_workers`); it
        drops out of it when three go missing.
    :raises TorrelqueValueError: an argument out of range.
    """

    #: The worker's id in the registry: ``<host>:<pid>:<token>``.
    id: str

    #: Tasks done (completed) so far.
    processed: int
    #: Attempts that failed so far.
    failed: int

    def __init__(
        self,
        queue: Torrelque,
        handler: Callable[[Any, TaskContext], Any],
        *,
        concurrency: int = 1,
        max_attempts: int = 3,
        backoff: float = 1.0,
        backoff_factor: float = 2.0,
        backoff_cap: float = 300.0,
        jitter: float = 0.5,
        time_limit: float | None = None,
        heartbeat: float | None = None,
        sweep: bool = True,
        burst: bool = False,
        grace: float = 30.0,
        beat_interval: float = 5.0,
        result_ttl: float | None = None,
    ) -> None:
        if not isinstance(queue, Torrelque):
            raise TorrelqueValueError(f'a Torrelque queue is needed, not {type(queue).__name__}')
        if not callable(handler):
            raise TorrelqueValueError(f'the handler must be callable, not {handler!r}')
        self.queue = queue
        self._handler = handler
        self._in_thread = not (
            inspect.iscoroutinefunction(handler)
            or inspect.iscoroutinefunction(
                getattr(handler, '__call__', None)  # noqa: B004  # an object whose __call__ is a coroutine
            )
        )
        self.concurrency = _codec.count('concurrency', concurrency)
        self.max_attempts = _codec.count('max_attempts', max_attempts)
        self._backoff = _codec.seconds('backoff', backoff, positive=False)
        if (
            isinstance(backoff_factor, bool)
            or not isinstance(backoff_factor, (int, float))
            or not (math.isfinite(backoff_factor) and backoff_factor >= 1)
        ):
            raise TorrelqueValueError(f'backoff_factor must be a finite number of at least 1, not {backoff_factor!r}')
        self._factor = float(backoff_factor)
        self._cap = _codec.seconds('backoff_cap', backoff_cap, positive=False)
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0 <= jitter <= 1:
            raise TorrelqueValueError(f'jitter must be a number from 0 to 1, not {jitter!r}')
        self._jitter = float(jitter)
        self._time_limit = None if time_limit is None else _codec.seconds('time_limit', time_limit, positive=True)
        self._heartbeat = None if heartbeat is None else _codec.seconds('heartbeat', heartbeat, positive=True)
        self._sweep = bool(sweep)
        self._burst = bool(burst)
        self._grace = _codec.seconds('grace', grace, positive=False)
        self._beat_interval = _codec.seconds('beat_interval', beat_interval, positive=True)
        self._result_ttl = None if result_ttl is None else _codec.seconds('result_ttl', result_ttl, positive=True)
        self.id = f'{socket.gethostname()}:{os.getpid()}:{_codec.new_token().decode()[-8:]}'
        self.processed = 0
        self.failed = 0
        self._running: dict[asyncio.Task[None], TorrelqueTaskId] = {}
        self._lost: set[str] = set()  # leases found lost by a heartbeat
        self._aborted: set[str] = set()  # leases of attempts whose task was cancelled
        self._stopping: asyncio.Event | None = None
        self._now = False  # stop at once, without waiting for the handlers
        self._slot_free: asyncio.Event | None = None
        # Slots whose releases join into one call, and the calls under way.
        self._joining: list[tuple[TorrelqueTaskId, asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._background: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> int:
        """How many tasks run now."""
        return len(self._running)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before trying again a task whose ``attempt`` (1
        for the first) failed: the exponential back-off, with its jitter."""
        full = min(self._cap, self._backoff * self._factor ** (attempt - 1))
        return full * (1 - self._jitter * random.random())

    # -- running -----------------------------------------------------------------

    async def run(self, *, handle_signals: bool | None = None) -> None:
        """Works until stopped. ``handle_signals`` (by default: when running
        in the main thread) makes SIGINT and SIGTERM stop it gracefully, and
        a second one at once."""
        if self._stopping is not None:
            raise TorrelqueValueError('the worker runs already')
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._now = False
        if handle_signals is None:
            handle_signals = threading.current_thread() is threading.main_thread()
        signals = (signal.SIGINT, signal.SIGTERM) if handle_signals else ()
        for number in signals:
            loop.add_signal_handler(number, self._on_signal, number)
        swept = self._sweep and not self.queue._sweeper.running
        if swept:
            self.queue.schedule_sweep()
        logger.info('Worker %s on queue %s: %d at a time', self.id, self.queue.name, self.concurrency)
        running = asyncio.Event()
        running.set()
        registered = loop.create_task(self._register(running))
        aborts = _Aborts(self)
        listening = loop.create_task(aborts.listen())
        try:
            await self._take_while_running()
            await self._finish()
        finally:
            for number in signals:
                loop.remove_signal_handler(number)
            if swept:
                self.queue.unschedule_sweep()
            running.clear()
            registered.cancel()
            listening.cancel()
            # Not awaited without bound: on Python 3.11 a cancellation can
            # be lost in a redis-py write (see _client.cancel_lost), and the
            # beat finishes its call and its sleep first.
            await asyncio.wait([registered], timeout=0.5)
            self.queue._outlive(registered)
            aborts.leave()
            with contextlib.suppress(Exception):
                await self.queue._leave(self.id)
            self._stopping = None
            logger.info('Worker on queue %s stopped: %d done, %d failed', self.queue.name, self.processed, self.failed)

    def stop(self, *, now: bool = False) -> None:
        """Stops taking tasks; lets the running ones finish (for ``grace``
        seconds), unless ``now``."""
        self._now = self._now or now
        if self._stopping is not None:
            self._stopping.set()
        if now:
            for task in self._running:
                task.cancel()

    def _on_signal(self, number: int) -> None:
        if self._stopping is not None and self._stopping.is_set():
            logger.warning('Second %s: stopping at once', signal.Signals(number).name)
            self.stop(now=True)
        else:
            logger.info('%s: finishing the running tasks, then stopping', signal.Signals(number).name)
            self.stop()

    async def __aenter__(self) -> Worker:
        self._background = asyncio.get_running_loop().create_task(self.run(handle_signals=False))
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()
        if self._background is not None:
            task, self._background = self._background, None
            await task

    async def _register(self, running: asyncio.Event) -> None:
        """Beats in the queue's registry of workers while ``running``."""
        host, pid = socket.gethostname(), os.getpid()
        failing = False
        while running.is_set():
            info = {
                'host': host, 'pid': pid, 'concurrency': self.concurrency, 'in_flight': len(self._running),
                'processed': self.processed, 'failed': self.failed,
            }  # fmt: skip
            try:
                await self.queue._beat(self.id, info, 3 * self._beat_interval)
            except Exception as exc:
                if not failing:
                    logger.warning('Cannot beat in the registry of workers (%s); trying again', exc)
                failing = True
            else:
                failing = False
            await asyncio.sleep(self._beat_interval)

    async def _take_while_running(self) -> None:
        """Takes tasks for the free slots until stopped (or, in a burst,
        until nothing is ready and nothing runs)."""
        assert self._stopping is not None and self._slot_free is not None
        while not self._stopping.is_set():
            free = self.concurrency - len(self._running)
            if free <= 0:
                self._slot_free.clear()
                await self._first(self._slot_free.wait())
                continue
            # A burst looks once without waiting; otherwise wait in Redis,
            # until a task comes or the worker is stopped.
            taking = asyncio.ensure_future(self._take(free, 0.05 if self._burst else None))
            try:
                await self._first(taking)
            except asyncio.CancelledError:
                await self._drop_take(taking)
                raise
            if not taking.done():
                await self._drop_take(taking)
                return
            try:
                got = taking.result()
            except Exception as exc:
                logger.warning('Cannot take tasks (%s); trying again in 1 s', exc)
                await self._first(asyncio.sleep(1))
                continue
            if not got and self._burst and not self._running:
                return
            if not got and self._burst:
                self._slot_free.clear()
                await self._first(self._slot_free.wait())
            for task_id, payload in got:
                runner = asyncio.get_running_loop().create_task(self._run_slot(task_id, payload))
                self._running[runner] = task_id
                runner.add_done_callback(self._done)

    async def _drop_take(self, taking: asyncio.Future[list[tuple[TorrelqueTaskId, Any]]]) -> None:
        """Cancels a dequeue the worker no longer wants; a cancelled dequeue
        gives back what it took. On Python 3.11 a cancellation can be lost in
        a redis-py write, and the dequeue sees it only when its wait ends (the
        block limit, a few seconds): the worker does not wait for it, and
        gives back whatever it brings."""
        taking.cancel()
        await asyncio.wait([taking], timeout=0.5)
        taking.add_done_callback(self._give_back_got)
        self.queue._outlive(taking)

    def _give_back_got(self, taking: asyncio.Future[list[tuple[TorrelqueTaskId, Any]]]) -> None:
        if not taking.cancelled() and taking.exception() is None:
            for task_id, _ in taking.result():
                self.queue._give_back(task_id.lease.encode())

    async def _first(self, awaitable: Awaitable[Any]) -> None:
        """Waits for ``awaitable`` or the stop, whichever comes first (a
        coroutine is cancelled at the stop; a future is left to its owner)."""
        assert self._stopping is not None
        waiting = asyncio.ensure_future(awaitable)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait([waiting, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if waiting is not awaitable:
                waiting.cancel()

    async def _take(self, free: int, timeout: float | None) -> list[tuple[TorrelqueTaskId, Any]]:
        """Up to ``free`` tasks, in one call: ``[]`` when none came."""
        try:
            got = await self.queue.dequeue(timeout=timeout, max_tasks=free)
        except TorrelqueTimeoutError:
            return []
        return got if isinstance(got, list) else [got]

    def _done(self, runner: asyncio.Task[None]) -> None:
        self._running.pop(runner, None)
        if self._slot_free is not None:
            self._slot_free.set()

    async def _finish(self) -> None:
        """After the stop: waits for the running handlers for the grace
        period, then cancels the rest, whose tasks go back at once."""
        if self._running and not self._now:
            logger.info('Waiting up to %s s for %d running task(s)', self._grace, len(self._running))
            _, late = await asyncio.wait(list(self._running), timeout=self._grace)
        else:
            late = set(self._running)
        for runner in late:
            runner.cancel()
        if late:
            await asyncio.wait(late)

    # -- one task ----------------------------------------------------------------

    async def _run_slot(self, task_id: TorrelqueTaskId, payload: Any) -> None:
        """Runs tasks in one slot: this one, then each that the release of
        the one before took in the same call."""
        runner = asyncio.current_task()
        assert self._stopping is not None
        while True:
            after = await self._run_one(task_id, payload)
            if after is None:
                return
            task_id, payload = after
            if self._stopping.is_set():  # taken as the stop came: not to be run now
                self.queue._give_back(task_id.lease.encode())
                return
            if runner is not None:
                self._running[runner] = task_id

    async def _run_one(self, task_id: TorrelqueTaskId, payload: Any) -> tuple[TorrelqueTaskId, Any] | None:
        """Runs one attempt and ends it; the next task for the slot, when
        the release took one."""
        most = task_id.max_attempts or self.max_attempts
        ctx = TaskContext(task_id, task_id.dequeue_count, most, self.queue)
        if ctx.attempt > most:
            # Its attempts went stale each time: it kills its consumers.
            self.failed += 1
            spent = Stale(f'every attempt went stale: its consumer died or hung each time, {most} time(s)')
            await self._bury(task_id, ctx, spent, f'{most} attempt(s) went stale')
            return None
        beating = _Heartbeat(self, task_id, asyncio.current_task())
        try:
            try:
                value = await self._call(payload, ctx)
            finally:
                beating.stop()
                if task_id.lease in self._aborted:
                    # However the handler ended (it may catch the
                    # cancellation, or Python 3.11 may lose it in a redis-py
                    # write), a task cancelled while it ran ends cancelled.
                    raise asyncio.CancelledError
        except asyncio.CancelledError:
            if task_id.lease in self._lost:
                self._lost.discard(task_id.lease)
                _uncancel()
                logger.warning('Task %s: its lease was lost; another attempt owns it now', task_id)
                return None
            if task_id.lease in self._aborted:
                self._aborted.discard(task_id.lease)
                _uncancel()
                logger.info('Task %s was cancelled: its handler was stopped', task_id)
                await self._settle(self.queue._end_aborted(task_id), task_id, 'end as cancelled')
                return None
            # Stopped: the task goes back to pending at once, as if not taken.
            logger.info('Task %s goes back to the queue: the worker stopped before its handler finished', task_id)
            with contextlib.suppress(Exception):
                await self.queue._give_back_now(task_id.lease.encode())
            raise
        except Retry as request:
            self.failed += 1
            await self._again(task_id, ctx, request, request.delay)
        except Reject as rejection:
            self.failed += 1
            await self._bury(task_id, ctx, rejection, 'rejected by its handler')
        except Exception as exc:
            self.failed += 1
            await self._again(task_id, ctx, exc, None)
        else:
            self.processed += 1
            return await self._release(task_id, value)
        return None

    async def _call(self, payload: Any, ctx: TaskContext) -> Any:
        """The handler's value; over the time limit, ``TimeLimitExceeded``. (A plain
        function over its limit goes on in its thread, its value ignored.)"""
        if self._time_limit is None:
            if self._in_thread:
                return await asyncio.to_thread(self._handler, payload, ctx)
            return await self._handler(payload, ctx)
        limit = asyncio.timeout(self._time_limit)
        try:
            async with limit:
                if self._in_thread:
                    return await asyncio.to_thread(self._handler, payload, ctx)
                return await self._handler(payload, ctx)
        except TimeoutError as exc:
            if limit.expired():
                raise TimeLimitExceeded(self._time_limit or 0) from exc
            raise

    async def _again(
        self, task_id: TorrelqueTaskId, ctx: TaskContext, error: BaseException, delay: float | None
    ) -> None:
        if ctx.attempt >= ctx.max_attempts:
            await self._bury(task_id, ctx, error, f'failed {ctx.attempt} attempt(s)')
            return
        wait = self.backoff(ctx.attempt) if delay is None else delay
        logger.warning(
            'Task %s failed attempt %d of %d (%s: %s); trying again in %.2f s',
            task_id, ctx.attempt, ctx.max_attempts, type(error).__name__, error, wait,
        )  # fmt: skip
        await self._settle(self.queue.requeue(task_id, delay=wait), task_id, 'requeue')

    async def _bury(self, task_id: TorrelqueTaskId, ctx: TaskContext, error: BaseException, why: str) -> None:
        logger.error('Task %s goes to the dead-letter set (%s): %s: %s', task_id, why, type(error).__name__, error)
        details = {
            'type': type(error).__name__,
            'message': str(error),
            'traceback': ''.join(traceback.format_exception(error)),
            'attempts': ctx.attempt,
        }
        await self._settle(self.queue.bury(task_id, details), task_id, 'bury')

    async def _release(self, task_id: TorrelqueTaskId, value: Any) -> tuple[TorrelqueTaskId, Any] | None:
        """Releases the task and, unless the worker is stopping, takes the
        next one for the slot in the same call (one round trip per task
        while tasks are ready). Releases without a result that slots make in
        the same turn of the event loop join into one call (with one slot,
        nothing to wait for: it goes at once)."""
        assert self._stopping is not None
        if self._stopping.is_set():
            release = self.queue.release(task_id, result=value, result_ttl=self._result_ttl)
            await self._settle(release, task_id, 'release')
            return None
        loop = asyncio.get_running_loop()
        mine: asyncio.Future[tuple[TorrelqueTaskId, Any] | None] = loop.create_future()
        if value is None and self.concurrency > 1:
            if not self._joining:
                loop.call_soon(self._send_joined)
            self._joining.append((task_id, mine))
        else:
            self._send([(task_id, mine)], value)
        try:
            return await asyncio.shield(mine)
        except asyncio.CancelledError:
            mine.add_done_callback(self._give_back_taken)  # stopped meanwhile: what it took goes back
            raise

    def _send_joined(self) -> None:
        joined, self._joining = self._joining, []
        self._send(joined, None)

    def _send(self, slots: list[tuple[TorrelqueTaskId, asyncio.Future[Any]]], value: Any) -> None:
        """Releases the slots' tasks, and hands each slot a next task, in
        one call made by a task of its own (a slot stopped meanwhile does not
        cut it short)."""

        async def call() -> None:
            task_ids = [task_id for task_id, _ in slots]
            try:
                _, taken = await self.queue._release_and_take(task_ids, value, len(slots), self._result_ttl)
            except Exception as exc:
                logger.error('Cannot release task(s) %s (%s): they come back when stale', ', '.join(task_ids), exc)
                taken = []
            for i, (_, future) in enumerate(slots):
                after = taken[i] if i < len(taken) else None
                if not future.done():
                    future.set_result(after)
                elif after is not None:
                    self.queue._give_back(after[0].lease.encode())

        sending = asyncio.get_running_loop().create_task(call())
        self._sending.add(sending)
        sending.add_done_callback(self._sending.discard)

    def _give_back_taken(self, slot: asyncio.Future[tuple[TorrelqueTaskId, Any] | None]) -> None:
        if not slot.cancelled() and slot.exception() is None and (after := slot.result()) is not None:
            self.queue._give_back(after[0].lease.encode())

    async def _settle(self, call: Awaitable[Any], task_id: TorrelqueTaskId, what: str) -> None:
        """Ends a task's attempt, even when the worker is being stopped
        meanwhile; when Redis fails, the attempt stays working and the sweep
        returns the task after its timeout."""
        try:
            await asyncio.shield(call)
        except Exception as exc:
            logger.error('Cannot %s task %s (%s): it comes back when stale', what, task_id, exc)


def _uncancel() -> None:
    """Takes back the cancellation the worker itself asked of the current
    task (it was for the handler, which has stopped)."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


class _Aborts:
    """Hears, on the queue's abort channel, of tasks cancelled while they
    work, and cancels the handlers that run them here."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._channel = worker.queue.keys['abort'].encode()
        self._hub: Any = None

    async def listen(self) -> None:
        self._hub = self._worker.queue._events()
        try:
            await self._hub.join(self._channel, self)
        except Exception as exc:
            logger.warning('Cancelled tasks will not be aborted by this worker: %s', exc)

    def leave(self) -> None:
        if self._hub is not None:
            self._hub.leave(self._channel, self)

    def on_message(self, data: bytes) -> None:
        task_id = data.decode(errors='replace')
        for runner, running in list(self._worker._running.items()):
            if running == task_id:
                self._worker._aborted.add(running.lease)
                runner.cancel()

    def on_resubscribed(self) -> None:
        pass  # an abort missed meanwhile is ended by the sweep at the task's deadline

    def on_closed(self) -> None:
        pass

    def on_refused(self, error: Exception) -> None:
        logger.warning('Cancelled tasks will not be aborted by this worker: %s', error)


class _Heartbeat:
    """Extends a running task's lease, well before each deadline, and
    cancels its handler if the lease is lost. A timer until a beat is due,
    not a task: most handlers finish before the first."""

    def __init__(self, worker: Worker, task_id: TorrelqueTaskId, runner: asyncio.Task[Any] | None) -> None:
        self._worker, self._task_id, self._runner = worker, task_id, runner
        self._every = worker._heartbeat or task_id.timeout / 3
        self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_later(self._every, self._due)
        self._touching: asyncio.Task[None] | None = None

    def _due(self) -> None:
        self._touching = self._loop.create_task(self._touch())

    async def _touch(self) -> None:
        try:
            kept = await self._worker.queue.touch(self._task_id)
        except Exception as exc:
            logger.warning('Cannot extend the lease of task %s (%s); trying again', self._task_id, exc)
            kept = True
        if not kept:
            self._worker._lost.add(self._task_id.lease)
            if self._runner is not None:
                self._runner.cancel()
            return
        self._timer = self._loop.call_later(self._every, self._due)

    def stop(self) -> None:
        self._timer.cancel()
        if self._touching is not None:
            self._touching.cancel()


class Stale(Exception):
    """A task's attempts all went stale: their consumers died or hung."""


class TimeLimitExceeded(TimeoutError):
    """A handler ran over the worker's time limit."""

    def __init__(self, limit: float) -> None:
        super().__init__(f'the handler ran over its time limit of {limit} s')
