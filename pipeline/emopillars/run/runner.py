"""Runs the method: every story shard through every stage, resumably.

For each (stage, shard) the runner renders the requests, fingerprints them (what is sent,
and how answers are parsed), and skips the shard when its marker carries the same fingerprint.
Otherwise it answers each request from the shard's kept answers or its journal when it can,
else from the engine (journaled as they arrive); retries unusable answers a bounded number of
times; writes the shard, its rejects and its answers; and only then writes the marker.

Each story shard's stages are one task (a generator that yields the requests it waits for);
run/schedule.py runs many such tasks at once so that the engine is always full. A stage's
output goes to the next stage from memory, with the hash of the bytes written.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from emopillars.config import RunConfig
from emopillars.engines import Engine, EngineSpec, Request, Result, Sampling, engine_spec
from emopillars.hashing import file_hash
from emopillars.run import tables
from emopillars.run.answers import ShardAnswers
from emopillars.run.garbage import collecting_less
from emopillars.run.healing import explain_recompute, kept_answers, previous_marker, record_links
from emopillars.run.ingest import prepare_stories
from emopillars.run.journal import Journal
from emopillars.run.layout import RunLayout
from emopillars.run.leases import shard_lease
from emopillars.run.lock import role
from emopillars.run.manifest import Manifest, ShardMarker
from emopillars.run.plan import shards_of_worker
from emopillars.run.record import RunRecord, keep_recorded_shard_size, write_run_record
from emopillars.run.requests import RequestBuilder
from emopillars.run.schedule import Need, Scheduler, Task, stream_of
from emopillars.run.storage import (
    read_arrow,
    rows_table,
    sync_folder,
    write_rows,
    write_shard_table,
)
from emopillars.run.telemetry import PrefixShare
from emopillars.secrets import redact
from emopillars.stages import STAGES, Stage, stage_context
from emopillars.stages.base import Reject, Row, StageContext, Step
from emopillars.stages.decoding import decode

log = logging.getLogger("emopillars")
events = logging.getLogger("emopillars.events")
ProgressHook = Callable[[str, int, "ShardMarker | None"], None]
# What a stage task yields, is sent, and returns.
Work = Generator[Need, dict[str, Result], "ShardInput"]


@dataclass(frozen=True)
class ShardInput:
    """A stage's input rows, the sha256 of the file that holds them, and that file's rows as
    Arrow (the table read or written), from which the stage's output takes the columns it
    carries over."""

    rows: list[Row]
    sha256: str
    table: pa.Table

    @classmethod
    def read(cls, path: Path) -> ShardInput:
        table = read_arrow(path)
        return cls(table.to_pylist(), file_hash(path), table)


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
        steps: Sequence[Step] | None = None,
    ) -> None:
        config = keep_recorded_shard_size(config)
        self.config = config
        self.on_shard = on_shard
        self.run_dir = config.output_dir
        self.layout = RunLayout(self.run_dir)
        # `steps`: the calls this runner may make, when not the method's (judge-teacher's).
        self.ctx = (
            stage_context(config) if steps is None else StageContext.from_config(config, steps)
        )
        self.spec = spec or engine_spec(config)
        self.engine = _LazyEngine(self.spec)
        self.manifest = Manifest(self.layout)
        self.requests = RequestBuilder(config, self.ctx, self.spec)
        # What this invocation did, as opposed to the totals in the manifest.
        self.computed: list[ShardMarker] = []
        self.skipped = 0

    # -- sampling and requests -------------------------------------------------------------
    def _sampling(self, step: Step, attempt: int) -> Sampling:
        return self.requests.sampling(step, attempt)

    def _schema(self, step: Step) -> dict[str, Any]:
        return self.requests.schema(step)

    def _request(self, step: Step, row: Row, attempt: int) -> Request:
        return self.requests.request(step, row, attempt)

    def fingerprints(self, stage: Stage, rows: list[Row], input_sha: str) -> tuple[str, str]:
        """(of what is sent, of that and how answers are parsed): equal first parts mean the
        kept answers still answer every first-attempt request."""
        first = self.requests.first_requests(stage, rows)
        return self.requests.fingerprints(stage, first, input_sha)

    # -- the engine, through the journal ---------------------------------------------------
    def _answers(
        self, work: _ShardWork, step: Step, requests: Sequence[Request]
    ) -> Generator[Need, dict[str, Result], list[Result]]:
        """The answers to these requests: kept or journaled ones, else the engine's (the task
        yields what it still needs; the scheduler journals answers as they arrive)."""
        found: dict[str, Result] = {}
        if work.answers.has_earlier:
            pending: dict[str, Request] = {}
            lookup = work.answers.lookup
            for request in requests:
                key = request.key
                if key in found or key in pending:
                    continue
                answer = lookup(key)
                if answer is None:
                    pending[key] = request
                else:
                    found[key] = answer
        else:  # a first computation: every request is new (a request twice is sent once)
            pending = {request.key: request for request in requests}
        to_send = list(pending.values())
        add_prompt = work.prefix.add
        for request in to_send:
            add_prompt(request.messages[-1].content)
        if to_send:
            need = Need(to_send, work.answers.record)
            found.update((yield need))
            work.requests_sent += len(to_send) - need.shared
            work.engine_seconds += need.engine_seconds
        keys = [request.key for request in requests]
        ordered = [found[key] for key in keys]
        work.answers.use(step.call, keys, ordered)
        work.prompt_tokens += sum(result.prompt_tokens for result in ordered)
        work.completion_tokens += sum(result.completion_tokens for result in ordered)
        return ordered

    # -- one step of a stage over a shard --------------------------------------------------
    def _run_step(
        self, work: _ShardWork, step: Step, rows: list[Row], first: list[Request] | None
    ) -> Generator[Need, dict[str, Result], tuple[list[Row], list[int]]]:
        """One step over the rows; `first`: its first-attempt requests, already made. Returns
        the output rows and, for each, the index of the input row it came from."""
        key = work.stage.input_key
        outputs: dict[int, list[Row]] = {}
        pending = list(enumerate(rows))
        for attempt in range(self.config.max_attempts):
            if attempt == 0 and first is not None:
                requests = first
            else:
                requests = [self._request(step, row, attempt) for _, row in pending]
            results = yield from self._answers(work, step, requests)
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
        done = sorted(outputs)
        return (
            [row for index in done for row in outputs[index]],
            [index for index in done for _ in outputs[index]],
        )

    # -- one stage over a shard ------------------------------------------------------------
    def run_stage_shard(self, stage: Stage, shard: int, input_path: Path) -> ShardMarker | None:
        """One stage over one shard, alone; its new marker, or None when it was done."""
        markers: list[ShardMarker | None] = []

        def task() -> Task:
            _, marker = yield from self._stage_shard(stage, shard, ShardInput.read(input_path))
            markers.append(marker)

        self._scheduler().run([task()])
        return markers[0]

    def _stage_shard(
        self, stage: Stage, shard: int, source: ShardInput
    ) -> Generator[Need, dict[str, Result], tuple[ShardInput, ShardMarker | None]]:
        """The task of one stage over one shard: its output (for the next stage) and its new
        marker, None when the shard was done already."""
        rows, input_sha = source.rows, source.sha256
        first = self.requests.first_requests(stage, rows)
        requested, fingerprint = self.requests.fingerprints(stage, first, input_sha)
        layout = self.layout
        journal_path = layout.journal(stage.name, shard)
        # An unreadable marker, or one whose files changed since, proves nothing: recompute.
        previous = previous_marker(self.manifest, stage.name, shard)
        reason = None if previous is None else self.manifest.outdated(previous, fingerprint)
        if previous is not None and reason is None:
            record_links(self.manifest, previous, input_sha)
            # A kill between the marker write and the journal discard leaves a finished
            # shard's journal behind: the marker is the truth, the journal is spent.
            journal_path.unlink(missing_ok=True)
            self.skipped += 1
            if self.on_shard is not None:
                self.on_shard(stage.name, shard, None)
            return ShardInput.read(layout.shard(stage.name, shard)), None
        kept = kept_answers(layout, stage.name, shard)
        same_requests = previous is not None and previous.request_fingerprint == requested
        explain_recompute(stage.name, shard, previous, reason, same_requests, kept)
        began = time.perf_counter()
        answers = ShardAnswers(Journal(journal_path), kept)
        work = _ShardWork(stage=stage, shard=shard, answers=answers)
        # `origin`: for each row of `current`, the index of the input row it came from.
        current, origin = rows, list(range(len(rows)))
        try:
            for index, step in enumerate(stage.steps):
                if not current:
                    break
                made = first if index == 0 else None
                current, picked = yield from self._run_step(work, step, current, made)
                origin = [origin[row] for row in picked]
        finally:
            # Every answer is in (or the run failed and closes its tasks): the journal's file,
            # open since its first answer, is closed; a failed shard's stays for the resume.
            answers.journal.close()
        output = layout.shard(stage.name, shard)
        rejects = layout.rejects(stage.name, shard)
        answers_path = layout.answers(stage.name, shard)
        # Hashed from the bytes written: nothing is read back. Each file is fsynced; their
        # folder once, for all three, before the marker names them.
        table, output_sha = write_shard_table(
            output, _output_table(stage, source.table, origin, current), sync=False
        )
        _, rejects_sha = write_rows(rejects, work.rejects, tables.REJECT, sync=False)
        answers_sha = answers.write(answers_path, sync=False)
        for folder in {output.parent, rejects.parent, answers_path.parent}:
            sync_folder(folder)
        accepted = len({row[stage.input_key] for row in current})
        marker = ShardMarker(
            stage=stage.name,
            shard=shard,
            fingerprint=fingerprint,
            request_fingerprint=requested,
            output=layout.relative(output),
            output_sha256=output_sha,
            input_sha256=input_sha,
            rejects=layout.relative(rejects),
            rejects_sha256=rejects_sha,
            answers=layout.relative(answers_path),
            answers_sha256=answers_sha,
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
        if events.isEnabledFor(logging.INFO):
            events.info(json.dumps({"event": "shard_done", **marker.model_dump()}, sort_keys=True))
        if self.on_shard is not None:
            self.on_shard(stage.name, shard, marker)
        return ShardInput(_as_read_back(stage, table, current), output_sha, table), marker

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
        """Every stage of each story shard, many story shards at once (run/schedule.py)."""
        try:
            with collecting_less():
                self._scheduler().run(self._story_shard(shard) for shard in shards)
        finally:
            self.engine.close()

    def _scheduler(self) -> Scheduler:
        execution = self.config.execution
        return Scheduler(
            lambda: stream_of(self.engine.get(), self.spec.batch_size),
            max_in_flight=execution.max_in_flight or self.spec.max_in_flight,
            window=execution.shards_in_flight,
        )

    def _story_shard(self, shard: int) -> Task:
        """The task of one story shard: its stages one after another."""
        # Two processes given the same shard take turns at it (run/leases.py); the lease is
        # held while any of the shard's stages runs.
        with shard_lease(self.layout, shard, role(self.config.execution)):
            source = ShardInput.read(self.layout.story_shard(shard))
            for stage in STAGES:
                source, _ = yield from self._stage_shard(stage, shard, source)

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


def _as_read_back(stage: Stage, table: pa.Table, rows: list[Row]) -> list[Row]:
    """The rows as the next stage would read them back from the file: the values of the
    columns this stage added as Arrow holds them (its types, not parse's, so that a resumed
    run and an uninterrupted one see the same rows). The input's columns are in that form
    already; converting only the added ones spares the wide ones (the story text)."""
    for name in table.schema.names:
        if name not in stage.input_schema.names:
            for row, value in zip(rows, table.column(name).to_pylist(), strict=True):
                row[name] = value
    return rows


def _output_table(stage: Stage, source: pa.Table, origin: list[int], rows: list[Row]) -> pa.Table:
    """The stage's output rows as Arrow. The columns carried over from the input (most of a
    row, the story text among them) are taken from the input's table by `origin`, in C, not
    converted again from Python; the columns the steps added come from `rows`, whose keys
    `_check_columns` checked. Where the input table is not of the stage's input schema (a
    file written by another version), every column comes from `rows`."""
    schema = stage.output_schema
    if not source.schema.equals(stage.input_schema):
        return rows_table(rows, schema)
    added = [
        pa.array([row[name] for row in rows], type=schema.field(name).type)
        for name in schema.names[len(stage.input_schema) :]
    ]
    taken = source.take(pa.array(origin, type=pa.int64()))
    return pa.Table.from_arrays([*taken.columns, *added], schema=schema)


def _check_columns(stage: Stage, step: Step, rows: list[Row]) -> None:
    names = step.column_names
    for row in rows:
        if row.keys() == names:
            continue
        extra, missing = set(row) - names, names - set(row)
        if extra or missing:
            problems = [f"key {key!r}, which its columns lack" for key in sorted(extra)]
            problems += [f"no {key!r}, which its columns declare" for key in sorted(missing)]
            raise StepContractError(
                f"step {step.call!r} of stage {stage.name!r} returned {' and '.join(problems)} "
                f"(declared columns: {', '.join(name for name, _ in step.columns)}): fix the "
                "step's `columns` or its `parse`"
            )
