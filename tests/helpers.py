"""Test doubles: an engine spec that records what its engine was sent."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow.parquet as pq
from emopillars.config import RunConfig
from emopillars.engines import Engine, EngineSpec, Request, Result, engine_spec


@dataclass
class Recorder:
    sent: list[Request] = field(default_factory=list)
    loads: int = 0
    fail_after_batches: int | None = None
    batches: int = 0
    before_batch: Callable[[], None] | None = None  # a test's hook, run before each batch

    @property
    def keys(self) -> set[str]:
        return {request.key for request in self.sent}


class RecordingEngine:
    """Wraps any engine: records what it is sent and can crash after some batches."""

    def __init__(self, inner: Engine, recorder: Recorder) -> None:
        self.inner = inner
        self.recorder = recorder

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        if self.recorder.fail_after_batches is not None and (
            self.recorder.batches >= self.recorder.fail_after_batches
        ):
            raise RuntimeError("engine crashed (test)")
        if self.recorder.before_batch is not None:
            self.recorder.before_batch()
        self.recorder.batches += 1
        self.recorder.sent.extend(requests)
        return self.inner.generate(requests)

    def close(self) -> None:
        self.inner.close()


def recording_spec(
    config: RunConfig, recorder: Recorder, batch_size: int | None = None
) -> EngineSpec:
    """The configured engine, recorded; `batch_size` overrides the engine's own."""
    base = engine_spec(config)

    def load() -> RecordingEngine:
        recorder.loads += 1
        return RecordingEngine(base.load(), recorder)

    return replace(base, load=load, batch_size=batch_size or base.batch_size)


def request_keys_in(path: Path) -> set[str]:
    """Every request key a shard's rows (or rejects) name."""
    table = pq.read_table(path)
    keys: set[str] = set()
    for name in table.column_names:
        if name.endswith("_request") or name == "request":
            keys.update(value for value in table.column(name).to_pylist() if value)
    return keys


@dataclass
class Interrupted:
    """What an interrupted run left: marker texts, and the request keys already paid for."""

    markers: dict[Path, str]
    done_keys: set[str]  # named by finished shards' rows and rejects
    journaled: set[str]  # answered in shards that did not finish

    @classmethod
    def read(cls, run_dir: Path) -> Interrupted:
        from emopillars.run.journal import Journal

        markers = {p: p.read_text() for p in (run_dir / "manifest").glob("*/shard-*.json")}
        done: set[str] = set()
        for marker in markers:
            stage, shard = marker.parent.name, marker.stem.split("-")[1]
            done |= request_keys_in(run_dir / stage / f"shard-{shard}.parquet")
            done |= request_keys_in(run_dir / stage / f"rejects-{shard}.parquet")
        journals = (run_dir / "journal").glob("*/*.jsonl")
        journaled = {key for path in journals for key in Journal(path).answers}
        return cls(markers, done, journaled)

    def untouched(self) -> bool:
        return all(marker.read_text() == text for marker, text in self.markers.items())


def gate_violations(dataset_dir: Path) -> list[str]:
    """Dataset rows that break a default quality gate, computed here independently of the
    gates' code: a short or label-only utterance, a short context, a rewrite whose length is
    outside 0.5-2 times the original's (in words)."""
    import re

    from emopillars.stages.taxonomy import LABELS

    def count(text: str) -> int:
        return len(re.findall(r"[A-Za-z]+(?:'[A-Za-z]+)*", text))

    problems: list[str] = []
    for path in sorted(dataset_dir.rglob("*.parquet")):
        for row in pq.read_table(path).to_pylist():
            original = row.get("original_utterance") or row["utterance"]
            if count(original) < 4 or original.strip(" .!?").lower() in LABELS:
                problems.append(f"{row['id']}: utterance {original!r}")
            if "context" in row:
                if count(row["context"]) < 8:
                    problems.append(f"{row['id']}: context {row['context']!r}")
                ratio = count(row["utterance"]) / count(original)
                if not 0.5 <= ratio <= 2.0:
                    problems.append(f"{row['id']}: rewrite ratio {ratio:.2f}")
    return problems
