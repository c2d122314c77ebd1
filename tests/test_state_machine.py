"""The queue against a plain Python model of it, under random sequences of
enqueue, dequeue, requeue, release, touch, sweep, time moving forward, and
late calls of attempts that ended (went stale, or were requeued).

After every step, the raw Redis state must match the model: every live id in
exactly one of pending, working and delayed, the order of pending (FIFO),
the deadlines' order, the counters, and each task's status and counts.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pytest
import redis.asyncio
from helpers import raw
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from torrelque import Torrelque, TorrelqueLookupError, TorrelqueTaskId, TorrelqueTaskStatus, _codec


@dataclass
class Task:
    payload: int
    timeout: int
    where: str  # pending, working or delayed
    status: TorrelqueTaskStatus
    # Working: (deadline, call, id); delayed: (due, call, id). Model time is
    # whole seconds; real time within one example adds less than a second,
    # which only orders equal deadlines by call, and ties within a call by id.
    key: tuple[int, int, str] = (0, 0, '')
    dequeue_count: int = 0
    requeue_count: int = 0
    attempt: TorrelqueTaskId | None = None  # the id of the current attempt, while working
    ended: list[TorrelqueTaskId] = field(default_factory=list)  # ids of its attempts that ended


class QueueMachine(RuleBasedStateMachine):
    redis_url = ''
    # Task ids in order of enqueue, counted again for each example (the test
    # puts them in place of random ids): ties in Redis order by id, so random
    # ids would change which task the model picks from run to run, and
    # Hypothesis must see the same choices when it replays the same draws.
    ids = itertools.count()

    @classmethod
    def new_task_id(cls) -> bytes:
        return b'%016d' % next(cls.ids)

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.client = redis.asyncio.Redis.from_url(self.redis_url)
        self.queue = Torrelque(self.client, queue=f'model-{uuid.uuid4().hex[:12]}')
        self.tasks: dict[str, Task] = {}
        self.pending: list[str] = []
        self.gone: list[str] = []  # released ids
        self.clock = 0
        self.calls = 0
        self.counters: Counter[str] = Counter()
        QueueMachine.ids = itertools.count()

    def run(self, coroutine):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.run(self.client.delete(*[k for k in self.queue.keys.values()]))
        self.run(self.queue.aclose())
        self.run(self.client.aclose())
        self.loop.close()

    def _call(self) -> int:
        self.calls += 1
        return self.calls

    def _working(self) -> list[str]:
        return sorted((i for i, t in self.tasks.items() if t.where == 'working'), key=lambda i: self.tasks[i].key)

    def _delayed(self) -> list[str]:
        return sorted((i for i, t in self.tasks.items() if t.where == 'delayed'), key=lambda i: self.tasks[i].key)

    @initialize()
    def start(self) -> None:
        self.queue.clock_offset = 0

    @rule(payload=st.integers(0, 10**6), timeout=st.integers(1, 20), delay=st.none() | st.integers(0, 15))
    def enqueue(self, payload: int, timeout: int, delay: int | None) -> None:
        task_id = self.run(self.queue.enqueue(payload, task_timeout=timeout, delay=delay))
        call = self._call()
        self.counters['enqueued'] += 1
        if delay:
            self.counters['delayed'] += 1
            self.tasks[task_id] = Task(
                payload, timeout, 'delayed', TorrelqueTaskStatus.DELAYED, (self.clock + delay, call, task_id)
            )
        else:
            self.tasks[task_id] = Task(payload, timeout, 'pending', TorrelqueTaskStatus.PENDING)
            self.pending.append(task_id)

    @precondition(lambda self: self.pending)
    @rule(max_tasks=st.integers(1, 4))
    def dequeue(self, max_tasks: int) -> None:
        got = self.run(self.queue.dequeue(timeout=1, max_tasks=max_tasks))
        pairs = got if max_tasks > 1 else [got]
        expected_ids, self.pending = self.pending[:max_tasks], self.pending[max_tasks:]
        assert pairs == [(i, self.tasks[i].payload) for i in expected_ids]
        call = self._call()
        for attempt, _ in pairs:
            task = self.tasks[attempt]
            task.where, task.status = 'working', TorrelqueTaskStatus.WORKING
            task.key = (self.clock + task.timeout, call, attempt)
            task.dequeue_count += 1
            task.attempt = attempt
            assert attempt.dequeue_count == task.dequeue_count
        self.counters['dequeued'] += len(expected_ids)

    @precondition(lambda self: any(t.where == 'working' for t in self.tasks.values()))
    @rule(data=st.data(), delay=st.none() | st.integers(0, 10), timeout=st.none() | st.integers(1, 20))
    def requeue(self, data: st.DataObject, delay: int | None, timeout: int | None) -> None:
        task_id = data.draw(st.sampled_from(self._working()))
        task = self.tasks[task_id]
        assert self.run(self.queue.requeue(task.attempt, delay, task_timeout=timeout)) is True
        self._end_attempt(task)
        task.requeue_count += 1
        if timeout is not None:
            task.timeout = timeout
        self.counters['requeued'] += 1
        if delay:
            self.counters['delayed'] += 1
            task.where, task.status = 'delayed', TorrelqueTaskStatus.DELAYED
            task.key = (self.clock + delay, self._call(), task_id)
        else:
            task.where, task.status = 'pending', TorrelqueTaskStatus.PENDING
            self.pending.append(task_id)

    @precondition(lambda self: any(t.where == 'working' for t in self.tasks.values()))
    @rule(data=st.data(), keep=st.booleans(), rejected=st.booleans())
    def release(self, data: st.DataObject, keep: bool, rejected: bool) -> None:
        task_id = data.draw(st.sampled_from(self._working()))
        status = TorrelqueTaskStatus.REJECTED if rejected else TorrelqueTaskStatus.COMPLETED
        result = {'done': task_id} if keep else None
        assert self.run(self.queue.release(self.tasks[task_id].attempt, result=result, status=status)) is True
        del self.tasks[task_id]
        self.gone.append(task_id)
        self.counters['released'] += 1
        self.counters['rejected' if rejected else 'completed'] += 1
        if keep:
            state = self.run(self.queue.get_task_state(task_id))
            assert (state.status, state.result) == (status, result)
        else:
            with pytest.raises(TorrelqueLookupError):
                self.run(self.queue.get_task_state(task_id))

    @rule(data=st.data(), requeue=st.booleans())
    def misplaced_operation(self, data: st.DataObject, requeue: bool) -> None:
        """Release or requeue of an id that is not working changes nothing."""
        candidates = [i for i, t in self.tasks.items() if t.where != 'working'] + self.gone + ['unknown']
        task_id = data.draw(st.sampled_from(candidates))
        if requeue:
            assert self.run(self.queue.requeue(task_id)) is False
        else:
            assert self.run(self.queue.release(task_id, result=1)) is False

    @precondition(lambda self: any(t.where == 'working' for t in self.tasks.values()))
    @rule(data=st.data(), timeout=st.none() | st.integers(1, 20))
    def touch(self, data: st.DataObject, timeout: int | None) -> None:
        task = self.tasks[data.draw(st.sampled_from(self._working()))]
        assert self.run(self.queue.touch(task.attempt, timeout)) is True
        task.key = (self.clock + (task.timeout if timeout is None else timeout), self._call(), task.key[2])

    @precondition(lambda self: any(t.ended for t in self.tasks.values()))
    @rule(data=st.data(), operation=st.sampled_from(['release', 'requeue', 'touch']))
    def late_call(self, data: st.DataObject, operation: str) -> None:
        """An attempt that ended (stale, or requeued) moves nothing, even
        when its task is working again under another attempt."""
        task = data.draw(st.sampled_from([t for t in self.tasks.values() if t.ended]))
        late = data.draw(st.sampled_from(task.ended))
        assert self.run(getattr(self.queue, operation)(late)) is False

    def _end_attempt(self, task: Task) -> None:
        assert task.attempt is not None
        task.ended.append(task.attempt)
        task.attempt = None

    @rule()
    def sweep(self) -> None:
        stale = [i for i in self._working() if self.tasks[i].key[0] <= self.clock]
        due = [i for i in self._delayed() if self.tasks[i].key[0] <= self.clock]
        assert self.run(self.queue.sweep()) == (len(stale), len(due), 0)
        for task_id in stale:
            self._end_attempt(self.tasks[task_id])
        for task_id in stale + due:
            task = self.tasks[task_id]
            task.where, task.status = 'pending', TorrelqueTaskStatus.PENDING
            self.pending.append(task_id)
        self.counters['swept_stale'] += len(stale)
        self.counters['swept_delayed'] += len(due)

    @rule(seconds=st.integers(1, 15))
    def time_passes(self, seconds: int) -> None:
        self.clock += seconds
        self.queue.clock_offset = self.clock

    @invariant()
    def redis_matches_the_model(self) -> None:
        state = self.run(raw(self.client, self.queue))
        assert state.pending == self.pending
        assert state.dequeueing == []
        # The wake-up marker is there while ids are pending (and may stay a
        # while after, until a woken consumer finds nothing).
        markers = self.run(self.client.llen(self.queue.keys['ready']))
        assert markers == 1 if self.pending else markers <= 1
        assert state.working == self._working()
        assert state.delayed == self._delayed()
        assert state.tasks == set(self.tasks)
        for task_id in self.tasks:
            assert len(state.locations(task_id)) == 1
        assert state.stats == {name: n for name, n in self.counters.items() if n}
        stats = self.run(self.queue.get_queue_stats())
        assert (stats.tasks, stats.pending) == (len(self.tasks), len(self.pending))

    @invariant()
    def task_states_match(self) -> None:
        for task_id, task in self.tasks.items():
            state = self.run(self.queue.get_task_state(task_id))
            assert state.status is task.status
            assert (state.dequeue_count, state.requeue_count) == (task.dequeue_count, task.requeue_count)
            assert state.timeout == task.timeout


@pytest.mark.timeout(600)
def test_queue_behaves_like_its_model(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    QueueMachine.redis_url = redis_url
    monkeypatch.setattr(_codec, 'new_task_id', QueueMachine.new_task_id)
    run_state_machine_as_test(
        QueueMachine,
        settings=settings(
            max_examples=60,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
