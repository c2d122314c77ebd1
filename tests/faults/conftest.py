"""The fault suite: real processes killed, a real server killed and
restarted, real connections cut. Each test records its figures with the
``figures`` fixture; they are printed at the end of the run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

_FIGURES: list[tuple[str, dict[str, Any]]] = []


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Records what a fault test measured, to print at the end of the run."""

    def record(**values: Any) -> None:
        _FIGURES.append((request.node.name, values))

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section('fault suite figures')
    for name, values in _FIGURES:
        shown = ', '.join(f'{key} {value}' for key, value in values.items())
        terminalreporter.write_line(f'{name}: {shown}')
