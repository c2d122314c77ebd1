"""Sphinx configuration: ``sphinx-build -W -n -b html docs docs/_build/html``.

The build needs no network. Links into the Python and redis-py docs
(intersphinx) are made only when ``TORRELQUE_DOCS_INTERSPHINX=1`` is set,
for a build that can fetch their inventories; otherwise references to
those projects are left as plain text instead of failing the build.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from torrelque import __version__  # noqa: E402

project = 'torrelque'
author = 'The torrelque developers'
copyright = '2026, The torrelque developers'
version = release = __version__

extensions = [
    'sphinx.ext.autodoc',
    'sphinx.ext.intersphinx',
    'sphinx.ext.viewcode',
]

exclude_patterns = ['_build']
nitpicky = True

autodoc_member_order = 'bysource'
autodoc_typehints = 'description'
autodoc_typehints_description_target = 'documented_params'
autodoc_preserve_defaults = True
autoclass_content = 'class'
# torrelque.server needs it at run time (the test and demo extras), not here.
autodoc_mock_imports = ['mirakuru']

intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
if os.environ.get('TORRELQUE_DOCS_INTERSPHINX') == '1':
    intersphinx_mapping = {
        'python': ('https://docs.python.org/3', None),
        'redis': ('https://redis.readthedocs.io/en/stable', None),
    }
    intersphinx_timeout = 10

# Names of the standard library and redis-py in signatures and docstrings:
# linked when the inventories above are loaded, plain text otherwise.
nitpick_ignore_regex = [
    (r'py:.*', r'(redis|asyncio|collections|typing|enum|json)(\..*)?'),
    (r'py:.*', r'(Pipeline|Redis|Callable|Any|Exception|ValueError|RuntimeError|IntEnum|NamedTuple)'),
]

html_theme = 'furo' if importlib.util.find_spec('furo') else 'alabaster'
html_title = f'torrelque {release}'
html_static_path: list[str] = []
