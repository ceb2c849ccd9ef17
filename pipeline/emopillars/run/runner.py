"""Runs the method: every story shard through every stage, resumably.

For each (stage, shard) the runner renders the requests, fingerprints them (what is sent,
and how answers are parsed), and skips the shard when its marker carries the same fingerprint.
Otherwise it answers each request from the shard's kept answers or its journal when it can,
else from the engine (journaled as they arrive); retries unusable answers a bounded number of
times; writes the shard, its rejects and its answers; and only then writes the marker.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from emopillars.config import RunConfig
from emopillars.engines import Engine, EngineSpec, Message, Request, Result, Sampling, engine_spec
from emopillars.hashing import file_hash, stable_hash
from emopillars.run import tables
from emopillars.run.answers import ShardAnswers, read_answers
from emopillars.run.ingest import prepare_stories
from emopillars.run.journal import Journal
from emopillars.run.layout import STORIES, RunLayout
from emopillars.run.manifest import Manifest, ShardMarker
from emopillars.run.plan import shards_of_worker
from emopillars.run.record import RunRecord, write_run_record
from emopillars.run.storage import read_rows, write_parquet
from emopillars.run.telemetry import PrefixShare
from emopillars.secrets import redact
from emopillars.stages import STAGES, Stage, stage_context
from emopillars.stages.base import Reject, Row, Step
from emopillars.stages.decoding import decode

log = logging.getLogger("emopillars")
events = logging.getLogger("emopillars.events")
ProgressHook = Callable[[str, int, "ShardMarker | None"], None]


class StepContractError(RuntimeError):
    """A step returned rows whose keys are not its declared columns: a bug in the step,
    which would otherwise lose or invent columns silently."""


@dataclass
class _ShardWork:
    """Bookkeeping of one (stage, shard) execution."""

    stage: Stage
    shard: int
    answers: ShardAnswers
    rejects: list[Row] = field(default_factory=list)
    requests_sent: int = 0
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
        self.layout = RunLayout(self.run_dir)
        self.ctx = stage_context(config)
        self.spec = spec or engine_spec(config)
        self.engine = _LazyEngine(self.spec)
        self.manifest = Manifest(self.layout)
        # What this invocation did, as opposed to the totals in the manifest.
        self.computed: list[ShardMarker] = []
        self._schemas: dict[str, dict[str, Any]] = {}
        self.skipped = 0

    # -- sampling and requests -------------------------------------------------------------
    def _sampling(self, step: Step, attempt: int) -> Sampling:
        base = Sampling(
            max_tokens=step.budget(self.ctx),
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

    def fingerprints(self, stage: Stage, rows: list[Row], input_sha: str) -> tuple[str, str]:
        """(of what is sent, of that and how answers are parsed): equal first parts mean the
        kept answers still answer every first-attempt request."""
        first, *_ = stage.steps
        requested = stable_hash(
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
                    }
                    for step in stage.steps
                ],
                "retry": [self.config.max_attempts, self.config.retry_temperature],
                "engine": self.spec.info.fingerprint,
            },
            length=32,
        )
        parsing = [
            {
                "call": step.call,
                "version": step.parser_version,
                "params": step.parse_params(self.ctx),
            }
            for step in stage.steps
        ]
        return requested, stable_hash({"requests": requested, "parsing": parsing}, length=32)

    # -- the engine, through the journal ---------------------------------------------------
    def _answers(self, work: _ShardWork, step: Step, requests: Sequence[Request]) -> list[Result]:
        found: dict[str, Result] = {}
        pending: dict[str, Request] = {}
        for request in requests:
            if request.key in found or request.key in pending:
                continue
            answer = work.answers.lookup(request.key)
            if answer is None:
                pending[request.key] = request
            else:
                found[request.key] = answer
        to_send = list(pending.values())
        for request in to_send:
            work.prefix.add(request.messages[-1].content)
        size = self.spec.batch_size or max(1, len(to_send))
        for start in range(0, len(to_send), size):
            batch = to_send[start : start + size]
            began = time.perf_counter()
            results = self.engine.get().generate(batch)
            work.engine_seconds += time.perf_counter() - began
            if len(results) != len(batch):
                raise RuntimeError(
                    f"engine returned {len(results)} results for {len(batch)} requests"
                )
            answered = [(r.key, result) for r, result in zip(batch, results, strict=True)]
            work.answers.record(answered)
            found.update(answered)
            work.requests_sent += len(batch)
        ordered = [found[request.key] for request in requests]
        for request, result in zip(requests, ordered, strict=True):
            work.answers.use(step.call, request.key, result)
            work.prompt_tokens += result.prompt_tokens
            work.completion_tokens += result.completion_tokens
        return ordered

    # -- one step of a stage over a shard --------------------------------------------------
    def _run_step(self, work: _ShardWork, step: Step, rows: list[Row]) -> list[Row]:
        key = work.stage.input_key
        outputs: dict[int, list[Row]] = {}
        pending = list(enumerate(rows))
        for attempt in range(self.config.max_attempts):
            requests = [self._request(step, row, attempt) for _, row in pending]
            results = self._answers(work, step, requests)
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
                _check_columns(work.stage, step, parsed.rows)
                column = step.request_column
                outputs[index] = [{**row, **new, column: request.key} for new in parsed.rows]
            pending = retry
            if not pending:
                break
        return [row for index in sorted(outputs) for row in outputs[index]]

    # -- one stage over a shard ------------------------------------------------------------
    def run_stage_shard(self, stage: Stage, shard: int, input_path: Path) -> ShardMarker | None:
        rows = read_rows(input_path)
        requested, fingerprint = self.fingerprints(stage, rows, file_hash(input_path))
        layout = self.layout
        journal_path = layout.journal(stage.name, shard)
        previous = self.manifest.read(stage.name, shard)
        if self.manifest.is_current(previous, fingerprint):
            # A kill between the marker write and the journal discard leaves a finished
            # shard's journal behind: the marker is the truth, the journal is spent.
            journal_path.unlink(missing_ok=True)
            self.skipped += 1
            if self.on_shard is not None:
                self.on_shard(stage.name, shard, None)
            return None
        kept = read_answers(layout.answers(stage.name, shard))
        _explain_recompute(stage, shard, previous, requested, kept)
        began = time.perf_counter()
        answers = ShardAnswers(Journal(journal_path), kept)
        work = _ShardWork(stage=stage, shard=shard, answers=answers)
        current = rows
        for step in stage.steps:
            current = self._run_step(work, step, current) if current else []
        output = layout.shard(stage.name, shard)
        rejects = layout.rejects(stage.name, shard)
        kept_answers = layout.answers(stage.name, shard)
        write_parquet(output, current, stage.output_schema)
        write_parquet(rejects, work.rejects, tables.REJECT)
        answers.write(kept_answers)
        accepted = len({row[stage.input_key] for row in current})
        marker = ShardMarker(
            stage=stage.name,
            shard=shard,
            fingerprint=fingerprint,
            request_fingerprint=requested,
            output=layout.relative(output),
            output_sha256=file_hash(output),
            rejects=layout.relative(rejects),
            answers=layout.relative(kept_answers),
            inputs=len(rows),
            accepted=accepted,
            rejected=len(rows) - accepted,
            outputs=len(current),
            item_rejects=sum(1 for r in work.rejects if r["scope"] == "item"),
            reject_reasons=dict(Counter(r["reason"] for r in work.rejects)),
            requests_sent=work.requests_sent,
            requests_replayed=answers.replayed,
            answers_reparsed=answers.reparsed,
            prompt_chars=work.prefix.total,
            prompt_chars_shared=work.prefix.shared,
            prompt_tokens=work.prompt_tokens,
            completion_tokens=work.completion_tokens,
            seconds=round(time.perf_counter() - began, 3),
            engine_seconds=round(work.engine_seconds, 3),
            engine=f"{self.spec.info.name}:{self.spec.info.model}",
        )
        self.manifest.write(marker)
        answers.journal.discard()
        self.computed.append(marker)
        # One JSON line per finished shard, for cluster log collectors.
        events.info(json.dumps({"event": "shard_done", **marker.model_dump()}, sort_keys=True))
        if self.on_shard is not None:
            self.on_shard(stage.name, shard, marker)
        return marker

    def prepare(self) -> dict[str, Any]:
        """Settle the plan and the story shards, and record what the run is in run.json."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # A record, not what is sent: credentials (in a --base-url, say) are redacted, the same
        # way by every worker, so the identity the plan checks is that of the redacted record
        # and a rotated key does not make a new run. Request keys use the engine info as is.
        record = RunRecord(
            # Without the execution section: every worker of a run writes the same record.
            config=redact(self.config.model_dump(mode="json", exclude={"execution"})),
            engine=replace(self.spec.info, **redact(asdict(self.spec.info))),
            prompt_version=self.config.prompt_version,
            prompt_files_sha256=self.ctx.prompt_files_sha256,
        )
        plan = prepare_stories(self.config, self.layout, record.identity)
        write_run_record(self.layout, record)
        return plan

    def run_shards(self, shards: Iterable[int]) -> None:
        """Every stage of each story shard, one story shard after the other."""
        try:
            for shard in shards:
                upstream = STORIES
                for stage in STAGES:
                    self.run_stage_shard(stage, shard, self.layout.shard(upstream, shard))
                    upstream = stage.name
        finally:
            self.engine.close()

    def run(self) -> dict[str, Any]:
        """Prepare, then run this worker's story shards: all of them for a single worker."""
        plan = self.prepare()
        config = self.config
        self.run_shards(
            shards_of_worker(
                config.execution.worker_index, config.execution.num_workers, plan["shards"]
            )
        )
        return plan


def _check_columns(stage: Stage, step: Step, rows: list[Row]) -> None:
    for row in rows:
        extra, missing = set(row) - step.column_names, step.column_names - set(row)
        if extra or missing:
            problems = [f"key {key!r}, which its columns lack" for key in sorted(extra)]
            problems += [f"no {key!r}, which its columns declare" for key in sorted(missing)]
            raise StepContractError(
                f"step {step.call!r} of stage {stage.name!r} returned {' and '.join(problems)} "
                f"(declared columns: {', '.join(name for name, _ in step.columns)}): fix the "
                "step's `columns` or its `parse`"
            )


def _explain_recompute(
    stage: Stage,
    shard: int,
    previous: ShardMarker | None,
    requested: str,
    kept: dict[str, Result],
) -> None:
    """Say why a finished shard is computed again, and whether the engine will be asked."""
    if previous is None:
        return
    where = f"{stage.name} shard {shard}"
    if not kept:
        log.info(
            "%s: recomputing; it has no kept answers (made before emopillars kept them, or "
            "its answers file was removed), so its requests go to the engine again",
            where,
        )
    elif previous.request_fingerprint == requested:
        log.info("%s: only parsing changed; re-parsing its kept answers", where)
    else:
        log.info("%s: inputs or prompts changed; kept answers are reused where they match", where)
