"""The benchmark suite: this project against ``Torrelque`` 0.9.0 from PyPI.

One command, from the repository's root, with an interpreter that has this
project's dependencies (``pip install -e '.[test]'``)::

    python bench/run.py            # all scenarios, under 10 minutes
    python bench/run.py --quick    # smaller sizes and caps, under 2 minutes

It installs ``Torrelque==0.9.0``, with the same redis-py and hiredis
versions as this interpreter has, into ``bench/.venv-0.9`` (once; git
ignores it), starts one private ``redis-server`` (``redis-server`` must be
on ``PATH``; the server on the standard port is never touched), and runs
each scenario of ``bench/scenarios.py`` against both packages in turn
(A B A B ...), each run in a fresh process, since both import as
``torrelque``. It prints a table of the medians with the ratio ours/theirs
and the targets, and writes every measurement as JSON to
``bench/results/`` (or ``--json PATH``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from torrelque.server import RedisServer  # noqa: E402

sys.path.insert(0, str(BENCH))
from scenarios import MARKER  # noqa: E402

OURS, THEIRS = 'ours', '0.9'
THEIRS_REQUIREMENT = 'Torrelque==0.9.0'

#: The bench server: 0.9's watch() needs keyspace events; the slow log
#: keeps every command of 10 ms or more.
SERVER_CONFIG = {
    'notify-keyspace-events': 'KA',
    'slowlog-log-slower-than': '10000',
    'slowlog-max-len': '1024',
    'maxclients': '10000',
}


@dataclass
class Case:
    """A scenario with its arguments, run ``rounds`` times per package."""

    name: str
    scenario: str
    args: list[str]
    rounds: int
    theirs_args: list[str] | None = None  # where 0.9 is run smaller or capped
    theirs_rounds: int | None = None
    note: str = ''
    timeout: float = 240

    def arguments(self, side: str) -> list[str]:
        return self.theirs_args if side == THEIRS and self.theirs_args is not None else self.args

    def rounds_of(self, side: str) -> int:
        return self.theirs_rounds if side == THEIRS and self.theirs_rounds is not None else self.rounds


def plan(quick: bool) -> list[Case]:
    """What a run measures. The full run gives each package at least 3
    rounds, except where one round of 0.9 takes a sweep interval (30 s)."""
    if quick:
        return [
            Case('bulk', 'bulk', ['--size', '10000'], 3),
            Case('single-1', 'single', ['--size', '2000', '--workers', '1'], 3),
            Case('single-8', 'single', ['--size', '2000', '--workers', '8'], 3),
            Case('watch', 'watch', ['--size', '100', '--idle-seconds', '1'], 3),
            Case(
                'delayed',
                'delayed',
                ['--size', '20'],
                3,
                ['--size', '20', '--cap', '3'],
                1,
                note='0.9: one round, capped at 3 s (its sweep runs every 30 s)',
            ),
            Case(
                'stale',
                'stale',
                ['--size', '20'],
                3,
                ['--size', '20', '--cap', '3'],
                1,
                note='0.9: one round, capped at 3 s (its sweep runs every 30 s)',
            ),
            Case('memory', 'memory', ['--size', '20000'], 3),
            Case(
                'sweep',
                'sweep',
                ['--size', '20000'],
                3,
                ['--size', '10000'],
                1,
                note='ours: 20,000 stale tasks; 0.9: 10,000, one round',
            ),
            Case(
                'many-watches',
                'many-watches',
                ['--size', '2000', '--cap', '30'],
                3,
                None,
                1,
                note='0.9: one round',
            ),
        ]
    return [
        Case('bulk', 'bulk', ['--size', '20000'], 3),
        Case('single-1', 'single', ['--size', '5000', '--workers', '1'], 3),
        Case('single-8', 'single', ['--size', '5000', '--workers', '8'], 3),
        Case('watch', 'watch', ['--size', '200'], 3),
        Case(
            'delayed',
            'delayed',
            ['--size', '40'],
            3,
            ['--size', '40', '--cap', '35'],
            1,
            note='0.9: one round (each takes its 30 s sweep interval)',
        ),
        Case(
            'stale',
            'stale',
            ['--size', '40'],
            3,
            ['--size', '40', '--cap', '35'],
            1,
            note='0.9: one round (each takes its 30 s sweep interval)',
        ),
        Case('memory', 'memory', ['--size', '100000'], 3),
        Case(
            'sweep',
            'sweep',
            ['--size', '200000'],
            3,
            ['--size', '10000'],
            3,
            note='0.9: 10,000 stale tasks (its sweep fails on any backlog above about 8,000)',
        ),
        Case('many-watches', 'many-watches', ['--size', '2000', '--cap', '60'], 3),
    ]


# -- the rows of the table ---------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: a metric of a case, and its target."""

    case: str
    metric: str
    label: str
    fmt: str
    target: str
    met: Callable[[dict[str, Any], dict[str, Any]], bool] | None = field(default=None)
    ratio: bool = True


def _ratio(ours: dict[str, Any], theirs: dict[str, Any], metric: str) -> float | None:
    a, b = ours.get(metric), theirs.get(metric)
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or isinstance(a, bool) or not b:
        return None
    return float(a) / float(b)


ROWS = [
    Row('bulk', 'tasks_per_s', 'bulk: tasks/s', '{:,.0f}', '>= 3.0x',
        lambda o, t: (_ratio(o, t, 'tasks_per_s') or 0) >= 3.0),
    Row('single-1', 'tasks_per_s', 'single, 1 consumer: tasks/s', '{:,.0f}', '>= 1.5x',
        lambda o, t: (_ratio(o, t, 'tasks_per_s') or 0) >= 1.5),
    Row('single-8', 'tasks_per_s', 'single, 8 consumers: tasks/s', '{:,.0f}', '>= 1.5x',
        lambda o, t: (_ratio(o, t, 'tasks_per_s') or 0) >= 1.5),
    Row('watch', 'latency_p50_ms', 'watch latency p50: ms', '{:.2f}', '<= 1 ms',
        lambda o, t: o['latency_p50_ms'] <= 1.0),
    Row('watch', 'latency_p99_ms', 'watch latency p99: ms', '{:.2f}', ''),
    Row('watch', 'idle_client_cpu', '100 idle watchers: client CPU', '{:.1%}', '~0',
        lambda o, t: o['idle_client_cpu'] < 0.01),
    Row('delayed', 'late_p99_ms', 'delayed 0.5 s: p99 late, ms', '{:,.1f}', '<= 50 ms',
        lambda o, t: o['late_p99_ms'] <= 50 and not o['capped']),
    Row('stale', 'late_p99_ms', 'stale recovery: p99 late, ms', '{:,.1f}', '<= 50 ms',
        lambda o, t: o['late_p99_ms'] <= 50 and not o['capped']),
    Row('memory', 'pending_bytes_per_task', 'memory per pending task: B', '{:.1f}', '<= 0.8x',
        lambda o, t: (_ratio(o, t, 'pending_bytes_per_task') or 9) <= 0.8),
    Row('memory', 'working_bytes_per_task', 'memory per working task: B', '{:.1f}', '<= 0.8x',
        lambda o, t: (_ratio(o, t, 'working_bytes_per_task') or 9) <= 0.8),
    Row('sweep', 'returned', 'sweep: stale tasks returned', '{:,}', 'all',
        lambda o, t: bool(o['all_returned']), ratio=False),
    Row('sweep', 'slowlog_entries', 'sweep: SLOWLOG entries >= 10 ms', '{}', 'none',
        lambda o, t: o['slowlog_entries'] == 0, ratio=False),
    Row('sweep', 'slowest_command_ms', 'sweep: slowest command, ms', '{:.1f}', '', ratio=False),
    Row('many-watches', 'completed', '2,000 watches: completed', '{:,}', 'all',
        lambda o, t: o['completed'] == o['watches'], ratio=False),
    Row('many-watches', 'pubsub_connections', '2,000 watches: pub/sub connections', '{:,}', '<= 2',
        lambda o, t: o['pubsub_connections'] <= 2, ratio=False),
    Row('many-watches', 'complete_s', '2,000 watches: s to all final', '{:.2f}', ''),
]  # fmt: skip


# -- the packages ---------------------------------------------------------------------------------------


def versions() -> dict[str, str | None]:
    """What this interpreter has, which the 0.9 venv gets the same of."""

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {'redis': redis.__version__, 'hiredis': version('hiredis'), 'orjson': version('orjson')}


def theirs_python(venv: Path, found: dict[str, str | None]) -> Path:
    """The interpreter of a venv with Torrelque 0.9.0 and the same redis-py
    and hiredis (or none) as ours, made on first use."""
    spec = [THEIRS_REQUIREMENT, f'redis=={found["redis"]}']
    if found['hiredis']:
        spec.append(f'hiredis=={found["hiredis"]}')
    python = venv / 'bin' / 'python'
    stamp = venv / 'bench-requirements.txt'
    wanted = '\n'.join(spec) + '\n'
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f'Installing {" ".join(spec)} into {venv} ...', flush=True)
    if not python.exists():
        subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True)
    subprocess.run([str(python), '-m', 'pip', 'install', '-q', '--disable-pip-version-check', *spec], check=True)
    if not found['hiredis']:
        subprocess.run([str(python), '-m', 'pip', 'uninstall', '-q', '-y', 'hiredis'], check=True)
    stamp.write_text(wanted)
    return python


# -- running ------------------------------------------------------------------------------------------------


class Runner:
    def __init__(self, server: RedisServer, pythons: dict[str, Path], log: Path) -> None:
        self.server = server
        self.pythons = pythons
        self.admin = redis.Redis(host=server.host, port=server.port, decode_responses=True)
        self.log = log

    def reset(self) -> None:
        """A clean server for each run: no data, no slow log, no stats."""
        self.admin.flushall()
        self.admin.set(MARKER, '1')
        self.admin.slowlog_reset()
        self.admin.config_resetstat()

    def server_cpu(self) -> float:
        info = self.admin.info('cpu')
        return float(info['used_cpu_user'] + info['used_cpu_sys'])

    def run(self, case: Case, side: str) -> dict[str, Any]:
        self.reset()
        env = dict(os.environ)
        env.pop('PYTHONPATH', None)
        if side == OURS:
            env['PYTHONPATH'] = str(ROOT)  # this checkout, whatever is installed
        command = [
            str(self.pythons[side]), str(BENCH / 'scenarios.py'), case.scenario,
            '--redis-url', self.server.url, *case.arguments(side),
        ]  # fmt: skip
        cpu = self.server_cpu()
        start = time.perf_counter()
        with self.log.open('a') as log:
            log.write(f'\n### {case.name} {side}: {" ".join(command)}\n')
            log.flush()
            done = subprocess.run(
                command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True, timeout=case.timeout
            )
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f'{case.name} failed for {side} (exit {done.returncode}); see {self.log}')
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result['process_s'] = wall
        result['server_cpu_s'] = self.server_cpu() - cpu
        result['commandstats'] = {
            name.removeprefix('cmdstat_'): {'calls': stats['calls'], 'usec': stats['usec']}
            for name, stats in self.admin.info('commandstats').items()
        }
        return result


def check_packages(results: dict[str, list[dict[str, Any]]]) -> None:
    """Makes sure each side measured the package it is meant to."""
    for run in results[OURS]:
        if not run['package']['file'].startswith(str(ROOT)):
            raise RuntimeError(f'"ours" ran {run["package"]["file"]}, not this checkout')
    for run in results[THEIRS]:
        if run['package']['version'] != '0.9.0':
            raise RuntimeError(f'"0.9" ran torrelque {run["package"]["version"]}')


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each numeric metric over the rounds; for a boolean,
    whether any round had it; other values from the first round."""
    merged: dict[str, Any] = {}
    for key, first in runs[0]['metrics'].items():
        values = [run['metrics'][key] for run in runs]
        if isinstance(first, bool):
            merged[key] = any(values)
        elif isinstance(first, (int, float)) and all(isinstance(value, (int, float)) for value in values):
            merged[key] = statistics.median(values)
        else:
            merged[key] = first
    merged['rounds'] = len(runs)
    return merged


# -- the report ------------------------------------------------------------------------------------------------


def show(fmt: str, value: Any) -> str:
    if value is None:
        return '-'
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, float) and value.is_integer() and fmt in ('{}', '{:,}'):
        value = int(value)
    return fmt.format(value)


def table(summary: dict[str, dict[str, dict[str, Any]]]) -> list[list[str]]:
    lines = [['scenario', 'ours', '0.9', 'ours/0.9', 'target', 'met']]
    for row in ROWS:
        if row.case not in summary:
            continue
        ours, theirs = summary[row.case][OURS], summary[row.case][THEIRS]
        ratio = _ratio(ours, theirs, row.metric) if row.ratio else None
        value_ours = show(row.fmt, ours.get(row.metric))
        value_theirs = show(row.fmt, theirs.get(row.metric))
        if theirs.get('capped') and row.metric.startswith('late_'):
            value_theirs = f'>= {value_theirs} (capped)'
        if theirs.get('error') and row.case == 'sweep':
            value_theirs = f'{value_theirs} (error)'
        met = '' if row.met is None else ('yes' if row.met(ours, theirs) else 'NO')
        lines.append([row.label, value_ours, value_theirs, '-' if ratio is None else f'{ratio:.2f}x', row.target, met])
    return lines


def rst_table(lines: list[list[str]]) -> str:
    """The table as a reStructuredText simple table (and readable as text)."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    rule = '  '.join('=' * width for width in widths)

    def render(line: list[str]) -> str:
        return '  '.join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()

    return '\n'.join([rule, render(lines[0]), rule, *(render(line) for line in lines[1:]), rule])


def machine(server: RedisServer, found: dict[str, str | None]) -> dict[str, Any]:
    admin = redis.Redis(host=server.host, port=server.port, decode_responses=True)
    server_info = admin.info('server')
    model = ''
    with contextlib.suppress(OSError):
        lines = Path('/proc/cpuinfo').read_text().splitlines()
        model = next((line.split(':', 1)[1].strip() for line in lines if line.startswith('model name')), '')
    return {
        'cpus': os.cpu_count(),
        'cpu_model': model,
        'platform': platform.platform(),
        'python': platform.python_version(),
        'redis_server': server_info['redis_version'],
        'redis_py': found['redis'],
        'hiredis': found['hiredis'],
        'orjson': found['orjson'],
        'server_config': SERVER_CONFIG,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='smaller sizes and caps: under 2 minutes')
    parser.add_argument('--json', type=Path, help='where to write the results (default: bench/results/<time>.json)')
    parser.add_argument('--only', nargs='+', metavar='CASE', help='run only these cases')
    parser.add_argument('--venv', type=Path, default=BENCH / '.venv-0.9', help='the venv for Torrelque 0.9.0')
    options = parser.parse_args()

    started = datetime.datetime.now(datetime.UTC)
    clock = time.perf_counter()
    stamp = started.strftime('%Y%m%dT%H%M%SZ')
    out = options.json or BENCH / 'results' / f'{stamp}{"-quick" if options.quick else ""}.json'
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix('.log')
    log.write_text('')

    found = versions()
    pythons = {OURS: Path(sys.executable), THEIRS: theirs_python(options.venv.resolve(), found)}
    cases = [case for case in plan(options.quick) if not options.only or case.name in options.only]

    server = RedisServer(config=SERVER_CONFIG).start()
    try:
        about = machine(server, found)
        runner = Runner(server, pythons, log)
        raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
        summary: dict[str, dict[str, dict[str, Any]]] = {}
        for case in cases:
            results: dict[str, list[dict[str, Any]]] = {OURS: [], THEIRS: []}
            for round_ in range(max(case.rounds_of(OURS), case.rounds_of(THEIRS))):
                for side in (OURS, THEIRS):
                    if round_ < case.rounds_of(side):
                        print(f'{case.name}: {side}, round {round_ + 1}', flush=True)
                        results[side].append(runner.run(case, side))
            check_packages(results)
            raw[case.name] = results
            summary[case.name] = {side: medians(runs) for side, runs in results.items()}
    finally:
        server.close()

    elapsed = time.perf_counter() - clock
    command = ' '.join(['python', 'bench/run.py', *sys.argv[1:]])
    report = rst_table(table(summary))
    notes = [f'{case.name}: {case.note}' for case in cases if case.note]
    print()
    print(f'{command}   ({started:%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s)')
    print(f'{about["cpus"]} CPUs ({about["cpu_model"]}), Python {about["python"]}, Redis {about["redis_server"]}, '
          f'redis-py {about["redis_py"]}, hiredis {about["hiredis"] or "none"} (both packages)')  # fmt: skip
    print(report)
    for note in notes:
        print(f'- {note}')
    document = {
        'command': command,
        'date': started.isoformat(timespec='seconds'),
        'elapsed_s': elapsed,
        'quick': options.quick,
        'machine': about,
        'cases': [case.__dict__ for case in cases],
        'summary': summary,
        'table': report,
        'notes': notes,
        'runs': raw,
    }
    out.write_text(json.dumps(document, indent=1) + '\n')
    print(f'\nResults: {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
