"""The server-side operations: one Lua file per transition in ``lua/``, and
one typed call per file.

Each file is registered once per client with redis-py's ``register_script``,
which runs it by EVALSHA and loads it again on NOSCRIPT (and before a
pipeline executes). The shared helpers of ``lua/_lib.lua`` are prepended to
every script. Script arguments go as bytes: redis-py sends them as they are,
where it would encode text and format numbers on every call.
"""

from __future__ import annotations

import enum
import logging
import weakref
from collections.abc import Awaitable, Callable, Sequence
from importlib.resources import files
from typing import Any

import redis.exceptions
from redis.asyncio.cluster import ClusterPipeline

from ._codec import new_token, raw, text
from ._errors import TorrelqueOutOfMemoryError

logger = logging.getLogger('torrelque')

#: The scripts, each named after the operation it performs.
SCRIPT_NAMES = (
    'enqueue', 'dequeue', 'giveback', 'requeue', 'release', 'touch', 'sweep', 'watch', 'quarantine', 'stats',
    'bury', 'revive', 'purge', 'progress', 'limit', 'beat', 'release_take', 'cancel',
)  # fmt: skip

#: The task timeout (seconds) of a task whose state stores none: states
#: leave it out when it has this value (DEFAULT_TIMEOUT in lua/_lib.lua).
STANDARD_TIMEOUT = 300

#: Seconds for which a call's effect is remembered, so that redis-py's
#: retry of a call whose reply was lost is recognised (RETRY_WINDOW_MS in
#: lua/_lib.lua): a dequeue's lease record, a removed task's tombstone.
RETRY_WINDOW = 60.0

#: The most tasks one script call takes or moves.
BATCH = 250

# ARGV[2]: whether the caller wants to hear of a refused event ('1' or
# '0'), then 's' when events go by sharded pub/sub (on a cluster).
_REPORT, _QUIET = b'1', b'0'
# What a script's reply starts with when the server refused one of its events.
_REFUSED = (b'events refused', 'events refused')


async def _done() -> None:
    """What adding a raw command to a cluster pipeline awaits: nothing."""


def _read(name: str) -> str:
    return (files(__package__) / 'lua' / f'{name}.lua').read_text(encoding='utf-8')


_LIB = _read('_lib')
SOURCES = {name: f'{_LIB}\n{_read(name)}' for name in SCRIPT_NAMES}


def _step(function: str, name: str) -> str:
    """A script's body as a Lua function of its own KEYS and ARGV."""
    return f'local function {function}(KEYS, ARGV)\n{_read(name)}\nend\n'


# A release and a dequeue in one call (see lua/release_take.lua).
SOURCES['release_take'] = (
    _LIB + _step('release_step', 'release') + _step('take_step', 'dequeue') + _read('release_take')
)


class Outcome(enum.IntEnum):
    """What a script reports about the task it was asked to move. The
    values mirror the return codes of ``lua/_lib.lua``."""

    OK = 1
    UNKNOWN = 0
    NOT_WORKING = -1
    LOST = -3
    DUPLICATE = -4
    ABORTING = 2


_REFUSALS = {
    Outcome.UNKNOWN: 'it is unknown (never enqueued, or released without a result)',
    Outcome.NOT_WORKING: (
        'it is not working (released already, requeued, or returned to pending by the sweep after its timeout)'
    ),
    Outcome.LOST: (
        'its attempt no longer owns it: it went stale, was returned to pending and was dequeued again '
        'by another attempt, which alone can move it now'
    ),
    Outcome.ABORTING: 'it was cancelled: its attempt is to stop (the sweep ends it at its deadline)',
}


def accepted(code: int, operation: str, task_id: str) -> bool:
    """Maps a script's return code to the method's return value: ``True``
    when the task moved, ``False`` (with a warning logged) when it was not
    where the operation needs it, in which case nothing was changed."""
    outcome = Outcome(int(code))
    if outcome is Outcome.OK:
        return True
    logger.warning('%s of task %s refused: %s', operation, task_id, _REFUSALS[outcome])
    return False


#: A task a dequeue call took: its id, payload, dequeue count, timeout and
#: most attempts (a plain tuple: one is made per task, on the hot path).
Taken = tuple[str, bytes, int, float, int | None]


def _out_of_memory(exc: redis.exceptions.ResponseError) -> bool:
    """Whether the server refused a script for want of memory: from Redis
    7.0 on it refuses the call itself (``OOM ...``, redis-py's
    ``OutOfMemoryError``); before, it refuses the script's first write, and
    the reply is a script error that quotes it. Either way nothing was
    written: the scripts read before their first write."""
    return isinstance(exc, redis.exceptions.OutOfMemoryError) or 'OOM command not allowed' in str(exc)


def _taken(reply: Any) -> tuple[list[Taken], list[str]]:
    """A dequeue's reply: the tasks taken, and the ids dropped for having no payload."""
    taken, missing = [], []
    for i in range(0, len(reply), 2):
        entry = text(reply[i]).split(' ')
        if len(entry) == 1:
            missing.append(entry[0])
        else:
            task_id, count, timeout, most = entry
            timeout_s = STANDARD_TIMEOUT if timeout == '-' else float(timeout)
            taken.append((task_id, raw(reply[i + 1]), int(count), timeout_s, None if most == '-' else int(most)))
    return taken, missing


class Scripts:
    """The scripts of one queue on one client, each called with its keys.

    :param client: the queue's Redis client.
    :param keys: the queue's key names, by role.
    :param on_events_refused: called when the server refused to publish an
        event of a transition (which went on without it).
    :param sharded: publish by sharded pub/sub (on a cluster).
    """

    def __init__(
        self, client: Any, keys: dict[str, str], on_events_refused: Callable[[], None], *, sharded: bool = False
    ) -> None:
        self._client = client
        self._scripts = {name: client.register_script(source) for name, source in SOURCES.items()}
        self._on_events_refused = on_events_refused
        # The scripts called in each cluster pipeline so far (see _call_in).
        self._loaded_for: weakref.WeakKeyDictionary[Any, set[bytes | str]] = weakref.WeakKeyDictionary()
        self._report, self._quiet = (_REPORT + b's', _QUIET + b's') if sharded else (_REPORT, _QUIET)
        #: The clock seam offset, as the scripts get it (integer microseconds).
        self.offset = b'0'
        k = {role: name.encode() for role, name in keys.items()}
        self._enqueue_keys = [
            k['tasks'], k['pending'], k['delayed'], k['stats'],
            k['events'], k['wake'], k['ready'], k['task'], k['gone'], k['lease'], k['unique'],
        ]  # fmt: skip
        self._dequeue_keys = [
            k['pending'], k['working'], k['tasks'], k['stats'],
            k['events'], k['wake'], k['ready'], k['task'], k['lease'], k['config'], k['rate'],
        ]  # fmt: skip
        self._giveback_keys = [
            k['pending'], k['working'], k['stats'], k['events'], k['ready'], k['task'], k['lease'],
        ]  # fmt: skip
        self._requeue_keys = [
            k['working'], k['pending'], k['delayed'], k['stats'],
            k['events'], k['wake'], k['ready'], k['task'], k['lease'], k['config'],
        ]  # fmt: skip
        self._release_keys = [
            k['working'], k['tasks'], k['stats'], k['events'], k['task'], k['lease'], k['gone'],
            k['config'], k['pending'], k['ready'], k['unique'],
        ]  # fmt: skip
        self._touch_keys = [k['working'], k['wake'], k['task']]
        self._progress_keys = [k['working'], k['events'], k['task']]
        self._sweep_keys = [
            k['pending'], k['working'], k['delayed'], k['stats'], k['events'],
            k['ready'], k['task'], k['tasks'], k['dead'], k['unique'],
        ]  # fmt: skip
        self._quarantine_keys = [k['working'], k['tasks'], k['stats'], k['events'], k['task']]
        self._watch_keys = [k['task'], k['events']]
        self._stats_keys = [k['tasks'], k['pending'], k['working'], k['delayed']]
        self._bury_keys = [
            k['working'], k['tasks'], k['dead'], k['stats'], k['events'], k['task'], k['lease'],
            k['config'], k['pending'], k['ready'], k['unique'],
        ]  # fmt: skip
        self._limit_keys = [k['config'], k['pending'], k['ready']]
        self._release_take_keys = [*self._release_keys, k['wake'], k['rate']]
        self._beat_keys = [k['workers']]
        self._cancel_keys = [
            k['pending'], k['delayed'], k['working'], k['tasks'], k['stats'], k['events'],
            k['task'], k['unique'], k['abort'], k['lease'], k['config'], k['ready'],
        ]  # fmt: skip
        self._revive_keys = [
            k['dead'], k['tasks'], k['pending'], k['delayed'], k['ready'],
            k['stats'], k['events'], k['wake'], k['task'],
        ]  # fmt: skip
        self._purge_keys = [k['dead'], k['task']]
        self._enqueue_batches = PipelineBatches(self._scripts['enqueue'], self._enqueue_keys, BATCH, self._call_in)
        self._release_batches = PipelineBatches(self._scripts['release'], self._release_keys, BATCH, self._call_in)

    # A plain function, not a coroutine: every frame between the caller and
    # redis-py is passed through at each of a call's suspensions.
    def _run(self, name: str, keys: list[bytes], args: list[Any], pipeline: Any = None) -> Awaitable[Any]:
        """A script call (into ``pipeline``, whose results get its reply)."""
        if pipeline is not None:
            return self._call_in(self._scripts[name], keys, [self.offset, self._quiet, *args], pipeline)
        return self._scripts[name](keys, [self.offset, self._report, *args])  # type: ignore[no-any-return]

    def _call_in(self, script: Any, keys: Sequence[bytes], args: Sequence[Any], pipeline: Any) -> Awaitable[Any]:
        """Adds a script call to a pipeline. redis-py runs the scripts of a
        plain pipeline itself (loading them first if need be); a cluster's
        pipeline refuses script calls, so the call goes in as a raw command:
        the first of each script in each pipeline as EVAL, which loads the
        script on the node (all of a queue's calls go to its slot's node, in
        order), and the rest as EVALSHA."""
        if not isinstance(pipeline, ClusterPipeline):
            return script(keys, args, client=pipeline)  # type: ignore[no-any-return]
        loaded = self._loaded_for.setdefault(pipeline, set())
        if script.sha in loaded:
            pipeline.execute_command('EVALSHA', script.sha, len(keys), *keys, *args)
        else:
            pipeline.execute_command('EVAL', script.script, len(keys), *keys, *args)
            loaded.add(script.sha)
        return _done()

    def _value(self, reply: Any) -> Any:
        """A direct call's reply, unwrapped; notes a refused event."""
        if isinstance(reply, list) and reply and reply[0] in _REFUSED:
            self._on_events_refused()
            return reply[1]
        return reply

    async def enqueue(
        self,
        timeout: bytes | float,
        delay_us: int | None,
        max_attempts: bytes,
        task_id: bytes,
        payload: bytes,
        pipeline: Any = None,
        *,
        unique_ms: bytes | None = None,
        replace: bool = False,
    ) -> int | None:
        """Enqueues one task (into a pipeline: joined to the previous
        enqueue of the same timeout, delay and most attempts, if that was
        the last command). ``unique_ms`` (``b''`` for no hold) marks an id
        the caller gave; the code says whether the call made the task."""
        common = [timeout, b'' if delay_us is None else b'%d' % delay_us, max_attempts]
        if pipeline is not None:
            if unique_ms is None:
                common += (b'', b'', b'')
                await self._enqueue_batches.add(pipeline, [self.offset, self._quiet, *common], [task_id, payload])
            else:
                await self._enqueue_batches.add(
                    pipeline, [self.offset, self._quiet, *common], [task_id, payload], fresh=(unique_ms, b'')
                )
            return None
        if unique_ms is None:
            args = [*common, b'', b'', b'', task_id, payload]
        else:
            args = [*common, new_token(), unique_ms, b'1' if replace else b'', task_id, payload]
        try:
            return int(self._value(await self._run('enqueue', self._enqueue_keys, args)))
        except redis.exceptions.ResponseError as exc:
            if not _out_of_memory(exc):
                raise
            raise TorrelqueOutOfMemoryError(
                'the Redis server is out of memory (maxmemory reached, and no key it may evict): '
                'the task was not enqueued'
            ) from exc

    async def dequeue(self, limit: int, lease: bytes, woken: bool) -> tuple[list[Taken], list[str], float]:
        """Takes up to ``limit`` tasks under ``lease`` (``woken``: the
        caller took the wake-up marker); also returns the ids that were
        dropped for having no payload, and the seconds the rate limit says
        to wait (0 when it allowed the call)."""
        args = [b'%d' % limit, lease, b'1' if woken else b'0']
        reply = self._value(await self._run('dequeue', self._dequeue_keys, args))
        if len(reply) == 1:
            return [], [], int(text(reply[0])[1:]) / 1_000_000
        return (*_taken(reply), 0.0)

    async def release_take(
        self,
        attempts: Sequence[tuple[str, bytes]],
        status: bytes,
        result: tuple[bytes, int] | None,
        takes: Sequence[bytes],
    ) -> tuple[list[int], list[tuple[list[Taken], list[str]]]]:
        """Releases tasks (one with ``result``, or several without) and
        takes a task under each lease of ``takes``, in one call: the
        release's codes, and what each dequeue returned (up to the first
        that found none)."""
        release: list[Any] = [status, new_token()]
        if result is None:
            release.append(b'0')
            for task_id, lease in attempts:
                release += (task_id, lease)
        else:
            ((task_id, lease),) = attempts
            release += (b'1', task_id, lease, result[0], b'%d' % result[1])
        args = [b'%d' % len(release), *release, *takes]
        codes, replies = self._value(await self._run('release_take', self._release_take_keys, args))
        return [int(code) for code in codes], [_taken(reply) for reply in replies]

    async def giveback(self, lease: bytes) -> int:
        """Returns the tasks of a dequeue call to pending and voids the call
        (``b''``: only sets the wake-up marker)."""
        back: int = self._value(await self._run('giveback', self._giveback_keys, [lease]))
        return back

    async def requeue(
        self, task_id: str, lease: bytes, delay_us: int, timeout: bytes | float, pipeline: Any = None
    ) -> int | None:
        args = [task_id, lease, new_token(), b'%d' % delay_us, timeout]
        reply = await self._run('requeue', self._requeue_keys, args, pipeline)
        return None if pipeline is not None else int(self._value(reply))

    async def release(
        self, task_id: str, lease: bytes, status: bytes, result: tuple[bytes, int] | None, pipeline: Any = None
    ) -> int | None:
        """Releases one task: with ``(result, ttl_ms)`` or without a result
        (into a pipeline: joined to the previous release without a result
        and with the same status, if that was the last command)."""
        if result is None and pipeline is not None:
            await self._release_batches.add(
                pipeline, [self.offset, self._quiet, status], [task_id, lease], fresh=(b'0',)
            )
            return None
        if result is None:
            args = [status, new_token(), b'0', task_id, lease]
        else:
            data, ttl_ms = result
            args = [status, new_token(), b'1', task_id, lease, data, b'%d' % ttl_ms]
        reply = await self._run('release', self._release_keys, args, pipeline)
        return None if pipeline is not None else int(self._value(reply))

    async def touch(self, task_id: str, lease: bytes, timeout: bytes | float, pipeline: Any = None) -> int | None:
        reply = await self._run('touch', self._touch_keys, [task_id, lease, timeout], pipeline)
        return None if pipeline is not None else int(self._value(reply))

    async def progress(self, task_id: str, lease: bytes, value: bytes) -> int:
        return int(self._value(await self._run('progress', self._progress_keys, [task_id, lease, value])))

    async def limit(self, field: bytes, value: bytes, period_us: bytes = b'') -> None:
        """Sets (or, with ``b''``, removes) a limit of the config hash."""
        self._value(await self._run('limit', self._limit_keys, [field, value, period_us]))

    async def cancel(self, task_id: str, ttl_ms: int, lease: bytes) -> int:
        """Cancels a task, or ends an aborted attempt (``lease``)."""
        code: int = self._value(await self._run('cancel', self._cancel_keys, [task_id, b'%d' % ttl_ms, lease]))
        return code

    async def beat(self, worker_id: str, info: bytes, ttl_us: int) -> int:
        """Writes a worker's entry in the registry; removes expired ones."""
        removed: int = self._value(await self._run('beat', self._beat_keys, [worker_id, info, b'%d' % ttl_us]))
        return removed

    async def sweep(self, batch: int) -> tuple[int, int, bool, int]:
        """One batch: ``(stale, due, more, next_us)``."""
        stale, due, more, next_us = self._value(await self._run('sweep', self._sweep_keys, [b'%d' % batch]))
        return int(stale), int(due), bool(more), int(next_us)

    async def quarantine(self, task_id: str, lease: bytes, result: bytes) -> int:
        code: int = self._value(await self._run('quarantine', self._quarantine_keys, [task_id, lease, result]))
        return code

    async def bury(self, task_id: str, lease: bytes, error: bytes, result: bytes) -> int:
        """Rejects a working task into the dead-letter set."""
        args = [task_id, lease, new_token(), error, result]
        code: int = self._value(await self._run('bury', self._bury_keys, args))
        return code

    async def revive(self, task_id: str, delay_us: int) -> int:
        """Returns a task of the dead-letter set to the queue."""
        code: int = self._value(await self._run('revive', self._revive_keys, [task_id, b'%d' % delay_us]))
        return code

    async def purge(self, task_ids: Sequence[str], before_us: int, limit: int) -> int:
        """Deletes tasks of the dead-letter set: ``task_ids``, or (none
        given) up to ``limit`` buried before ``before_us``."""
        args = [b'%d' % before_us, b'%d' % limit, *task_ids]
        purged: int = self._value(await self._run('purge', self._purge_keys, args))
        return purged

    async def stats(self) -> tuple[int, int, int, int]:
        """``(tasks, pending, working, delayed)``, in one read."""
        tasks, pending, working, delayed = await self._run('stats', self._stats_keys, [])
        return int(tasks), int(pending), int(working), int(delayed)

    async def snapshot(self, task_ids: Sequence[str]) -> list[int]:
        """Publishes each task's state on its channel; which are known."""
        found: list[int] = self._value(await self._run('watch', self._watch_keys, list(task_ids)))
        return found


class PipelineBatches:
    """Joins consecutive calls of one script, added to a caller's pipeline
    by one queue, into a single script call of up to ``limit`` items, each
    item being a run of ARGV values after the call's common ones. With
    ``fresh``, each script call also gets a new token (and then ``fresh``)
    after the common values, which a later call need not share to join.

    A call joins the previous one while that is still the last command of
    the pipeline (nothing was added after it, and the pipeline was not
    executed or reset since) and has the same common values. It does so by
    extending that command's arguments in the pipeline's ``command_stack``,
    which every redis-py Pipeline keeps as a list of ``(args, options)``
    (the arguments become a list, which redis-py packs as it packs a
    tuple, so that a batch grows in place); a pipeline
    that keeps it otherwise, or that executes commands at once (after
    ``WATCH``), gets one script call per item. The caller's results then
    hold one entry per script call, whatever the script returns for its
    batch.
    """

    def __init__(
        self,
        script: Any,
        keys: Sequence[bytes],
        limit: int,
        call_in: Callable[[Any, Sequence[bytes], Sequence[Any], Any], Awaitable[Any]],
    ) -> None:
        self._script = script
        self._call_in = call_in
        self._keys = list(keys)
        self._limit = limit
        # Per pipeline: the args of the last command this added, its common
        # values and how many items it holds.
        self._open: weakref.WeakKeyDictionary[Any, tuple[list[Any], tuple[Any, ...], int]] = weakref.WeakKeyDictionary()

    async def add(
        self, pipeline: Any, common: Sequence[Any], item: Sequence[Any], fresh: Sequence[bytes] | None = None
    ) -> None:
        common = tuple(common)
        stack = _command_stack(pipeline)
        last = self._open.get(pipeline)
        if last is not None and stack:
            args, last_common, count = last
            if _args_of(stack[-1]) is args and last_common == common and count < self._limit:
                args.extend(item)
                self._open[pipeline] = (args, common, count + 1)
                return
        opening = () if fresh is None else (new_token(), *fresh)
        await self._call_in(self._script, self._keys, [*common, *opening, *item], pipeline)
        stack = _command_stack(pipeline)
        added = _args_of(stack[-1]) if stack else None
        if added is not None and len(added) > 1 and added[1] in (self._script.sha, self._script.script):
            self._open[pipeline] = (_growing(stack), common, 1)  # type: ignore[arg-type]
        else:
            self._open.pop(pipeline, None)


def _command_stack(pipeline: Any) -> list[Any] | None:
    """The commands a pipeline holds, in order: a plain pipeline's
    ``command_stack`` of ``(args, options)``; a cluster pipeline's list of
    commands with ``args`` (kept by its execution strategy in redis-py 6 and
    later, by the pipeline before). ``None`` for anything else."""
    if isinstance(pipeline, ClusterPipeline):
        strategy = getattr(pipeline, '_execution_strategy', None)
        stack = getattr(strategy, '_command_queue', None) if strategy else getattr(pipeline, '_command_stack', None)
    else:
        stack = getattr(pipeline, 'command_stack', None)
    return stack if isinstance(stack, list) else None


def _args_of(entry: Any) -> Any:
    return entry[0] if isinstance(entry, tuple) else getattr(entry, 'args', None)


def _growing(stack: list[Any]) -> list[Any]:
    """The last command's arguments, made a list in its place, to extend."""
    entry = stack[-1]
    if isinstance(entry, tuple):
        args, options = entry
        stack[-1] = (growing := list(args), options)
    else:
        entry.args = growing = list(entry.args)
    return growing
