// The demo page: starts tasks, and follows them and the queue as a whole
// over one stream of server-sent events (a browser opens at most six
// connections to a server, for all its tabs). Whatever comes from the server
// is shown as text (textContent), never parsed as HTML. The tab remembers the
// tasks it started (sessionStorage), so a reload follows them again.
'use strict';

const settings = document.body.dataset;
const MAX_ATTEMPTS = Number(settings.maxAttempts);
const BACKOFF = Number(settings.backoff);
// The worker's longest back-off (its backoff_cap).
const BACKOFF_CAP = 300;
const LOG_LENGTH = 12;
const STORE_KEY = `torrelque-demo:${settings.queue}`;
const COUNTERS = [
  ['enqueued', 'enqueued'], ['dequeued', 'dequeued'], ['requeued', 'requeued'], ['delayed', 'delayed'],
  ['completed', 'completed'], ['rejected', 'rejected'], ['released', 'released'], ['swept_stale', 'swept stale'],
  ['swept_delayed', 'swept delayed'], ['returned', 'given back'], ['dead', 'dead letters'],
  ['cancelled', 'cancelled'], ['aborted', 'aborted'],
];

// How the queue's transitions read in the log.
const EVENTS = {
  enqueued: 'enqueued',
  dequeued: 'taken',
  requeued: 'requeued',
  released: 'released',
  removed: 'released',
  stale: 'stale, back',
  due: 'due again',
  returned: 'given back',
  quarantined: 'quarantined',
  dead: 'buried',
  revived: 'revived',
  cancelling: 'being stopped',
  cancelled: 'cancelled',
  replaced: 'replaced',
};

const $ = (id) => document.getElementById(id);
const tasks = new Map(); // id -> {id, name, duration, chance, el, status}
let started = 0;
// The stream's id while it is open (tasks are added to it by id), and
// whether Redis answers the server.
let streamId = null;
let redisAnswers = true;

// -- starting tasks ---------------------------------------------------------

function showSliders() {
  $('duration-value').textContent = `${Number($('duration').value)} s`;
  $('failure-value').textContent = `${Number($('failure').value)}%`;
}

function showError(message) {
  const box = $('form-error');
  box.textContent = message;
  box.hidden = !message;
}

// How many tasks the form asks for, within what the field allows.
function taskCount() {
  const field = $('count');
  const wanted = Math.round(Number(field.value)) || 1;
  return Math.min(Number(field.max), Math.max(Number(field.min), wanted));
}

function showCount() {
  const count = taskCount();
  $('start').textContent = count > 1 ? `Start ${count} tasks` : 'Start task';
}

async function startTasks(event) {
  event.preventDefault();
  showError('');
  const button = $('start');
  const count = taskCount();
  const label = $('label').value.trim();
  const body = {
    duration: Number($('duration').value),
    failure_chance: Number($('failure').value) / 100,
    label,
  };
  button.disabled = true;
  try {
    for (let i = 1; i <= count; i++) {
      if (count > 1 && label) body.label = `${label} (${i})`;
      const response = await fetch('/tasks', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });
      const answer = await response.json().catch(() => ({}));
      if (!response.ok) {
        showError(`Could not start the task: ${answer.error || response.statusText}`);
        return;
      }
      addTask(answer.id, {
        name: body.label || `Task ${started + 1}`,
        duration: body.duration,
        chance: body.failure_chance,
      });
      saveTasks();
    }
  } catch (error) {
    showError(`Could not reach the demo server: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

function addTask(id, { name, duration, chance }) {
  started += 1;
  const el = $('task-template').content.firstElementChild.cloneNode(true);
  const task = { id, el, name, duration, chance, status: null };
  el.dataset.id = id;
  el.querySelector('.task-name').textContent = task.name;
  el.querySelector('.task-name').title = task.name;
  el.querySelector('.task-id').textContent = id;
  const cancel = el.querySelector('.cancel');
  cancel.title = `Cancel ${task.name}`;
  cancel.addEventListener('click', () => cancelTask(task));
  tasks.set(id, task);
  // Its first transitions may have come before the answer to the POST.
  for (const entry of $('log').querySelectorAll('.event')) {
    if (entry.dataset.id === id) entry.textContent = `${task.name} ${EVENTS[entry.dataset.event] || entry.dataset.event}`;
  }
  $('tasks').prepend(el);
  $('no-tasks').hidden = true;
  show(task, { status: 'PENDING', dequeue_count: 0 });
  follow([id]);
}

// What a reload needs to show the tab's tasks again; the states come anew
// from the stream.
function saveTasks() {
  const kept = [...tasks.values()].map(({ id, name, duration, chance }) => ({ id, name, duration, chance }));
  try {
    sessionStorage.setItem(STORE_KEY, JSON.stringify(kept));
  } catch {
    // Storage may be off or full: the page works without it.
  }
}

function restoreTasks() {
  let kept;
  try {
    kept = JSON.parse(sessionStorage.getItem(STORE_KEY) || '[]');
  } catch {
    kept = [];
  }
  if (!Array.isArray(kept)) return;
  for (const item of kept) {
    if (item && typeof item.id === 'string' && typeof item.name === 'string' && !tasks.has(item.id)) {
      addTask(item.id, { name: item.name, duration: Number(item.duration) || 0, chance: Number(item.chance) || 0 });
    }
  }
}

// A waiting task leaves the queue at once; a working one ends when its
// worker has stopped its handler. Either way the stream brings CANCELLED.
async function cancelTask(task) {
  const button = task.el.querySelector('.cancel');
  button.disabled = true;
  try {
    const response = await fetch(`/tasks/${encodeURIComponent(task.id)}`, { method: 'DELETE' });
    if (response.ok) {
      if (task.status === 'WORKING') setMeta(task, 'Cancelled: the worker is stopping it…');
      return;
    }
    const answer = await response.json().catch(() => ({}));
    setMeta(task, `Could not cancel it: ${answer.error || response.statusText}`);
  } catch (error) {
    setMeta(task, `Could not reach the demo server to cancel it: ${error.message}`);
  }
  button.disabled = false;
}

// -- following tasks --------------------------------------------------------

// Adds tasks to the tab's stream: it sends the state of each now, and after
// each change until a final one. Without a stream open, they are added when
// it opens.
async function follow(ids) {
  if (streamId === null || !ids.length) return;
  try {
    await fetch(`/events/${encodeURIComponent(streamId)}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ follow: ids }),
    });
  } catch {
    // The server is gone: the stream says so, and asks again when it is back.
  }
}

// Every task of the tab whose state may still change.
function followAll() {
  follow([...tasks.values()].filter((task) => unsettled(task)).map((task) => task.id));
}

function unsettled(task) {
  return !isFinal(task.status) && task.status !== 'UNKNOWN';
}

// The queue no longer knows the task: its result expired, or the demo
// restarted on another Redis.
function forgotten(task) {
  setStatus(task, 'UNKNOWN');
  task.el.classList.remove('offline');
  setMeta(task, 'The queue no longer knows this task: its result expired, or the demo was restarted.');
}

// Without the stream, or with Redis gone, no news comes: a card that still
// said WORKING would be a guess. It keeps its last known status (for
// "Clear finished", and to compare the next state with), and says that
// the state now is unknown, until the next state comes.
function showOffline(task, why) {
  task.el.classList.add('offline');
  const pill = task.el.querySelector('.status');
  pill.dataset.status = 'UNKNOWN';
  pill.textContent = 'UNKNOWN';
  setMeta(task, `${why} — state unknown (last seen ${task.status})`);
}

function isFinal(status) {
  return status === 'COMPLETED' || status === 'REJECTED' || status === 'CANCELLED';
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function setMeta(task, text) {
  task.el.querySelector('.task-meta').textContent = text;
}

// Puts `status` on the task's card; says whether it changed.
function setStatus(task, status) {
  const changed = status !== task.status;
  task.status = status;
  task.el.dataset.status = status;
  const pill = task.el.querySelector('.status');
  pill.dataset.status = status;
  pill.textContent = status;
  return changed;
}

function show(task, state) {
  const { el } = task;
  const status = state.status;
  el.classList.remove('offline');
  const changed = setStatus(task, status);
  // A task just taken still carries what its last attempt reported, until
  // its handler reports again (at once): its progress counts from the next state.
  const progress = status === 'WORKING' && !changed && typeof state.progress === 'number' ? state.progress : null;

  const params = `${task.duration} s, ${Math.round(task.chance * 100)}% chance of failure`;
  const attempts = state.dequeue_count;
  let detail;
  if (status === 'PENDING') {
    detail = attempts ? `attempt ${attempts} failed; waiting for a consumer` : 'waiting for a consumer';
  } else if (status === 'WORKING') {
    detail = `attempt ${attempts} of ${MAX_ATTEMPTS}`;
    if (progress !== null) detail += `, ${Math.round(progress * 100)}% done`;
  } else if (status === 'DELAYED') {
    // The worker's back-off, less a random part of it.
    const delay = Math.min(BACKOFF_CAP, BACKOFF * 2 ** (attempts - 1));
    detail = `attempt ${attempts} failed; retrying within ${delay} s`;
  } else if (status === 'CANCELLED') {
    detail = attempts ? `cancelled after ${plural(attempts, 'attempt')}` : 'cancelled before it started';
  } else {
    detail = `${status === 'COMPLETED' ? 'done' : 'gave up'} after ${plural(attempts, 'attempt')}`;
  }
  setMeta(task, `${params} · ${detail}`);

  if ('result' in state && state.result !== null && state.result !== undefined) {
    el.querySelector('.task-result').textContent = describe(state.result);
  }
  if (progress !== null) {
    showProgress(task, progress);
  } else if (changed) {
    // A task that starts working shows no progress until its first report;
    // any other status shows its own bar (style.css).
    const fill = el.querySelector('.progress-fill');
    fill.style.transition = 'none';
    fill.style.width = status === 'WORKING' ? '0%' : '';
  }
}

function describe(result) {
  if (result && typeof result === 'object') {
    if (typeof result.message === 'string') return result.message;
    if (typeof result.error === 'string') return result.error;
  }
  return JSON.stringify(result);
}

// The bar of a working task shows the progress its handler reports, moving
// smoothly from one report to the next (they come a few times a second).
function showProgress(task, progress) {
  const fill = task.el.querySelector('.progress-fill');
  fill.style.transition = 'width 0.3s linear';
  fill.style.width = `${100 * Math.min(Math.max(progress, 0), 1)}%`;
}

function clearFinished() {
  for (const [id, task] of tasks) {
    if (isFinal(task.status) || task.status === 'UNKNOWN') {
      task.el.remove();
      tasks.delete(id);
    }
  }
  $('no-tasks').hidden = tasks.size > 0;
  saveTasks();
}

// -- the queue panel --------------------------------------------------------

function showQueue(snapshot) {
  $('q-pending').textContent = snapshot.pending;
  $('q-working').textContent = snapshot.working;
  $('q-delayed').textContent = snapshot.delayed;
  const list = $('counters');
  const rows = COUNTERS.map(([key, name]) => {
    const row = document.createElement('div');
    const term = document.createElement('dt');
    const value = document.createElement('dd');
    term.textContent = name;
    value.textContent = snapshot.counters[key] ?? 0;
    row.append(term, value);
    return row;
  });
  list.replaceChildren(...rows);
}

function logTransition(transition) {
  const log = $('log');
  log.querySelector('.empty')?.remove();
  const item = document.createElement('li');
  const time = document.createElement('time');
  time.textContent = new Date(transition.time * 1000).toLocaleTimeString([], { hour12: false });
  const what = document.createElement('span');
  what.className = 'event';
  const task = tasks.get(transition.id);
  what.textContent = `${task ? task.name : transition.id} ${EVENTS[transition.event] || transition.event}`;
  what.title = `task ${transition.id}: ${transition.event}`;
  what.dataset.id = transition.id;
  what.dataset.event = transition.event;
  item.append(time, what);
  if (transition.status) {
    const to = document.createElement('span');
    to.className = 'to';
    to.dataset.status = transition.status;
    to.textContent = transition.status;
    item.append(to);
  }
  log.prepend(item);
  while (log.children.length > LOG_LENGTH) log.lastElementChild.remove();
}

function showRedis({ url, server, command }) {
  $('redis-url').textContent = url;
  $('redis-server').textContent = server;
  $('cli-command').textContent = command;
}

// -- the stream -------------------------------------------------------------

// Says whether the page is live; when it is not, neither are the cards.
function showConnection() {
  const live = streamId !== null && redisAnswers;
  const connection = $('connection');
  connection.textContent = live ? 'Live' : streamId === null ? 'Reconnecting…' : 'Redis does not answer';
  connection.className = `connection ${live ? 'live' : 'down'}`;
  document.body.classList.toggle('offline', !live);
  if (live) return;
  const why = streamId === null ? 'Connection lost' : 'Redis does not answer';
  for (const task of tasks.values()) {
    if (unsettled(task)) showOffline(task, why);
  }
}

function connect() {
  const stream = new EventSource('/events');
  const on = (name, handle) => stream.addEventListener(name, (event) => handle(JSON.parse(event.data)));
  // A new stream (the first, or after a lost one): it follows the tab's
  // unfinished tasks from their state now.
  on('hello', ({ stream: id, redis }) => {
    streamId = id;
    redisAnswers = true;
    showRedis(redis);
    showConnection();
    followAll();
  });
  on('redis', ({ reachable }) => {
    const back = reachable && !redisAnswers;
    redisAnswers = reachable;
    showConnection();
    if (back) followAll(); // the states now, missed ones included
  });
  on('state', (state) => {
    const task = tasks.get(state.id);
    if (task) show(task, state);
  });
  on('unknown', ({ id }) => {
    const task = tasks.get(id);
    if (task) forgotten(task);
  });
  on('queue', showQueue);
  on('transition', logTransition);
  stream.addEventListener('error', () => {
    // The browser tries again by itself (each second, as the server asks),
    // unless the answer was not a stream at all: then the page does.
    streamId = null;
    showConnection();
    if (stream.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
  });
}

// -- wiring -----------------------------------------------------------------

$('duration').addEventListener('input', showSliders);
$('failure').addEventListener('input', showSliders);
$('start-form').addEventListener('submit', startTasks);
$('clear').addEventListener('click', clearFinished);
$('count').addEventListener('input', showCount);
$('count').addEventListener('change', () => {
  $('count').value = taskCount(); // what will be started, once the field is left
  showCount();
});
showSliders();
restoreTasks();
connect();
