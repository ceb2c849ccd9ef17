"""The run folder's layout: where shards, rejects and the plan live, and the story shards
written from the corpus (every stage reads its input from here)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pipeline import records
from pipeline.config import RunConfig
from pipeline.corpus import fields_from, load_corpus
from pipeline.resources import sample_corpus
from pipeline.shared_plan import settle_plan
from pipeline.stages.base import Row
from pipeline.storage import read_json, read_rows, write_parquet

STORIES_DIR = "stories"
PLAN_FILE = "plan.json"


def shard_file(run_dir: Path, folder: str, shard: int) -> Path:
    return run_dir / folder / f"shard-{shard:05d}.parquet"


def rejects_file(run_dir: Path, folder: str, shard: int) -> Path:
    return run_dir / folder / f"rejects-{shard:05d}.parquet"


def journal_file(run_dir: Path, stage: str, shard: int) -> Path:
    return run_dir / "journal" / stage / f"shard-{shard:05d}.jsonl"


def read_plan(run_dir: Path) -> dict[str, Any]:
    path = run_dir / PLAN_FILE
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not an emopillars run folder (no {PLAN_FILE})")
    plan: dict[str, Any] = read_json(path)
    return plan


def prepare_stories(config: RunConfig, run_dir: Path, run_fingerprint: str) -> dict[str, Any]:
    """Load and check the corpus, settle the plan, and write the corpus as story shards
    (rewritten only on change).

    The plan is settled first: a worker whose corpus or config differs from the one its
    fellow workers planned with stops before it writes any story shard."""
    corpus = config.corpus or sample_corpus()
    stories, rejects = load_corpus(
        corpus, config.corpus_format, fields_from(config), config.max_story_chars
    )
    if config.max_stories is not None:
        stories = stories[: config.max_stories]
    shards = max(1, -(-len(stories) // config.shard_size))
    plan = {
        "shards": shards,
        "stories": len(stories),
        "corpus": str(corpus),
        "corpus_rejects": dict(Counter(reject.reason for reject in rejects)),
        "story_ids": [story.story_id for story in stories],
        "num_workers": config.num_workers,
        "run_fingerprint": run_fingerprint,
    }
    settle_plan(run_dir / PLAN_FILE, plan, shared=config.num_workers > 1)
    # Workers of one run write identical story shards: whoever comes second keeps the file.
    for shard in range(shards):
        chunk = stories[shard * config.shard_size : (shard + 1) * config.shard_size]
        rows = [story.__dict__ for story in chunk]
        _write_if_changed(shard_file(run_dir, STORIES_DIR, shard), rows, records.STORY)
    reject_rows = [reject.__dict__ for reject in rejects]
    _write_if_changed(run_dir / STORIES_DIR / "rejects.parquet", reject_rows, records.CORPUS_REJECT)
    return plan


def _write_if_changed(path: Path, rows: list[Row], schema: Any) -> None:
    # Rewriting an unchanged shard would still be correct, but keeping the file keeps
    # everyone's view of it stable (and is cheaper).
    if path.exists() and read_rows(path) == rows:
        return
    write_parquet(path, rows, schema)
