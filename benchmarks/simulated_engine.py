"""A simulated continuous-batching GPU engine: real answers, virtual time.

Answers come from the fake engine (schema-valid and deterministic), except that the actors
call names up to `max_actors` characters of the story, as a real teacher does (the fake
engine names a random few). Time follows a stated model of a vLLM-like server, on a virtual
clock (nothing sleeps):

- S slots (256): at most S sequences decode at once; later requests wait in a FIFO queue.
- Time advances in decode steps. A step with n active sequences takes 12 ms + 0.05 ms × n
  and gives each of them one token.
- A request joins at the first step boundary after it arrives at which a slot is free. The
  step it joins in also pays its prefill: 1/30,000 s per prompt token that is not a prefix
  shared with the prompt submitted just before it (a prefix cache); tokens ≈ characters / 4.
- A request of c completion tokens is active for c steps and finishes at the end of the
  c-th. Lengths are drawn per request (seeded by its key) around a mean per stage: actors
  160, utterances 230, labels 35, contexts (both of its calls) 18, rewrites 18 tokens (a
  fake-engine run's means; a real 7B teacher writes longer answers), or a run folder's
  per-stage means. A request's stage is known by its JSON schema. Shapes:
  `fixed` (the mean), `uniform` (0.5-1.5 × the mean, the default) or `exponential` (the
  mean × Exp(1), skewed); always at least 1 and at most the request's max_tokens.
- Not modelled: a chunked-prefill token budget, KV-cache memory beyond the slots, preemption.

The ideal engine is always full: a token costs step(S)/S seconds (24.8 ms / 256, about
10,300 tokens/s), so the same work takes tokens × step(S)/S plus the same prefill time.
Occupancy = that ideal time ÷ the simulated time.

Three ways in, one model:
- `simulate(model, jobs)`: the model as a function of the arrival timeline (each job's
  arrival time, completion tokens and prefill tokens) → each job's finish time. Any schedule
  whose arrival times are known can be measured with it.
- `ContinuousBatcher`: the same model step by step: `submit` at the current virtual time,
  `advance` to a time, `next_finished` to run until some request finishes. A scheduler that
  streams requests (many shards in flight, next stages submitted as answers come back)
  drives it directly: submit what is ready, take what finishes, submit again.
- `SimulatedEngine`: the project's Engine interface. The requests of one generate() call
  arrive together at the engine's clock; the call returns when its last request finishes
  and the clock stands there. The runner's own time between calls is not on the clock (its
  cost is counted by benchmarks/runner_throughput.py). Calls are taken one at a time: calls
  made from several threads at once do not overlap on the clock.
"""

from __future__ import annotations

import heapq
import json
import math
import random
import re
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from emopillars.config import RunConfig
from emopillars.engines import Request, Result
from emopillars.engines.fake import FakeEngine
from emopillars.run.telemetry import common_prefix_length
from emopillars.stages import STAGES, stage_context

Shape = Literal["fixed", "uniform", "exponential"]
# Mean completion tokens per stage, measured on a fake-engine run (see the docstring).
DEFAULT_MEANS: dict[str, float] = {
    "actors": 160, "utterances": 230, "labels": 35, "contexts": 18, "rewrites": 18,
}  # fmt: skip


@dataclass(frozen=True)
class GpuModel:
    slots: int = 256
    step_base_s: float = 0.012
    step_per_sequence_s: float = 0.00005
    prefill_per_token_s: float = 1 / 30_000

    def step_s(self, active: int) -> float:
        return self.step_base_s + self.step_per_sequence_s * active

    def ideal_s(self, completion_tokens: float, prefill_tokens: float) -> float:
        """Time of an always-full engine for this much work."""
        per_token = self.step_s(self.slots) / self.slots
        return completion_tokens * per_token + prefill_tokens * self.prefill_per_token_s


@dataclass(frozen=True)
class Job:
    arrival_s: float
    completion_tokens: int
    prefill_tokens: int = 0


class ContinuousBatcher:
    """The model, step by step, on a virtual clock (`now`, seconds)."""

    def __init__(self, model: GpuModel) -> None:
        self.model = model
        self.now = 0.0
        self.busy_s = 0.0  # time with at least one sequence decoding
        self.finished: dict[int, float] = {}  # request id -> finish time
        self._steps = 0
        self._queue: deque[tuple[int, int, int]] = deque()  # (id, tokens, prefill tokens)
        self._active: list[tuple[int, int]] = []  # heap of (step it finishes at, id)
        self._next_id = 0

    @property
    def idle(self) -> bool:
        return not self._queue and not self._active

    def submit(self, completion_tokens: int, prefill_tokens: int = 0) -> int:
        """A request arriving now; returns its id."""
        if completion_tokens < 1:
            raise ValueError("a request makes at least one token")
        request_id = self._next_id
        self._next_id += 1
        self._queue.append((request_id, completion_tokens, prefill_tokens))
        return request_id

    def _run(self, until: float) -> list[int]:
        """Admit what the free slots take, run steps up to the next finish (or to the first
        step boundary at or after `until`), and return the ids that finished."""
        model = self.model
        prefill = 0
        while self._queue and len(self._active) < model.slots:
            request_id, tokens, prompt = self._queue.popleft()
            heapq.heappush(self._active, (self._steps + tokens, request_id))
            prefill += prompt
        step = model.step_s(len(self._active))
        if prefill:  # the joining step pays the prefill of those who join
            steps, duration = 1, step + prefill * model.prefill_per_token_s
        else:
            steps = self._active[0][0] - self._steps
            if until < math.inf:
                steps = min(steps, max(1, math.ceil((until - self.now) / step)))
            duration = steps * step
        self.now += duration
        self.busy_s += duration
        self._steps += steps
        done = []
        while self._active and self._active[0][0] <= self._steps:
            _, request_id = heapq.heappop(self._active)
            self.finished[request_id] = self.now
            done.append(request_id)
        return done

    def advance(self, until: float) -> None:
        """Run to the first step boundary at or after `until`; an idle engine waits."""
        while not self.idle and self.now < until:
            self._run(until)
        if self.idle and self.now < until:
            self.now = until

    def next_finished(self) -> list[int]:
        """Run until some requests finish; their ids ([] when nothing is left to run)."""
        while not self.idle:
            done = self._run(math.inf)
            if done:
                return done
        return []

    def run_until_done(self, request_ids: Sequence[int]) -> None:
        while any(request_id not in self.finished for request_id in request_ids):
            self._run(math.inf)


def simulate(model: GpuModel, jobs: Sequence[Job]) -> list[float]:
    """Each job's finish time, for jobs arriving at their `arrival_s`."""
    batcher = ContinuousBatcher(model)
    order = sorted(range(len(jobs)), key=lambda i: jobs[i].arrival_s)
    ids: dict[int, int] = {}
    for index in order:
        job = jobs[index]
        batcher.advance(job.arrival_s)
        ids[index] = batcher.submit(job.completion_tokens, job.prefill_tokens)
    batcher.run_until_done(list(ids.values()))
    return [batcher.finished[ids[i]] for i in range(len(jobs))]


@dataclass(frozen=True)
class Lengths:
    """Completion lengths per stage: means and a shape (see the module docstring)."""

    means: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MEANS))
    shape: Shape = "uniform"

    def draw(self, stage: str, key: str, max_tokens: int) -> int:
        mean = self.means[stage]
        rng = random.Random(f"{key}/{self.shape}")
        if self.shape == "fixed":
            tokens = mean
        elif self.shape == "uniform":
            tokens = mean * rng.uniform(0.5, 1.5)
        else:
            tokens = rng.expovariate(1.0 / mean)
        return max(1, min(max_tokens, round(tokens)))

    @classmethod
    def from_run(cls, run_dir: Path, shape: Shape = "uniform") -> Lengths:
        """Per-stage means of a run folder's markers: completion tokens per request."""
        from emopillars.run.status import stage_totals

        totals = stage_totals(run_dir)
        means = dict(DEFAULT_MEANS)
        for stage, total in totals.items():
            requests = total.requests_sent + total.requests_replayed
            if requests and total.completion_tokens:
                means[stage] = total.completion_tokens / requests
        return cls(means, shape)


@dataclass
class Work:
    """What one stage's requests asked of the engine."""

    requests: int = 0
    completion_tokens: int = 0
    prefill_tokens: int = 0


class SimulatedEngine:
    """The Engine interface over the model; see the module docstring."""

    def __init__(
        self, config: RunConfig, model: GpuModel | None = None, lengths: Lengths | None = None
    ) -> None:
        self.model = model or GpuModel()
        self.lengths = lengths or Lengths()
        self.max_actors = config.max_actors
        self.batcher = ContinuousBatcher(self.model)
        self.work: dict[str, Work] = {stage.name: Work() for stage in STAGES}
        self.calls = 0  # generate() calls
        self._fake = FakeEngine()
        self._stage_of_schema = _stages_by_schema(config)
        self._seen: dict[int, tuple[dict[str, Any], str]] = {}
        self._previous_prompt = ""
        self._lock = threading.Lock()

    @property
    def clock_s(self) -> float:
        return self.batcher.now

    @property
    def ideal_s(self) -> float:
        tokens = sum(work.completion_tokens for work in self.work.values())
        prefill = sum(work.prefill_tokens for work in self.work.values())
        return self.model.ideal_s(tokens, prefill)

    @property
    def occupancy(self) -> float:
        return self.ideal_s / self.clock_s if self.clock_s else 0.0

    def stage_of(self, request: Request) -> str:
        seen = self._seen.get(id(request.schema))
        if seen is not None and seen[0] is request.schema:
            return seen[1]
        stage = self._stage_of_schema[json.dumps(request.schema, sort_keys=True)]
        self._seen[id(request.schema)] = (request.schema, stage)
        return stage

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        with self._lock:
            self.calls += 1
            stages = [self.stage_of(request) for request in requests]
            results = self._answers(requests, stages)
            ids, timed = [], []
            for request, stage, result in zip(requests, stages, results, strict=True):
                prompt = "".join(message.content for message in request.messages)
                shared = common_prefix_length(self._previous_prompt, prompt)
                self._previous_prompt = prompt
                tokens = self.lengths.draw(stage, request.key, request.sampling.max_tokens)
                prefill = math.ceil((len(prompt) - shared) / 4)
                ids.append(self.batcher.submit(tokens, prefill))
                work = self.work[stage]
                work.requests += 1
                work.completion_tokens += tokens
                work.prefill_tokens += prefill
                # The tokens the model was charged for, so the run's markers show them.
                timed.append(
                    replace(
                        result,
                        prompt_tokens=math.ceil(len(prompt) / 4),
                        completion_tokens=tokens,
                    )
                )
            self.batcher.run_until_done(ids)
            return timed

    def _answers(self, requests: Sequence[Request], stages: Sequence[str]) -> list[Result]:
        results = self._fake.generate(requests)
        for index, (request, stage) in enumerate(zip(requests, stages, strict=True)):
            if stage == "actors":
                results[index] = self._actors_answer(request)
        return results

    def _actors_answer(self, request: Request) -> Result:
        prompt = request.messages[-1].content
        names = list(dict.fromkeys(re.findall(r"(?<=[a-z,;] )[A-Z][a-z]{2,}\b", prompt)))
        characters = [
            {"name": name, "description": f"{name}, one of the people of the story"}
            for name in names[: self.max_actors]
        ]
        text = json.dumps({"characters": characters})
        return Result(text, "stop", len(prompt) // 4, len(text) // 4 + 1)

    def close(self) -> None:
        pass


def _stages_by_schema(config: RunConfig) -> dict[str, str]:
    """Which stage a request belongs to, by its JSON schema (one fixed schema per call; the
    two calls of the contexts stage share one)."""
    ctx = stage_context(config)
    stages: dict[str, str] = {}
    for stage in STAGES:
        for step in stage.steps:
            key = json.dumps(step.schema(ctx), sort_keys=True)
            if stages.setdefault(key, stage.name) != stage.name:
                raise ValueError(f"stages {stages[key]} and {stage.name} share a schema")
    return stages
