"""The demo page in a real (headless) Chromium: a person starts tasks and
sees them progress and finish. Leaves a screenshot in
``test-artifacts/demo.png``.

Uses Debian's ``chromium`` at /usr/bin/chromium; skips without it, unless
``TORRELQUE_REQUIRE_BROWSER=1`` (as in CI), where that is a failure.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from example_programs import demo

pytestmark = pytest.mark.browser

CHROMIUM = Path('/usr/bin/chromium')
CHROMIUM_ARGS = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
]
ARTIFACTS = Path(__file__).resolve().parent.parent / 'test-artifacts'
TIMEOUT_MS = 30_000


def _unavailable(reason: str) -> None:
    if os.environ.get('TORRELQUE_REQUIRE_BROWSER') == '1':
        pytest.fail(f'{reason}, and TORRELQUE_REQUIRE_BROWSER=1 requires the browser test', pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def page(redis_url: str) -> Iterator[object]:
    if not CHROMIUM.exists():
        _unavailable(f'no Chromium at {CHROMIUM} (Debian: apt-get install chromium)')
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is missing (pip install -e '.[test]')")
    queue = f'demo-{uuid.uuid4().hex[:12]}'
    args = ['--redis-url', redis_url, '--queue', queue, '--max-attempts', '2', '--backoff', '0.2']
    with demo(*args) as (_, url), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={'width': 1280, 'height': 860})
            page.set_default_timeout(TIMEOUT_MS)
            problems: list[str] = []
            page.on('pageerror', lambda error: problems.append(f'page error: {error}'))
            page.on('console', lambda message: message.type == 'error' and problems.append(message.text))
            page.problems = problems  # type: ignore[attr-defined]  # for a test that expects some
            page.goto(url)
            yield page
            # No script error and no blocked resource (such as a CSP violation).
            assert problems == []
        finally:
            browser.close()


def start(page: object, *, label: str, duration: str, failure: str) -> None:
    page.fill('#label', label)  # type: ignore[attr-defined]
    page.fill('#duration', duration)  # type: ignore[attr-defined]
    page.fill('#failure', failure)  # type: ignore[attr-defined]
    page.click('#start')  # type: ignore[attr-defined]


def test_a_person_starts_tasks_and_sees_them_finish(page: object) -> None:
    from playwright.sync_api import expect

    expect(page.locator('#connection')).to_have_text('Live')  # type: ignore[attr-defined]
    tasks = page.locator('#tasks > li')  # type: ignore[attr-defined]

    # Asking for more tasks than the form allows says what will be started.
    page.fill('#count', '50')  # type: ignore[attr-defined]
    expect(page.locator('#start')).to_have_text('Start 10 tasks')  # type: ignore[attr-defined]
    page.fill('#count', '1')  # type: ignore[attr-defined]
    expect(page.locator('#start')).to_have_text('Start task')  # type: ignore[attr-defined]

    start(page, label='Resize holiday photos', duration='1', failure='0')
    expect(tasks).to_have_count(1)
    done = tasks.nth(0)
    expect(done.locator('.status')).to_have_text('COMPLETED', timeout=TIMEOUT_MS)
    expect(done.locator('.task-result')).to_have_text('Done in 1 s on attempt 1')
    expect(done.locator('.task-meta')).to_contain_text('done after 1 attempt')

    # Markup in a label is text on the page, never HTML.
    start(page, label='<b>Flaky</b> upload', duration='0.5', failure='100')
    expect(tasks).to_have_count(2)
    rejected = tasks.nth(0)
    expect(rejected.locator('.status')).to_have_text('REJECTED', timeout=TIMEOUT_MS)
    expect(rejected.locator('.task-name')).to_have_text('<b>Flaky</b> upload')
    assert rejected.locator('.task-name b').count() == 0
    expect(rejected.locator('.task-result')).to_have_text('Simulated failure (100 in 100 chance) on attempt 2')

    start(page, label='Quarterly report', duration='20', failure='0')
    expect(tasks).to_have_count(3)
    expect(tasks.nth(0).locator('.status')).to_have_text('WORKING')
    # The handler's progress reports move its card's bar and figure.
    expect(tasks.nth(0).locator('.task-meta')).to_have_text(re.compile(r'attempt 1 of 2, [1-9]\d*% done'))
    expect(tasks.nth(0).locator('.progress-fill')).to_have_attribute('style', re.compile(r'width: [1-9]'))
    expect(page.locator('#q-working')).to_have_text('1')
    expect(page.locator('#counters')).to_contain_text('completed1')  # type: ignore[attr-defined]
    expect(page.locator('#counters')).to_contain_text('rejected1')  # type: ignore[attr-defined]
    expect(page.locator('#counters')).to_contain_text('dead letters1')  # type: ignore[attr-defined]
    expect(page.locator('#log li').first).to_be_visible()  # type: ignore[attr-defined]

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / 'demo.png'), full_page=True)  # type: ignore[attr-defined]

    # A reload shows the tab's tasks again, each in its current state.
    page.reload()  # type: ignore[attr-defined]
    expect(page.locator('#connection')).to_have_text('Live')  # type: ignore[attr-defined]
    expect(tasks).to_have_count(3)
    expect(tasks.nth(0).locator('.task-name')).to_have_text('Quarterly report')
    expect(tasks.nth(0).locator('.status')).to_have_text('WORKING')
    expect(tasks.nth(0).locator('.task-meta')).to_contain_text('attempt 1 of 2')
    expect(tasks.nth(1).locator('.status')).to_have_text('REJECTED')
    expect(tasks.nth(1).locator('.task-result')).to_have_text('Simulated failure (100 in 100 chance) on attempt 2')
    expect(tasks.nth(2).locator('.status')).to_have_text('COMPLETED')
    expect(tasks.nth(2).locator('.task-result')).to_have_text('Done in 1 s on attempt 1')

    # "Clear finished" leaves the working task, and so does the next reload.
    page.click('#clear')  # type: ignore[attr-defined]
    expect(tasks).to_have_count(1)
    page.reload()  # type: ignore[attr-defined]
    expect(tasks).to_have_count(1)
    expect(tasks.nth(0).locator('.task-name')).to_have_text('Quarterly report')


def test_a_remembered_task_the_queue_no_longer_knows_is_marked_unknown(page: object) -> None:
    from playwright.sync_api import expect

    key = f'torrelque-demo:{page.locator("body").get_attribute("data-queue")}'  # type: ignore[attr-defined]
    remembered = [{'id': 'NoSuchTask123456', 'name': 'Old report', 'duration': 2, 'chance': 0}]
    page.evaluate('([key, tasks]) => sessionStorage.setItem(key, JSON.stringify(tasks))', [key, remembered])  # type: ignore[attr-defined]
    page.reload()  # type: ignore[attr-defined]
    task = page.locator('#tasks > li')  # type: ignore[attr-defined]
    expect(task).to_have_count(1)
    expect(task.locator('.status')).to_have_text('UNKNOWN')
    expect(task.locator('.task-meta')).to_have_text(
        'The queue no longer knows this task: its result expired, or the demo was restarted.'
    )
    # The browser reports the refused stream and the 404 that explains it; nothing else.
    problems = page.problems  # type: ignore[attr-defined]
    assert problems and all('404' in problem for problem in problems), problems
    problems.clear()

    page.click('#clear')  # type: ignore[attr-defined]
    expect(task).to_have_count(0)
    expect(page.locator('#no-tasks')).to_be_visible()  # type: ignore[attr-defined]
