"""What the wheel holds: the package and the demo, which runs from it with
``python -m torrelque.demo`` (not only from a source checkout)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
URL_LINE = re.compile(r'running at (http://\S+?)/? ')
DEMO_FILES = {
    'torrelque/_demo/wait_until_complete.py': 'example/wait_until_complete.py',
    'torrelque/_demo/_common.py': 'example/_common.py',
    'torrelque/_demo/demo/index.html': 'example/demo/index.html',
    'torrelque/_demo/demo/app.js': 'example/demo/app.js',
    'torrelque/_demo/demo/style.css': 'example/demo/style.css',
}


@pytest.fixture(scope='module')
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel that ``pip wheel`` builds from the source tree."""
    out = tmp_path_factory.mktemp('wheel')
    command = [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '-q', '-w', str(out), str(ROOT)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = out.glob('torrelque-*.whl')
    return built


@pytest.fixture(scope='module')
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed on its own in a folder (its dependencies are
    this interpreter's)."""
    target = tmp_path_factory.mktemp('installed')
    command = [sys.executable, '-m', 'pip', 'install', '--no-deps', '-q', '--target', str(target), str(wheel)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return target


def test_the_wheel_holds_the_demo_as_the_example_is(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert {'torrelque/__init__.py', 'torrelque/demo.py', 'torrelque/py.typed'} <= names
        assert {name for name in names if name.startswith('torrelque/lua/')}
        for inside, source in DEMO_FILES.items():
            assert archive.read(inside) == (ROOT / source).read_bytes(), inside


@pytest.fixture
def demo_from_the_wheel(installed: Path, redis_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``python -m torrelque.demo`` of the installed wheel, from a folder
    with no example in it: the process and the page's URL."""
    errors = tmp_path / 'stderr'
    env = {**os.environ, 'PYTHONPATH': str(installed)}
    with errors.open('w') as stderr:
        process = subprocess.Popen(
            [sys.executable, '-u', '-m', 'torrelque.demo', '--port', '0', '--redis-url', redis_url],
            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True,
        )  # fmt: skip
    try:
        assert process.stdout is not None
        seen = []
        for line in process.stdout:
            seen.append(line)
            if match := URL_LINE.search(line):
                break
        else:
            raise AssertionError(f'no URL from the demo: {"".join(seen)}{errors.read_text()}')
        yield process, match.group(1)
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0, errors.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_python_m_torrelque_demo_runs_the_demo_from_the_wheel(
    installed: Path, demo_from_the_wheel: tuple[subprocess.Popen[str], str]
) -> None:
    _, url = demo_from_the_wheel
    page = httpx.get(url, timeout=10)
    assert page.status_code == 200 and '<title>torrelque demo</title>' in page.text
    script = re.search(r'src="(/static/app\.js[^"]*)"', page.text)
    assert script, page.text
    assert httpx.get(url + script.group(1), timeout=10).text == (ROOT / 'example/demo/app.js').read_text()


def test_from_a_source_checkout_the_demo_is_the_example() -> None:
    from torrelque import demo

    if not (Path(demo.__file__).parent / '_demo').exists():
        assert demo.script() == ROOT / 'example' / 'wait_until_complete.py'
    done = subprocess.run(
        [sys.executable, '-m', 'torrelque', 'demo', '--help'], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert '--redis-url' in done.stdout and '--port' in done.stdout


def test_the_readme_on_an_index_links_nothing_relative(wheel: Path) -> None:
    # The README is the package's page on an index, where a link to a file
    # of the source tree leads nowhere.
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [name for name in archive.namelist() if name.endswith('.dist-info/METADATA')]
        description = archive.read(metadata).decode().partition('\n\n')[2]
    assert 'Torrelque' in description or 'torrelque' in description
    targets = re.findall(r'`[^`]*<([^>]+)>`__?', description) + re.findall(r'^\.\. _[^:]+: (\S+)', description, re.M)
    relative = [target for target in targets if not re.match(r'https?://', target)]
    assert relative == []
