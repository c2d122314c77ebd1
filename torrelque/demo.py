"""``python -m torrelque.demo`` (or ``torrelque demo``): the Tornado demo,
``example/wait_until_complete.py``, from an installed package.

The wheel carries the example as it is in the source tree, with the module
it shares with the other examples and its page, under ``torrelque/_demo``;
from a source checkout (an editable install) the example itself runs. The
arguments are the example's: ``python -m torrelque.demo --help`` lists them.
It needs the ``demo`` extra: ``pip install 'torrelque[demo]'``.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

SCRIPT = 'wait_until_complete.py'


def script() -> Path:
    """The demo's script: the copy in the wheel, else the source tree's."""
    package = Path(__file__).resolve().parent
    for home in (package / '_demo', package.parent / 'example'):
        if (home / SCRIPT).is_file():
            return home / SCRIPT
    raise SystemExit(f'The demo is not installed with this torrelque (no {SCRIPT} in {package / "_demo"})')


def main(argv: Sequence[str] | None = None, prog: str = 'python -m torrelque.demo') -> None:
    """Runs the demo with ``argv`` (by default the command line's)."""
    path = script()
    try:
        import tornado  # noqa: F401
    except ImportError:
        raise SystemExit("The demo needs Tornado: pip install 'torrelque[demo]'") from None
    # As `python example/wait_until_complete.py` would: its folder first on
    # the path (for the module it shares with the other examples), and the
    # arguments as its own.
    sys.path.insert(0, str(path.parent))
    sys.argv = [prog, *(sys.argv[1:] if argv is None else argv)]
    runpy.run_path(str(path), run_name='__main__')


if __name__ == '__main__':
    main()
