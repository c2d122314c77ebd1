// The BullMQ side of bench/peers.py: no-op jobs through one BullMQ Worker.
//
//   node bench/bullmq/bench.mjs PORT JOBS CONCURRENCY [LATENCY_JOBS]
//
// On the Redis server of 127.0.0.1:PORT (a private one: bench/peers.py
// flushes it before each run), on fresh queues:
//
// throughput  JOBS jobs added with addBulk (removeOnComplete, so nothing is
//             kept), then one Worker of CONCURRENCY processes them with a
//             no-op processor; the time from worker.run() until its last
//             'completed' event.
// latency     with an idle Worker of CONCURRENCY running and a QueueEvents
//             listening, LATENCY_JOBS jobs (default 300, after 20 not
//             counted) added one at a time, each once the previous one has
//             completed; the time from the start of queue.add() to its
//             'completed' event reaching the QueueEvents; and the time of
//             the add() call alone.
//
// Prints one JSON object on stdout. Times in seconds, latencies in ms.

import { readFileSync } from 'node:fs';
import { Queue, QueueEvents, Worker } from 'bullmq';

const ADD_CHUNK = 1000; // jobs per addBulk call
const WARM_UP = 20; // latency jobs not counted
const GAP_MS = 2; // pause between latency jobs, so that the worker waits idle

function usage(message) {
  process.stderr.write(`${message}\nusage: node bench.mjs PORT JOBS CONCURRENCY [LATENCY_JOBS]\n`);
  process.exit(2);
}

function positive(text, name) {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) usage(`${name} must be a whole number of at least 1, not ${text}`);
  return value;
}

function percentile(values, pct) {
  if (values.length === 0) return null;
  const ordered = [...values].sort((a, b) => a - b);
  const rank = ((ordered.length - 1) * pct) / 100;
  const low = Math.floor(rank);
  const high = Math.min(low + 1, ordered.length - 1);
  return ordered[low] + (ordered[high] - ordered[low]) * (rank - low);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function cpuSeconds() {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

async function serverCpu(queue) {
  const client = await queue.client;
  const info = await client.info();
  let total = 0;
  for (const line of info.split('\n')) {
    const [name, value] = line.trim().split(':');
    if (name === 'used_cpu_user' || name === 'used_cpu_sys') total += Number(value);
  }
  return total;
}

function noop() {
  return Promise.resolve(null);
}

async function throughput(connection, jobs, concurrency) {
  const name = `bullmq-throughput-c${concurrency}`;
  const queue = new Queue(name, { connection, defaultJobOptions: { removeOnComplete: true, removeOnFail: true } });
  await queue.waitUntilReady();

  const addStart = performance.now();
  for (let start = 0; start < jobs; start += ADD_CHUNK) {
    const batch = [];
    for (let n = start; n < Math.min(start + ADD_CHUNK, jobs); n++) batch.push({ name: 'noop', data: { n } });
    await queue.addBulk(batch);
  }
  const enqueueS = (performance.now() - addStart) / 1000;

  const worker = new Worker(name, noop, { connection, concurrency, autorun: false });
  let failed = 0;
  worker.on('failed', () => {
    failed += 1;
  });
  await worker.waitUntilReady();
  let completed = 0;
  let end = 0;
  const allDone = new Promise((resolve) => {
    worker.on('completed', () => {
      completed += 1;
      if (completed === jobs) {
        end = performance.now();
        resolve();
      }
    });
  });
  const cpu0 = cpuSeconds();
  const server0 = await serverCpu(queue);
  const start = performance.now();
  const running = worker.run();
  await allDone;
  const cpu = cpuSeconds() - cpu0;
  const server = (await serverCpu(queue)) - server0;
  await worker.close();
  await running;
  const counts = await queue.getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed');
  await queue.close();
  const processS = (end - start) / 1000;
  return {
    enqueue_s: enqueueS,
    enqueue_per_s: jobs / enqueueS,
    process_s: processS,
    jobs_per_s: jobs / processS,
    completed,
    failed,
    left: counts,
    client_cpu_us_per_job: (cpu / jobs) * 1e6,
    server_cpu_us_per_job: (server / jobs) * 1e6,
  };
}

async function latency(connection, count, concurrency) {
  const name = `bullmq-latency-c${concurrency}`;
  const queue = new Queue(name, { connection, defaultJobOptions: { removeOnComplete: true, removeOnFail: true } });
  const events = new QueueEvents(name, { connection });
  const worker = new Worker(name, noop, { connection, concurrency });
  await Promise.all([queue.waitUntilReady(), events.waitUntilReady(), worker.waitUntilReady()]);

  // A completion may be heard before add() has returned the job's id.
  const heard = new Map();
  const waiting = new Map();
  events.on('completed', ({ jobId }) => {
    const now = performance.now();
    const wake = waiting.get(jobId);
    if (wake) {
      waiting.delete(jobId);
      wake(now);
    } else {
      heard.set(jobId, now);
    }
  });
  await sleep(200); // the worker is waiting for jobs

  const samples = [];
  const calls = []; // the add() call alone
  for (let n = 0; n < WARM_UP + count; n++) {
    const start = performance.now();
    const job = await queue.add('noop', { n });
    const added = performance.now();
    let end = heard.get(job.id);
    if (end === undefined) end = await new Promise((resolve) => waiting.set(job.id, resolve));
    heard.delete(job.id);
    if (n >= WARM_UP) {
      samples.push(end - start);
      calls.push(added - start);
    }
    await sleep(GAP_MS);
  }
  await worker.close();
  await events.close();
  await queue.close();
  return {
    latency_jobs: samples.length,
    latency_p50_ms: percentile(samples, 50),
    latency_p90_ms: percentile(samples, 90),
    latency_p99_ms: percentile(samples, 99),
    latency_max_ms: Math.max(...samples),
    enqueue_call_p50_ms: percentile(calls, 50),
  };
}

async function main() {
  const [portText, jobsText, concurrencyText, latencyText = '300', ...rest] = process.argv.slice(2);
  if (concurrencyText === undefined || rest.length) usage('three or four arguments are needed');
  const port = positive(portText, 'PORT');
  const jobs = positive(jobsText, 'JOBS');
  const concurrency = positive(concurrencyText, 'CONCURRENCY');
  const latencyJobs = positive(latencyText, 'LATENCY_JOBS');
  const connection = { host: '127.0.0.1', port };
  const here = new URL('.', import.meta.url);
  const version = JSON.parse(readFileSync(new URL('node_modules/bullmq/package.json', here))).version;

  const metrics = {
    ...(await throughput(connection, jobs, concurrency)),
    ...(await latency(connection, latencyJobs, concurrency)),
  };
  const result = {
    side: 'bullmq',
    package: { name: 'bullmq', version, node: process.version },
    jobs,
    concurrency,
    metrics,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`${error?.stack ?? error}\n`);
    process.exit(1);
  },
);
