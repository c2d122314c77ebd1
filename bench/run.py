"""The benchmark suite: this project against ``Torrelque`` 0.9.0 from PyPI.

One command, from the repository's root, with an interpreter that has this
project's dependencies (``pip install -e '.[test]'``)::

    python bench/run.py            # all scenarios, under 10 minutes
    python bench/run.py --quick    # smaller sizes and caps, under 2 minutes
    python bench/run.py --against main~3   # this checkout against an earlier revision

It installs ``Torrelque==0.9.0``, with the same redis-py and hiredis
versions as this interpreter has, into ``bench/.venv-0.9`` (once; git
ignores it), starts one private ``redis-server`` (``redis-server`` must be
on ``PATH``; the server on the standard port is never touched), and runs
each scenario of ``bench/scenarios.py`` against both packages in turn
(A B A B ...), each run in a fresh process, since both import as
``torrelque``. It prints a table of the medians, with the ratio ours/0.9
(the median of each round's pair) and the targets, and writes every
measurement as JSON to ``bench/results/`` (or ``--json PATH``);
``--table PATH`` prints the table of such a file again.

``--against REV`` measures a git revision of this project in 0.9's place
(exported with ``git archive`` into ``bench/.against-<commit>``, run by this
interpreter, all scenarios at our sizes), so that the ratios say what a
change did to each hot path; the targets, which are against 0.9, are then
not judged.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import math
import os
import platform
import resource
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

    def arguments(self, side: str, against: bool = False) -> list[str]:
        return self.theirs_args if side == THEIRS and self.theirs_args is not None and not against else self.args

    def rounds_of(self, side: str, against: bool = False) -> int:
        return self.theirs_rounds if side == THEIRS and self.theirs_rounds is not None and not against else self.rounds


def plan(quick: bool) -> list[Case]:
    """What a run measures. The full run gives each package at least 3
    rounds (5 for the short throughput runs, which the machine's other
    work disturbs most), except where one round of 0.9 waits out its 30 s
    sweep interval, and sizes 0.9's sweep to what it can do. The quick run
    measures less, mostly in one round, and caps what 0.9 cannot finish
    quickly."""

    def pick(fast: Any, full: Any) -> Any:
        return fast if quick else full

    def size(fast: int, full: int) -> list[str]:
        return ['--size', str(pick(fast, full))]

    rounds = pick(3, 5)
    once = pick(1, 3)
    late_cap = ['--cap', pick('3', '35')]
    late_note = pick(
        '0.9: one round, capped at 3 s (its sweep runs every 30 s)',
        '0.9: one round (each waits out its 30 s sweep interval)',
    )
    return [
        Case('bulk', 'bulk', size(5_000, 20_000), rounds),
        Case('single-1', 'single', [*size(1_000, 5_000), '--workers', '1'], rounds),
        Case('single-8', 'single', [*size(1_000, 5_000), '--workers', '8'], rounds),
        Case('watch', 'watch', [*size(300, 300), '--idle-seconds', pick('1', '2')], 3),
        Case('delayed', 'delayed', size(20, 40), once, [*size(20, 40), *late_cap], 1, note=late_note),
        Case('stale', 'stale', size(20, 40), once, [*size(20, 40), *late_cap], 1, note=late_note),
        Case('memory', 'memory', size(10_000, 100_000), once),
        Case('sweep', 'sweep', size(20_000, 200_000), once, size(10_000, 10_000), 1 if quick else 3,
             note=pick('20,000', '200,000') + ' stale tasks; 0.9: 10,000 (its sweep fails above about 8,000)'),
        Case('sweep-7k', 'sweep', size(7_000, 7_000), once),
        Case('backlog', 'backlog', size(200_000, 1_000_000), 1, size(20_000, 100_000), 1, timeout=600,
             note=pick('200,000', '1,000,000') + ' tasks enqueued; 0.9: ' + pick('20,000', '100,000')),
        Case('many-watches', 'many-watches', ['--size', '2000', '--cap', pick('30', '60')], once, None, once,
             note=pick('one round', '')),
    ]  # fmt: skip


# -- the rows of the table ---------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: a metric of a case, and its target: a bound
    on the ratio ours/0.9 (``at_least`` or ``at_most``), or a check of our
    result alone (``met``)."""

    case: str
    metric: str
    label: str
    fmt: str
    target: str = ''
    at_least: float | None = None
    at_most: float | None = None
    met: Callable[[dict[str, Any]], bool] | None = field(default=None)
    ratio: bool = True

    def verdict(self, ours: dict[str, Any], ratio: float | None) -> str:
        if self.met is not None:
            return 'yes' if self.met(ours) else 'NO'
        if ratio is None or (self.at_least is None and self.at_most is None):
            return ''
        ok = (self.at_least is None or ratio >= self.at_least) and (self.at_most is None or ratio <= self.at_most)
        return 'yes' if ok else 'NO'


ROWS = [
    Row('bulk', 'tasks_per_s', 'bulk: tasks/s', '{:,.0f}', '>= 3.0x', at_least=3.0),
    Row('single-1', 'tasks_per_s', 'single, 1 consumer: tasks/s', '{:,.0f}', '>= 1.5x', at_least=1.5),
    Row('single-8', 'tasks_per_s', 'single, 8 consumers: tasks/s', '{:,.0f}', '>= 1.5x', at_least=1.5),
    Row('watch', 'latency_p50_ms', 'watch latency p50: ms', '{:.2f}', '<= 1 ms',
        met=lambda o: o['latency_p50_ms'] <= 1.0),
    Row('watch', 'latency_p90_ms', 'watch latency p90: ms', '{:.2f}'),
    Row('watch', 'latency_p99_ms', 'watch latency p99: ms', '{:.2f}'),
    Row('watch', 'idle_client_cpu', '100 idle watchers: client CPU', '{:.1%}', '~0',
        met=lambda o: o['idle_client_cpu'] < 0.01),
    Row('delayed', 'late_p99_ms', 'delayed 0.5 s: p99 late, ms', '{:,.1f}', '<= 50 ms',
        met=lambda o: o['late_p99_ms'] <= 50 and not o['capped']),
    Row('stale', 'late_p99_ms', 'stale recovery: p99 late, ms', '{:,.1f}', '<= 50 ms',
        met=lambda o: o['late_p99_ms'] <= 50 and not o['capped']),
    Row('memory', 'pending_bytes_per_task', 'memory per pending task: B', '{:.1f}', '<= 0.8x', at_most=0.8),
    Row('memory', 'working_bytes_per_task', 'memory per working task: B', '{:.1f}', '<= 0.8x', at_most=0.8),
    Row('sweep', 'returned', 'sweep: stale tasks returned', '{:,}', 'all',
        met=lambda o: bool(o['all_returned']), ratio=False),
    Row('sweep', 'slowlog_entries', 'sweep: SLOWLOG entries >= 10 ms', '{}', 'none',
        met=lambda o: o['slowlog_entries'] == 0, ratio=False),
    Row('sweep', 'slowest_command_ms', 'sweep: slowest command, ms', '{:.1f}', ratio=False),  # 0.0: under 1 ms
    Row('sweep-7k', 'returned', 'sweep of 7,000: returned', '{:,}', 'all',
        met=lambda o: bool(o['all_returned']), ratio=False),
    Row('sweep-7k', 'slowest_command_ms', 'sweep of 7,000: slowest command, ms', '{:.1f}', ratio=False),
    Row('backlog', 'enqueue_slowest_ms', 'backlog: slowest enqueue call, ms', '{:.1f}', ratio=False),
    Row('backlog', 'enqueue_over_10ms', 'backlog: enqueue calls >= 10 ms', '{}', 'none',
        met=lambda o: o['enqueue_over_10ms'] == 0, ratio=False),
    Row('backlog', 'consume_slowest_ms', 'backlog: slowest dequeue/release, ms', '{:.1f}', ratio=False),
    Row('backlog', 'consume_over_10ms', 'backlog: dequeue/release >= 10 ms', '{}', 'none',
        met=lambda o: o['consume_over_10ms'] == 0, ratio=False),
    Row('many-watches', 'completed', '2,000 watches: completed', '{:,}', 'all',
        met=lambda o: o['completed'] == o['watches'], ratio=False),
    Row('many-watches', 'pubsub_connections', '2,000 watches: pub/sub connections', '{:,}', '<= 2',
        met=lambda o: o['pubsub_connections'] <= 2, ratio=False),
    Row('many-watches', 'complete_s', '2,000 watches: s to all final', '{:.2f}'),
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


def export_revision(revision: str) -> Path:
    """This project at ``revision``, exported once into ``bench/``."""
    commit = subprocess.run(
        ['git', 'rev-parse', '--short', f'{revision}^{{commit}}'], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    where = BENCH / f'.against-{commit}'
    if not (where / 'torrelque' / '__init__.py').exists():
        where.mkdir(exist_ok=True)
        archive = subprocess.run(['git', 'archive', commit, 'torrelque'], cwd=ROOT, check=True, capture_output=True)
        subprocess.run(['tar', '-x', '-C', str(where)], input=archive.stdout, check=True)
    return where


# -- running ------------------------------------------------------------------------------------------------


class Runner:
    def __init__(self, server: RedisServer, pythons: dict[str, Path], log: Path, against: Path | None) -> None:
        self.server = server
        self.pythons = pythons
        # Where each side imports torrelque from (None: what its venv has).
        self.roots = {OURS: ROOT, THEIRS: against}
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
        if self.roots[side] is not None:
            env['PYTHONPATH'] = str(self.roots[side])  # that checkout, whatever is installed
        command = [
            str(self.pythons[side]), str(BENCH / 'scenarios.py'), case.scenario,
            '--redis-url', self.server.url, *case.arguments(side, self.roots[THEIRS] is not None),
        ]  # fmt: skip
        server_cpu, machine, children = self.server_cpu(), machine_busy(), children_cpu()
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
        result['client_cpu_s'] = children_cpu() - children
        result['server_cpu_s'] = self.server_cpu() - server_cpu
        # Other work on the machine disturbs the timings: how many cores it
        # kept busy meanwhile (what was busy, less the scenario and the server).
        other = machine_busy() - machine - result['client_cpu_s'] - result['server_cpu_s']
        result['other_load_cores'] = max(0.0, other / wall)
        result['commandstats'] = {
            name.removeprefix('cmdstat_'): {'calls': stats['calls'], 'usec': stats['usec']}
            for name, stats in self.admin.info('commandstats').items()
        }
        return result


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (Linux), else 0."""
    try:
        fields = Path('/proc/stat').read_text().split('\n', 1)[0].split()[1:]
    except OSError:
        return 0.0
    ticks = [int(field) for field in fields]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return (sum(ticks[:8]) - idle) / os.sysconf('SC_CLK_TCK')


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def check_packages(results: dict[str, list[dict[str, Any]]], against: Path | None) -> None:
    """Makes sure each side measured the package it is meant to."""
    for run in results[OURS]:
        if not run['package']['file'].startswith(f'{ROOT}/torrelque'):
            raise RuntimeError(f'"ours" ran {run["package"]["file"]}, not this checkout')
    for run in results[THEIRS]:
        if against is not None and not run['package']['file'].startswith(str(against)):
            raise RuntimeError(f'the other side ran {run["package"]["file"]}, not {against}')
        if against is None and run['package']['version'] != '0.9.0':
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


def cell(row: Row, result: dict[str, Any]) -> str:
    """A value of the table, with what qualifies it."""
    text = show(row.fmt, result.get(row.metric))
    if row.metric == 'returned':
        text = f'{text} of {show(row.fmt, result["tasks"])}'
    if result.get('capped') and row.metric.startswith('late_'):
        text = f'>= {text} (capped)'
    if result.get('error'):
        text = f'{text} (error)'
    return text


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def ratios(results: dict[str, list[dict[str, Any]]], metric: str) -> list[float]:
    """Ours/0.9 for ``metric``: one per round, each of two adjacent runs
    (which share the machine's state of the moment), where both packages
    ran as many rounds; else the one ratio of the medians."""
    if len(results[OURS]) == len(results[THEIRS]):
        pairs = [(_number(a['metrics'].get(metric)), _number(b['metrics'].get(metric)))
                 for a, b in zip(results[OURS], results[THEIRS], strict=True)]  # fmt: skip
    else:
        pairs = [(_number(medians(results[OURS]).get(metric)), _number(medians(results[THEIRS]).get(metric)))]
    return [a / b for a, b in pairs if a is not None and b]


def ratio_text(ratio: float) -> str:
    """Two decimals, or two significant digits for a small ratio."""
    decimals = 2 if ratio >= 0.1 or not ratio else 1 - math.floor(math.log10(ratio))
    return f'{ratio:.{decimals}f}'


def table(
    raw: dict[str, dict[str, list[dict[str, Any]]]], theirs: str = THEIRS
) -> tuple[list[list[str]], dict[str, Any]]:
    """The lines of the table, and the same as data; against another
    revision than 0.9, without the targets."""
    judged = theirs == THEIRS
    lines = [['scenario', 'ours', theirs, f'ours/{theirs}', 'per round', 'target', 'met']]
    rows = {}
    for row in ROWS:
        if row.case not in raw:
            continue
        ours, theirs = (medians(raw[row.case][side]) for side in (OURS, THEIRS))
        each = ratios(raw[row.case], row.metric) if row.ratio else []
        ratio = statistics.median(each) if each else None
        spread = f'{ratio_text(min(each))}-{ratio_text(max(each))}' if len(each) > 1 else ''
        verdict = row.verdict(ours, ratio) if judged else ''
        value_ours, value_theirs = (cell(row, side) for side in (ours, theirs))
        shown_ratio = '-' if ratio is None else f'{ratio_text(ratio)}x'
        lines.append([row.label, value_ours, value_theirs, shown_ratio, spread, row.target if judged else '', verdict])
        rows[row.label] = {
            'case': row.case, 'metric': row.metric, 'ours': ours.get(row.metric), 'theirs': theirs.get(row.metric),
            'ratio': ratio, 'round_ratios': each, 'target': row.target, 'met': verdict,
        }  # fmt: skip
    return lines, rows


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
    parser.add_argument('--table', type=Path, metavar='JSON', help='print the table of an earlier run, and stop')
    parser.add_argument('--against', metavar='REV', help="measure this project's git revision REV in 0.9's place")
    options = parser.parse_args()
    if options.table:
        earlier = json.loads(options.table.read_text())
        print(rst_table(table(earlier['runs'], earlier.get('theirs', THEIRS))[0]))
        return 0

    started = datetime.datetime.now(datetime.UTC)
    clock = time.perf_counter()
    stamp = started.strftime('%Y%m%dT%H%M%SZ')
    out = options.json or BENCH / 'results' / f'{stamp}{"-quick" if options.quick else ""}.json'
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix('.log')
    log.write_text('')

    found = versions()
    against = None if options.against is None else export_revision(options.against)
    theirs = THEIRS if against is None else against.name.removeprefix('.against-')
    if against is None:
        pythons = {OURS: Path(sys.executable), THEIRS: theirs_python(options.venv.resolve(), found)}
    else:
        pythons = {OURS: Path(sys.executable), THEIRS: Path(sys.executable)}
    cases = [case for case in plan(options.quick) if not options.only or case.name in options.only]

    server = RedisServer(config=SERVER_CONFIG).start()
    try:
        about = machine(server, found)
        runner = Runner(server, pythons, log, against)
        raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
        summary: dict[str, dict[str, dict[str, Any]]] = {}
        for case in cases:
            results: dict[str, list[dict[str, Any]]] = {OURS: [], THEIRS: []}
            rounds = {side: case.rounds_of(side, against is not None) for side in (OURS, THEIRS)}
            for round_ in range(max(rounds.values())):
                for side in (OURS, THEIRS):
                    if round_ < rounds[side]:
                        print(f'{case.name}: {side if side == OURS else theirs}, round {round_ + 1}', flush=True)
                        results[side].append(runner.run(case, side))
            check_packages(results, against)
            raw[case.name] = results
            summary[case.name] = {side: medians(runs) for side, runs in results.items()}
    finally:
        server.close()

    elapsed = time.perf_counter() - clock
    command = ' '.join(['python', 'bench/run.py', *sys.argv[1:]])
    lines, rows = table(raw, theirs)
    report = rst_table(lines)
    notes = [f'{case.name}: {case.note}' for case in cases if case.note and against is None]
    busy = {
        name: max(run['other_load_cores'] for runs in results.values() for run in runs) for name, results in raw.items()
    }
    disturbed = ', '.join(f'{name} {cores:.1f}' for name, cores in busy.items() if cores >= 0.2)
    if disturbed:
        notes.append(f'other work kept cores busy during some runs (most, in cores): {disturbed}')
    print()
    print(f'{command}   ({started:%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s)')
    print(f'{about["cpus"]} CPUs ({about["cpu_model"]}), Python {about["python"]}, Redis {about["redis_server"]}, '
          f'redis-py {about["redis_py"]}, hiredis {about["hiredis"] or "none"} (both sides)')  # fmt: skip
    print(report)
    for note in notes:
        print(f'- {note}')
    document = {
        'command': command,
        'date': started.isoformat(timespec='seconds'),
        'elapsed_s': elapsed,
        'quick': options.quick,
        'theirs': theirs,
        'machine': about,
        'cases': [case.__dict__ for case in cases],
        'summary': summary,
        'table': report,
        'rows': rows,
        'notes': notes,
        'runs': raw,
    }
    out.write_text(json.dumps(document, indent=1) + '\n')
    print(f'\nResults: {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
