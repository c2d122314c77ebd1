"""This project's Worker side by side with BullMQ's (Node), on one Redis.

From the repository's root, with an interpreter that has this project's
dependencies, ``node`` and ``npm`` on ``PATH`` and ``redis-server`` too::

    python bench/peers.py             # 20,000 jobs per run, 5 rounds: 2 to 3 minutes
    python bench/peers.py --quick     # 3,000 jobs per run, 3 rounds: under a minute
    python bench/peers.py --rounds 7 --json /tmp/peers.json

It installs the BullMQ version that ``bench/bullmq/package-lock.json`` pins
into ``bench/bullmq/node_modules`` (``npm ci``, once; git ignores it),
starts one private ``redis-server`` (the server on the standard port is
never touched), and in each round runs, each in a fresh process and on a
flushed server: BullMQ with concurrency 1, ours with 1, BullMQ with 8,
ours with 8. Each run measures the throughput of no-op jobs (enqueued in
bulk first, then one worker processes them all; from the worker's start
to the last job done, nothing kept) and the latency from enqueue to
completion with an idle worker, one job at a time (``bench/bullmq/bench.mjs``
and ``bench/peer_torrelque.py`` say exactly how). It prints a table of the
medians, with the ratio ours/BullMQ (the median of each round's pair) and
the targets, and writes every run as JSON to ``bench/results/`` (or
``--json PATH``); ``--table PATH`` prints the table of such a file again.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
NODE_DIR = BENCH / 'bullmq'
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from torrelque.server import RedisServer  # noqa: E402

sys.path.insert(0, str(BENCH))
from run import children_cpu, machine, machine_busy, ratio_text, rst_table, show  # noqa: E402

OURS, THEIRS = 'torrelque', 'bullmq'
LABELS = {OURS: 'Torrelque', THEIRS: 'BullMQ'}
CONCURRENCIES = (1, 8)
LATENCY_JOBS = 300
SERVER_CONFIG = {'maxclients': '10000'}


@dataclass
class Row:
    """A line of the table: a metric of the runs of one concurrency, and
    its target, a bound on the ratio ours/BullMQ."""

    concurrency: int
    metric: str
    label: str
    fmt: str
    at_least: float | None = None
    at_most: float | None = None

    @property
    def target(self) -> str:
        if self.at_least is not None:
            return f'>= {self.at_least:.1f}x'
        if self.at_most is not None:
            return f'<= {self.at_most:.1f}x'
        return ''

    def verdict(self, ratio: float | None) -> str:
        if ratio is None or (self.at_least is None and self.at_most is None):
            return ''
        ok = (self.at_least is None or ratio >= self.at_least) and (self.at_most is None or ratio <= self.at_most)
        return 'yes' if ok else 'NO'


ROWS = [
    Row(1, 'jobs_per_s', 'c=1: jobs/s', '{:,.0f}', at_least=1.3),
    Row(8, 'jobs_per_s', 'c=8: jobs/s', '{:,.0f}', at_least=2.0),
    Row(1, 'latency_p50_ms', 'c=1: latency p50, ms', '{:.2f}', at_most=1.0),
    Row(1, 'latency_p90_ms', 'c=1: latency p90, ms', '{:.2f}'),
    Row(1, 'latency_p99_ms', 'c=1: latency p99, ms', '{:.2f}'),
    Row(8, 'latency_p50_ms', 'c=8: latency p50, ms', '{:.2f}', at_most=1.0),
    Row(8, 'latency_p90_ms', 'c=8: latency p90, ms', '{:.2f}'),
    Row(8, 'latency_p99_ms', 'c=8: latency p99, ms', '{:.2f}'),
    Row(1, 'enqueue_call_p50_ms', 'c=1: one enqueue call p50, ms', '{:.2f}'),
    Row(1, 'client_cpu_us_per_job', 'c=1: client CPU, µs/job', '{:.0f}'),
    Row(1, 'server_cpu_us_per_job', 'c=1: Redis CPU, µs/job', '{:.0f}'),
    Row(8, 'client_cpu_us_per_job', 'c=8: client CPU, µs/job', '{:.0f}'),
    Row(8, 'server_cpu_us_per_job', 'c=8: Redis CPU, µs/job', '{:.0f}'),
    Row(1, 'enqueue_per_s', 'bulk enqueue: jobs/s', '{:,.0f}'),
]


# -- the BullMQ side ------------------------------------------------------------------------------


def installed_bullmq() -> str | None:
    """The version in ``node_modules``, if any."""
    try:
        about: dict[str, Any] = json.loads((NODE_DIR / 'node_modules' / 'bullmq' / 'package.json').read_text())
    except (OSError, ValueError):
        return None
    return str(about.get('version'))


def pinned_bullmq() -> str:
    about: dict[str, Any] = json.loads((NODE_DIR / 'package.json').read_text())
    return str(about['dependencies']['bullmq'])


def prepare_node() -> dict[str, str]:
    """Checks for node and npm, runs ``npm ci`` when BullMQ is missing or
    not the pinned version; the versions of node and BullMQ."""
    node, npm = shutil.which('node'), shutil.which('npm')
    if node is None or npm is None:
        missing = ' and '.join(name for name, path in (('node', node), ('npm', npm)) if path is None)
        raise SystemExit(
            f'{missing} not found on PATH: the BullMQ side needs Node.js 18 or later with npm '
            '(e.g. "sudo apt-get install nodejs npm", or https://nodejs.org/)'
        )
    if installed_bullmq() != pinned_bullmq():
        print(f'Installing bullmq {pinned_bullmq()} into {NODE_DIR / "node_modules"} (npm ci) ...', flush=True)
        done = subprocess.run([npm, 'ci', '--no-audit', '--no-fund'], cwd=NODE_DIR)
        if done.returncode != 0 or installed_bullmq() != pinned_bullmq():
            raise SystemExit(f'npm ci failed in {NODE_DIR} (exit {done.returncode})')
    version = subprocess.run([node, '--version'], check=True, capture_output=True, text=True).stdout.strip()
    return {'node': version, 'bullmq': pinned_bullmq()}


# -- running --------------------------------------------------------------------------------------


class Runner:
    def __init__(self, server: RedisServer, jobs: int, latency_jobs: int, log: Path, python: Path) -> None:
        self.server = server
        self.python = python
        self.jobs = jobs
        self.latency_jobs = latency_jobs
        self.admin = redis.Redis(host=server.host, port=server.port, decode_responses=True)
        self.log = log

    def server_cpu(self) -> float:
        info = self.admin.info('cpu')
        return float(info['used_cpu_user'] + info['used_cpu_sys'])

    def command(self, side: str, concurrency: int) -> tuple[list[str], Path]:
        args = [str(self.server.port), str(self.jobs), str(concurrency), str(self.latency_jobs)]
        if side == THEIRS:
            return ['node', str(NODE_DIR / 'bench.mjs'), *args], NODE_DIR
        return [str(self.python), str(BENCH / 'peer_torrelque.py'), *args], ROOT

    def run(self, side: str, concurrency: int) -> dict[str, Any]:
        self.admin.flushall()
        self.admin.config_resetstat()
        command, cwd = self.command(side, concurrency)
        env = dict(os.environ)
        env['PYTHONPATH'] = str(ROOT)  # this checkout, whatever is installed
        server_cpu, busy, children = self.server_cpu(), machine_busy(), children_cpu()
        start = time.perf_counter()
        with self.log.open('a') as log:
            log.write(f'\n### {side} c={concurrency}: {" ".join(command)}\n')
            log.flush()
            done = subprocess.run(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=log, text=True, timeout=300)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f'{side} with concurrency {concurrency} failed (exit {done.returncode}); see {self.log}')
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        metrics = result['metrics']
        if metrics['completed'] != self.jobs or metrics['failed']:
            raise RuntimeError(f'{side} c={concurrency}: {metrics["completed"]} of {self.jobs} jobs done')
        if side == OURS and not result['package']['file'].startswith(f'{ROOT}/torrelque'):
            raise RuntimeError(f'the Torrelque side ran {result["package"]["file"]}, not this checkout')
        result['process_s'] = wall
        result['client_cpu_s'] = children_cpu() - children
        result['server_cpu_s'] = self.server_cpu() - server_cpu
        other = machine_busy() - busy - result['client_cpu_s'] - result['server_cpu_s']
        result['other_load_cores'] = max(0.0, other / wall)
        return result


# -- the report ---------------------------------------------------------------------------------------


def number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def median_of(runs: list[dict[str, Any]], metric: str) -> float | None:
    values = [value for run in runs if (value := number(run['metrics'].get(metric))) is not None]
    return statistics.median(values) if values else None


def table(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> tuple[list[list[str]], dict[str, Any]]:
    """The lines of the table, and the same as data. ``runs`` is by
    concurrency (as text, as in the JSON), then by side."""
    lines = [['metric', LABELS[OURS], LABELS[THEIRS], 'ours/BullMQ', 'per round', 'target', 'met']]
    rows = {}
    for row in ROWS:
        pair = runs.get(str(row.concurrency))
        if pair is None:
            continue
        ours, theirs = median_of(pair[OURS], row.metric), median_of(pair[THEIRS], row.metric)
        each = []
        for a, b in zip(pair[OURS], pair[THEIRS], strict=False):
            mine, other = number(a['metrics'].get(row.metric)), number(b['metrics'].get(row.metric))
            if mine is not None and other:
                each.append(mine / other)
        ratio = statistics.median(each) if each else None
        spread = f'{ratio_text(min(each))}-{ratio_text(max(each))}' if len(each) > 1 else ''
        verdict = row.verdict(ratio)
        shown = '-' if ratio is None else f'{ratio_text(ratio)}x'
        lines.append([row.label, show(row.fmt, ours), show(row.fmt, theirs), shown, spread, row.target, verdict])
        rows[row.label] = {
            'concurrency': row.concurrency, 'metric': row.metric, 'ours': ours, 'theirs': theirs,
            'ratio': ratio, 'round_ratios': each, 'target': row.target, 'met': verdict,
        }  # fmt: skip
    return lines, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='3,000 jobs per run, 3 rounds: under a minute')
    parser.add_argument('--rounds', type=int, help='rounds of the four runs (default: 5, or 3 with --quick)')
    parser.add_argument('--jobs', type=int, help='jobs per throughput run (default: 20,000, or 3,000 with --quick)')
    parser.add_argument('--json', type=Path, help='where the results go (default: bench/results/peers-<time>.json)')
    parser.add_argument(
        '--python', type=Path, default=Path(sys.executable), help="the Torrelque side's interpreter (default: this one)"
    )
    parser.add_argument('--table', type=Path, metavar='JSON', help='print the table of an earlier run, and stop')
    options = parser.parse_args()
    if options.table:
        earlier = json.loads(options.table.read_text())
        print(rst_table(table(earlier['runs'])[0]))
        return 0
    rounds = options.rounds or (3 if options.quick else 5)
    jobs = options.jobs or (3_000 if options.quick else 20_000)
    if rounds < 1 or jobs < 1:
        parser.error('--rounds and --jobs must be at least 1')

    started = datetime.datetime.now(datetime.UTC)
    clock = time.perf_counter()
    stamp = started.strftime('%Y%m%dT%H%M%SZ')
    out = options.json or BENCH / 'results' / f'peers-{stamp}{"-quick" if options.quick else ""}.json'
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix('.log')
    log.write_text('')

    node = prepare_node()
    found = client_versions(options.python)
    server = RedisServer(config=SERVER_CONFIG).start()
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {str(c): {OURS: [], THEIRS: []} for c in CONCURRENCIES}
    try:
        about = {**machine(server, found), **node}
        about['server_config'] = SERVER_CONFIG
        runner = Runner(server, jobs, LATENCY_JOBS, log, options.python)
        for round_ in range(rounds):
            for concurrency in CONCURRENCIES:
                for side in (THEIRS, OURS):
                    print(f'round {round_ + 1} of {rounds}: {LABELS[side]}, concurrency {concurrency}', flush=True)
                    runs[str(concurrency)][side].append(runner.run(side, concurrency))
    finally:
        server.close()

    elapsed = time.perf_counter() - clock
    command = ' '.join(['python', 'bench/peers.py', *sys.argv[1:]])
    lines, rows = table(runs)
    report = rst_table(lines)
    busy = max(run['other_load_cores'] for pair in runs.values() for side in pair.values() for run in side)
    notes = [f'{jobs:,} jobs per throughput run, {LATENCY_JOBS} latency samples per run, {rounds} round(s)']
    if busy >= 0.2:
        notes.append(f'other work kept up to {busy:.1f} core(s) busy during some runs')
    print()
    print(f'{command}   ({started:%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s)')
    print(
        f'{about["cpus"]} CPUs ({about["cpu_model"]}), Redis {about["redis_server"]}; Python {about["python"]}, '
        f'redis-py {found["redis"]}, hiredis {found["hiredis"] or "none"}; Node {node["node"]}, BullMQ {node["bullmq"]}'
    )
    print(report)
    for note in notes:
        print(f'- {note}')
    document = {
        'command': command,
        'date': started.isoformat(timespec='seconds'),
        'elapsed_s': elapsed,
        'quick': options.quick,
        'jobs': jobs,
        'latency_jobs': LATENCY_JOBS,
        'rounds': rounds,
        'machine': about,
        'table': report,
        'rows': rows,
        'notes': notes,
        'runs': runs,
    }
    out.write_text(json.dumps(document, indent=1) + '\n')
    print(f'\nResults: {out}')
    return 0


def client_versions(python: Path) -> dict[str, str | None]:
    """The versions of redis-py, hiredis and orjson that ``python`` has."""
    probe = (
        'import importlib.metadata as m, json\n'
        'def v(name):\n'
        '    try:\n'
        '        return m.version(name)\n'
        '    except m.PackageNotFoundError:\n'
        '        return None\n'
        "print(json.dumps({name: v(name) for name in ('redis', 'hiredis', 'orjson')}))\n"
    )
    done = subprocess.run([str(python), '-c', probe], check=True, capture_output=True, text=True)
    found: dict[str, str | None] = json.loads(done.stdout)
    return found


if __name__ == '__main__':
    sys.exit(main())
