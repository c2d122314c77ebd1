"""``python -m torrelque``: the ``torrelque`` command."""

from ._cli import main

main()
