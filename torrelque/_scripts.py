"""The server-side operations: one Lua file per transition in ``lua/``.

Each file is registered once per client with redis-py's ``register_script``,
which runs it by EVALSHA and loads it again on NOSCRIPT (and before a
pipeline executes). The shared helpers of ``lua/_lib.lua`` are prepended to
every script.
"""

from __future__ import annotations

import enum
import logging
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
    Outcome.UNKNOWN: 'it is unknown (never enqueued, or released)',
    Outcome.NOT_WORKING: ('it is not working (it was requeued, or returned to pending by the sweep after its timeout)'),
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
