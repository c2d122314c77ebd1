"""The server-side operations: one Lua file per transition in ``lua/``.

Each file is registered once per client with redis-py's ``register_script``,
which runs it by EVALSHA and loads it again on NOSCRIPT (and before a
pipeline executes). The shared helpers of ``lua/_lib.lua`` are prepended to
every script.
"""

from __future__ import annotations

import enum
import logging
import weakref
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

logger = logging.getLogger('torrelque')

#: The scripts, each named after the operation it performs.
SCRIPT_NAMES = ('enqueue', 'dequeue', 'requeue', 'release', 'sweep', 'watch', 'quarantine')


def _read(name: str) -> str:
    return (files(__package__) / 'lua' / f'{name}.lua').read_text(encoding='utf-8')


_LIB = _read('_lib')
SOURCES = {name: f'{_LIB}\n{_read(name)}' for name in SCRIPT_NAMES}


def register_scripts(client: Any) -> dict[str, Any]:
    """Registers every script with ``client``; returns them by name."""
    return {name: client.register_script(source) for name, source in SOURCES.items()}


class PipelineBatches:
    """Joins consecutive calls of one script, added to a caller's pipeline
    by one queue, into a single script call of up to ``limit`` items, each
    item being a run of ARGV values after the call's common ones.

    A call joins the previous one while that is still the last command of
    the pipeline (nothing was added after it, and the pipeline was not
    executed or reset since) and has the same common values. It does so by
    replacing that command in the pipeline's ``command_stack``, which every
    redis-py Pipeline keeps as a list of ``(args, options)``; a pipeline
    that keeps it otherwise, or that executes commands at once (after
    ``WATCH``), gets one script call per item. The caller's results then
    hold one entry per script call, whatever the script returns for its
    batch.
    """

    def __init__(self, script: Any, keys: Sequence[bytes], limit: int) -> None:
        self._script = script
        self._keys = list(keys)
        self._limit = limit
        # Per pipeline: the args of the last command this added, its common
        # values and how many items it holds.
        self._open: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], tuple[Any, ...], int]] = (
            weakref.WeakKeyDictionary()
        )

    async def add(self, pipeline: Any, common: Sequence[Any], item: Sequence[Any]) -> None:
        common = tuple(common)
        stack = getattr(pipeline, 'command_stack', None)
        last = self._open.get(pipeline)
        if last is not None and isinstance(stack, list) and stack:
            args, last_common, count = last
            entry = stack[-1]
            if entry[0] is args and last_common == common and count < self._limit:
                joined = (*args, *item)
                stack[-1] = (joined, entry[1])
                self._open[pipeline] = (joined, common, count + 1)
                return
        await self._script(self._keys, [*common, *item], client=pipeline)
        stack = getattr(pipeline, 'command_stack', None)
        if isinstance(stack, list) and stack and stack[-1][0][1:2] == (self._script.sha,):
            self._open[pipeline] = (stack[-1][0], common, 1)
        else:
            self._open.pop(pipeline, None)


#: The task timeout (seconds) of a task whose state stores none: states
#: leave it out when it has this value (DEFAULT_TIMEOUT in lua/_lib.lua).
STANDARD_TIMEOUT = 300


class Outcome(enum.IntEnum):
    """What a script reports about the task it was asked to move. The
    values mirror the return codes of ``lua/_lib.lua``."""

    OK = 1
    UNKNOWN = 0
    NOT_WORKING = -1
    DUPLICATE = -2


_REFUSALS = {
    Outcome.UNKNOWN: 'it is unknown (never enqueued, or released without a result)',
    Outcome.NOT_WORKING: (
        'it is not working (released already, requeued, or returned to pending by the sweep after its timeout)'
    ),
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
