"""provenance.json: what made a published dataset, in enough detail to make it again.

It is a function of the run folder, the prompt files and the publish target: no publishing
time (the Hub's commit records that), so publishing the same run twice writes the same file
and uploads nothing new. Secrets in the config and in URLs are redacted (emopillars.secrets);
the token never gets here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

import emopillars
from emopillars.dataset.card import ModelIdentity, model_identity
from emopillars.hashing import file_hash
from emopillars.release.checks import ReleaseSummary
from emopillars.run.layout import RunLayout
from emopillars.run.manifest import Manifest, StageTotals
from emopillars.run.storage import read_rows
from emopillars.secrets import REDACTED, redact
from emopillars.stages import STAGE_NAMES

__all__ = ["REDACTED", "Provenance", "build_provenance", "redact"]


class CorpusFingerprint(BaseModel):
    model_config = ConfigDict(frozen=True)

    source: str
    stories: int
    rejects: dict[str, int]
    # sha256 over the stories the run kept (id, title, text, in order): independent of the
    # corpus format and of where the file lives now.
    stories_sha256: str
    source_sha256: str | None  # the corpus file as it is now, when it is a file


class PublishedFile(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: str
    rows: int
    sha256: str


class RunTimes(BaseModel):
    model_config = ConfigDict(frozen=True)

    first_shard_started_at: str
    last_shard_finished_at: str


class Provenance(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pipeline: str = "emopillars"
    pipeline_version: str
    repo_id: str
    revision: str
    license: str
    run_config: dict[str, Any]
    # The quality gates' thresholds (the run config's `gates`), on their own: what every
    # row passed. None for a run made before the gates existed.
    gates: dict[str, Any] | None
    engine: dict[str, Any]
    model: ModelIdentity
    prompt_version: str
    prompt_files_sha256: dict[str, str]
    manifest: dict[str, StageTotals]
    corpus: CorpusFingerprint
    files: list[PublishedFile]
    timestamps: RunTimes

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"


def build_provenance(
    summary: ReleaseSummary,
    repo_id: str,
    revision: str,
    license_id: str,
    secrets: tuple[str, ...] = (),
) -> Provenance:
    run = summary.run
    config = run.config
    return Provenance(
        pipeline_version=emopillars.__version__,
        repo_id=repo_id,
        revision=revision,
        license=license_id,
        run_config=redact(config, secrets),
        gates=config.get("gates"),
        engine=redact(asdict(run.engine), secrets),
        model=model_identity(run.engine),
        prompt_version=run.prompt_version,
        prompt_files_sha256=run.prompt_files_sha256,
        manifest=summary.totals,
        corpus=_corpus_fingerprint(summary),
        files=[
            PublishedFile(path=file.path_in_repo, rows=file.rows, sha256=file_hash(file.local))
            for file in summary.files
        ],
        timestamps=_run_times(summary.run_dir, summary.plan["shards"]),
    )


def _corpus_fingerprint(summary: ReleaseSummary) -> CorpusFingerprint:
    digest = hashlib.sha256()
    for shard in range(summary.plan["shards"]):
        for row in read_rows(RunLayout(summary.run_dir).story_shard(shard)):
            line = json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
            digest.update(line.encode("utf-8") + b"\n")
    source = Path(summary.plan["corpus"])
    return CorpusFingerprint(
        source=str(source),
        stories=summary.plan["stories"],
        rejects=summary.plan["corpus_rejects"],
        stories_sha256=digest.hexdigest(),
        source_sha256=file_hash(source) if source.is_file() else None,
    )


def _run_times(run_dir: Path, shards: int) -> RunTimes:
    manifest = Manifest(RunLayout(run_dir))
    starts: list[datetime] = []
    ends: list[datetime] = []
    for stage in STAGE_NAMES:
        for shard in range(shards):
            marker = manifest.read(stage, shard)
            if marker is None:  # the release checks have already refused such a run
                continue
            end = datetime.fromisoformat(marker.finished_at)
            ends.append(end)
            starts.append(end - timedelta(seconds=marker.seconds))
    return RunTimes(
        first_shard_started_at=min(starts).isoformat(),
        last_shard_finished_at=max(ends).isoformat(),
    )
