"""The demo page in a real (headless) Chromium: a person starts tasks and
sees them progress and finish; three tabs share the browser's connections;
long labels stay within the window, wide and narrow; and the cards say that
their state is unknown while the demo server, or its Redis, is gone. Leaves
a screenshot in ``test-artifacts/demo.png``.

Uses Debian's ``chromium`` at /usr/bin/chromium; skips without it, unless
``TORRELQUE_REQUIRE_BROWSER=1`` (as in CI), where that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from example_programs import URL_LINE, Program, demo

from torrelque.server import RedisServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Request, ViewportSize

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
# Margins for a busy machine: an expectation that waits for this long has failed.
TIMEOUT_MS = 20_000
WIDE: ViewportSize = {'width': 1280, 'height': 860}
# Short retries, so that a failing task is rejected within a second.
DEMO_ARGS = ('--max-attempts', '2', '--backoff', '0.2')
# An ordinary label (61 characters), and one that has no place to break.
LONG_LABEL = 'Resize and watermark every photo from the 2024 summer holiday'
UNBROKEN_LABEL = 'https://photos.example.com/albums/2024-summer/originals/IMG_0001-IMG_9999.jpeg'


def _unavailable(reason: str) -> None:
    if os.environ.get('TORRELQUE_REQUIRE_BROWSER') == '1':
        pytest.fail(f'{reason}, and TORRELQUE_REQUIRE_BROWSER=1 requires the browser test', pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope='module')
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        _unavailable(f'no Chromium at {CHROMIUM} (Debian: apt-get install chromium)')
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _unavailable("the playwright package is missing (pip install -e '.[test]')")
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A browser profile of its own: its tabs share its connections to a
    server (six at most). No page of it may log an error or have a script
    fail (that includes a blocked resource, such as a CSP violation)."""
    context = browser.new_context(viewport=WIDE)
    context.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # A request made while a test has stopped the demo on purpose is
        # refused, and Chromium logs it; a test that needs the server fails
        # on its own assertions when it is gone.
        if message.type == 'error' and 'net::ERR_CONNECTION_REFUSED' not in message.text:
            problems.append(message.text)

    def watch(page: Page) -> None:
        page.on('pageerror', lambda error: problems.append(f'page error: {error}'))
        page.on('console', on_console)

    context.on('page', watch)
    try:
        yield context
        assert problems == []
    finally:
        context.close()


@pytest.fixture
def open_demo(redis_url: str) -> Iterator[Callable[..., str]]:
    """Starts the demo on a queue of its own (with more options, if given);
    returns its URL. It must stop cleanly at the end."""
    with contextlib.ExitStack() as stack:

        def start(*args: str) -> str:
            queue = f'demo-{uuid.uuid4().hex[:12]}'
            _, url = stack.enter_context(demo('--redis-url', redis_url, '--queue', queue, *DEMO_ARGS, *args))
            return url

        yield start


@pytest.fixture
def page(context: BrowserContext, open_demo: Callable[..., str]) -> Page:
    page = context.new_page()
    page.goto(open_demo())
    return page


def start(page: Page, *, label: str, duration: str, failure: str, count: str = '1') -> None:
    page.fill('#label', label)
    page.fill('#duration', duration)
    page.fill('#failure', failure)
    page.fill('#count', count)
    page.click('#start')


def test_a_person_starts_tasks_and_sees_them_finish(page: Page, redis_url: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator('#connection')).to_have_text('Live')
    tasks = page.locator('#tasks > li')

    # Which Redis, and the command that follows the queue from a shell.
    queue = page.locator('body').get_attribute('data-queue')
    expect(page.locator('#redis-url')).to_have_text(redis_url)
    expect(page.locator('#redis-server')).to_have_text(re.compile(r'^(Redis|Valkey) \d+\.\d+'))
    expect(page.locator('#cli-command')).to_have_text(f'torrelque --url {redis_url} tail {queue}')

    # Asking for more tasks than the form allows says what will be started.
    page.fill('#count', '50')
    expect(page.locator('#start')).to_have_text('Start 10 tasks')
    page.fill('#count', '1')
    expect(page.locator('#start')).to_have_text('Start task')

    start(page, label='Resize holiday photos', duration='1', failure='0')
    expect(tasks).to_have_count(1)
    done = tasks.nth(0)
    expect(done.locator('.status')).to_have_text('COMPLETED')
    expect(done.locator('.task-result')).to_have_text('Done in 1 s on attempt 1')
    expect(done.locator('.task-meta')).to_contain_text('done after 1 attempt')

    # Markup in a label is text on the page, never HTML.
    start(page, label='<b>Flaky</b> upload', duration='0.5', failure='100')
    expect(tasks).to_have_count(2)
    rejected = tasks.nth(0)
    expect(rejected.locator('.status')).to_have_text('REJECTED')
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
    expect(page.locator('#counters')).to_contain_text('completed1')
    expect(page.locator('#counters')).to_contain_text('rejected1')
    expect(page.locator('#counters')).to_contain_text('dead letters1')
    expect(page.locator('#log li').first).to_be_visible()

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / 'demo.png'), full_page=True)

    # A reload shows the tab's tasks again, each in its current state.
    page.reload()
    expect(page.locator('#connection')).to_have_text('Live')
    expect(tasks).to_have_count(3)
    expect(tasks.nth(0).locator('.task-name')).to_have_text('Quarterly report')
    expect(tasks.nth(0).locator('.status')).to_have_text('WORKING')
    expect(tasks.nth(0).locator('.task-meta')).to_contain_text('attempt 1 of 2')
    expect(tasks.nth(1).locator('.status')).to_have_text('REJECTED')
    expect(tasks.nth(1).locator('.task-result')).to_have_text('Simulated failure (100 in 100 chance) on attempt 2')
    expect(tasks.nth(2).locator('.status')).to_have_text('COMPLETED')
    expect(tasks.nth(2).locator('.task-result')).to_have_text('Done in 1 s on attempt 1')

    # "Clear finished" leaves the working task, and so does the next reload.
    page.click('#clear')
    expect(tasks).to_have_count(1)
    page.reload()
    expect(tasks).to_have_count(1)
    expect(tasks.nth(0).locator('.task-name')).to_have_text('Quarterly report')


def test_a_person_cancels_a_waiting_task_and_a_working_one(page: Page) -> None:
    from playwright.sync_api import expect

    expect(page.locator('#connection')).to_have_text('Live')
    tasks = page.locator('#tasks > li')
    # Two consumers: the first two work, the third waits.
    start(page, label='Long job', duration='20', failure='0', count='3')
    expect(tasks).to_have_count(3)
    expect(page.locator('#q-working')).to_have_text('2')
    waiting = tasks.filter(has=page.locator('.status', has_text='PENDING'))
    expect(waiting).to_have_count(1)
    waiting_name = waiting.locator('.task-name').inner_text()
    waiting.locator('.cancel').click()
    cancelled = tasks.filter(has=page.locator('.task-name', has_text=waiting_name))
    expect(cancelled.locator('.status')).to_have_text('CANCELLED')
    expect(cancelled.locator('.task-meta')).to_contain_text('cancelled before it started')
    expect(cancelled.locator('.cancel')).to_be_hidden()

    working = tasks.filter(has=page.locator('.status', has_text='WORKING')).first
    working_name = working.locator('.task-name').inner_text()
    working.locator('.cancel').click()
    stopped = tasks.filter(has=page.locator('.task-name', has_text=working_name))
    # Stopped by its worker within moments, not after its 20 s.
    expect(stopped.locator('.status')).to_have_text('CANCELLED', timeout=3000)
    expect(stopped.locator('.task-meta')).to_contain_text('cancelled after 1 attempt')
    expect(stopped.locator('.cancel')).to_be_hidden()
    expect(page.locator('#counters')).to_contain_text('cancelled2')
    expect(page.locator('#counters')).to_contain_text('aborted1')
    # The other task goes on; "Clear finished" takes the cancelled two away.
    expect(tasks.filter(has=page.locator('.status', has_text='WORKING'))).to_have_count(1)
    page.click('#clear')
    expect(tasks).to_have_count(1)


def test_a_remembered_task_the_queue_no_longer_knows_is_marked_unknown(page: Page) -> None:
    from playwright.sync_api import expect

    key = f'torrelque-demo:{page.locator("body").get_attribute("data-queue")}'
    remembered = [{'id': 'NoSuchTask123456', 'name': 'Old report', 'duration': 2, 'chance': 0}]
    page.evaluate('([key, tasks]) => sessionStorage.setItem(key, JSON.stringify(tasks))', [key, remembered])
    page.reload()
    task = page.locator('#tasks > li')
    expect(task).to_have_count(1)
    expect(task.locator('.status')).to_have_text('UNKNOWN')
    expect(task.locator('.task-meta')).to_have_text(
        'The queue no longer knows this task: its result expired, or the demo was restarted.'
    )
    page.click('#clear')
    expect(task).to_have_count(0)
    expect(page.locator('#no-tasks')).to_be_visible()


def test_three_tabs_of_ten_tasks_each_never_wait_for_a_connection(
    context: BrowserContext, open_demo: Callable[..., str]
) -> None:
    from playwright.sync_api import expect

    url = open_demo('--consumers', '30')
    tabs = [context.new_page() for _ in range(3)]
    streams: list[str] = []

    def on_request(request: Request) -> None:
        if request.resource_type == 'eventsource':
            streams.append(request.url)

    for tab in tabs:
        tab.on('request', on_request)
        tab.goto(url)
        expect(tab.locator('#connection')).to_have_text('Live')
    # All at once: each tab starts ten tasks while the others do, each
    # task long enough that a stream per task would hold a connection
    # (which stalled the next requests for seconds).
    for number, tab in enumerate(tabs, 1):
        start(tab, label=f'Tab {number}', duration='2', failure='0', count='10')
    for tab in tabs:
        expect(tab.locator('#tasks > li')).to_have_count(10)
        expect(tab.locator('#tasks .status')).to_have_text(['COMPLETED'] * 10)

    # One stream per tab, opened once.
    assert len(streams) == 3, streams
    for tab in tabs:
        # Every request of the page, from the moment it was made (time spent
        # waiting for a free connection included) to its answer's end.
        timings = tab.evaluate(
            """performance.getEntriesByType('resource')
                .filter((entry) => entry.initiatorType === 'fetch')
                .map((entry) => [new URL(entry.name).pathname, Math.round(entry.duration)])"""
        )
        paths = [path for path, _ in timings]
        assert paths.count('/tasks') == 10, timings
        assert sum(path.startswith('/events/') for path in paths) == 10, timings  # each task added to the stream
        slow = [(path, ms) for path, ms in timings if ms > 1000]
        assert slow == [], timings


def test_long_labels_stay_in_the_window_wide_and_narrow(page: Page) -> None:
    from playwright.sync_api import expect

    start(page, label=LONG_LABEL, duration='0', failure='0')
    start(page, label=UNBROKEN_LABEL, duration='0', failure='0')
    expect(page.locator('#tasks .status')).to_have_text(['COMPLETED'] * 2)
    for width in (1280, 390):
        page.set_viewport_size({'width': width, 'height': 860})
        layout = page.evaluate(
            """() => {
                const box = (element) => element.getBoundingClientRect().toJSON();
                const clipped = (element) => ({
                    overflow: getComputedStyle(element).textOverflow,
                    clipped: element.scrollWidth > element.clientWidth,
                    right: box(element).right,
                });
                return {
                    scrollWidth: document.scrollingElement.scrollWidth,
                    innerWidth,
                    names: [...document.querySelectorAll('#tasks .task-name')].map(clipped),
                    nameWidths: [...document.querySelectorAll('#tasks .task-name')].map((el) => box(el).width),
                    log: [...document.querySelectorAll('#log .event')].map(clipped),
                    cards: [...document.querySelectorAll('#tasks > li')].map((el) => box(el).right),
                    form: box(document.querySelector('#start-form').closest('.card')),
                    tasks: box(document.querySelector('#tasks').closest('.card')),
                    panel: box(document.querySelector('aside .card')),
                };
            }"""
        )
        where = f'at {width} px: {layout}'
        assert layout['scrollWidth'] <= layout['innerWidth'], where
        # The labels are ellipsised, within their cards, and still readable.
        assert layout['names'] and all(name['overflow'] == 'ellipsis' and name['clipped'] for name in layout['names'])
        assert all(name['right'] <= right for name, right in zip(layout['names'], layout['cards'], strict=True))
        assert all(name_width >= 100 for name_width in layout['nameWidths']), where
        assert len(layout['log']) >= 4 and all(entry['overflow'] == 'ellipsis' for entry in layout['log']), where
        assert any(entry['clipped'] for entry in layout['log']), where
        # The queue panel covers neither the form nor the tasks.
        for other in ('form', 'tasks'):
            assert not _overlap(layout['panel'], layout[other]), f'the panel covers the {other} {where}'


def _overlap(one: dict[str, float], other: dict[str, float]) -> bool:
    return (
        one['left'] < other['right']
        and other['left'] < one['right']
        and one['top'] < other['bottom']
        and other['top'] < one['bottom']
    )


def _bar_width(page: Page) -> str:
    return str(page.locator('#tasks > li .progress-fill').evaluate('(fill) => getComputedStyle(fill).width'))


def test_cards_say_their_state_is_unknown_while_the_demo_server_is_gone(
    context: BrowserContext, redis_url: str
) -> None:
    from playwright.sync_api import expect

    args = ['--redis-url', redis_url, '--queue', f'demo-{uuid.uuid4().hex[:12]}', *DEMO_ARGS]
    with Program('wait_until_complete.py', '--port', '0', *args) as first:
        url = first.wait_for(URL_LINE).group(1)
        page = context.new_page()
        page.goto(url)
        start(page, label='Long report', duration='30', failure='0')
        card = page.locator('#tasks > li')
        expect(card.locator('.task-meta')).to_have_text(re.compile(r'attempt 1 of 2, [1-9]\d*% done'))
        # The server stops (the task goes back to the queue), and its port is closed.
        assert first.stop(signal.SIGTERM) == 0, first.errors
    expect(page.locator('#connection')).to_have_text('Reconnecting…')
    expect(card).to_have_class(re.compile(r'\boffline\b'))
    expect(card.locator('.status')).to_have_text('UNKNOWN')
    expect(card.locator('.task-meta')).to_have_text('Connection lost — state unknown (last seen WORKING)')
    # The bar stays where it was.
    before = _bar_width(page)
    time.sleep(0.6)
    assert _bar_width(page) == before

    # The demo again, on the same port and queue: the page is live again, and so is the card.
    port = url.rsplit(':', 1)[1].strip('/')
    with Program('wait_until_complete.py', '--port', port, *args) as second:
        second.wait_for(URL_LINE)
        expect(page.locator('#connection')).to_have_text('Live')
        expect(card).not_to_have_class(re.compile(r'\boffline\b'))
        expect(card.locator('.status')).to_have_text('WORKING')
        expect(card.locator('.task-meta')).to_have_text(re.compile(r'attempt 1 of 2, [1-9]\d*% done'))
        page.close()
        assert second.stop() == 0, second.errors


def test_cards_say_their_state_is_unknown_while_redis_is_gone(
    context: BrowserContext, make_server: Callable[..., RedisServer]
) -> None:
    from playwright.sync_api import expect

    server = make_server(persistence=True)  # the task is still there after the restart
    args = ['--redis-url', server.url, *DEMO_ARGS]
    with Program('wait_until_complete.py', '--port', '0', *args) as program:
        page = context.new_page()
        page.goto(program.wait_for(URL_LINE).group(1))
        start(page, label='Long report', duration='30', failure='0')
        card = page.locator('#tasks > li')
        expect(card.locator('.task-meta')).to_have_text(re.compile(r'attempt 1 of 2, [1-9]\d*% done'))

        server.stop()
        expect(page.locator('#connection')).to_have_text('Redis does not answer')
        expect(card.locator('.status')).to_have_text('UNKNOWN')
        expect(card.locator('.task-meta')).to_have_text('Redis does not answer — state unknown (last seen WORKING)')
        before = _bar_width(page)
        time.sleep(0.6)
        assert _bar_width(page) == before

        server.start()
        expect(page.locator('#connection')).to_have_text('Live')
        # The card shows what the task does now (the worker may have given
        # it back and taken it again meanwhile).
        expect(card).not_to_have_class(re.compile(r'\boffline\b'))
        expect(card.locator('.status')).to_have_text(re.compile(r'^(PENDING|WORKING|DELAYED)$'))
        page.close()
        assert program.stop() == 0, program.errors
