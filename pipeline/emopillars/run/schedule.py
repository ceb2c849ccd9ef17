"""The schedule: many story shards in flight, their requests merged into one stream.

A story shard's work is a task: a generator that yields a `Need` (requests whose answers it
waits for) and is sent those answers, until it is done. The scheduler keeps the engine fed:
it brings in the next story shards while fewer than `max_in_flight` requests are waiting or
being answered, submits the oldest shards' requests first (so shards finish, and their
markers are written, roughly in order, and a story's requests stay together for the prefix
cache), and hands each answer to every task that waits for it. So the next shards' actors and
utterances are answered while this shard's labels and contexts are, and a shard's retries
join the stream instead of forming a call of their own.

What the schedule never changes: each task computes its shard exactly as it would alone (its
answers are a function of its requests' keys), so the data is the same whatever the window
or the order in which answers arrive. Answers are journaled, through the need's `journal`,
as they arrive; a key in flight is never submitted again, whichever task asks.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from emopillars.engines import Engine, Request, Result
from emopillars.engines.base import StreamingEngine


@dataclass(eq=False)
class Need:
    """Requests a task waits for (distinct keys), and where their answers are kept."""

    requests: list[Request]
    journal: Callable[[list[tuple[str, Result]]], None]
    # Set by the scheduler before the answers are sent: how many were answered by a request
    # another task had already submitted (not paid again), and this need's share of the
    # time spent waiting on the engine.
    shared: int = 0
    engine_seconds: float = 0.0


Task = Generator[Need, dict[str, Result], Any]


class Stream:
    """What the scheduler talks to: requests in, (key, result) pairs out."""

    def submit(self, requests: Sequence[Request]) -> None:
        raise NotImplementedError

    def completed(self) -> list[tuple[str, Result]]:
        raise NotImplementedError


class BatchStream(Stream):
    """A generate() engine as a stream: each completed() answers the oldest submitted requests
    in one call of at most `batch_size` (all of them when None), journaled before the next."""

    def __init__(self, engine: Engine, batch_size: int | None) -> None:
        self.engine = engine
        self.batch_size = batch_size
        self._pending: list[Request] = []

    def submit(self, requests: Sequence[Request]) -> None:
        self._pending.extend(requests)

    def completed(self) -> list[tuple[str, Result]]:
        size = self.batch_size or len(self._pending)
        batch, self._pending = self._pending[:size], self._pending[size:]
        if not batch:
            return []
        results = self.engine.generate(batch)
        if len(results) != len(batch):
            raise RuntimeError(f"engine returned {len(results)} results for {len(batch)} requests")
        return [(request.key, result) for request, result in zip(batch, results, strict=True)]


class EngineStream(Stream):
    """An engine that streams itself (submit/completed, see engines/base.py)."""

    def __init__(self, engine: StreamingEngine) -> None:
        self.engine = engine

    def submit(self, requests: Sequence[Request]) -> None:
        self.engine.submit(requests)

    def completed(self) -> list[tuple[str, Result]]:
        return self.engine.completed()


def stream_of(engine: Engine, batch_size: int | None) -> Stream:
    """The engine's own stream when it has one, else its generate() in batches."""
    if callable(getattr(engine, "submit", None)) and callable(getattr(engine, "completed", None)):
        return EngineStream(engine)  # type: ignore[arg-type]
    return BatchStream(engine, batch_size)


@dataclass(eq=False)
class _Active:
    task: Task
    order: int  # admission order: older tasks' requests go first
    need: Need | None = None
    missing: set[str] = field(default_factory=set)
    answers: dict[str, Result] = field(default_factory=dict)


class Scheduler:
    """Runs tasks, at most `window` at once, keeping `max_in_flight` requests at the engine."""

    def __init__(self, stream: Callable[[], Stream], max_in_flight: int, window: int) -> None:
        # The stream is made on the first request: a run with nothing left to compute never
        # loads the engine.
        self._make_stream = stream
        self._stream: Stream | None = None
        self.max_in_flight = max(1, max_in_flight)
        self.window = max(1, window)

    def run(self, tasks: Iterable[Task]) -> None:
        source: Iterator[Task] = iter(tasks)
        active: list[_Active] = []
        waiting: dict[str, list[_Active]] = {}  # key -> tasks waiting for it, submitter first
        ready: list[tuple[int, int, Request]] = []  # heap: (task order, sequence, request)
        in_flight = 0
        admitted = sequence = 0
        exhausted = False
        try:
            while True:
                # Bring in story shards while the engine would otherwise run short.
                while not exhausted and len(active) < self.window:
                    if in_flight + len(ready) >= self.max_in_flight:
                        break
                    task = next(source, None)
                    if task is None:
                        exhausted = True
                        break
                    entry = _Active(task, admitted)
                    admitted += 1
                    active.append(entry)
                    for request in self._advance(entry, None, active, waiting):
                        heapq.heappush(ready, (entry.order, sequence, request))
                        sequence += 1
                if ready and in_flight < self.max_in_flight:
                    count = min(len(ready), self.max_in_flight - in_flight)
                    batch = [heapq.heappop(ready)[2] for _ in range(count)]
                    self.stream.submit(batch)
                    in_flight += len(batch)
                if not in_flight:
                    if active:
                        raise RuntimeError("scheduler: tasks wait for answers nothing will send")
                    if exhausted:
                        return
                    continue
                began = time.perf_counter()
                done = self.stream.completed()
                elapsed = time.perf_counter() - began
                if not done:
                    raise RuntimeError("the engine answered nothing while requests were in flight")
                in_flight -= len(done)
                for order, fresh in self._deliver(done, elapsed, active, waiting):
                    heapq.heappush(ready, (order, sequence, fresh))
                    sequence += 1
        finally:
            for entry in active:
                entry.task.close()  # a failed run: each task's `with` blocks exit (leases)

    @property
    def stream(self) -> Stream:
        if self._stream is None:
            self._stream = self._make_stream()
        return self._stream

    def _advance(
        self,
        entry: _Active,
        answers: dict[str, Result] | None,
        active: list[_Active],
        waiting: dict[str, list[_Active]],
    ) -> list[Request]:
        """Run a task to its next need (or its end); the requests newly to submit."""
        try:
            need = entry.task.send(answers) if answers is not None else next(entry.task)
        except StopIteration:
            active.remove(entry)
            return []
        entry.need, entry.answers = need, {}
        entry.missing = {request.key for request in need.requests}
        if not entry.missing:
            raise RuntimeError("a task asked for no requests")
        fresh = []
        for request in need.requests:
            others = waiting.get(request.key)
            if others is None:
                waiting[request.key] = [entry]
                fresh.append(request)
            else:  # in flight for another task: answered once, for both
                others.append(entry)
                need.shared += 1
        return fresh

    def _deliver(
        self,
        done: list[tuple[str, Result]],
        elapsed: float,
        active: list[_Active],
        waiting: dict[str, list[_Active]],
    ) -> list[tuple[int, Request]]:
        share = elapsed / len(done)
        arrived: dict[int, tuple[_Active, list[tuple[str, Result]]]] = {}
        for key, result in done:
            for position, entry in enumerate(waiting.pop(key)):
                entry.answers[key] = result
                entry.missing.discard(key)
                arrived.setdefault(id(entry), (entry, []))[1].append((key, result))
                if position == 0 and entry.need is not None:
                    entry.need.engine_seconds += share
        fresh: list[tuple[int, Request]] = []
        # Journal first (one write per task and arrival), then let finished needs go on.
        for entry, items in arrived.values():
            assert entry.need is not None
            entry.need.journal(items)
        for entry, _ in sorted(arrived.values(), key=lambda pair: pair[0].order):
            if not entry.missing:
                requests = self._advance(entry, entry.answers, active, waiting)
                fresh.extend((entry.order, request) for request in requests)
        return fresh
