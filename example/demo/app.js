// The demo page: starts tasks, follows each over its own event stream, and
// the queue as a whole over another. Whatever comes from the server is shown
// as text (textContent), never parsed as HTML. The tab remembers the tasks
// it started (sessionStorage), so a reload follows them again.
'use strict';

const settings = document.body.dataset;
const MAX_ATTEMPTS = Number(settings.maxAttempts);
const BACKOFF = Number(settings.backoff);
// The worker's longest back-off (its backoff_cap).
const BACKOFF_CAP = 300;
// A browser opens at most six connections to one server (HTTP/1.1): leave
// room for the queue stream and for starting tasks.
const MAX_TASK_STREAMS = 4;
const LOG_LENGTH = 12;
const STORE_KEY = `torrelque-demo:${settings.queue}`;
const COUNTERS = [
  ['enqueued', 'enqueued'], ['dequeued', 'dequeued'], ['requeued', 'requeued'], ['delayed', 'delayed'],
  ['completed', 'completed'], ['rejected', 'rejected'], ['released', 'released'], ['swept_stale', 'swept stale'],
  ['swept_delayed', 'swept delayed'], ['returned', 'given back'], ['dead', 'dead letters'],
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
};

const $ = (id) => document.getElementById(id);
const tasks = new Map(); // id -> {id, name, duration, chance, el, status, source}
const waiting = []; // tasks waiting for a free stream
let openStreams = 0;
let started = 0;

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
  const task = { id, el, name, duration, chance, status: null, stream: null };
  el.dataset.id = id;
  el.querySelector('.task-name').textContent = task.name;
  el.querySelector('.task-name').title = task.name;
  el.querySelector('.task-id').textContent = id;
  tasks.set(id, task);
  // Its first transitions may have come before the answer to the POST.
  for (const entry of $('log').querySelectorAll('.event')) {
    if (entry.dataset.id === id) entry.textContent = `${task.name} ${EVENTS[entry.dataset.event] || entry.dataset.event}`;
  }
  $('tasks').prepend(el);
  $('no-tasks').hidden = true;
  show(task, { status: 'PENDING', dequeue_count: 0 });
  follow(task);
}

// What a reload needs to show the tab's tasks again; the states come anew
// from their streams.
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

// -- following tasks --------------------------------------------------------

function follow(task) {
  if (openStreams >= MAX_TASK_STREAMS) {
    waiting.push(task);
    return;
  }
  openStreams += 1;
  const stream = new EventSource(`/tasks/${encodeURIComponent(task.id)}/events`);
  task.stream = stream;
  stream.addEventListener('state', (event) => {
    const state = JSON.parse(event.data);
    show(task, state);
    if (state.final) unfollow(task);
  });
  stream.addEventListener('error', () => {
    // The browser reconnects by itself while the server is there; a stream
    // it gave up on (the task is unknown) is closed.
    if (stream.readyState === EventSource.CLOSED) {
      unfollow(task);
      if (!isFinal(task.status)) lost(task);
    }
  });
}

function unfollow(task) {
  if (!task.stream) return;
  task.stream.close();
  task.stream = null;
  openStreams -= 1;
  while (waiting.length && openStreams < MAX_TASK_STREAMS) {
    const next = waiting.shift();
    if (tasks.has(next.id)) follow(next);
  }
}

// A stream the server refused: the task is unknown to the queue (its result
// expired, or the demo restarted on a new Redis), or the server is down.
async function lost(task) {
  let known = true;
  try {
    known = (await fetch(`/tasks/${encodeURIComponent(task.id)}`)).status !== 404;
  } catch {
    // The server is not there.
  }
  setStatus(task, 'UNKNOWN');
  animate(task, 'UNKNOWN');
  setMeta(task, known
    ? 'Lost track of this task (is the demo server running?)'
    : 'The queue no longer knows this task: its result expired, or the demo was restarted.');
}

function isFinal(status) {
  return status === 'COMPLETED' || status === 'REJECTED';
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
  const changed = setStatus(task, status);
  // A task just taken still carries what its last attempt reported, until
  // its handler reports again (at once): its progress counts from the next state.
  const progress = status === 'WORKING' && !changed && typeof state.progress === 'number' ? state.progress : null;

  const params = `${task.duration} s, ${Math.round(task.chance * 100)}% chance of failure`;
  const attempts = state.dequeue_count;
  let detail;
  if (attempts === null) {
    // Known from the queue's transitions only, until the task's own stream opens.
    detail = { PENDING: 'waiting for a consumer', WORKING: 'being worked on', DELAYED: 'waiting to retry' }[status];
  } else if (status === 'PENDING') {
    detail = attempts ? `attempt ${attempts} failed; waiting for a consumer` : 'waiting for a consumer';
  } else if (status === 'WORKING') {
    detail = `attempt ${attempts} of ${MAX_ATTEMPTS}`;
    if (progress !== null) detail += `, ${Math.round(progress * 100)}% done`;
  } else if (status === 'DELAYED') {
    // The worker's back-off, less a random part of it.
    const delay = Math.min(BACKOFF_CAP, BACKOFF * 2 ** (attempts - 1));
    detail = `attempt ${attempts} failed; retrying within ${delay} s`;
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
    animate(task, status, attempts === null);
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

// A change of status: a task that starts working shows no progress until
// its first report, unless it is known from the queue's transitions only
// (it waits for a stream of its own), whose bar fills over its duration
// instead; any other status shows its own bar (style.css).
function animate(task, status, untracked) {
  const fill = task.el.querySelector('.progress-fill');
  fill.style.transition = 'none';
  if (status !== 'WORKING' || !untracked || !(task.duration > 0)) {
    fill.style.width = status === 'WORKING' ? '0%' : '';
    return;
  }
  fill.style.width = '0%';
  void fill.offsetWidth; // start the transition from there
  fill.style.transition = `width ${task.duration}s linear`;
  fill.style.width = '100%';
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

  // A task still waiting for a stream of its own shows its status from here.
  if (task && !task.stream && transition.status && !isFinal(task.status)) {
    if (!isFinal(transition.status)) show(task, { status: transition.status, dequeue_count: null });
  }
}

function watchQueue() {
  const connection = $('connection');
  const stream = new EventSource('/events');
  stream.addEventListener('open', () => {
    connection.textContent = 'Live';
    connection.className = 'connection live';
  });
  stream.addEventListener('error', () => {
    connection.textContent = 'Reconnecting…';
    connection.className = 'connection down';
  });
  stream.addEventListener('queue', (event) => showQueue(JSON.parse(event.data)));
  stream.addEventListener('transition', (event) => logTransition(JSON.parse(event.data)));
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
watchQueue();
