"""Runs the method: every story shard through every stage, resumably.

For each (stage, shard) the runner renders the requests, fingerprints them, and skips the
shard when its marker carries the same fingerprint. Otherwise it asks the engine (answers
journaled as they arrive), retries unusable answers a bounded number of times, writes the
shard and its rejects, and only then writes the marker.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline import records
from pipeline.config import EXECUTION_FIELDS, RunConfig
from pipeline.decoding import decode
from pipeline.engines import Engine, EngineSpec, Message, Request, Result, Sampling, engine_spec
from pipeline.hashing import file_hash, stable_hash
from pipeline.journal import Journal
from pipeline.manifest import Manifest, ShardMarker
from pipeline.run_folder import (
    STORIES_DIR,
    journal_file,
    prepare_stories,
    rejects_file,
    shard_file,
)
from pipeline.stages import STAGES, Stage
from pipeline.stages.base import Reject, Row, StageContext, Step
from pipeline.storage import read_rows, write_json, write_parquet
from pipeline.telemetry import PrefixShare
from pipeline.workers import shards_of_worker

log = logging.getLogger("emopillars")
events = logging.getLogger("emopillars.events")
ProgressHook = Callable[[str, int, "ShardMarker | None"], None]


@dataclass
class _ShardWork:
    """Bookkeeping of one (stage, shard) execution."""

    stage: Stage
    shard: int
    journal: Journal
    rejects: list[Row] = field(default_factory=list)
    requests_sent: int = 0
    requests_replayed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    engine_seconds: float = 0.0
    prefix: PrefixShare = field(default_factory=lambda: PrefixShare())

    def reject(
        self,
        step: Step,
        input_id: str,
        scope: str,
        reason: str,
        detail: str,
        attempts: int,
        request: str,
        raw: str,
    ) -> None:
        self.rejects.append(
            {
                "stage": self.stage.name,
                "shard": self.shard,
                "call": step.call,
                "input_id": input_id,
                "scope": scope,
                "reason": reason,
                "detail": detail[:2000],
                "attempts": attempts,
                "request": request,
                "raw_answer": raw[:20000],
            }
        )


class _LazyEngine:
    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self._engine: Engine | None = None

    def get(self) -> Engine:
        if self._engine is None:
            log.info("loading engine %s (%s)", self.spec.info.name, self.spec.info.model)
            self._engine = self.spec.load()
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


class Runner:
    def __init__(
        self,
        config: RunConfig,
        spec: EngineSpec | None = None,
        on_shard: ProgressHook | None = None,
    ) -> None:
        self.config = config
        self.on_shard = on_shard
        self.run_dir = config.output_dir
        self.ctx = StageContext.from_config(config)
        self.spec = spec or engine_spec(config)
        self.engine = _LazyEngine(self.spec)
        self.manifest = Manifest(self.run_dir)
        # What this invocation did, as opposed to the totals in the manifest.
        self.computed: list[ShardMarker] = []
        self._schemas: dict[str, dict[str, Any]] = {}
        self.skipped = 0

    # -- sampling and requests -------------------------------------------------------------
    def _sampling(self, step: Step, attempt: int) -> Sampling:
        base = Sampling(
            max_tokens=step.max_tokens(self.ctx),
            temperature=self.config.temperature,
            repetition_penalty=self.spec.repetition_penalty,
            seed=self.config.seed,
        )
        if attempt == 0:
            return base
        # Greedy decoding would repeat the same answer: a retry samples, with its own seed.
        return replace(
            base, temperature=self.config.retry_temperature, seed=self.config.seed + attempt
        )

    def _schema(self, step: Step) -> dict[str, Any]:
        # A stage's schema depends on the config only; pydantic takes ~1 ms to build one.
        if step.call not in self._schemas:
            self._schemas[step.call] = step.schema(self.ctx)
        return self._schemas[step.call]

    def _request(self, step: Step, row: Row, attempt: int) -> Request:
        return Request(
            messages=(Message("user", step.prompt(row, self.ctx)),),
            schema=self._schema(step),
            sampling=self._sampling(step, attempt),
            engine_fingerprint=self.spec.info.fingerprint,
        )

    def fingerprint(self, stage: Stage, rows: list[Row], input_sha: str) -> str:
        first, *later = stage.steps
        return stable_hash(
            {
                "stage": stage.name,
                "input": input_sha,
                "requests": [self._request(first, row, 0).key for row in rows],
                "steps": [
                    {
                        "call": step.call,
                        "template": self.ctx.template(step.call).sha256,
                        "schema": self._schema(step),
                        "sampling": self._sampling(step, 0).__dict__,
                        "parse": step.parse_params(self.ctx),
                    }
                    for step in (first, *later)
                ],
                "retry": [self.config.max_attempts, self.config.retry_temperature],
                "engine": self.spec.info.fingerprint,
            },
            length=32,
        )

    # -- the engine, through the journal ---------------------------------------------------
    def _answers(self, work: _ShardWork, requests: Sequence[Request]) -> list[Result]:
        missing: dict[str, Request] = {}
        for request in requests:
            if request.key in work.journal.answers:
                work.requests_replayed += 1
            else:
                missing.setdefault(request.key, request)
        pending = list(missing.values())
        for request in pending:
            work.prefix.add(request.messages[-1].content)
        size = self.spec.batch_size or max(1, len(pending))
        for start in range(0, len(pending), size):
            batch = pending[start : start + size]
            began = time.perf_counter()
            results = self.engine.get().generate(batch)
            work.engine_seconds += time.perf_counter() - began
            if len(results) != len(batch):
                raise RuntimeError(
                    f"engine returned {len(results)} results for {len(batch)} requests"
                )
            work.journal.record([(r.key, result) for r, result in zip(batch, results, strict=True)])
            work.requests_sent += len(batch)
        answered = [work.journal.answers[request.key] for request in requests]
        for result in answered:
            work.prompt_tokens += result.prompt_tokens
            work.completion_tokens += result.completion_tokens
        return answered

    # -- one step of a stage over a shard --------------------------------------------------
    def _run_step(self, work: _ShardWork, step: Step, rows: list[Row]) -> list[Row]:
        key = work.stage.input_key
        outputs: dict[int, list[Row]] = {}
        pending = list(enumerate(rows))
        for attempt in range(self.config.max_attempts):
            requests = [self._request(step, row, attempt) for _, row in pending]
            results = self._answers(work, requests)
            retry: list[tuple[int, Row]] = []
            last_try = attempt + 1 == self.config.max_attempts
            for (index, row), request, result in zip(pending, requests, results, strict=True):
                try:
                    parsed = step.parse(row, decode(step, result), self.ctx)
                    if not parsed.rows:
                        raise Reject("no_output", retryable=False)
                except Reject as reject:
                    if reject.retryable and not last_try:
                        retry.append((index, row))
                    else:
                        work.reject(
                            step,
                            row[key],
                            "request",
                            reject.reason,
                            reject.detail,
                            attempt + 1,
                            request.key,
                            result.text,
                        )
                    continue
                for reason, detail in parsed.item_rejects:
                    work.reject(
                        step, row[key], "item", reason, detail, attempt + 1, request.key, ""
                    )
                column = f"{step.call}_request"
                outputs[index] = [{**row, **new, column: request.key} for new in parsed.rows]
            pending = retry
            if not pending:
                break
        return [row for index in sorted(outputs) for row in outputs[index]]

    # -- one stage over a shard ------------------------------------------------------------
    def run_stage_shard(self, stage: Stage, shard: int, input_path: Path) -> ShardMarker | None:
        rows = read_rows(input_path)
        fingerprint = self.fingerprint(stage, rows, file_hash(input_path))
        journal_path = journal_file(self.run_dir, stage.name, shard)
        if self.manifest.is_current(stage.name, shard, fingerprint):
            # A kill between the marker write and the journal discard leaves a finished
            # shard's journal behind: the marker is the truth, the journal is spent.
            journal_path.unlink(missing_ok=True)
            self.skipped += 1
            if self.on_shard is not None:
                self.on_shard(stage.name, shard, None)
            return None
        began = time.perf_counter()
        work = _ShardWork(stage=stage, shard=shard, journal=Journal(journal_path))
        current = rows
        for step in stage.steps:
            current = self._run_step(work, step, current) if current else []
        output = shard_file(self.run_dir, stage.name, shard)
        write_parquet(output, current, stage.output_schema)
        write_parquet(rejects_file(self.run_dir, stage.name, shard), work.rejects, records.REJECT)
        accepted = len({row[stage.input_key] for row in current})
        marker = ShardMarker(
            stage=stage.name,
            shard=shard,
            fingerprint=fingerprint,
            output=str(output.relative_to(self.run_dir)),
            output_sha256=file_hash(output),
            rejects=str(rejects_file(self.run_dir, stage.name, shard).relative_to(self.run_dir)),
            inputs=len(rows),
            accepted=accepted,
            rejected=len(rows) - accepted,
            outputs=len(current),
            item_rejects=sum(1 for r in work.rejects if r["scope"] == "item"),
            reject_reasons=dict(Counter(r["reason"] for r in work.rejects)),
            requests_sent=work.requests_sent,
            requests_replayed=work.requests_replayed,
            prompt_chars=work.prefix.total,
            prompt_chars_shared=work.prefix.shared,
            prompt_tokens=work.prompt_tokens,
            completion_tokens=work.completion_tokens,
            seconds=round(time.perf_counter() - began, 3),
            engine_seconds=round(work.engine_seconds, 3),
            engine=f"{self.spec.info.name}:{self.spec.info.model}",
        )
        self.manifest.write(marker)
        work.journal.discard()
        self.computed.append(marker)
        # One JSON line per finished shard, for cluster log collectors.
        events.info(json.dumps({"event": "shard_done", **marker.model_dump()}, sort_keys=True))
        if self.on_shard is not None:
            self.on_shard(stage.name, shard, marker)
        return marker

    def prepare(self) -> dict[str, Any]:
        """Settle the plan and the story shards, and record the run's identity in run.json."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        identity = {
            # Without the execution fields: every worker of a run writes the same run.json.
            "config": self.config.model_dump(mode="json", exclude=set(EXECUTION_FIELDS)),
            "engine": self.spec.info.__dict__,
        }
        plan = prepare_stories(self.config, self.run_dir, stable_hash(identity))
        write_json(self.run_dir / "run.json", identity)
        return plan

    def run_shards(self, shards: Iterable[int]) -> None:
        """Every stage of each story shard, one story shard after the other."""
        try:
            for shard in shards:
                upstream = STORIES_DIR
                for stage in STAGES:
                    self.run_stage_shard(stage, shard, shard_file(self.run_dir, upstream, shard))
                    upstream = stage.name
        finally:
            self.engine.close()

    def run(self) -> dict[str, Any]:
        """Prepare, then run this worker's story shards: all of them for a single worker."""
        plan = self.prepare()
        config = self.config
        self.run_shards(shards_of_worker(config.worker_index, config.num_workers, plan["shards"]))
        return plan
